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
  ``vtkMRMLVolumeSequenceStorageNode``, read and written by :mod:`tttmedical.core.nrrd` (layouts of
  every Slicer version).
* ``.nii`` / ``.nii.gz``: a 4D NIfTI ``(x, y, z, t)`` written with nibabel; the index
  name/unit/values (and the exact double-precision geometry, which NIfTI stores as float32) go to
  the sidecar ``<name>.json`` next to it.  Without a sidecar the time step ``pixdim[4]`` is used.

NIfTI stores RAS: the affine is flipped to LPS by ``diag(-1, -1, 1)`` on read and write.  Frames
holding NaN or infinite voxels are refused by :func:`read_sequence` in both formats.  Bad input raises
:class:`~tttmedical.core.errors.InputError` with one sentence naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .nrrd import read_nrrd, write_nrrd
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
        seq = Sequence(**read_nrrd(path, name))
    elif kind == "nifti":
        seq = _read_nifti(path, name)
    else:
        raise InputError(f"The {name} file '{path}' has an unsupported extension; use .seq.nrrd, .nrrd, .nhdr, .nii or .nii.gz.")
    for t, frame in enumerate(seq.frames):
        if frame.array.dtype.kind == "f" and not np.all(np.isfinite(frame.array)):
            raise InputError(f"Frame {t} of the {name} file '{path}' contains NaN or infinite voxels; replace them before running.")
    return seq


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
        write_nrrd(path, seq.frames, seq.index_name, seq.index_unit, seq.index_values, attributes, compress, space, frame_axis)
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
    return Sequence(frames, index_name, index_unit, index_values, attributes)
