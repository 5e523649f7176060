"""Slicer volume-sequence NRRD files (``.seq.nrrd``): reader and writer.

Written as ``kinds: list domain domain domain``, ``space directions: none (..) (..) (..)``,
``labels``/``units`` naming the sequence axis, and the key/values ``DataNodeClassName``,
``axis 0 index type`` and ``axis 0 index values`` (URL-encoded values separated by spaces).  That
layout is what Slicer up to 5.8 writes and every Slicer version reads; Slicer 5.10+ writes the
frame axis last (``axis 3 ...``), which is read as well, as are ``right-anterior-superior`` /
``left-anterior-superior`` spaces, raw/gzip/bzip2/ascii encodings and detached headers with one
data file.  Any ``.nrrd``/``.nhdr`` is read; a 3D file is one frame.

Frames are :class:`~tttmedical.core.volume.Volume` (arrays ``[k, j, i]``, LPS geometry); the only
LPS/RAS conversion here is :func:`_space_to_lps`.  :mod:`tttmedical.core.sequence` wraps this
module in ``read_sequence``/``write_sequence``.  Bad files raise
:class:`~tttmedical.core.errors.InputError` with one sentence naming the file and the fix.
"""
from __future__ import annotations

import bz2
import gzip
import math
import os
import re
import zlib
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from .errors import InputError
from .volume import Volume

__all__ = ["read_nrrd", "write_nrrd"]


def _space_to_lps(space: str) -> np.ndarray:
    """Diagonal flip taking vectors of a NRRD/RAS-style ``space`` to LPS (its own inverse)."""
    flips = {"LPS": (1.0, 1.0, 1.0), "RAS": (-1.0, -1.0, 1.0), "LAS": (1.0, -1.0, 1.0)}
    return np.diag(flips[space])


def _atomic_bytes(path: Path, chunks) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _format_float(value: float) -> str:
    """Shortest text that reads back to the same double, without '+' (safe in URL-encoded lists)."""
    text = repr(float(value))
    return text.replace("e+", "e")



_NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2", "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "longlong": "i8", "long long": "i8", "long long int": "i8", "signed long long": "i8",
    "signed long long int": "i8", "int64": "i8", "int64_t": "i8",
    "ulonglong": "u8", "unsigned long long": "u8", "unsigned long long int": "u8", "uint64": "u8", "uint64_t": "u8",
    "float": "f4", "double": "f8",
}
_NRRD_TYPE_NAMES = {"i1": "int8", "u1": "uint8", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                    "i8": "longlong", "u8": "ulonglong", "f4": "float", "f8": "double"}
_NRRD_SPACES = {"left-posterior-superior": "LPS", "lps": "LPS", "right-anterior-superior": "RAS", "ras": "RAS",
                "left-anterior-superior": "LAS", "las": "LAS"}
_DOMAIN_KINDS = {"domain", "space", "time"}


def _nrrd_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _nrrd_unquote_list(value: str) -> list[str]:
    return [m.group(1).replace('\\"', '"').replace("\\\\", "\\") for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', value)]


def _kv_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _kv_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def write_nrrd(path: Path, frames: list[Volume], index_name: str, index_unit: str, index_values: list[float],
               attributes: dict[str, str], compress: bool = True, space: str = "LPS", frame_axis: str = "first") -> None:
    """Write frames on one grid as a Slicer volume-sequence NRRD, atomically (see module docstring)."""
    space = str(space).upper()
    if space not in ("LPS", "RAS"):
        raise InputError(f"Unsupported NRRD space '{space}' for '{path}'; use LPS or RAS.")
    if frame_axis not in ("first", "last"):
        raise InputError(f"Unsupported frame_axis '{frame_axis}' for '{path}'; use 'first' or 'last'.")
    grid = frames[0]
    dtype = np.dtype(grid.array.dtype)
    code = dtype.kind + str(dtype.itemsize)
    if dtype.kind == "b":
        code, dtype = "u1", np.dtype(np.uint8)
    if code not in _NRRD_TYPE_NAMES:
        raise InputError(f"Cannot store voxel type {grid.array.dtype} in '{path}'; convert frames to an integer or float type.")
    to_space = _space_to_lps(space)  # its own inverse
    axes_ldir = to_space @ grid.direction @ np.diag(grid.spacing)  # columns: i, j, k steps in `space`
    origin = to_space @ np.asarray(grid.origin)
    vectors = ["(" + ",".join(_format_float(x) for x in axes_ldir[:, c]) + ")" for c in range(3)]
    first = frame_axis == "first"
    n = len(frames)
    sizes = [n, *grid.size_ijk] if first else [*grid.size_ijk, n]
    directions = (["none"] + vectors) if first else (vectors + ["none"])
    kinds = ["list", "domain", "domain", "domain"] if first else ["domain", "domain", "domain", "list"]
    labels = [index_name, "", "", ""] if first else ["", "", "", index_name]
    units = [index_unit, "", "", ""] if first else ["", "", "", index_unit]
    axis = 0 if first else 3
    space_name = {"LPS": "left-posterior-superior", "RAS": "right-anterior-superior"}[space]
    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {_NRRD_TYPE_NAMES[code]}",
        "dimension: 4",
        f"space: {space_name}",
        "sizes: " + " ".join(str(s) for s in sizes),
        "space directions: " + " ".join(directions),
        "kinds: " + " ".join(kinds),
        "labels: " + " ".join(_nrrd_quote(s) for s in labels),
        "units: " + " ".join(_nrrd_quote(s) for s in units),
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        "space origin: (" + ",".join(_format_float(x) for x in origin) + ")",
    ]
    keyvalues = dict(attributes)
    keyvalues[f"axis {axis} index type"] = "numeric"
    keyvalues[f"axis {axis} index values"] = " ".join(quote(_format_float(v), safe="") for v in index_values)
    for key in sorted(keyvalues):
        if ":=" in key or "\n" in key or not key.strip():
            raise InputError(f"Attribute name {key!r} cannot be stored in '{path}'; use a single-line name without ':='.")
        lines.append(f"{key}:={_kv_escape(keyvalues[key])}")
    header = ("\n".join(lines) + "\n\n").encode("utf-8")
    # Voxel order in the file: the first NRRD axis varies fastest.
    stacked = np.stack([f.array for f in frames], axis=-1 if first else 0)  # (K,J,I,T) or (T,K,J,I)
    data = np.ascontiguousarray(stacked, dtype=dtype.newbyteorder("<")).tobytes()
    if compress:
        data = gzip.compress(data, compresslevel=2, mtime=0)
    _atomic_bytes(path, [header, data])


def _read_nrrd_header(path: Path, name: str) -> tuple[dict[str, str], dict[str, str], bytes]:
    """Return (fields, key/values, bytes after the header) of an attached or detached NRRD header."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"The {name} file '{path}' could not be read ({exc.strerror}); check permissions.") from None
    if not raw.startswith(b"NRRD000"):
        raise InputError(f"The {name} file '{path}' is not a NRRD file (no NRRD magic line); save it as NRRD from Slicer or ITK.")
    fields: dict[str, str] = {}
    keyvalues: dict[str, str] = {}
    pos = raw.index(b"\n") + 1 if b"\n" in raw else len(raw)
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end].rstrip(b"\r").decode("utf-8", errors="replace")
        pos = end + 1
        if not line.strip():
            break
        if line.startswith("#"):
            continue
        kv = line.find(":=")
        colon = line.find(": ")
        if kv >= 0 and (colon < 0 or kv < colon):
            keyvalues[_kv_unescape(line[:kv])] = _kv_unescape(line[kv + 2:])
        elif colon >= 0:
            fields[line[:colon].strip().lower()] = line[colon + 2:].strip()
        elif line.rstrip().endswith(":"):
            fields[line.rstrip()[:-1].strip().lower()] = ""
        else:
            raise InputError(f"The {name} file '{path}' has a malformed NRRD header line {line!r}; fix or re-save the header.")
    return fields, keyvalues, raw[pos:]


def _parse_vector(text: str, path: Path, name: str) -> np.ndarray | None:
    text = text.strip()
    if text == "none":
        return None
    if not (text.startswith("(") and text.endswith(")")):
        raise InputError(f"The {name} file '{path}' has a malformed vector {text!r} in its header; use '(x,y,z)'.")
    try:
        return np.array([float(v) for v in text[1:-1].split(",")], dtype=float)
    except ValueError:
        raise InputError(f"The {name} file '{path}' has a non-numeric vector {text!r} in its header; fix the header.") from None


def read_nrrd(path: Path, name: str) -> dict:
    """Read a volume-sequence (or 3D) NRRD: ``{"frames", "index_name", "index_unit", "index_values", "attributes"}``.

    The keys are :class:`~tttmedical.core.sequence.Sequence`'s fields; ``name`` is used in error messages.
    """
    fields, keyvalues, rest = _read_nrrd_header(path, name)

    def need(field: str) -> str:
        if field not in fields:
            raise InputError(f"The {name} file '{path}' lacks the required NRRD field '{field}'; re-save it from Slicer or ITK.")
        return fields[field]

    type_name = need("type").lower()
    if type_name not in _NRRD_TYPES:
        raise InputError(f"The {name} file '{path}' has unsupported NRRD type '{type_name}'; use an integer or float type.")
    try:
        dim = int(need("dimension"))
        sizes = [int(s) for s in need("sizes").split()]
    except ValueError:
        raise InputError(f"The {name} file '{path}' has a non-integer 'dimension' or 'sizes' field; fix the header.") from None
    if dim not in (3, 4) or len(sizes) != dim or min(sizes) < 1:
        raise InputError(
            f"The {name} file '{path}' has dimension {dim} with sizes {sizes}; a volume sequence needs 3 spatial axes and one frame axis."
        )
    kinds = need("kinds").split() if "kinds" in fields else []
    kinds = [k.lower() for k in kinds]
    if kinds and len(kinds) != dim:
        raise InputError(f"The {name} file '{path}' lists {len(kinds)} kinds for {dim} axes; fix the 'kinds' field.")

    # ------------------------------------------------------------ geometry
    space = None
    if "space" in fields:
        space = _NRRD_SPACES.get(fields["space"].strip().lower())
        if space is None:
            raise InputError(
                f"The {name} file '{path}' uses NRRD space '{fields['space']}'; only left-posterior-superior, "
                "right-anterior-superior and left-anterior-superior are supported, re-save it from Slicer."
            )
    elif "space dimension" in fields:
        raise InputError(f"The {name} file '{path}' has a 'space dimension' without a named space; re-save it with space LPS or RAS.")

    if "space directions" in fields:
        tokens = re.findall(r"\([^)]*\)|none", fields["space directions"])
        if len(tokens) != dim:
            raise InputError(f"The {name} file '{path}' has {len(tokens)} space directions for {dim} axes; fix the header.")
        vectors = [_parse_vector(t, path, name) for t in tokens]
        domain_axes = [a for a, v in enumerate(vectors) if v is not None]
        if len(domain_axes) != 3 or any(v.shape != (3,) for v in vectors if v is not None):
            raise InputError(f"The {name} file '{path}' does not have exactly three 3D space directions; it is not a 3D volume sequence.")
        steps = np.stack([vectors[a] for a in domain_axes], axis=1)  # columns i, j, k in `space`
        if space is None:
            space = "LPS"
        origin = np.zeros(3)
        if "space origin" in fields:
            origin_vec = _parse_vector(fields["space origin"], path, name)
            if origin_vec is None or origin_vec.shape != (3,) or not np.all(np.isfinite(origin_vec)):
                raise InputError(f"The {name} file '{path}' has an invalid 'space origin'; use '(x,y,z)'.")
            origin = origin_vec
        flip = _space_to_lps(space)
        steps = flip @ steps
        origin = flip @ origin
        spacing = np.linalg.norm(steps, axis=0)
        if not np.all(np.isfinite(steps)) or np.any(spacing <= 0):
            raise InputError(f"The {name} file '{path}' has zero or invalid space directions; fix its geometry.")
        direction = steps / spacing
    else:
        if kinds:
            domain_axes = [a for a, k in enumerate(kinds) if k in _DOMAIN_KINDS]
        elif dim == 3:
            domain_axes = [0, 1, 2]
        else:
            raise InputError(f"The {name} file '{path}' has neither 'space directions' nor 'kinds'; the frame axis cannot be identified.")
        if len(domain_axes) != 3:
            raise InputError(f"The {name} file '{path}' does not have exactly three spatial axes; it is not a 3D volume sequence.")
        spacing = np.ones(3)
        if "spacings" in fields:
            try:
                values = [float(v) if v.lower() != "nan" else math.nan for v in fields["spacings"].split()]
            except ValueError:
                raise InputError(f"The {name} file '{path}' has a non-numeric 'spacings' field; fix the header.") from None
            if len(values) == dim:
                spacing = np.array([values[a] if math.isfinite(values[a]) and values[a] > 0 else 1.0 for a in domain_axes])
        direction = np.eye(3)
        origin = np.zeros(3)
    frame_axes = [a for a in range(dim) if a not in domain_axes]

    # ------------------------------------------------------------ voxels
    encoding = fields.get("encoding", "raw").lower()
    dtype = np.dtype(_NRRD_TYPES[type_name])
    if dtype.itemsize > 1 and encoding not in ("ascii", "text", "txt"):
        endian = fields.get("endian", "").lower()
        if endian not in ("little", "big"):
            raise InputError(f"The {name} file '{path}' lacks a valid 'endian' field for {type_name} data; add 'endian: little'.")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file is not None:
        if data_file.startswith("LIST") or len(data_file.split()) > 1:
            raise InputError(f"The {name} file '{path}' splits its voxels over several data files; re-save it as a single .seq.nrrd.")
        data_path = (path.parent / data_file) if not os.path.isabs(data_file) else Path(data_file)
        try:
            payload = data_path.read_bytes()
        except OSError:
            raise InputError(f"The data file '{data_path}' named by the {name} header '{path}' cannot be read; keep it next to the header.") from None
    else:
        payload = rest
    try:
        line_skip = int(fields.get("line skip", fields.get("lineskip", "0")))
        byte_skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    except ValueError:
        raise InputError(f"The {name} file '{path}' has a non-integer 'line skip' or 'byte skip'; fix the header.") from None
    for _ in range(max(line_skip, 0)):
        nl = payload.find(b"\n")
        payload = payload[nl + 1:] if nl >= 0 else b""
    count = int(np.prod(sizes))
    nbytes = count * dtype.itemsize
    try:
        if encoding == "raw":
            if byte_skip == -1:
                payload = payload[len(payload) - nbytes:] if len(payload) >= nbytes else payload
            elif byte_skip > 0:
                payload = payload[byte_skip:]
        elif encoding in ("gzip", "gz"):
            payload = zlib.decompressobj(wbits=47).decompress(payload)  # gzip or zlib stream
        elif encoding in ("bzip2", "bz2"):
            payload = bz2.decompress(payload)
        elif encoding not in ("ascii", "text", "txt"):
            raise InputError(f"The {name} file '{path}' uses NRRD encoding '{encoding}'; re-save it with raw or gzip encoding.")
    except (OSError, zlib.error, EOFError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"The {name} file '{path}' has corrupt {encoding} voxel data; re-save or re-download it.") from None
    if encoding in ("gzip", "gz", "bzip2", "bz2") and byte_skip > 0:
        payload = payload[byte_skip:]
    if encoding in ("ascii", "text", "txt"):
        try:
            flat = np.array(payload.decode("ascii", errors="strict").split(), dtype=np.float64)
        except (UnicodeDecodeError, ValueError):
            raise InputError(f"The {name} file '{path}' has unreadable ASCII voxel data; re-save it with raw or gzip encoding.") from None
        if flat.size != count:
            raise InputError(f"The {name} file '{path}' holds {flat.size} values but its sizes need {count}; the file is truncated or the sizes are wrong.")
        flat = flat.astype(dtype.newbyteorder("="))
    else:
        if len(payload) < nbytes:
            raise InputError(
                f"The {name} file '{path}' holds {len(payload)} voxel bytes but its sizes need {nbytes}; the file is truncated, re-save it."
            )
        flat = np.frombuffer(payload, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    array = flat.reshape(sizes[::-1])  # numpy axis (dim - 1 - a) holds NRRD axis a

    if dim == 3:
        frames_array = array[None]
        frame_axis = None
    else:
        frame_axis = frame_axes[0]
        frames_array = np.moveaxis(array, dim - 1 - frame_axis, 0)  # (T, K, J, I)
    frames = [Volume(np.ascontiguousarray(a), tuple(spacing), tuple(origin), direction.copy()) for a in frames_array]

    # ------------------------------------------------------------ sequence axis description
    labels = _nrrd_unquote_list(fields.get("labels", ""))
    units = _nrrd_unquote_list(fields.get("units", ""))
    index_name = labels[frame_axis] if frame_axis is not None and len(labels) == dim and labels[frame_axis] else "frame"
    index_unit = units[frame_axis] if frame_axis is not None and len(units) == dim else ""
    candidates = [frame_axis, 0, 3] if frame_axis is not None else [0, 3]
    values_key = next((f"axis {a} index values" for a in candidates if f"axis {a} index values" in keyvalues), None)
    index_values = None
    if values_key is not None:
        tokens = [unquote(t) for t in keyvalues[values_key].split()]
        if len(tokens) != len(frames):
            raise InputError(
                f"The {name} file '{path}' has {len(frames)} frames but {len(tokens)} index values; fix '{values_key}' in the header."
            )
        try:
            index_values = [float(t) for t in tokens]
        except ValueError:
            index_values = None  # text index (e.g. names): fall back to frame numbers
    attributes = {k: v for k, v in keyvalues.items() if not re.fullmatch(r"axis \d+ index (type|values)", k)}
    return {"frames": frames, "index_name": index_name, "index_unit": index_unit, "index_values": index_values,
            "attributes": attributes}
