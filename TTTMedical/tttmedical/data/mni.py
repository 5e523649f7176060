"""MNI152 samples: nilearn's 2 mm T1 template and a synthetic subject with a known deformation.

``mni-smooth`` / ``mni-bspline`` (:func:`build_mni`): the template as fixed; moving = template
warped by a smooth Gaussian-filtered random field / a random cubic B-spline (coarse control grid),
each composed with a small affine, plus a multiplicative bias field, gamma change and Rician noise.

``true_displacement.nii.gz`` follows ITK's displacement-field convention on the fixed grid
(:data:`DISPLACEMENT_CONVENTION`): the vector at fixed point ``p`` is ``phi(p) - p`` (LPS mm) where
``phi`` maps fixed to moving space, so ``moving(phi(p)) == fixed(p)`` up to the intensity changes.
The moving image was generated as ``moving = fixed o phi^-1`` with ``phi^-1`` obtained by
fixed-point inversion (the residual is recorded in the metadata).  Geometry is LPS millimetres,
arrays ``[k, j, i]``; labels are ``uint8`` (:data:`MNI_LABELS`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.volume import Volume
from ..core.warp import jacobian_determinant, mm_to_voxels

__all__ = ["MNI_LABELS", "DISPLACEMENT_CONVENTION", "build_mni"]

MNI_LABELS = {0: "background", 1: "CSF/other brain", 2: "grey matter", 3: "white matter"}

DISPLACEMENT_CONVENTION = (
    "ITK displacement field on the fixed grid, LPS millimetres: the vector at fixed point p is phi(p) - p, "
    "where phi maps fixed to moving physical space, so moving(phi(p)) == fixed(p) (up to the intensity changes). "
    "sitk.Resample(moving, fixed, sitk.DisplacementFieldTransform(field)) brings moving back onto fixed. "
    "The moving image was generated as fixed o phi^-1 (phi^-1 by fixed-point inversion)."
)


def _load_mni(small: bool) -> tuple[Volume, Volume, dict]:
    """MNI152 T1 template and GM/WM/CSF labels, cropped to the brain bounding box plus a margin."""
    try:
        from nilearn import datasets
    except ImportError:
        raise InputError("The MNI samples need the 'nilearn' package; install it with: pip install nilearn") from None
    resolution = 4 if small else 2
    t1_img = datasets.load_mni152_template(resolution=resolution)
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=resolution).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=resolution).dataobj, dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=resolution).dataobj) > 0
    affine = np.asarray(t1_img.affine, dtype=float)  # RAS, arrays indexed [i, j, k]
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1).astype(np.uint8)
    labels[~brain] = 0
    t1 = np.where(brain | (t1 > 0.02), np.clip(t1, 0.0, None), 0.0).astype(np.float32)

    margin = 2 if small else 4
    nz = np.argwhere(brain)
    lo = nz.min(axis=0) - margin
    hi = nz.max(axis=0) + margin + 1
    pad_lo = np.maximum(-lo, 0)
    pad_hi = np.maximum(hi - np.array(t1.shape), 0)
    pad = list(zip(pad_lo, pad_hi))
    t1 = np.pad(t1, pad)[tuple(slice(l + p, h + p) for l, h, p in zip(lo, hi, pad_lo))]
    labels = np.pad(labels, pad)[tuple(slice(l + p, h + p) for l, h, p in zip(lo, hi, pad_lo))]
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    fixed = Volume.from_ijk_to_ras(np.ascontiguousarray(t1.transpose(2, 1, 0)), shifted)
    fixed_labels = fixed.with_array(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    info = {"resolution_mm": resolution, "crop_start_ijk_in_template": [int(v) for v in lo], "margin_voxels": margin,
            "template": "nilearn.datasets.load_mni152_template (ICBM152 2009a nonlinear symmetric, skull-stripped, scaled to [0, 1])",
            "labels": "argmax of (CSF = 1 - GM - WM, GM, WM) probability templates inside load_mni152_brain_mask; 0 outside"}
    return fixed, fixed_labels, info


def _grid_points(grid: Volume) -> np.ndarray:
    """LPS coordinates (D, H, W, 3) of every voxel centre."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid.shape], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1)
    m = grid.index_to_lps()
    return ijk @ m[:3, :3].T + m[:3, 3]


def _to_index(points: np.ndarray, grid: Volume) -> np.ndarray:
    """LPS points (..., 3) -> continuous array coordinates (3, ...) in (k, j, i) order for map_coordinates."""
    m = grid.index_to_lps()
    ijk = (points - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    return np.moveaxis(ijk[..., ::-1], -1, 0)


def _sample(field: np.ndarray, coords: np.ndarray, order: int, mode: str = "nearest", cval: float = 0.0) -> np.ndarray:
    """Sample a scalar (D, H, W) or vector (D, H, W, C) array at array coordinates ``coords``."""
    if field.ndim == 3:
        return ndimage.map_coordinates(field, coords, order=order, mode=mode, cval=cval)
    return np.stack([ndimage.map_coordinates(field[..., c], coords, order=order, mode=mode, cval=cval)
                     for c in range(field.shape[-1])], axis=-1)


def _smooth_field(grid: Volume, rng: np.random.Generator, sigma_mm: float) -> np.ndarray:
    """Gaussian-filtered white noise, (D, H, W, 3) in mm, normalised to a maximum magnitude of 1."""
    sigma_vox = [sigma_mm / s for s in grid.spacing[::-1]]
    comps = [ndimage.gaussian_filter(rng.standard_normal(grid.shape), sigma_vox, mode="reflect") for _ in range(3)]
    field = np.stack(comps, axis=-1)
    return field / np.linalg.norm(field, axis=-1).max()


def _bspline_field(grid: Volume, rng: np.random.Generator, mesh: int) -> tuple[np.ndarray, sitk.Transform]:
    """Random cubic B-spline transform on a ``mesh``^3 control grid, sampled as (D, H, W, 3) mm, max magnitude 1."""
    ref = grid.with_array(np.zeros(grid.shape, np.float32)).to_sitk()
    transform = sitk.BSplineTransformInitializer(ref, [mesh] * 3, 3)
    coefficients = rng.standard_normal(len(transform.GetParameters()))
    transform.SetParameters(tuple(float(c) for c in coefficients))
    field = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
        transform, sitk.sitkVectorFloat64, ref.GetSize(), ref.GetOrigin(), ref.GetSpacing(), ref.GetDirection()))
    peak = np.linalg.norm(field, axis=-1).max()
    transform.SetParameters(tuple(float(c) for c in coefficients / peak))
    return field / peak, transform


def _random_affine(rng: np.random.Generator, max_deg: float = 2.5, max_scale: float = 0.025, max_shift_mm: float = 2.0) -> dict:
    angles = rng.uniform(-max_deg, max_deg, 3)
    scales = 1.0 + rng.uniform(-max_scale, max_scale, 3)
    shift = rng.uniform(-max_shift_mm, max_shift_mm, 3)
    ax, ay, az = np.deg2rad(angles)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return {"matrix": rz @ ry @ rx @ np.diag(scales), "angles_deg": angles, "scales": scales, "translation_mm": shift}


def build_mni(tmp: Path, seed: int, log: Callable[[str], object], small: bool, family: str) -> dict:
    """Write the ``mni-<family>`` pair (``family``: ``smooth`` or ``bspline``) into ``tmp``; return its metadata."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + (1000 if family == "bspline" else 0))
    fixed, fixed_labels, source = _load_mni(small)
    log(f"mni-{family}: template cropped to {fixed.shape} (K, J, I) at {fixed.spacing[0]:g} mm")
    grid = fixed
    points = _grid_points(grid)
    centre = points.reshape(-1, 3)[fixed_labels.array.ravel() > 0].mean(axis=0)

    # ---------------------------------------------------------------- forward map phi = A o (id + d)
    target_max = float(rng.uniform(6.0, 8.0))
    if family == "smooth":
        sigma_mm = 12.0
        unit = _smooth_field(grid, rng, sigma_mm)
        family_info = {"family": "smooth", "model": "Gaussian-filtered white noise per component", "sigma_mm": sigma_mm}
    else:
        mesh = 4
        unit, _ = _bspline_field(grid, rng, mesh)
        family_info = {"family": "bspline", "model": "cubic B-spline, random normal control-point displacements",
                       "transform_domain_mesh_size": mesh}
    affine = _random_affine(rng)
    a_mat, shift = affine["matrix"], affine["translation_mm"]

    amplitude = target_max
    for attempt in range(8):
        d = unit * amplitude
        phi = centre + (points + d - centre) @ a_mat.T + shift
        u = phi - points
        jac = jacobian_determinant(mm_to_voxels(u, grid))
        if jac.min() > 0.2:
            break
        log(f"mni-{family}: min Jacobian {jac.min():.3f} at {amplitude:.2f} mm, reducing the amplitude")
        amplitude *= 0.85
    else:
        raise RuntimeError("Could not draw a non-folding deformation; this is a bug in the sample generator.")

    # ---------------------------------------------------------------- inverse psi = phi^-1 on the grid
    # Solve p + d(p) = w := A^-1 (q - c - t) + c by the fixed-point iteration p <- w - d(p): trilinear
    # interpolation of d until the update is below 1e-3 mm, then cubic B-spline interpolation.
    a_inv = np.linalg.inv(a_mat)
    w = centre + (points - shift - centre) @ a_inv.T
    d_spline = np.stack([ndimage.spline_filter(d[..., c], order=3, mode="nearest") for c in range(3)], axis=-1)

    def d_at(x: np.ndarray, cubic: bool) -> np.ndarray:
        coords = _to_index(x, grid)
        if not cubic:
            return _sample(d, coords, order=1)
        return np.stack([ndimage.map_coordinates(d_spline[..., c], coords, order=3, mode="nearest", prefilter=False)
                         for c in range(3)], axis=-1)

    p = w.copy()
    cubic, iterations = False, 0
    for iterations in range(1, 81):
        p_new = w - d_at(p, cubic)
        change = float(np.abs(p_new - p).max())
        p = p_new
        if not cubic and change < 1e-3:
            cubic = True
        elif cubic and change < 1e-6:
            break
    residual_vec = centre + (p + d_at(p, True) - centre) @ a_mat.T + shift - points
    residual = np.linalg.norm(residual_vec, axis=-1)
    inside = fixed_labels.array > 0
    log(f"mni-{family}: max |phi(psi(q)) - q| = {residual.max():.4f} mm (brain {residual[inside].max():.4f} mm)")

    # ---------------------------------------------------------------- moving = fixed o psi, then intensity changes
    coords = _to_index(p, grid)
    moving = np.clip(ndimage.map_coordinates(fixed.array.astype(np.float64), coords, order=3, mode="constant", cval=0.0), 0.0, None)
    moving_labels = ndimage.map_coordinates(fixed_labels.array, coords, order=0, mode="constant", cval=0).astype(np.uint8)

    bias_sigma = [40.0 / s for s in grid.spacing[::-1]]
    bias = ndimage.gaussian_filter(rng.standard_normal(grid.shape), bias_sigma, mode="reflect")
    bias = bias / np.abs(bias).max()
    bias_strength = 0.15
    gamma = float(rng.uniform(0.85, 1.15))
    moving = np.power(moving / max(float(moving.max()), 1e-12), gamma) * np.exp(bias_strength * bias)
    sigma = 0.02 * float(np.percentile(moving[moving_labels > 0], 99))
    moving = np.sqrt((moving + rng.normal(0.0, sigma, moving.shape)) ** 2 + rng.normal(0.0, sigma, moving.shape) ** 2)

    field_volume = grid.with_array(u.astype(np.float64))
    fixed.with_array(fixed.array.astype(np.float32)).write(tmp / "fixed.nii.gz")
    fixed.with_array(moving.astype(np.float32)).write(tmp / "moving.nii.gz")
    fixed_labels.write(tmp / "fixed_labels.nii.gz")
    fixed_labels.with_array(moving_labels).write(tmp / "moving_labels.nii.gz")
    field_volume.write(tmp / "true_displacement.nii.gz")

    magnitude = np.linalg.norm(u, axis=-1)
    local = np.linalg.norm(d, axis=-1)
    metadata = {
        "files": {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
                  "moving_labels": "moving_labels.nii.gz", "true_displacement": "true_displacement.nii.gz"},
        "label_names": {str(k): v for k, v in MNI_LABELS.items()},
        "shape_kji": list(grid.shape),
        "spacing_mm_ijk": list(grid.spacing),
        "origin_lps_mm": list(grid.origin),
        "direction_lps": grid.direction.tolist(),
        "displacement_convention": DISPLACEMENT_CONVENTION,
        "deformation": {
            **family_info,
            "composition": "phi(p) = c + A (p + d(p) - c) + t, c = brain centroid",
            "local_max_displacement_mm": float(local.max()),
            "total_max_displacement_mm": float(magnitude.max()),
            "total_max_displacement_in_brain_mm": float(magnitude[inside].max()),
            "total_mean_displacement_in_brain_mm": float(magnitude[inside].mean()),
            "affine_rotation_deg_xyz": [float(v) for v in affine["angles_deg"]],
            "affine_scales_xyz": [float(v) for v in affine["scales"]],
            "affine_translation_mm": [float(v) for v in shift],
            "centre_lps_mm": [float(v) for v in centre],
            "jacobian_min": float(jac.min()),
            "jacobian_max": float(jac.max()),
            "inverse_iterations": iterations,
            "inverse_residual_max_mm": float(residual.max()),
            "inverse_residual_max_in_brain_mm": float(residual[inside].max()),
        },
        "intensity": {
            "fixed": "template unchanged",
            "moving": "normalised to [0, 1], gamma %.3f, smooth multiplicative bias exp(+-%.2f) (sigma 40 mm), "
                      "Rician noise sigma = 2%% of the 99th brain percentile" % (gamma, bias_strength),
            "gamma": gamma,
        },
        "source": source,
        "generation": {"seed": seed, "small": small, "seconds": round(time.perf_counter() - t0, 2)},
    }
    log(f"mni-{family}: max displacement {magnitude.max():.2f} mm, Jacobian [{jac.min():.3f}, {jac.max():.3f}]")
    return metadata
