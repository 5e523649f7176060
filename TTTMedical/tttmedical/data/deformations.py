"""Deformation families for registration benchmarks the engine's defaults were never tuned on.

Four sample pairs, each from one family (:data:`FAMILIES`); :data:`HELD_OUT` is kept out of all
tuning of the registration defaults and reported separately by ``benchmarks/registration.py``:

* ``mni-swirl``: the MNI152 template (fixed) and the template twisted by two swirls: rotations
  about random axes through points near the brain centre, by an angle that decays as a Gaussian of
  the distance to that point (a volume-preserving, locally rotational motion);
* ``mni-atrophy``: localised expansion and atrophy: four radial Gaussian bumps
  ``w(x) = a (x - c) exp(-|x - c|^2 / 2 s^2)`` with ``a`` in +-[0.3, 0.45] (local volume change up
  to a factor ``(1 + a)^3``) at random points of the brain;
* ``phantom-sliding``: large sliding breathing motion: the mrphantom end-inspiration frame (fixed)
  and the end-expiration frame whose organs (everything inside the body wall) also slide along the
  superior-inferior axis by up to 15 mm while the body wall stays put: a displacement that is
  discontinuous across the wall, which a smooth-field regulariser cannot follow exactly;
* ``mni-intersubject`` (held out): two differently deformed copies of the template, each with its
  own smooth random field, small affine and intensity changes: neither image is the template, as
  between two subjects.

How a pair is made (MNI families): a *generating* displacement ``w`` (LPS mm, on the fixed grid)
defines the moving image as ``moving(q) = fixed(q + w(q))``; the true displacement written to
``true_displacement.nii.gz`` is the inverse of ``q -> q + w(q)``, found by
``sitk.InvertDisplacementField`` (ITK convention of :data:`tttmedical.data.mni.DISPLACEMENT_CONVENTION`:
``moving(p + u(p)) == fixed(p)``).  Its residual ``max |u(p) + w(p + u(p))|`` inside the brain is recorded.
Moving intensities get a gamma change, a smooth multiplicative bias and Rician noise.  Geometry is
LPS millimetres, arrays ``[k, j, i]``, labels ``uint8``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.volume import Volume
from ..core.warp import jacobian_determinant, mm_to_voxels
from .mni import DISPLACEMENT_CONVENTION, MNI_LABELS, _grid_points, _load_mni, _random_affine, _sample, _smooth_field, _to_index

__all__ = ["FAMILIES", "HELD_OUT", "build_family", "swirl", "bump", "random_direction", "brain_points"]

FAMILIES = {
    "mni-swirl": "MNI152 2 mm template and the template twisted by two Gaussian-decaying swirls (rotational deformation), with GM/WM/CSF labels and the true displacement (NIfTI).",
    "mni-atrophy": "MNI152 2 mm template and the template with four localised expansions/atrophies (radial Gaussian bumps), with GM/WM/CSF labels and the true displacement (NIfTI).",
    "phantom-sliding": "mrphantom end-inspiration (fixed) and end-expiration frame whose organs also slide by up to 15 mm along the body axis against a static body wall (sliding breathing motion), with tissue labels (NIfTI).",
    "mni-intersubject": "Two differently deformed copies of the MNI152 2 mm template (own smooth field, affine and intensity changes each: inter-subject-like), with labels and the true displacement (NIfTI). Held out of all tuning.",
}
HELD_OUT = "mni-intersubject"


# ---------------------------------------------------------------------------- generating fields (mm)
def swirl(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, angle_rad: float, sigma_mm: float) -> np.ndarray:
    """Displacement of a rotation about ``axis`` through ``centre`` by ``angle * exp(-r^2 / 2 sigma^2)``, r = |x - c|."""
    axis = axis / np.linalg.norm(axis)
    x = points - centre
    theta = angle_rad * np.exp(-(x * x).sum(-1) / (2.0 * sigma_mm ** 2))
    cos, sin = np.cos(theta)[..., None], np.sin(theta)[..., None]
    along = (x @ axis)[..., None] * axis
    rotated = x * cos + np.cross(axis, x) * sin + along * (1.0 - cos)  # Rodrigues
    return rotated - x


def bump(points: np.ndarray, centre: np.ndarray, strength: float, sigma_mm: float) -> np.ndarray:
    """Radial expansion (``strength`` > 0) or contraction about ``centre``: ``a (x - c) exp(-|x - c|^2 / 2 s^2)``."""
    x = points - centre
    return strength * x * np.exp(-(x * x).sum(-1) / (2.0 * sigma_mm ** 2))[..., None]


def random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def brain_points(points: np.ndarray, mask: np.ndarray, rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    """``n`` random brain points, pulled towards the brain centroid by ``1 - spread``."""
    inside = points[mask]
    centroid = inside.mean(axis=0)
    picks = inside[rng.choice(len(inside), n, replace=False)]
    return centroid + spread * (picks - centroid)


# ---------------------------------------------------------------------------- images through fields
def _resample(array: np.ndarray, grid: Volume, points_mm: np.ndarray, order: int) -> np.ndarray:
    """``array`` (on ``grid``) sampled at LPS points ``(D, H, W, 3)``; zero outside."""
    return _sample(array.astype(np.float64) if order else array, _to_index(points_mm, grid), order=order,
                   mode="constant", cval=0.0)


def _invert(w: np.ndarray, grid: Volume, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverse displacement ``u`` of ``q -> q + w(q)`` on ``grid`` (LPS mm) and the residual max |u + w o (id + u)| in mm
    over ``mask`` (near the grid's border the inverse may point outside the grid, where ``w`` is unknown)."""
    image = sitk.GetImageFromArray(w.astype(np.float64), isVector=True)
    image.CopyInformation(grid.with_array(np.zeros(grid.shape, np.float32)).to_sitk())
    u = sitk.GetArrayFromImage(sitk.InvertDisplacementField(image, maximumNumberOfIterations=50,
                                                            maxErrorToleranceThreshold=0.01,
                                                            meanErrorToleranceThreshold=0.0001,
                                                            enforceBoundaryCondition=False))
    points = _grid_points(grid)
    residual = u + _sample(w, _to_index(points + u, grid), order=1)
    return u, float(np.linalg.norm(residual, axis=-1)[mask].max())


def _acquire(image: np.ndarray, mask: np.ndarray, grid: Volume, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A scan-like copy of ``image``: gamma, smooth quadratic bias field, Rician noise (2 % of the 99th percentile in ``mask``)."""
    gamma = float(rng.uniform(0.85, 1.15))
    points = _grid_points(grid)
    centred = (points - points.reshape(-1, 3).mean(0)) / np.abs(points - points.reshape(-1, 3).mean(0)).max()
    coefficients = rng.uniform(-0.12, 0.12, 6)
    log_bias = (centred @ coefficients[:3]) + (centred ** 2 - 1.0 / 3.0) @ coefficients[3:]
    out = np.power(np.clip(image, 0.0, None) / max(float(image.max()), 1e-12), gamma) * np.exp(log_bias)
    sigma = 0.02 * float(np.percentile(out[mask], 99))
    out = np.sqrt((out + rng.normal(0.0, sigma, out.shape)) ** 2 + rng.normal(0.0, sigma, out.shape) ** 2)
    return out.astype(np.float32), {"gamma": gamma, "bias": "exp(linear + quadratic polynomial), coefficients %s" % np.round(coefficients, 3).tolist(),
                                    "rician_sigma": sigma}


def _safe_amplitude(make: Callable[[float], np.ndarray], grid: Volume, log, name: str, amplitude: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``make(scale)`` with the largest scale <= 1 (steps of 0.85) whose Jacobian stays above 0.2."""
    for _ in range(10):
        w = make(amplitude)
        jac = jacobian_determinant(mm_to_voxels(w, grid))
        if jac.min() > 0.2:
            return w, jac
        log(f"{name}: min Jacobian {jac.min():.3f}, reducing the amplitude")
        amplitude *= 0.85
    raise RuntimeError(f"{name}: could not draw a non-folding deformation; this is a bug in the sample generator.")


# ---------------------------------------------------------------------------- MNI families
def _mni_family(tmp: Path, seed: int, log, small: bool, name: str) -> dict:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + {"mni-swirl": 2000, "mni-atrophy": 3000, "mni-intersubject": 4000}[name])
    template, template_labels, source = _load_mni(small)
    grid = template
    points = _grid_points(grid)
    brain = template_labels.array > 0

    if name == "mni-intersubject":
        # Two subjects: each the template through its own smooth field + affine; their labels likewise.
        subjects, info = [], []
        for index in range(2):
            unit = _smooth_field(grid, rng, 15.0)
            affine = _random_affine(rng, max_deg=3.0, max_scale=0.03, max_shift_mm=2.0)
            centre = points[brain].mean(axis=0)
            peak = float(rng.uniform(3.0, 5.0))

            def make(scale, unit=unit, affine=affine, centre=centre, peak=peak):
                moved = centre + (points + scale * peak * unit - centre) @ affine["matrix"].T + affine["translation_mm"]
                return moved - points

            w, jac = _safe_amplitude(make, grid, log, f"{name} subject {index + 1}")
            subjects.append(w)
            info.append({"smooth_field_sigma_mm": 15.0, "local_peak_mm": peak, "affine_rotation_deg_xyz": affine["angles_deg"].tolist(),
                         "affine_scales_xyz": affine["scales"].tolist(), "affine_translation_mm": affine["translation_mm"].tolist(),
                         "jacobian_min": float(jac.min()), "jacobian_max": float(jac.max())})
        w_fixed, w_moving = subjects
        fixed_image = _resample(template.array, grid, points + w_fixed, order=3)
        fixed_labels = _resample(template_labels.array, grid, points + w_fixed, order=0).astype(np.uint8)
        moving_image = _resample(template.array, grid, points + w_moving, order=3)
        moving_labels = _resample(template_labels.array, grid, points + w_moving, order=0).astype(np.uint8)
        # fixed(p) = T(p + w1(p)), moving(q) = T(q + w2(q))  =>  moving(p + u(p)) = fixed(p) for
        # u = w1 + v2 o (id + w1), v2 the inverse displacement of id + w2.
        v2, residual = _invert(w_moving, grid, brain)
        u = w_fixed + _sample(v2, _to_index(points + w_fixed, grid), order=1)
        fixed_image, fixed_intensity = _acquire(fixed_image, fixed_labels > 0, grid, rng)
        deformation = {"family": name, "held_out": True, "subjects": info,
                       "composition": "fixed = T o (id + w1), moving = T o (id + w2); true u = w1 + (id + w2)^-1 o (id + w1) - id"}
        intensity = {"fixed": fixed_intensity}
    else:
        if name == "mni-swirl":
            centres = brain_points(points, brain, rng, 2, 0.4)
            axes = [random_direction(rng) for _ in centres]
            angles = [math.radians(float(rng.uniform(25.0, 35.0))) * float(rng.choice([-1.0, 1.0])) for _ in centres]
            sigmas = [float(rng.uniform(20.0, 26.0)) for _ in centres]

            def make(scale):
                return sum(swirl(points, c, a, scale * t, s) for c, a, t, s in zip(centres, axes, angles, sigmas))

            family = {"model": "sum of two swirls: rotation about an axis through c by angle * exp(-|x - c|^2 / 2 sigma^2)",
                      "centres_lps_mm": np.round(centres, 2).tolist(), "axes": np.round(axes, 4).tolist(),
                      "angles_deg": [math.degrees(a) for a in angles], "sigmas_mm": sigmas}
        else:
            centres = brain_points(points, brain, rng, 4, 0.8)
            strengths = [float(rng.uniform(0.3, 0.45)) * s for s in (1.0, -1.0, 1.0, -1.0)]
            sigmas = [float(rng.uniform(12.0, 16.0)) for _ in centres]

            def make(scale):
                return sum(bump(points, c, scale * a, s) for c, a, s in zip(centres, strengths, sigmas))

            family = {"model": "sum of radial bumps a (x - c) exp(-|x - c|^2 / 2 s^2): a > 0 expands, a < 0 shrinks (atrophy)",
                      "centres_lps_mm": np.round(centres, 2).tolist(), "strengths": strengths, "sigmas_mm": sigmas}
        w, jac = _safe_amplitude(make, grid, log, name)
        fixed_image, fixed_labels = template.array.astype(np.float32), template_labels.array
        moving_image = _resample(template.array, grid, points + w, order=3)
        moving_labels = _resample(template_labels.array, grid, points + w, order=0).astype(np.uint8)
        u, residual = _invert(w, grid, brain)
        deformation = {"family": name, "held_out": False, **family, "jacobian_min": float(jac.min()),
                       "jacobian_max": float(jac.max()), "generating_max_displacement_mm": float(np.linalg.norm(w, axis=-1).max())}
        intensity = {"fixed": "template unchanged"}
    moving_image, moving_intensity = _acquire(moving_image, moving_labels > 0, grid, rng)
    intensity["moving"] = moving_intensity

    grid.with_array(fixed_image.astype(np.float32)).write(tmp / "fixed.nii.gz")
    grid.with_array(moving_image).write(tmp / "moving.nii.gz")
    grid.with_array(np.asarray(fixed_labels, np.uint8)).write(tmp / "fixed_labels.nii.gz")
    grid.with_array(moving_labels).write(tmp / "moving_labels.nii.gz")
    grid.with_array(u.astype(np.float64)).write(tmp / "true_displacement.nii.gz")
    magnitude = np.linalg.norm(u, axis=-1)
    inside = np.asarray(fixed_labels) > 0
    deformation.update(true_max_displacement_mm=float(magnitude.max()),
                       true_mean_displacement_in_brain_mm=float(magnitude[inside].mean()),
                       inverse_residual_max_mm=residual)
    log(f"{name}: max displacement {magnitude.max():.2f} mm (mean in brain {magnitude[inside].mean():.2f}), inverse residual {residual:.3f} mm")
    return {
        "files": {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
                  "moving_labels": "moving_labels.nii.gz", "true_displacement": "true_displacement.nii.gz"},
        "label_names": {str(k): v for k, v in MNI_LABELS.items()},
        "shape_kji": list(grid.shape), "spacing_mm_ijk": list(grid.spacing), "origin_lps_mm": list(grid.origin),
        "direction_lps": grid.direction.tolist(),
        "displacement_convention": DISPLACEMENT_CONVENTION.replace(
            "The moving image was generated as fixed o phi^-1 (phi^-1 by fixed-point inversion).",
            "phi is the inverse of the generating map (sitk.InvertDisplacementField)."),
        "deformation": deformation, "intensity": intensity, "source": source,
        "generation": {"seed": seed, "small": small, "seconds": round(time.perf_counter() - t0, 2)},
    }


# ---------------------------------------------------------------------------- phantom family
def _sliding_phantom(tmp: Path, seed: int, log, small: bool) -> dict:
    from .phantom import _PhantomScanner, _breathing_curves, _phantom_layout, _phantom_metadata

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 5000)
    layout = _phantom_layout(small)
    curves = _breathing_curves(16, 0.1, rng)
    t_fixed, t_moving = int(np.argmax(curves["amp_res"])), int(np.argmin(curves["amp_res"]))
    scanner = _PhantomScanner(layout, seed, rng)
    fixed_image, fixed_labels = scanner.frame(curves["amp_res"][t_fixed], curves["amp_car"][t_fixed])
    sigma, scale = scanner.noise_sigma, scanner.scale
    scanner.noise_sigma = 0.0  # render the moving frame noise-free: noise is added after the sliding warp
    clean, labels = scanner.frame(curves["amp_res"][t_moving], curves["amp_car"][t_moving])
    grid = Volume(clean, spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])

    # Organs (myocardium, blood, liver) slide along k (superior-inferior) inside the static body wall.
    organs = np.isin(labels, (2, 3, 4)).astype(np.float64)
    # a sharp (1-2 voxel) sliding interface in-plane; smoother along k, where the wall closes the body
    organs = ndimage.gaussian_filter(organs, (2.0, 0.7, 0.7))
    ks = np.nonzero(organs.reshape(organs.shape[0], -1).max(axis=1) > 0.5)[0]
    k0, k1 = float(ks.min()) - 2.0, float(ks.max()) + 2.0
    kk = np.arange(labels.shape[0], dtype=np.float64)
    window = np.where((kk > k0) & (kk < k1), np.sin(np.pi * (kk - k0) / (k1 - k0)) ** 2, 0.0)
    peak_mm = 15.0
    axis_k = grid.direction[:, 2]  # LPS direction of increasing k

    def make(scale_):
        amplitude = scale_ * peak_mm * window[:, None, None] * organs
        return amplitude[..., None] * axis_k

    w, jac = _safe_amplitude(make, grid, log, "phantom-sliding")
    points = _grid_points(grid)
    moving = _resample(clean, grid, points + w, order=1)
    moving_labels = _resample(labels, grid, points + w, order=0).astype(np.uint8)
    moving = np.sqrt((moving / scale + rng.normal(0.0, sigma, moving.shape)) ** 2 + rng.normal(0.0, sigma, moving.shape) ** 2) * scale
    geometry = dict(spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])
    Volume(fixed_image, **geometry).write(tmp / "fixed.nii.gz")
    Volume(fixed_labels, **geometry).write(tmp / "fixed_labels.nii.gz")
    Volume(moving.astype(np.float32), **geometry).write(tmp / "moving.nii.gz")
    Volume(moving_labels, **geometry).write(tmp / "moving_labels.nii.gz")
    slide = np.linalg.norm(w, axis=-1)
    log(f"phantom-sliding: organs slide by up to {slide.max():.1f} mm, Jacobian [{jac.min():.3f}, {jac.max():.3f}]")
    return {
        "files": {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
                  "moving_labels": "moving_labels.nii.gz"},
        **_phantom_metadata(layout),
        "frames": {"fixed": {"frame": t_fixed, "ampRes": float(curves["amp_res"][t_fixed])},
                   "moving": {"frame": t_moving, "ampRes": float(curves["amp_res"][t_moving])}},
        "deformation": {"family": "phantom-sliding", "held_out": False,
                        "model": "moving = end-expiration frame (mrphantom breathing, ampRes -0.1) whose organs (labels 2-4, "
                                 "Gaussian edge 0.7 voxel in-plane, 2 voxels along k) are pulled along +k by peak * sin^2 window over their k extent",
                        "slide_peak_mm": float(slide.max()), "jacobian_min": float(jac.min()), "jacobian_max": float(jac.max())},
        "true_displacement": "none (the breathing part comes from mrphantom's ellipsoids); evaluate with label overlap",
        "generation": {"seed": seed, "small": small, "seconds": round(time.perf_counter() - t0, 2)},
    }


def build_family(tmp: Path, seed: int, log: Callable[[str], object], small: bool, name: str) -> dict:
    """Write the sample pair ``name`` (a key of :data:`FAMILIES`) into ``tmp``; return its metadata."""
    if name == "phantom-sliding":
        return _sliding_phantom(tmp, seed, log, small)
    return _mni_family(tmp, seed, log, small, name)
