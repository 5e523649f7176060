"""Input checks shared by every command: one sentence naming the input and the fix, before any work.

Each check raises :class:`~tttmedical.core.errors.InputError` (exit status 2 on the command line).

* :func:`input_file` -- the path exists and is a file (a folder gets its own sentence).
* :func:`verify_image_file` -- what SimpleITK does not notice: a truncated or corrupt NIfTI (ITK
  zero-fills the missing voxels and "succeeds") and NaN voxels in NIfTI (ITK's reader returns
  numbers for them, while NRRD/MHA keep NaN, which :meth:`Volume.validate` rejects).  NIfTI files
  are therefore read once with nibabel, which raises on a short file, and their values checked.
* :func:`physical_overlap` -- two images share physical space (LPS bounding boxes intersect).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".img.gz")


def input_file(path: str | Path, what: str, fix: str = "check the path") -> Path:
    """``path`` as a :class:`Path` if it is an existing file; else one sentence naming ``what``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"The {what} '{path}' is a folder, not a file; pass the file itself.")
    if not path.is_file():
        raise InputError(f"The {what} file '{path}' does not exist; {fix}.")
    return path


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def verify_image_file(path: str | Path, what: str) -> None:
    """Reject a truncated/corrupt NIfTI and NaN/infinite voxels in NIfTI (no-op for other formats)."""
    if not is_nifti(path):
        return
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # noqa: BLE001 - EOFError, OSError, zlib errors: all mean a damaged file
        detail = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise InputError(f"The {what} file '{path}' is truncated or corrupt ({detail}); copy or export it again.") from None
    if data.dtype.kind in "fc" and not np.all(np.isfinite(data)):
        raise InputError(f"The {what} '{Path(path).name}' contains NaN or infinite voxels; replace them (e.g. with 0) before running.")


def lps_bounds(volume) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (mm) of a volume's voxel centres, half a voxel added around."""
    k, j, i = volume.shape
    corners = np.array([[a, b, c, 1.0] for a in (-0.5, i - 0.5) for b in (-0.5, j - 0.5) for c in (-0.5, k - 0.5)])
    points = (volume.index_to_lps() @ corners.T)[:3].T
    return points.min(0), points.max(0)


def physical_overlap(a, b, what_a: str, what_b: str, fix: str) -> None:
    """Raise unless the physical extents of volumes ``a`` and ``b`` intersect."""
    (lo_a, hi_a), (lo_b, hi_b) = lps_bounds(a), lps_bounds(b)
    overlap = np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b)
    if np.any(overlap <= 0):
        raise InputError(f"The {what_a} and the {what_b} do not overlap in physical space (their origins are "
                         f"{np.round(a.origin, 1).tolist()} and {np.round(b.origin, 1).tolist()} mm LPS); {fix}.")
