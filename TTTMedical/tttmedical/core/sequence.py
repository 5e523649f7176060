"""`Sequence`: 4D data (a list of 3D `Volume` frames on one grid) and its files.

Conventions:

* ``frames[t]`` is a :class:`~tttmedical.core.volume.Volume` (array ``[k, j, i]``, LPS geometry);
  all frames share shape, voxel type and geometry.  :attr:`Sequence.array` stacks them as
  ``(T, K, J, I)``.
* The sequence axis is described like a Slicer sequence node: ``index_name`` (e.g. ``"time"``),
  ``index_unit`` (e.g. ``"s"``) and one float ``index_values[t]`` per frame.
* ``attributes`` holds free-form string key/values that travel with the file (Slicer's
  ``DataNodeClassName``, e.g. ``vtkMRMLLabelMapVolumeNode`` for label sequences).

Files (:func:`read_sequence` / :func:`write_sequence`):

* ``.seq.nrrd`` (any ``.nrrd``/``.nhdr`` when reading): the volume-sequence NRRD of Slicer's
  ``vtkMRMLVolumeSequenceStorageNode``.  Written as ``kinds: list domain domain domain``,
  ``space directions: none (..) (..) (..)``, ``labels``/``units`` naming the sequence axis, and the
  key/values ``DataNodeClassName``, ``axis 0 index type`` and ``axis 0 index values`` (URL-encoded
  values separated by spaces).  That layout is what Slicer up to 5.8 writes and every Slicer
  version reads; Slicer 5.10+ writes the frame axis last (``axis 3 ...``), which is read as well,
  as are ``right-anterior-superior`` / ``left-anterior-superior`` spaces, raw/gzip/bzip2/ascii
  encodings and detached headers with one data file.
* ``.nii`` / ``.nii.gz``: a 4D NIfTI ``(x, y, z, t)`` written with nibabel; the index
  name/unit/values (and the exact double-precision geometry, which NIfTI stores as float32) go to
  the sidecar ``<name>.json`` next to it.  Without a sidecar the time step ``pixdim[4]`` is used.

The only LPS/RAS conversion of this module is :func:`_space_to_lps`.  Bad input raises
:class:`~tttmedical.core.errors.InputError` with one sentence naming the file and the fix.
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import math
import os
import re
import zlib
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from .errors import InputError
from .volume import Volume

__all__ = ["Sequence", "read_sequence", "write_sequence", "LABELMAP_NODE_CLASS", "SCALAR_NODE_CLASS"]

SCALAR_NODE_CLASS = "vtkMRMLScalarVolumeNode"
LABELMAP_NODE_CLASS = "vtkMRMLLabelMapVolumeNode"


# ====================================================================== the data class
@dataclasses.dataclass
class Sequence:
    """Frames of one 3D grid plus the description of the sequence axis (see module docstring)."""

    frames: list[Volume]
    index_name: str = "time"
    index_unit: str = "s"
    index_values: list[float] | None = None
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = list(self.frames)
        if not self.frames:
            raise InputError("A sequence needs at least one frame; pass a non-empty list of volumes.")
        first = self.frames[0]
        for t, frame in enumerate(self.frames):
            if not isinstance(frame, Volume):
                raise InputError(f"Frame {t} of the sequence is a {type(frame).__name__}, not a Volume; wrap arrays in Volume first.")
            if frame.array.ndim != 3:
                raise InputError(f"Frame {t} of the sequence has shape {frame.array.shape}; sequence frames must be 3D scalar volumes.")
            if frame.shape != first.shape or frame.array.dtype != first.array.dtype:
                raise InputError(
                    f"Frame {t} has shape {frame.shape} and type {frame.array.dtype} but frame 0 has {first.shape} "
                    f"and {first.array.dtype}; resample all frames onto one grid and voxel type."
                )
            if not frame.same_grid(first, tol=1e-6):
                raise InputError(f"Frame {t} has a different geometry from frame 0; resample all frames onto one grid.")
        if self.index_values is None:
            self.index_values = [float(t) for t in range(len(self.frames))]
        try:
            self.index_values = [float(v) for v in self.index_values]
        except (TypeError, ValueError):
            raise InputError("Sequence index values must be numbers; pass one float per frame.") from None
        if len(self.index_values) != len(self.frames):
            raise InputError(
                f"The sequence has {len(self.frames)} frames but {len(self.index_values)} index values; pass one value per frame."
            )
        if not all(math.isfinite(v) for v in self.index_values):
            raise InputError("Sequence index values must be finite numbers; replace NaN/inf values.")
        self.index_name = str(self.index_name)
        self.index_unit = str(self.index_unit)
        self.attributes = {str(k): str(v) for k, v in dict(self.attributes).items()}

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> Volume:
        return self.frames[t]

    def __iter__(self):
        return iter(self.frames)

    @property
    def grid(self) -> Volume:
        """The first frame; its geometry is the geometry of every frame."""
        return self.frames[0]

    @property
    def array(self) -> np.ndarray:
        """All frames stacked as ``(T, K, J, I)``."""
        return np.stack([f.array for f in self.frames], axis=0)

    @property
    def is_labelmap(self) -> bool:
        return self.attributes.get("DataNodeClassName") == LABELMAP_NODE_CLASS

    @classmethod
    def from_array(cls, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
                   index_name: str = "time", index_unit: str = "s", index_values=None,
                   attributes: dict[str, str] | None = None) -> "Sequence":
        """Build from a ``(T, K, J, I)`` array and one LPS geometry (spacing/origin in mm, ``(i, j, k)``)."""
        array = np.asarray(array)
        if array.ndim != 4:
            raise InputError(f"A sequence array must be 4D (T, K, J, I) but has shape {array.shape}; stack 3D frames along axis 0.")
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
        frames = [Volume(np.ascontiguousarray(a), spacing, origin, direction.copy()) for a in array]
        return cls(frames, index_name, index_unit, index_values, dict(attributes or {}))


# ====================================================================== public API
def read_sequence(path: str | Path, name: str = "sequence") -> Sequence:
    """Read a volume-sequence NRRD (``.seq.nrrd``, ``.nrrd``, ``.nhdr``) or a 4D NIfTI (``.nii[.gz]``).

    A 3D file is read as a one-frame sequence.  ``name`` is used in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The {name} file '{path}' does not exist; check the path.")
    kind = _file_kind(path)
    if kind == "nrrd":
        return _read_nrrd(path, name)
    if kind == "nifti":
        return _read_nifti(path, name)
    raise InputError(f"The {name} file '{path}' has an unsupported extension; use .seq.nrrd, .nrrd, .nhdr, .nii or .nii.gz.")


def write_sequence(seq: Sequence, path: str | Path, compress: bool = True, space: str = "LPS",
                   frame_axis: str = "first", labelmap: bool | None = None) -> Path:
    """Write ``seq`` atomically (a partial file never appears under ``path``) and return ``path``.

    ``.nrrd`` (use ``.seq.nrrd``): Slicer volume-sequence NRRD, gzip-encoded if ``compress``;
    ``space`` is ``"LPS"`` (default) or ``"RAS"``; ``frame_axis`` is ``"first"`` (Slicer <= 5.8
    layout, read by all versions) or ``"last"`` (Slicer >= 5.10 layout).
    ``.nii``/``.nii.gz``: 4D NIfTI plus the sidecar ``<name>.json`` (the extension decides compression).
    ``labelmap`` sets ``DataNodeClassName`` so that Slicer loads a label-map sequence (``None``
    keeps ``seq.attributes``; scalar volumes by default).
    """
    if not isinstance(seq, Sequence):
        raise InputError(f"write_sequence needs a Sequence, got {type(seq).__name__}; build one with Sequence(...) or Sequence.from_array(...).")
    path = Path(path)
    attributes = dict(seq.attributes)
    if labelmap is not None:
        attributes["DataNodeClassName"] = LABELMAP_NODE_CLASS if labelmap else SCALAR_NODE_CLASS
    attributes.setdefault("DataNodeClassName", SCALAR_NODE_CLASS)
    kind = _file_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nrrd" and path.suffix.lower() == ".nrrd":
        _write_nrrd(seq, attributes, path, compress, space, frame_axis)
    elif kind == "nifti":
        _write_nifti(seq, attributes, path)
    else:
        raise InputError(f"Cannot write a sequence to '{path}'; use a .seq.nrrd, .nii or .nii.gz file name.")
    return path


# ====================================================================== helpers shared by formats
def _file_kind(path: Path) -> str | None:
    lower = path.name.lower()
    if lower.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if lower.endswith((".nii", ".nii.gz")):
        return "nifti"
    return None


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


# ====================================================================== NRRD
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


def _write_nrrd(seq: Sequence, attributes: dict[str, str], path: Path, compress: bool, space: str, frame_axis: str) -> None:
    space = str(space).upper()
    if space not in ("LPS", "RAS"):
        raise InputError(f"Unsupported NRRD space '{space}' for '{path}'; use LPS or RAS.")
    if frame_axis not in ("first", "last"):
        raise InputError(f"Unsupported frame_axis '{frame_axis}' for '{path}'; use 'first' or 'last'.")
    grid = seq.grid
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
    n = len(seq)
    sizes = [n, *grid.size_ijk] if first else [*grid.size_ijk, n]
    directions = (["none"] + vectors) if first else (vectors + ["none"])
    kinds = ["list", "domain", "domain", "domain"] if first else ["domain", "domain", "domain", "list"]
    labels = [seq.index_name, "", "", ""] if first else ["", "", "", seq.index_name]
    units = [seq.index_unit, "", "", ""] if first else ["", "", "", seq.index_unit]
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
    keyvalues[f"axis {axis} index values"] = " ".join(quote(_format_float(v), safe="") for v in seq.index_values)
    for key in sorted(keyvalues):
        if ":=" in key or "\n" in key or not key.strip():
            raise InputError(f"Attribute name {key!r} cannot be stored in '{path}'; use a single-line name without ':='.")
        lines.append(f"{key}:={_kv_escape(keyvalues[key])}")
    header = ("\n".join(lines) + "\n\n").encode("utf-8")
    # Voxel order in the file: the first NRRD axis varies fastest.
    stacked = np.stack([f.array for f in seq.frames], axis=-1 if first else 0)  # (K,J,I,T) or (T,K,J,I)
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


def _read_nrrd(path: Path, name: str) -> Sequence:
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
    seq = Sequence(frames, index_name, index_unit, index_values, attributes)
    for t, frame in enumerate(seq.frames):
        if frame.array.dtype.kind == "f" and not np.all(np.isfinite(frame.array)):
            raise InputError(f"Frame {t} of the {name} file '{path}' contains NaN or infinite voxels; replace them before running.")
    return seq


# ====================================================================== NIfTI
def _sidecar_path(path: Path) -> Path:
    lower = path.name.lower()
    stem = path.name[: -len(".nii.gz")] if lower.endswith(".nii.gz") else path.name[: -len(".nii")]
    return path.with_name(stem + ".json")


_TIME_UNITS = {"s": "sec", "sec": "sec", "ms": "msec", "msec": "msec", "us": "usec", "usec": "usec"}


def _write_nifti(seq: Sequence, attributes: dict[str, str], path: Path) -> None:
    import nibabel as nib

    lower = path.name.lower()  # the extension decides compression: .nii.gz is gzip, .nii is not
    grid = seq.grid
    data = np.stack([f.array for f in seq.frames], axis=0)  # (T, K, J, I)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    xyzt = np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0)))
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.index_to_lps()  # NIfTI stores RAS
    image = nib.Nifti1Image(xyzt, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    values = np.asarray(seq.index_values, dtype=float)
    step = float(np.median(np.diff(values))) if len(values) > 1 else 0.0
    zooms = list(grid.spacing) + [abs(step) if step else 1.0]
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units("mm", _TIME_UNITS.get(seq.index_unit.lower(), "unknown"))
    image.header["toffset"] = float(values[0]) if len(values) else 0.0
    sidecar = {
        "index_name": seq.index_name,
        "index_unit": seq.index_unit,
        "index_values": [float(v) for v in seq.index_values],
        "attributes": attributes,
        "geometry_lps": {"spacing": list(grid.spacing), "origin": list(grid.origin),
                         "direction": grid.direction.tolist(), "shape_kji": list(grid.shape)},
        "note": "Sidecar of a 4D NIfTI (x, y, z, t) written by tttmedical.core.sequence; geometry in LPS mm.",
    }
    side = _sidecar_path(path)
    side_tmp = side.with_name(f".{side.name}.partial")
    tmp = path.with_name(f".{path.name}.partial" + (".nii.gz" if lower.endswith(".nii.gz") else ".nii"))
    try:
        side_tmp.write_text(json.dumps(sidecar, indent=2))
        nib.save(image, str(tmp))
        os.replace(side_tmp, side)
        os.replace(tmp, path)
    finally:
        for p in (tmp, side_tmp):
            if p.exists():
                p.unlink()


def _read_nifti(path: Path, name: str) -> Sequence:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"The {name} file '{path}' could not be read as NIfTI ({type(exc).__name__}); re-save it as .nii.gz.") from None
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise InputError(f"The {name} file '{path}' has shape {data.shape}; a sequence NIfTI must be 4D (x, y, z, t).")
    if data.dtype.kind not in "biuf":
        raise InputError(f"The {name} file '{path}' has voxel type {data.dtype}; convert it to a real-valued scalar image.")
    frames_array = np.transpose(data, (3, 2, 1, 0))  # (T, K, J, I)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(image.affine, dtype=float)
    steps = lps[:3, :3]
    spacing = np.linalg.norm(steps, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(lps)):
        raise InputError(f"The {name} file '{path}' has an invalid affine (zero or non-finite); fix its header.")
    direction = steps / spacing
    origin = lps[:3, 3]

    n = frames_array.shape[0]
    side = _sidecar_path(path)
    index_name, index_unit, index_values, attributes = "time", "", None, {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            raise InputError(f"The sidecar '{side}' of the {name} file is not valid JSON; fix or delete it.") from None
        if not isinstance(meta, dict):
            raise InputError(f"The sidecar '{side}' of the {name} file must hold a JSON object; fix or delete it.")
        index_name = str(meta.get("index_name", "time"))
        index_unit = str(meta.get("index_unit", ""))
        index_values = meta.get("index_values")
        if index_values is not None and (not isinstance(index_values, list) or len(index_values) != n):
            raise InputError(
                f"The sidecar '{side}' lists {len(index_values) if isinstance(index_values, list) else 'no'} index values "
                f"but '{path}' has {n} frames; fix 'index_values' in the sidecar."
            )
        attributes = {str(k): str(v) for k, v in dict(meta.get("attributes", {})).items()}
        geometry = meta.get("geometry_lps")
        if isinstance(geometry, dict):
            try:
                g_spacing = np.asarray(geometry["spacing"], dtype=float)
                g_origin = np.asarray(geometry["origin"], dtype=float)
                g_direction = np.asarray(geometry["direction"], dtype=float).reshape(3, 3)
            except (KeyError, TypeError, ValueError):
                raise InputError(f"The sidecar '{side}' has a malformed 'geometry_lps'; fix or delete it.") from None
            # NIfTI keeps float32 geometry; the sidecar keeps the exact doubles when both agree.
            if (np.allclose(g_spacing, spacing, rtol=1e-5, atol=1e-5) and np.allclose(g_origin, origin, atol=1e-3)
                    and np.allclose(g_direction, direction, atol=1e-5)):
                spacing, origin, direction = g_spacing, g_origin, g_direction
    else:
        units = image.header.get_xyzt_units()[1]
        step = float(image.header.get_zooms()[3]) if len(image.header.get_zooms()) > 3 else 0.0
        if n > 1 and step > 0 and units in ("sec", "msec", "usec"):
            index_unit = {"sec": "s", "msec": "ms", "usec": "us"}[units]
            offset = float(image.header["toffset"])
            index_values = [offset + t * step for t in range(n)]
        else:
            index_name = "frame"
    frames = [Volume(np.ascontiguousarray(a), tuple(spacing), tuple(origin), direction.copy()) for a in frames_array]
    seq = Sequence(frames, index_name, index_unit, index_values, attributes)
    for t, frame in enumerate(seq.frames):
        if frame.array.dtype.kind == "f" and not np.all(np.isfinite(frame.array)):
            raise InputError(f"Frame {t} of the {name} file '{path}' contains NaN or infinite voxels; replace them before running.")
    return seq
