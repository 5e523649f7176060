"""Sample data built offline from packages that ship real or simulated MRI data.

``SAMPLES`` names the samples; :func:`write_sample` writes one into a folder, atomically (the
files are written into a hidden temporary folder next to ``outdir`` which is then renamed, so a
half-written sample never appears), and returns the paths by role.

Conventions:

* Geometry is LPS millimetres (ITK); arrays are ``[k, j, i]`` (see :mod:`tttmedical.core.volume`).
* Label maps are ``uint8`` with the ids listed in each sample's JSON (``label_names``).
* 4D samples are Slicer volume-sequence NRRDs (``.seq.nrrd``, frame axis ``time`` in seconds),
  see :mod:`tttmedical.core.sequence`.
* ``true_displacement.nii.gz`` (MNI samples) follows ITK's displacement-field convention on the
  fixed grid: the vector at fixed point ``p`` is ``phi(p) - p`` (LPS mm) where ``phi`` maps fixed to
  moving space, so ``moving(phi(p)) == fixed(p)`` up to the intensity changes: resampling
  ``moving`` onto the fixed grid through ``sitk.DisplacementFieldTransform(true_field)`` brings it
  back onto ``fixed``.  The moving image was generated as ``moving = fixed o phi^-1`` with
  ``phi^-1`` obtained by fixed-point inversion (the residual is recorded in ``sample.json``).

Samples:

* ``phantom-4d``: ``mrphantom`` dynamic MRI (bSSFP contrast at 1.5 T) with respiratory and cardiac
  motion over one breathing cycle, 8-coil sensitivity shading, partial volume and Rician noise.
* ``phantom-pair``: end-inspiration (fixed) and end-expiration (moving) frames of the same phantom
  with a large breathing amplitude.
* ``mni-smooth`` / ``mni-bspline``: nilearn's MNI152 2 mm T1 template as fixed; moving = template
  warped by a smooth Gaussian-filtered random field / a random cubic B-spline (coarse control grid),
  each composed with a small affine, plus a multiplicative bias field, gamma change and Rician noise.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.sequence import LABELMAP_NODE_CLASS, Sequence, write_sequence
from ..core.volume import Volume
from ..core.warp import jacobian_determinant, mm_to_voxels

__all__ = ["SAMPLES", "write_sample", "PHANTOM_LABELS", "MNI_LABELS"]

SAMPLES: dict[str, str] = {
    "phantom-4d": "mrphantom dynamic MRI: 16 frames over one 4 s breathing cycle with respiratory and cardiac motion, with tissue labels (.seq.nrrd).",
    "phantom-pair": "mrphantom registration pair: end-inspiration (fixed) and end-expiration (moving) with large breathing motion, with tissue labels (NIfTI).",
    "mni-smooth": "MNI152 2 mm T1 brain and a synthetic subject warped by a smooth Gaussian random field + small affine, with GM/WM/CSF labels and the true displacement (NIfTI).",
    "mni-bspline": "MNI152 2 mm T1 brain and a synthetic subject warped by a random coarse B-spline + small affine, with GM/WM/CSF labels and the true displacement (NIfTI).",
}

PHANTOM_LABELS = {0: "air", 1: "fat", 2: "myocardium", 3: "blood", 4: "liver"}
PHANTOM_LABEL_NOTES = ("mrphantom enum values; 'fat' is the body wall plus 23 small fat balls that mrphantom places "
                       "inside the body as vessel-like structures; 'liver' is all remaining tissue outside the heart")
MNI_LABELS = {0: "background", 1: "CSF/other brain", 2: "grey matter", 3: "white matter"}

DISPLACEMENT_CONVENTION = (
    "ITK displacement field on the fixed grid, LPS millimetres: the vector at fixed point p is phi(p) - p, "
    "where phi maps fixed to moving physical space, so moving(phi(p)) == fixed(p) (up to the intensity changes). "
    "sitk.Resample(moving, fixed, sitk.DisplacementFieldTransform(field)) brings moving back onto fixed. "
    "The moving image was generated as fixed o phi^-1 (phi^-1 by fixed-point inversion)."
)


# ====================================================================== public API
def write_sample(name: str, outdir, seed: int = 0, log: Callable[[str], object] = print, *,
                 small: bool = False) -> dict[str, Path]:
    """Write sample ``name`` (a key of :data:`SAMPLES`) into the folder ``outdir``; return paths by role.

    ``outdir`` must not exist, be empty, or hold a previous copy of the same sample (which is
    replaced).  ``seed`` makes the output reproducible.  ``small=True`` writes a reduced version
    (fewer frames, coarser grid) for quick tests.  Roles: ``phantom-4d`` -> ``sequence``,
    ``labels``, ``metadata``; ``phantom-pair`` -> ``fixed``, ``moving``, ``fixed_labels``,
    ``moving_labels``, ``metadata``; ``mni-*`` -> the same plus ``true_displacement``.
    """
    builders = {
        "phantom-4d": _build_phantom_4d,
        "phantom-pair": _build_phantom_pair,
        "mni-smooth": lambda tmp, seed, log, small: _build_mni(tmp, seed, log, small, "smooth"),
        "mni-bspline": lambda tmp, seed, log, small: _build_mni(tmp, seed, log, small, "bspline"),
    }
    if name not in builders:
        raise InputError(f"Unknown sample '{name}'; choose one of: {', '.join(SAMPLES)}.")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"The sample seed must be an integer (got {seed!r}); pass e.g. seed=0.") from None
    outdir = Path(outdir).expanduser().absolute()
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"The sample output '{outdir}' is a file; choose a folder path.")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    log = log or (lambda message: None)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.partial-", dir=outdir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the sample folder is ordinary user data
    try:
        files = builders[name](tmp, seed, log, small)
        _install(tmp, outdir, set(files.values()))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"Sample '{name}' written to {outdir} in {time.perf_counter() - start:.1f} s.")
    return {role: outdir / filename for role, filename in files.items()}


def _install(tmp: Path, outdir: Path, filenames: set[str]) -> None:
    """Rename the finished ``tmp`` folder to ``outdir`` (replacing a previous copy of the sample)."""
    if not outdir.exists():
        os.rename(tmp, outdir)
        return
    existing = {p.name for p in outdir.iterdir()}
    if not existing:
        outdir.rmdir()  # renaming onto an existing folder is not portable (Windows)
        os.rename(tmp, outdir)
        return
    if not existing <= filenames:
        raise InputError(
            f"The sample output folder '{outdir}' already holds other files; choose a new or empty folder."
        )
    backup = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=outdir.parent))
    backup.rmdir()
    os.rename(outdir, backup)
    try:
        os.rename(tmp, outdir)
    except BaseException:
        os.rename(backup, outdir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("mrphantom", "nilearn", "SimpleITK", "numpy", "scipy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


# ====================================================================== mrphantom
_PHANTOM_SUPERSAMPLE = 2
_RESP_PERIOD_S = 4.0
_CARD_PERIOD_S = 0.8


def _import_mrphantom():
    try:
        import mrphantom
    except ImportError:
        raise InputError("The phantom samples need the 'mrphantom' package; install it with: pip install mrphantom") from None
    return mrphantom


def _phantom_metadata(layout: dict) -> dict:
    """Label names and grid geometry shared by the phantom samples' JSON."""
    return {"label_names": {str(k): v for k, v in PHANTOM_LABELS.items()},
            "label_notes": PHANTOM_LABEL_NOTES,
            "shape_kji": list(layout["shape"]),
            "spacing_mm_ijk": list(layout["spacing"]),
            "origin_lps_mm": [float(v) for v in layout["origin"]],
            "direction_lps": layout["direction"].tolist()}


def _phantom_layout(small: bool) -> dict:
    """Core phantom shape (what mrphantom's radii scale with), padding, spacing and a sensible geometry."""
    if small:
        core, pad, spacing = (28, 32, 40), (2, 4, 4), (6.0, 6.0, 8.0)
    else:
        # Padding keeps the body inside the field of view at the largest breathing amplitude (0.1):
        # the anterior-posterior radius is (0.4 + ampRes) * ny.
        core, pad, spacing = (56, 64, 80), (4, 8, 8), (3.0, 3.0, 4.0)
    shape = tuple(c + 2 * p for c, p in zip(core, pad))  # (K, J, I)
    angle = math.radians(8.0)  # slightly oblique axial acquisition: rotated about the S axis
    direction = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    centre = np.array([0.0, 20.0, -60.0])  # LPS position of the volume centre (mm)
    extent = (np.array(shape[::-1], dtype=float) - 1.0) * np.array(spacing)
    origin = centre - direction @ (extent / 2.0)
    return {"core": core, "pad": pad, "shape": shape, "spacing": spacing, "direction": direction, "origin": tuple(origin)}


def _breathing_curves(n_frames: int, resp_amplitude: float, rng: np.random.Generator) -> dict:
    """Frame times over one breathing cycle, respiratory (ampRes) and cardiac (ampCar) amplitudes.

    Breathing follows the cos^(2n) model of Lujan et al. (1999) with n = 2, shifted so that the
    cycle starts at end-expiration: ``r(t) = sin^4(pi t / T)`` is 0 at end-expiration (flat: the
    long expiratory dwell) and 1 at end-inspiration (t = T/2, a short peak); ampRes goes from
    ``-resp_amplitude`` (expiration) to ``+resp_amplitude`` (inspiration, the chest expands
    anterior-posteriorly).  The heart beats with a sinusoidal ampCar of amplitude 0.012 and a period
    of about 0.8 s (about 3 frames per beat at 16 frames per 4 s breathing cycle).
    """
    dt = _RESP_PERIOD_S / n_frames
    times = np.arange(n_frames) * dt
    period = _RESP_PERIOD_S * (1.0 + 0.04 * rng.uniform(-1.0, 1.0))
    phase = rng.uniform(-0.05, 0.05) * math.pi
    r = np.sin(math.pi * times / period + phase) ** 4
    amp_res = -resp_amplitude + 2.0 * resp_amplitude * r
    card_period = _CARD_PERIOD_S * (1.0 + 0.05 * rng.uniform(-1.0, 1.0))
    amp_car = 0.012 * np.sin(2.0 * math.pi * times / card_period + rng.uniform(0.0, 2.0 * math.pi))
    return {"times": times, "amp_res": amp_res, "amp_car": amp_car, "resp_period": period, "card_period": card_period}


def _mode_downsample(labels: np.ndarray, factor: int, n_labels: int) -> np.ndarray:
    k, j, i = (s // factor for s in labels.shape)
    blocks = labels[: k * factor, : j * factor, : i * factor].reshape(k, factor, j, factor, i, factor)
    counts = np.stack([(blocks == lab).sum(axis=(1, 3, 5)) for lab in range(n_labels)], axis=0)
    return counts.argmax(axis=0).astype(np.uint8)


def _mean_downsample(values: np.ndarray, factor: int) -> np.ndarray:
    k, j, i = (s // factor for s in values.shape)
    return values[: k * factor, : j * factor, : i * factor].reshape(k, factor, j, factor, i, factor).mean(axis=(1, 3, 5))


class _PhantomScanner:
    """Renders mrphantom frames: bSSFP signal with partial volume, coil shading and Rician noise."""

    def __init__(self, layout: dict, seed: int, rng: np.random.Generator, b0: float = 1.5, tr: float = 5e-3, flip_deg: float = 60.0):
        mp = _import_mrphantom()
        self.mp, self.layout, self.rng = mp, layout, rng
        mp.initSS_bSSFP(b0, TR=tr, FA_deg=flip_deg)
        self.lut = np.zeros(256, dtype=np.float64)
        for tissue in mp.lstTissue:
            self.lut[mp.dictNmrPara[tissue]["enum"]] = mp.dictNmrPara[tissue]["Mss"]
        # mrphantom draws coil phases from numpy's global generator: seed it, then restore it.
        state = np.random.get_state()
        np.random.seed(seed % (2**32))
        try:
            csm = mp.genCsm(tuple(layout["shape"]), nCh=8)
        finally:
            np.random.set_state(state)
        rss = np.sqrt((np.abs(csm) ** 2).sum(axis=0))
        self.shading = (rss / rss.max()).astype(np.float64)
        self.sequence_params = {"B0_T": b0, "TR_s": tr, "flip_angle_deg": flip_deg, "contrast": "bSSFP steady state", "coils": 8}
        self.noise_sigma, self.scale = None, 1.0

    def frame(self, amp_res: float, amp_car: float) -> tuple[np.ndarray, np.ndarray]:
        f = _PHANTOM_SUPERSAMPLE
        core = self.layout["core"]
        fine = self.mp.genPhant(tuple(c * f for c in core), float(amp_res), float(amp_car))
        labels = _mode_downsample(fine, f, len(PHANTOM_LABELS))
        signal = _mean_downsample(self.lut[fine], f)  # partial-volume signal
        pad = [(p, p) for p in self.layout["pad"]]
        labels = np.pad(labels, pad)
        signal = np.pad(signal, pad) * self.shading
        if self.noise_sigma is None:  # fixed by the first rendered frame, shared by all frames
            reference = float(np.percentile(signal[labels > 0], 99))
            self.noise_sigma, self.scale = 0.02 * reference, 1000.0 / reference
        noisy = np.sqrt((signal + self.rng.normal(0.0, self.noise_sigma, signal.shape)) ** 2
                        + self.rng.normal(0.0, self.noise_sigma, signal.shape) ** 2)
        return (noisy * self.scale).astype(np.float32), labels


def _build_phantom_4d(tmp: Path, seed: int, log, small: bool) -> dict[str, str]:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = _phantom_layout(small)
    n_frames = 8 if small else 16
    resp_amplitude = 0.06
    curves = _breathing_curves(n_frames, resp_amplitude, rng)
    scanner = _PhantomScanner(layout, seed, rng)
    images, labels = [], []
    for t in range(n_frames):
        image, label = scanner.frame(curves["amp_res"][t], curves["amp_car"][t])
        images.append(image)
        labels.append(label)
        log(f"phantom-4d: frame {t + 1}/{n_frames} (ampRes {curves['amp_res'][t]:+.3f}, ampCar {curves['amp_car'][t]:+.4f})")
    geometry = dict(spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])
    index_values = [round(float(v), 6) for v in curves["times"]]
    image_seq = Sequence([Volume(a, **geometry) for a in images], "time", "s", index_values)
    label_seq = Sequence([Volume(a, **geometry) for a in labels], "time", "s", index_values,
                         {"DataNodeClassName": LABELMAP_NODE_CLASS})
    write_sequence(image_seq, tmp / "sequence.seq.nrrd")
    write_sequence(label_seq, tmp / "labels.seq.nrrd", labelmap=True)
    metadata = {
        "sample": "phantom-4d",
        "description": SAMPLES["phantom-4d"],
        "files": {"sequence": "sequence.seq.nrrd", "labels": "labels.seq.nrrd"},
        "index_name": "time",
        "index_unit": "s",
        "index_values": index_values,
        **_phantom_metadata(layout),
        "axes": "i: right-to-left, j: anterior-to-posterior (breathing expands the body along j), k: inferior-to-superior; oblique by 8 degrees about S",
        "respiratory_ampRes": [float(v) for v in curves["amp_res"]],
        "cardiac_ampCar": [float(v) for v in curves["amp_car"]],
        "end_inspiration_frame": int(np.argmax(curves["amp_res"])),
        "end_expiration_frame": int(np.argmin(curves["amp_res"])),
        "generation": {
            "source": "mrphantom.genPhant(shape, ampRes, ampCar) tissue map at 2x supersampling per axis; signal = "
                      "mrphantom bSSFP steady state per tissue, block-averaged (partial volume); labels = majority tissue per voxel",
            "core_shape_kji": list(layout["core"]),
            "padding_kji": list(layout["pad"]),
            "supersampling": _PHANTOM_SUPERSAMPLE,
            "breathing_model": "ampRes(t) = -A + 2A sin^4(pi t / T + phase) (Lujan 1999, n = 2), A = %.3f" % resp_amplitude,
            "respiratory_period_s": curves["resp_period"],
            "cardiac_model": "ampCar(t) = 0.012 sin(2 pi t / Tc + phase)",
            "cardiac_period_s": curves["card_period"],
            "sequence": scanner.sequence_params,
            "coil_shading": "root-sum-of-squares of mrphantom.genCsm 8-coil maps (static)",
            "noise": "Rician, sigma = 2% of the 99th percentile body signal; intensities scaled so that percentile = 1000",
            "seed": seed,
            "small": small,
            "versions": _versions(),
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    _write_json(tmp / "sequence.json", metadata)
    return {"sequence": "sequence.seq.nrrd", "labels": "labels.seq.nrrd", "metadata": "sequence.json"}


def _build_phantom_pair(tmp: Path, seed: int, log, small: bool) -> dict[str, str]:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = _phantom_layout(small)
    n_frames = 16
    resp_amplitude = 0.1
    curves = _breathing_curves(n_frames, resp_amplitude, rng)
    t_fixed = int(np.argmax(curves["amp_res"]))  # end-inspiration
    t_moving = int(np.argmin(curves["amp_res"]))  # end-expiration
    scanner = _PhantomScanner(layout, seed, rng)
    geometry = dict(spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])
    out = {}
    for role, t in (("fixed", t_fixed), ("moving", t_moving)):
        image, label = scanner.frame(curves["amp_res"][t], curves["amp_car"][t])
        Volume(image, **geometry).write(tmp / f"{role}.nii.gz")
        Volume(label, **geometry).write(tmp / f"{role}_labels.nii.gz")
        out[role] = {"frame": t, "time_s": float(curves["times"][t]), "ampRes": float(curves["amp_res"][t]),
                     "ampCar": float(curves["amp_car"][t])}
        log(f"phantom-pair: {role} = frame {t} (ampRes {curves['amp_res'][t]:+.3f})")
    metadata = {
        "sample": "phantom-pair",
        "description": "Intra-subject registration pair from one mrphantom breathing cycle: fixed = end-inspiration, "
                       "moving = end-expiration (frames chosen as the maximum and minimum of the breathing curve).",
        "files": {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
                  "moving_labels": "moving_labels.nii.gz"},
        **_phantom_metadata(layout),
        "frames": out,
        "true_displacement": "none (mrphantom defines tissues by ellipsoids, not by a deformation); evaluate with label overlap",
        "generation": {
            "source": "mrphantom.genPhant tissue map at 2x supersampling, bSSFP steady-state signal, partial volume, "
                      "8-coil RSS shading, Rician noise (2%)",
            "breathing_model": "ampRes(t) = -A + 2A sin^4(pi t / T + phase) (Lujan 1999, n = 2), A = %.2f, 16 samples over T = %.2f s"
                               % (resp_amplitude, curves["resp_period"]),
            "cardiac_model": "ampCar(t) = 0.012 sin(2 pi t / Tc + phase), Tc = %.3f s" % curves["card_period"],
            "sequence": scanner.sequence_params,
            "seed": seed,
            "small": small,
            "versions": _versions(),
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    _write_json(tmp / "sample.json", metadata)
    return {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
            "moving_labels": "moving_labels.nii.gz", "metadata": "sample.json"}


# ====================================================================== MNI152
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


def _build_mni(tmp: Path, seed: int, log, small: bool, family: str) -> dict[str, str]:
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
        "sample": f"mni-{family}",
        "description": SAMPLES[f"mni-{family}"],
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
        "generation": {"seed": seed, "small": small, "versions": _versions(), "seconds": round(time.perf_counter() - t0, 2)},
    }
    _write_json(tmp / "sample.json", metadata)
    log(f"mni-{family}: max displacement {magnitude.max():.2f} mm, Jacobian [{jac.min():.3f}, {jac.max():.3f}]")
    return {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
            "moving_labels": "moving_labels.nii.gz", "true_displacement": "true_displacement.nii.gz", "metadata": "sample.json"}
