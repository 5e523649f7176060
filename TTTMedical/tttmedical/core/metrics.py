"""Evaluation metrics on numpy arrays in the engine's ``[k, j, i]`` order.

Spacing arguments are in millimetres in ``(i, j, k)`` order (as :class:`Volume` holds them);
they are reversed internally to match array axes.  Label metrics skip label 0 (background),
keep label values as they are (any integer dtype, no narrowing cast) and count a label that
vanished from one map in their means (see :func:`label_metrics`).
Intensity metrics expect both images on the same grid; PSNR/SSIM take ``data_range``
(default: the reference image's max - min).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .losses import pair_stats, ssim_map


def _label_array(a) -> np.ndarray:
    """A label map as given, with its values unchanged (no narrowing cast: label 40000 stays 40000).

    Integer and boolean maps are used as they are; a floating-point map (e.g. labels resampled with
    nearest neighbour into a float image) must hold whole numbers and becomes ``int64``.
    """
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        return a
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.array_equal(a, np.rint(a)):
        return a.astype(np.int64)
    raise ValueError(f"a label map must hold whole numbers; got dtype {a.dtype} with fractional or non-finite values")


def _labels(a: np.ndarray, b: np.ndarray, labels=None) -> list[int]:
    if labels is not None:
        return [int(x) for x in labels]
    return [int(x) for x in np.union1d(np.unique(a), np.unique(b)) if x != 0]


def dice_per_label(a: np.ndarray, b: np.ndarray, labels=None) -> dict[int, float]:
    """Dice of each foreground label (0.0 when it is on one side only, 1.0 when absent from both)."""
    a, b = _label_array(a), _label_array(b)
    out = {}
    for lab in _labels(a, b, labels):
        x, y = a == lab, b == lab
        denom = x.sum() + y.sum()
        out[lab] = 1.0 if denom == 0 else float(2.0 * np.logical_and(x, y).sum() / denom)
    return out


def _surface_distances(x: np.ndarray, y: np.ndarray, sampling) -> np.ndarray:
    """Distances (mm) from the surface voxels of ``x`` to the surface of ``y``."""
    surf_x = x & ~ndimage.binary_erosion(x, border_value=0)
    surf_y = y & ~ndimage.binary_erosion(y, border_value=0)
    dist_to_y = ndimage.distance_transform_edt(~surf_y, sampling=sampling)
    return dist_to_y[surf_x]


def _crop_to_union(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` cropped to the bounding box of ``x | y``.  Both surfaces and every distance
    between them are unchanged (the erosion treats the box's outside as background, which it is:
    a voxel on the box's face has a background neighbour beyond it in the whole grid too), and the
    distance transforms run on the box instead of the whole grid."""
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(x | y))
    return x[box], y[box]


def grid_diagonal_mm(shape, spacing) -> float:
    """Distance in mm between the centres of two opposite corner voxels of a ``[k, j, i]`` grid.

    No two voxels of the grid are further apart, so no surface distance measured on it exceeds this.
    """
    extent = (np.asarray(shape[::-1], np.float64) - 1.0) * np.asarray(spacing, np.float64)
    return float(np.linalg.norm(extent))


def hd95_per_label(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0, 1.0), labels=None,
                   missing: float = float("nan")) -> dict[int, float]:
    """Symmetric 95th-percentile Hausdorff distance in mm per label.

    A label on one side only has no surface to measure against: it gets ``missing`` (NaN by
    default; :func:`label_metrics` passes the grid diagonal).  A label absent from both gets 0.
    """
    a, b = _label_array(a), _label_array(b)
    sampling = tuple(float(s) for s in reversed(spacing))
    out = {}
    for lab in _labels(a, b, labels):
        x, y = a == lab, b == lab
        if not x.any() and not y.any():
            out[lab] = 0.0
        elif not x.any() or not y.any():
            out[lab] = float(missing)
        else:
            x, y = _crop_to_union(x, y)
            d = np.concatenate([_surface_distances(x, y, sampling), _surface_distances(y, x, sampling)])
            out[lab] = float(np.percentile(d, 95))
    return out


def sdlogj(jacobian: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Std of the log Jacobian determinant, two conventions in use in the literature.

    ``sdlogj``: std(log J) with J clipped to [1e-9, 1e9] (folded voxels dominate, as in most papers);
    ``sdlogj_plus3``: std(log(J + 3)) as in the Learn2Reg challenge (robust to folding).
    """
    j = np.asarray(jacobian, dtype=np.float64)
    if mask is not None:
        j = j[mask.astype(bool)]
    return {"sdlogj": float(np.log(np.clip(j, 1e-9, 1e9)).std()),
            "sdlogj_plus3": float(np.log(np.clip(j + 3.0, 1e-9, 1e9)).std())}


def folding_percent(jacobian: np.ndarray) -> float:
    """Percentage of voxels whose Jacobian determinant is <= 0."""
    return float(100.0 * np.mean(np.asarray(jacobian) <= 0))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def nmse(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``||ref - est||^2 / ||ref||^2``."""
    ref = np.asarray(reference, np.float64)
    return float(np.sum((ref - np.asarray(estimate, np.float64)) ** 2) / max(np.sum(ref ** 2), 1e-30))


def psnr(reference: np.ndarray, estimate: np.ndarray, data_range: float | None = None) -> float:
    ref = np.asarray(reference, np.float64)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    err = mse(ref, estimate)
    return float("inf") if err == 0 else float(10.0 * np.log10(rng * rng / err))


def ncc_global(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of all voxels."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-30))


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


@torch.no_grad()
def ncc_local(a: np.ndarray, b: np.ndarray, window: int = 9, min_var: float = 1e-6) -> float:
    """Mean signed local correlation over ``window``^3 boxes, over voxels where both images vary.

    Flat regions (local variance <= ``min_var`` in either image, e.g. air) have no defined
    correlation and are left out, so the value describes the anatomy, not the background.
    """
    _, _, var_a, var_b, cov = pair_stats(_as_tensor(a), _as_tensor(b), window)
    valid = (var_a > min_var) & (var_b > min_var)
    if not bool(valid.any()):
        return float("nan")
    return float((cov / torch.sqrt(var_a * var_b).clamp_min(1e-12))[valid].mean())


@torch.no_grad()
def ssim(reference: np.ndarray, estimate: np.ndarray, data_range: float | None = None, window: int = 7) -> float:
    """Mean box-window 3D SSIM."""
    ref = np.asarray(reference, np.float32)
    est = np.asarray(estimate, np.float32)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    rng = rng or 1.0
    return float(ssim_map(_as_tensor(ref / rng), _as_tensor(est / rng), window).mean())


def label_metrics(fixed_labels: np.ndarray, warped_labels: np.ndarray, spacing) -> dict:
    """Dice and HD95 over the foreground labels of either map, with per-label values.

    Labels are the non-zero values found in ``fixed_labels`` or ``warped_labels``, kept as they are.

    Convention for a label present in one map only (it vanished from the warped map, or appeared
    in it): its Dice is 0 and its HD95 is the grid diagonal in mm (``hd95_missing_mm``, the largest
    distance on the fixed grid), so the mean is penalised instead of silently dropping the label.
    Keys:

    * ``dice``: mean Dice over labels; ``dice_per_label``: {label: Dice};
    * ``hd95_mm``: mean HD95 over all labels, vanished ones at ``hd95_missing_mm``;
      ``hd95_mm_per_label``: {label: HD95 mm} with the same convention (its mean is ``hd95_mm``);
    * ``labels_missing``: the labels present in one map only (empty when every label matched);
    * ``hd95_mm_present``: mean HD95 over the labels present in both maps (NaN when there are none),
      the figure some papers report; compare it with ``hd95_mm`` only with ``labels_missing`` in view.
    """
    fixed_labels, warped_labels = _label_array(fixed_labels), _label_array(warped_labels)
    diagonal = grid_diagonal_mm(fixed_labels.shape, spacing)
    d = dice_per_label(fixed_labels, warped_labels)
    h = hd95_per_label(fixed_labels, warped_labels, spacing, labels=list(d), missing=diagonal)
    present_fixed, present_warped = set(np.unique(fixed_labels).tolist()), set(np.unique(warped_labels).tolist())
    missing = [lab for lab in d if (lab in present_fixed) != (lab in present_warped)]
    matched = [h[lab] for lab in d if lab not in missing]
    return {"dice": float(np.mean(list(d.values()))) if d else float("nan"),
            "hd95_mm": float(np.mean(list(h.values()))) if h else float("nan"),
            "dice_per_label": d, "hd95_mm_per_label": h,
            "labels_missing": missing, "hd95_missing_mm": diagonal,
            "hd95_mm_present": float(np.mean(matched)) if matched else float("nan")}
