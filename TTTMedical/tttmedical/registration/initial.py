"""Initial transforms: files written by ITK, SimpleITK, Slicer, ANTs or elastix -> engine voxel field.

Accepted ``--init`` files:

* a displacement field image (NIfTI, NRRD, MHA; 3-component vectors in LPS mm, ITK convention:
  fixed point ``p`` maps to ``p + d(p)``) on any grid: it is resampled onto the fixed grid;
* an ITK transform file (``.tfm``, ``.txt``, ``.h5``, ``.mat``): linear, B-spline, displacement
  field or composite transforms, as Slicer and SimpleITK save them.  They map fixed physical
  points to moving physical points (the resampling direction), as ITK does.

The result is a voxel field ``(3, D, H, W)`` on the fixed grid (engine convention).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.checks import input_file, verify_image_file
from ..core.errors import InputError
from ..core.volume import Volume
from ..core.warp import linear_to_voxel_field

TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat", ".xfm")


def read_initial_field(path: str | Path, fixed: Volume) -> np.ndarray:
    """Voxel displacement field (3, D, H, W) on ``fixed``'s grid from an initial-transform file."""
    path = input_file(path, "initial transform", "check the path or omit --init")
    if path.name.lower().endswith(TRANSFORM_SUFFIXES):
        transform = _read(sitk.ReadTransform, path, "could not be read as an ITK transform; save it from Slicer or "
                                                    "SimpleITK as .tfm or .h5")
        return linear_to_voxel_field(transform, fixed)
    image = _read(sitk.ReadImage, path, "is neither an ITK transform nor a readable displacement image; use .tfm/.h5 "
                                        "or a 3-component NIfTI/NRRD field")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise InputError(
            f"The initial displacement field '{path}' must be a 3D image with 3 components per voxel (got {image.GetDimension()}D, {image.GetNumberOfComponentsPerPixel()} components)."
        )
    verify_image_file(path, "initial displacement field")
    field = sitk.Cast(image, sitk.sitkVectorFloat64)
    if not np.all(np.isfinite(sitk.GetArrayViewFromImage(field))):
        raise InputError(f"The initial displacement field '{path}' contains NaN or infinite vectors; recompute it.")
    return linear_to_voxel_field(sitk.DisplacementFieldTransform(field), fixed)


def _read(reader, path: Path, problem: str):
    """``reader(path)``; an ITK read error becomes one sentence: the file ``problem``."""
    try:
        return reader(str(path))
    except RuntimeError:
        raise InputError(f"The initial transform file '{path}' {problem}.") from None
