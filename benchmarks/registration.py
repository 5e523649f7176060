#!/usr/bin/env python
"""Registration benchmark: our engine against ANTs SyN, elastix B-spline and SimpleITK demons.

One run, one process, one method at a time, on seven pairs written by
:func:`tttmedical.data.samples.write_sample` into ``--data``, in three groups reported separately:
the samples the engine was first developed on (``phantom-pair``, ``mni-smooth``, ``mni-bspline``),
new deformation families used to tune the defaults of issue 9 (``mni-swirl``, ``mni-atrophy``,
``phantom-sliding``) and the held-out family, never used for tuning (``mni-intersubject``); see
:mod:`tttmedical.data.deformations`.  Besides each method from scratch it runs:

* Reg-TTR refining each peer's dense field (``syn-full+regttr``, ``elastix+regttr``,
  ``demons+regttr``: the field is written to a file and given as ``init``; time = the refinement);
* the Dice/SDlogJ curve of Reg-TTR over the smoothness weight on the tuning pairs (``--no-curve``);
* the ``--modality`` presets on CT-like versions of the phantom pairs (the tissue labels turned into
  Hounsfield values with noise, :mod:`tttmedical.data.ct_phantom`; synthetic, no real 3D CT
  ships offline): Reg-TTR with ``--modality mri`` and ``ct`` (``--no-modality``);
* the busy-machine timings: Reg-TTR (the engine's thread policy, 2 and 1 threads) and demons (2 and
  1 ITK threads) alone and beside one competing CPU-bound process (``--no-contention``).

Every method gets the same two files (fixed and moving image; no pre-alignment for anyone; ANTs
``SyN`` runs its own affine stage because that is what ``type_of_transform="SyN"`` does).  Every
result is first turned into one dense displacement field on the fixed grid in LPS millimetres,
ITK convention (fixed point ``p`` maps to ``p + d(p)`` in moving space):

* ours: ``displacement.nii.gz`` written by :func:`tttmedical.registration.pipeline.register`;
* ANTs: the forward transforms (warp + affine) composed by ``antsApplyTransforms`` into one
  displacement field (``ants.apply_transforms(..., compose=prefix)``);
* elastix: ``itk.transformix_deformation_field`` of the final transform parameters;
* demons: the output displacement field of the finest level.

The same code then scores every field: the moving label map is resampled through the field with
nearest neighbour (:func:`tttmedical.registration.pipeline.apply_field`), Dice and HD95 come from
:func:`tttmedical.core.metrics.label_metrics`, the Jacobian determinant from
:func:`tttmedical.core.warp.jacobian_determinant` of the field in voxels, and on the MNI pairs the
end-point error against ``true_displacement.nii.gz`` (same convention) is averaged inside the
fixed brain mask.  For ANTs and elastix the labels are also warped by the tool itself
(``nearestNeighbor``) and that Dice is stored as ``native_dice``: it must agree with ours, which
checks the field conversion.

Wall time is the registration call only, on images already in memory: ``init_s + refine_s`` of
our report (predictor + optimisation), ``ants.registration``, ``itk.elastix_registration_method``,
and for demons histogram matching + the pyramid.  Converting to a dense field and scoring are not
timed.  Libraries are imported and warmed up on a tiny pair before anything is timed.

Machine, versions, options, timing helpers, tables and the result files (``<output>/registration-
<date>.md`` and ``.json``) come from the shared harness, ``benchmarks/harness.py``.

Usage::

    python benchmarks/registration.py                      # full run, ~15 min on 2 quiet cores
    python benchmarks/registration.py --quick              # small samples, fewer iterations
    python benchmarks/registration.py --methods regttr,syn-full --pairs mni-smooth
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness as H  # benchmarks/harness.py: machine, versions, arguments, timing, tables, result files

SAMPLE_PAIRS = ("phantom-pair", "mni-smooth", "mni-bspline")   # the samples the engine was first developed on
NEW_PAIRS = ("mni-swirl", "mni-atrophy", "phantom-sliding")      # new families (data/deformations.py), used for tuning
HELD_OUT_PAIRS = ("mni-intersubject",)                          # never used for tuning: reported separately
PAIRS = SAMPLE_PAIRS + NEW_PAIRS + HELD_OUT_PAIRS
GROUPS = {"samples (tuned on)": SAMPLE_PAIRS, "new families (tuned on)": NEW_PAIRS, "held-out family": HELD_OUT_PAIRS}
REFERENCE = "syn-full"          # the time ratio's denominator
OURS = ("regttr", "predict", "regttr-pred", "ssmsr")
PEERS = ("syn", "syn-full", "elastix", "demons")
REFINED = {"syn-full+regttr": "syn-full", "elastix+regttr": "elastix", "demons+regttr": "demons"}  # -> the peer refined
CURVE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)   # smoothness weights of the Dice/SDlogJ curve

# key -> (label in the tables, short description for the notes)
METHODS: dict[str, tuple[str, str]] = {
    "identity": ("Identity (no registration)", "the moving labels resampled onto the fixed grid unchanged"),
    "regttr": ("Reg-TTR (from identity)", "register(method='regttr'), engine defaults (at the recorded commit: coarse to fine over an image pyramid, a stationary velocity field on a half-resolution control grid, scaling and squaring with 3 steps at the finest level and 1 at the coarser ones; the full config is in the JSON)"),
    "predict": ("Predictor alone", "register(method='predict'): the bundled VoxelMorph-style U-Net, one forward pass"),
    "regttr-pred": ("Reg-TTR (from predictor)", "register(method='regttr', init='predictor'): the predictor's field refined by Reg-TTR (at the recorded commit: the from-identity coarse-to-fine schedule with the predicted field as the initial field of the coarsest level, refined directly with a hinge penalty on Jacobian determinants below 0.1; identity instead when the predicted field does not raise the local NCC)"),
    "ssmsr": ("SSMSR", "register(method='ssmsr'), engine defaults: multi-scale test-time training of a U-Net per scale (at the recorded commit the first scale's network starts from the bundled predictor's weights)"),
    "syn": ("ANTs SyN (defaults)", "ants.registration(type_of_transform='SyN'): affine stage + SyN, reg_iterations=(40,20,0) (never iterates at full resolution)"),
    "syn-full": ("ANTs SyN (40,20,10)", "ants.registration(type_of_transform='SyN', reg_iterations=(40,20,10)): affine stage + SyN with a full-resolution level"),
    "elastix": ("elastix B-spline (default map)", "itk.elastix_registration_method with GetDefaultParameterMap('bspline'): 4 levels, Mattes MI + bending energy, 256 iterations per level, 10 mm final grid; no affine stage"),
    "demons": ("SimpleITK demons (sym. forces)", "FastSymmetricForcesDemonsRegistrationFilter after histogram matching, 3-level pyramid (shrink 4/2/1)"),
    "syn-full+regttr": ("SyN(40,20,10) + Reg-TTR", "ANTs SyN(40,20,10)'s dense field given to register(method='regttr', init=<field.nii.gz>): Reg-TTR's refinement setting (at the recorded commit: one full-resolution level, a diffeomorphic increment on a half-resolution control grid (1 squaring step) composed with the field, 5 iterations; of a field that folds, only as much of the increment is kept (1, 3/4, 1/2, 1/4 or none) as adds no folded voxel); time = the refinement alone"),
    "elastix+regttr": ("elastix + Reg-TTR", "elastix's dense field refined by Reg-TTR as above; time = the refinement alone"),
    "demons+regttr": ("demons + Reg-TTR", "the demons field refined by Reg-TTR as above; time = the refinement alone"),
}
DEFAULT_METHODS = tuple(METHODS)


# ====================================================================== settings
@dataclasses.dataclass
class Settings:
    """Per-method parameters; ``quick`` trades accuracy for a fast check of the whole script."""

    quick: bool = False
    ours_iterations: int | None = None          # None: the engine's defaults
    ssmsr_steps: int | None = None
    syn_full_iterations: tuple = (40, 20, 10)
    elastix_iterations: int | None = None       # None: the default map's 256 per level
    demons_shrink: tuple = (4, 2, 1)
    demons_sigmas_vox: tuple = (2.0, 1.0, 0.0)  # Gaussian smoothing per level, in voxels of the original grid
    demons_iterations: tuple = (100, 50, 25)
    demons_field_std: float = 1.5               # displacement-field smoothing (voxels of each level)

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        if not quick:
            return cls()
        return cls(quick=True, ours_iterations=5, ssmsr_steps=15, elastix_iterations=32, demons_iterations=(20, 10, 5))


# ====================================================================== data
@dataclasses.dataclass
class Pair:
    name: str
    paths: dict
    fixed: object            # tttmedical Volume
    moving: object
    fixed_labels: object
    moving_labels: object
    true_field: object | None  # (D, H, W, 3) LPS mm or None
    label_names: dict


def prepare_data(data_dir: Path, names, small: bool, seed: int, log) -> dict[str, dict]:
    """Write (or reuse) every sample pair in ``data_dir``; return the paths by role."""
    from tttmedical.data.samples import write_sample

    out = {}
    for name in names:
        folder = data_dir / name
        meta_path = folder / "sample.json"
        reuse = False
        if meta_path.is_file():
            try:
                gen = json.loads(meta_path.read_text()).get("generation", {})
                reuse = bool(gen.get("small")) == small and int(gen.get("seed", -1)) == seed
            except (OSError, ValueError):
                reuse = False
        if reuse:
            files = json.loads(meta_path.read_text())["files"]
            paths = {role: folder / fn for role, fn in files.items()}
            paths["metadata"] = meta_path
            if all(p.is_file() for p in paths.values()):
                log(f"data: reusing {folder}")
                out[name] = paths
                continue
        t0 = time.perf_counter()
        out[name] = write_sample(name, folder, seed=seed, log=lambda s: None, small=small)
        log(f"data: wrote {name} to {folder} in {time.perf_counter() - t0:.1f} s")
    return out


def load_pair(name: str, paths: dict) -> Pair:
    import numpy as np
    import SimpleITK as sitk

    from tttmedical.registration.pipeline import read_inputs

    inputs = read_inputs(paths["fixed"], paths["moving"], paths["fixed_labels"], paths["moving_labels"])
    true = None
    if "true_displacement" in paths:
        true = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["true_displacement"]))).astype(np.float64)
    meta = json.loads(Path(paths["metadata"]).read_text())
    return Pair(name, {k: str(v) for k, v in paths.items()}, inputs.fixed, inputs.moving, inputs.fixed_labels,
                inputs.moving_labels, true, meta.get("label_names", {}))


# ====================================================================== method runners
@dataclasses.dataclass
class Run:
    field_mm: object          # numpy (D, H, W, 3) LPS mm on the fixed grid
    wall_s: float
    extra: dict = dataclasses.field(default_factory=dict)


def _check_grid(image_geometry: tuple, pair: Pair, what: str) -> None:
    """``image_geometry`` = (size_ijk, spacing, origin, direction flat) of a field image."""
    import numpy as np

    size, spacing, origin, direction = image_geometry
    ok = (tuple(int(s) for s in size) == tuple(pair.fixed.size_ijk)
          and np.allclose(spacing, pair.fixed.spacing, atol=1e-4)
          and np.allclose(origin, pair.fixed.origin, atol=1e-3)
          and np.allclose(np.reshape(direction, (3, 3)), pair.fixed.direction, atol=1e-4))
    if not ok:
        raise RuntimeError(f"{what}: the displacement field is not on the fixed grid ({image_geometry})")


def _read_field(path) -> object:
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image).astype(np.float64)


def run_identity(pair: Pair, settings: Settings, workdir: Path, **_) -> Run:
    import numpy as np

    return Run(np.zeros(pair.fixed.shape + (3,), np.float64), 0.0)


def run_ours(pair: Pair, settings: Settings, workdir: Path, method: str, weights=None, options=None, **_) -> Run:
    from tttmedical.registration.pipeline import RegisterOptions, read_inputs, register

    options = options or {
        "regttr": RegisterOptions(method="regttr", iterations=settings.ours_iterations),
        "predict": RegisterOptions(method="predict", weights=weights),
        "regttr-pred": RegisterOptions(method="regttr", init="predictor", weights=weights,
                                       iterations=settings.ours_iterations),
        "ssmsr": RegisterOptions(method="ssmsr", iterations=settings.ssmsr_steps),
    }[method]
    options.device = "cpu"
    # Images only: the labels are scored below exactly as for the peers.
    inputs = read_inputs(pair.paths["fixed"], pair.paths["moving"])
    outdir = workdir / method
    call_s, report = H.wall(register, inputs, outdir, options)
    timings = report["timings"]
    image, field = _read_field(outdir / "displacement.nii.gz")
    _check_grid((image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()), pair, method)
    extra = {"init_s": timings["init_s"], "refine_s": timings["refine_s"], "engine_total_s": timings["total_s"],
             "call_s": call_s, "iterations": len(report.get("loss_curve") or []),
             "levels": report.get("levels"),
             "config": report["parameters"].get("config"), "output_dir": str(outdir)}
    if report.get("weights"):  # the engine's report names the predictor weights it loaded and their checksum
        extra["weights"] = report["weights"].get("weights")
        extra["weights_sha256"] = report["weights"].get("sha256")
    if "scale_losses" in report:
        extra["scale_losses"] = report["scale_losses"]
    return Run(field, timings["init_s"] + timings["refine_s"], extra)


def run_refine(pair: Pair, settings: Settings, workdir: Path, method: str, fields=None, **_) -> Run:
    """Reg-TTR refining a peer's dense field (given as a displacement-field file, as a user would)."""
    from tttmedical.registration.pipeline import RegisterOptions

    peer = REFINED[method]
    if not fields or peer not in fields:
        raise H.Unavailable(f"{METHODS[peer][0]} did not run on this pair")
    path = workdir / f"{peer}-field.nii.gz"
    pair.fixed.with_array(fields[peer].field_mm.astype("float32")).write(path)
    run = run_ours(pair, settings, workdir, method, options=RegisterOptions(method="regttr", init=str(path),
                                                                          iterations=settings.ours_iterations))
    run.extra.update(peer=peer, peer_s=fields[peer].wall_s, fraction_of_peer_time=run.wall_s / max(fields[peer].wall_s, 1e-9))
    return run


def run_syn(pair: Pair, settings: Settings, workdir: Path, method: str, **_) -> Run:
    H.require("antspyx")
    import ants
    import numpy as np

    from tttmedical.core.metrics import label_metrics

    fixed = ants.image_read(pair.paths["fixed"])
    moving = ants.image_read(pair.paths["moving"])
    kwargs = {} if method == "syn" else {"reg_iterations": tuple(settings.syn_full_iterations)}
    with tempfile.TemporaryDirectory(prefix="bench-ants-", dir=workdir) as tmp:
        wall, reg = H.wall(ants.registration, fixed, moving, type_of_transform="SyN", outprefix=f"{tmp}/syn_", **kwargs)
        transforms = list(reg["fwdtransforms"])
        composed = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=transforms, compose=f"{tmp}/comp_")
        if not composed or not Path(composed).is_file():
            raise RuntimeError("antsApplyTransforms did not write the composed displacement field")
        image, field = _read_field(composed)
        _check_grid((image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()), pair, method)
        # Cross-check: ANTs warps the labels itself.
        fl = ants.image_read(pair.paths["fixed_labels"])
        ml = ants.image_read(pair.paths["moving_labels"])
        warped = ants.apply_transforms(fixed=fl, moving=ml, transformlist=transforms, interpolator="nearestNeighbor")
        native = np.rint(warped.numpy()).astype(np.int64).transpose(2, 1, 0)  # ANTs arrays are (i, j, k)
        native_dice = label_metrics(pair.fixed_labels.array, native, pair.fixed.spacing)["dice"]
    extra = {"reg_iterations": list(kwargs.get("reg_iterations", (40, 20, 0))), "type_of_transform": "SyN",
             "transforms": [Path(t).name for t in transforms], "native_dice": native_dice}
    return Run(field, wall, extra)


def _elastix_params(settings: Settings):
    import itk

    params = itk.ParameterObject.New()
    pmap = params.GetDefaultParameterMap("bspline")
    if settings.elastix_iterations is not None:
        pmap["MaximumNumberOfIterations"] = [str(settings.elastix_iterations)]
    params.AddParameterMap(pmap)
    return params


def run_elastix(pair: Pair, settings: Settings, workdir: Path, **_) -> Run:
    H.require("itk-elastix")
    import itk
    import numpy as np

    from tttmedical.core.metrics import label_metrics

    fixed = itk.imread(pair.paths["fixed"], itk.F)
    moving = itk.imread(pair.paths["moving"], itk.F)
    params = _elastix_params(settings)
    wall, (_, result) = H.wall(itk.elastix_registration_method, fixed, moving, parameter_object=params, log_to_console=False)
    # transformix writes deformationField.nii into its output directory (the working directory by
    # default): keep it in a temporary folder.
    with tempfile.TemporaryDirectory(prefix="bench-transformix-", dir=workdir) as tmp:
        field_image = itk.transformix_deformation_field(moving, result, output_directory=tmp)
        geometry = (tuple(field_image.GetLargestPossibleRegion().GetSize()), tuple(field_image.GetSpacing()),
                    tuple(field_image.GetOrigin()), itk.array_from_matrix(field_image.GetDirection()).ravel())
        _check_grid(geometry, pair, "elastix")
        field = np.array(itk.array_from_image(field_image), dtype=np.float64)
        # Cross-check: transformix warps the labels itself (nearest neighbour).
        result.SetParameter(0, "ResampleInterpolator", "FinalNearestNeighborInterpolator")
        result.SetParameter(0, "FinalBSplineInterpolationOrder", "0")
        labels = itk.imread(pair.paths["moving_labels"], itk.F)
        warped = itk.transformix_filter(labels, result, output_directory=tmp)
        native = np.rint(itk.array_from_image(warped)).astype(np.int64)
    native_dice = label_metrics(pair.fixed_labels.array, native, pair.fixed.spacing)["dice"]
    pmap = dict(params.GetParameterMap(0))
    extra = {"parameter_map": {k: list(v) for k, v in pmap.items()}, "native_dice": native_dice}
    return Run(field, wall, extra)


def _smooth_and_resample(image, shrink: int, sigma_vox: float):
    """Gaussian smoothing (sigma in voxels of ``image``) and resampling onto a grid ``shrink`` times coarser
    with the same extent (as in the SimpleITK demons notebook)."""
    import SimpleITK as sitk

    if sigma_vox > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [sigma_vox * s for s in image.GetSpacing()])
    if shrink == 1:
        return image
    size = [max(2, int(n / shrink + 0.5)) for n in image.GetSize()]
    spacing = [(n - 1) * s / (m - 1) for n, s, m in zip(image.GetSize(), image.GetSpacing(), size)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                         image.GetDirection(), 0.0, image.GetPixelID())


def demons_register(fixed, moving, settings: Settings):
    """Histogram matching + multi-resolution symmetric-forces demons; returns the LPS-mm field image."""
    import SimpleITK as sitk

    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    moving = sitk.HistogramMatching(moving, fixed, numberOfHistogramLevels=1024, numberOfMatchPoints=7,
                                    thresholdAtMeanIntensity=True)
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetSmoothDisplacementField(True)
    demons.SetStandardDeviations(settings.demons_field_std)
    field = None
    for shrink, sigma, iterations in zip(settings.demons_shrink, settings.demons_sigmas_vox, settings.demons_iterations):
        f = _smooth_and_resample(fixed, shrink, sigma)
        m = _smooth_and_resample(moving, shrink, sigma)
        if field is None:
            start = sitk.Image(f.GetSize(), sitk.sitkVectorFloat64, 3)
            start.CopyInformation(f)
        else:  # physical-mm vectors stay valid on any grid: resample them
            start = sitk.Resample(field, f, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
        demons.SetNumberOfIterations(int(iterations))
        field = demons.Execute(f, m, start)
    if field.GetSize() != fixed.GetSize():
        field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    return field, demons


def run_demons(pair: Pair, settings: Settings, workdir: Path, **_) -> Run:
    import numpy as np
    import SimpleITK as sitk

    fixed = sitk.ReadImage(pair.paths["fixed"], sitk.sitkFloat32)
    moving = sitk.ReadImage(pair.paths["moving"], sitk.sitkFloat32)
    wall, (field_image, demons) = H.wall(demons_register, fixed, moving, settings)
    _check_grid((field_image.GetSize(), field_image.GetSpacing(), field_image.GetOrigin(), field_image.GetDirection()), pair, "demons")
    field = sitk.GetArrayFromImage(field_image).astype(np.float64)
    extra = {"filter": "FastSymmetricForcesDemonsRegistrationFilter", "histogram_matching": "1024 levels, 7 match points, threshold at mean",
             "shrink_factors": list(settings.demons_shrink), "smoothing_sigmas_voxels": list(settings.demons_sigmas_vox),
             "iterations": list(settings.demons_iterations), "field_std_voxels": settings.demons_field_std,
             "last_level_iterations": demons.GetElapsedIterations(), "last_level_rms_change": demons.GetRMSChange()}
    return Run(field, wall, extra)


RUNNERS = {"identity": run_identity, "regttr": run_ours, "predict": run_ours, "regttr-pred": run_ours, "ssmsr": run_ours,
           "syn": run_syn, "syn-full": run_syn, "elastix": run_elastix, "demons": run_demons,
           **{key: run_refine for key in REFINED}}


# ====================================================================== scoring
def score(pair: Pair, field_mm) -> dict:
    """The same metrics for every method, from its dense LPS-mm field on the fixed grid."""
    import numpy as np

    from tttmedical.core import metrics as M
    from tttmedical.core.warp import jacobian_determinant, mm_to_voxels
    from tttmedical.registration.pipeline import apply_field

    field_mm = np.asarray(field_mm, dtype=np.float64)
    if field_mm.shape != pair.fixed.shape + (3,):
        raise RuntimeError(f"field shape {field_mm.shape} does not match the fixed grid {pair.fixed.shape}")
    if not np.all(np.isfinite(field_mm)):
        raise RuntimeError("the displacement field has NaN or infinite values")
    field_volume = pair.fixed.with_array(field_mm.astype(np.float32))
    warped = apply_field(pair.moving_labels, field_volume, "nearest")
    labels = M.label_metrics(pair.fixed_labels.array, warped.array, pair.fixed.spacing)
    jac = jacobian_determinant(mm_to_voxels(field_mm, pair.fixed))
    out = {"dice": labels["dice"], "hd95_mm": labels["hd95_mm"],
           "dice_per_label": {pair.label_names.get(str(k), str(k)): v for k, v in labels["dice_per_label"].items()},
           "hd95_mm_per_label": {pair.label_names.get(str(k), str(k)): v for k, v in labels["hd95_mm_per_label"].items()},
           **M.sdlogj(jac), "folding_percent": M.folding_percent(jac),
           "jacobian_min": float(jac.min()), "jacobian_max": float(jac.max())}
    if pair.true_field is not None:
        brain = pair.fixed_labels.array > 0
        error = np.linalg.norm(field_mm - pair.true_field, axis=-1)[brain]
        out["epe_mm"] = float(error.mean())
        out["epe_p95_mm"] = float(np.percentile(error, 95))
    return out


# ====================================================================== warm-up
def warm_up(methods, settings: Settings, workdir: Path, weights, log) -> None:
    """Import every library and run each tool once on a tiny random pair so that lazy loading and
    first-call initialisation are not charged to the first timed method."""
    import numpy as np
    import SimpleITK as sitk

    from tttmedical.core.volume import Volume
    from tttmedical.registration.pipeline import Inputs, RegisterOptions, register

    rng = np.random.default_rng(0)
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.random((32, 32, 32)), 2.0).astype(np.float32)
    shifted = np.roll(base, 1, axis=2)
    tmp = Path(tempfile.mkdtemp(prefix="warmup-", dir=workdir))
    fixed_path, moving_path = tmp / "f.nii.gz", tmp / "m.nii.gz"
    Volume(base, (2.0, 2.0, 2.0)).write(fixed_path)
    Volume(shifted, (2.0, 2.0, 2.0)).write(moving_path)
    t0 = time.perf_counter()
    if any(m in OURS for m in methods):
        inputs = Inputs(Volume(base, (2.0, 2.0, 2.0)), Volume(shifted, (2.0, 2.0, 2.0)))
        register(inputs, tmp / "ours", RegisterOptions(method="regttr", iterations=2, device="cpu"))
        if any(m in ("predict", "regttr-pred") for m in methods):
            try:
                register(inputs, tmp / "pred", RegisterOptions(method="predict", weights=weights, device="cpu"))
            except Exception:  # noqa: BLE001 - reported when the method itself runs
                pass
    if any(m in ("syn", "syn-full") for m in methods) and H.installed("antspyx"):
        import ants

        ants.registration(ants.image_read(str(fixed_path)), ants.image_read(str(moving_path)), type_of_transform="SyN",
                          reg_iterations=(2, 0, 0), outprefix=str(tmp / "syn_"))
    if "elastix" in methods and H.installed("itk-elastix"):
        import itk

        params = itk.ParameterObject.New()
        pmap = params.GetDefaultParameterMap("bspline")
        pmap["MaximumNumberOfIterations"] = ["2"]
        pmap["NumberOfResolutions"] = ["1"]
        pmap["GridSpacingSchedule"] = ["1"]
        params.AddParameterMap(pmap)
        f, m = itk.imread(str(fixed_path), itk.F), itk.imread(str(moving_path), itk.F)
        _, result = itk.elastix_registration_method(f, m, parameter_object=params, log_to_console=False)
        itk.transformix_deformation_field(m, result, output_directory=str(tmp))
    if "demons" in methods:
        small = dataclasses.replace(settings, demons_iterations=(2, 2, 2))
        demons_register(sitk.ReadImage(str(fixed_path)), sitk.ReadImage(str(moving_path)), small)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"warm-up done in {time.perf_counter() - t0:.1f} s")


# ====================================================================== tables
COLUMNS = ("Method", "Dice", "HD95 (mm)", "SDlogJ", "Fold %", "EPE (mm)", "Time (s)", "× SyN(40,20,10)", "× demons")


def _row(label: str, r: dict, with_epe: bool) -> list[str]:
    if r.get("status") != "ok":
        cells = [label] + [r.get("status", "failed")] + [""] * (len(COLUMNS) - 2)
        return cells if with_epe else cells[:5] + cells[6:]
    cells = [label, H.fmt(r["dice"]), H.fmt(r["hd95_mm"], 2), H.fmt(r["sdlogj"]), H.fmt(r["folding_percent"], 3),
             H.fmt(r.get("epe_mm"), 2), H.fmt_time(r["wall_s"]), H.fmt_ratio(r.get("ratio")), H.fmt_ratio(r.get("ratio_demons"))]
    return cells if with_epe else cells[:5] + cells[6:]


def pair_table(pair_name: str, results: dict) -> str:
    with_epe = any("epe_mm" in r for r in results.values() if r.get("status") == "ok")
    header = list(COLUMNS) if with_epe else list(COLUMNS[:5] + COLUMNS[6:])
    rows = [_row(METHODS[k][0], r, with_epe) for k, r in results.items()]
    return H.table(header, rows)


METRICS = ("dice", "hd95_mm", "sdlogj", "sdlogj_plus3", "folding_percent", "epe_mm", "wall_s", "ratio", "ratio_demons")


def summary(all_results: dict, methods) -> dict:
    """Mean over pairs of each metric, per method (EPE: over the pairs that have a true field)."""
    return H.summarise(all_results, methods, METRICS, count_key="pairs")


def group_summaries(all_results: dict, methods) -> dict:
    """:func:`summary` per pair group (samples, new families, held-out family), for the groups that ran."""
    out = {}
    for group, names in GROUPS.items():
        subset = {name: all_results[name] for name in names if name in all_results}
        if subset:
            out[group] = {"pairs": list(subset), "summary": summary(subset, methods)}
    return out


def summary_table(summ: dict) -> str:
    rows = []
    for key, s in summ.items():
        label = METHODS[key][0] + ("" if s["complete"] else f" ({s['pairs']} pairs)")
        rows.append([label, H.fmt(s["dice"]), H.fmt(s["hd95_mm"], 2), H.fmt(s["sdlogj"]), H.fmt(s["folding_percent"], 3),
                     H.fmt(s["epe_mm"], 2), H.fmt_time(s["wall_s"]), H.fmt_ratio(s["ratio"]), H.fmt_ratio(s["ratio_demons"])])
    return H.table(list(COLUMNS), rows)


def refinement_table(all_results: dict) -> str:
    """Each refined peer: Dice and folding before -> after, the peer's time and the refinement's."""
    rows = []
    for pair_name, res in all_results.items():
        for key, peer in REFINED.items():
            r, p = res.get(key, {}), res.get(peer, {})
            if r.get("status") != "ok" or p.get("status") != "ok":
                continue
            rows.append([pair_name, METHODS[peer][0], f"{p['dice']:.3f} -> {r['dice']:.3f}",
                         f"{p['folding_percent']:.3f} -> {r['folding_percent']:.3f}", f"{p['sdlogj']:.3f} -> {r['sdlogj']:.3f}",
                         H.fmt_time(p["wall_s"]), H.fmt_time(r["wall_s"]), f"{100 * r['wall_s'] / p['wall_s']:.0f} %"])
    return H.table(["Pair", "Refined peer", "Dice", "Fold %", "SDlogJ", "Peer time (s)", "Refinement (s)", "Refinement / peer"],
                   rows, numeric=False) if rows else ""


def _ok(res: dict, key: str) -> bool:
    return key in res and res[key].get("status") == "ok"


def goals(all_results: dict, step: dict | None = None) -> list[dict]:
    """The goals of issue 9, checked per pair (and the iteration cost on its synthetic pair)."""
    out = []
    if step:
        out.append({"pair": "×".join(map(str, step["shape_kji"])) + " synthetic", "goal": "Full-resolution iteration <= 0.15 s (median)",
                    "value": f"{step['median_s']:.3f} s (best {step['min_s']:.3f} s), {step['threads']} thread(s)",
                    "met": step["median_s"] <= 0.15})
    for pair_name, res in all_results.items():
        if _ok(res, "regttr"):
            ours = res["regttr"]
            peers = {k: res[k]["dice"] for k in PEERS if _ok(res, k)}
            if peers:
                best = max(peers, key=peers.get)
                out.append({"pair": pair_name, "goal": "Reg-TTR Dice >= the strongest peer's",
                            "value": f"{ours['dice']:.3f} vs {peers[best]:.3f} ({METHODS[best][0]})",
                            "delta": ours["dice"] - peers[best], "met": ours["dice"] >= peers[best] - 1e-3})
            if ours.get("ratio_demons") is not None:
                out.append({"pair": pair_name, "goal": "Reg-TTR time <= multi-level demons' time",
                            "value": f"{ours['ratio_demons']:.2f} × ({ours['wall_s']:.2f} s vs {res['demons']['wall_s']:.2f} s)",
                            "met": ours["ratio_demons"] <= 1.0})
            if ours.get("ratio") is not None:
                out.append({"pair": pair_name, "goal": "Reg-TTR time <= 1/2 SyN(40,20,10) (moonshot 1/10)",
                            "value": f"{ours['ratio']:.2f} ×", "met": ours["ratio"] <= 0.5})
            out.append({"pair": pair_name, "goal": "Reg-TTR SDlogJ <= 0.2 with no folding",
                        "value": f"SDlogJ {ours['sdlogj']:.3f}, folding {ours['folding_percent']:.3f} %",
                        "met": ours["sdlogj"] <= 0.2 and ours["folding_percent"] == 0.0})
        for key, peer in REFINED.items():
            if _ok(res, key) and _ok(res, peer):
                r, p = res[key], res[peer]
                fraction = r["wall_s"] / p["wall_s"]
                out.append({"pair": pair_name, "goal": f"Refining {METHODS[peer][0]}: Dice up, folding not up, <= 25 % of its time",
                            "value": f"Dice {p['dice']:.3f} -> {r['dice']:.3f}, folding {p['folding_percent']:.3f} -> "
                                     f"{r['folding_percent']:.3f} %, {100 * fraction:.0f} % of its time",
                            "met": r["dice"] > p["dice"] and r["folding_percent"] <= p["folding_percent"] and fraction <= 0.25})
        if _ok(res, "regttr-pred") and _ok(res, "regttr"):
            out.append({"pair": pair_name, "goal": "Predictor + refinement Dice >= Reg-TTR from identity",
                        "value": f"{res['regttr-pred']['dice']:.3f} vs {res['regttr']['dice']:.3f}",
                        "met": res["regttr-pred"]["dice"] >= res["regttr"]["dice"] - 1e-3})
    return out


def early_stop_table(all_results: dict) -> str:
    """Reg-TTR's loss evaluations per pyramid level (from identity and from the predictor) against the most
    its schedule allows, as the engine reports them (``report.json``'s ``levels``)."""
    rows = []
    for pair_name, res in all_results.items():
        for key in ("regttr", "regttr-pred"):
            levels = res[key]["extra"].get("levels") if _ok(res, key) else None
            if not levels:
                continue
            cells = [f"{lv['evaluations']} / {lv['max_evaluations']}" + (" (stopped)" if lv["stopped"] == "patience" else "")
                     for lv in levels]
            rows.append([pair_name, METHODS[key][0], " · ".join(cells), f"{res[key]['extra']['refine_s']:.2f}"])
    return H.table(["Pair", "Method", "Evaluations used / allowed, coarse to fine", "refine_s"], rows, numeric=False)


STEP_SHAPE = (96, 96, 96)


def step_cost(repeats: int, log) -> dict:
    """Seconds per Reg-TTR iteration at full resolution on a ``STEP_SHAPE`` pair (smooth random images), with the
    engine's default configuration on one level (forward, backward and Adam step): the time between two
    progress callbacks of :func:`tttmedical.registration.regttr.refine`, the first 3 left out."""
    import numpy as np
    import torch

    from tttmedical.registration.regttr import RegTTRConfig, refine

    generator = torch.Generator().manual_seed(0)
    images = [torch.rand((1, 1) + tuple(n // 8 for n in STEP_SHAPE), generator=generator) for _ in range(2)]
    fixed, moving = (torch.nn.functional.interpolate(x, size=STEP_SHAPE, mode="trilinear", align_corners=True) for x in images)
    stamps: list[float] = []
    config = RegTTRConfig(levels=1, iterations=repeats + 3, patience=repeats + 10, min_delta=0.0, lr=0.01)
    refine(fixed, moving, None, config, callback=lambda *_: stamps.append(time.perf_counter()))
    steps = np.diff(stamps[:repeats + 4])[3:]
    out = {"shape_kji": list(STEP_SHAPE), "threads": torch.get_num_threads(), "min_s": float(steps.min()),
           "median_s": float(np.median(steps)), "repeats": int(len(steps))}
    log(f"step cost: {'x'.join(map(str, STEP_SHAPE))}, {out['threads']} thread(s): min {out['min_s']:.3f} s, "
        f"median {out['median_s']:.3f} s over {out['repeats']} iterations")
    return out


# ====================================================================== trade-off curve and contention
def smoothness_curve(pairs: dict, settings: Settings, workdir: Path, log) -> list[dict]:
    """Reg-TTR from identity at each weight of :data:`CURVE_WEIGHTS` on ``pairs`` (the tuning pairs):
    mean Dice, SDlogJ, folding and time, and the values per pair."""
    import numpy as np

    from tttmedical.registration.pipeline import RegisterOptions

    rows = []
    for weight in CURVE_WEIGHTS:
        per_pair = {}
        for name, pair in pairs.items():
            options = RegisterOptions(method="regttr", smoothness=weight, iterations=settings.ours_iterations)
            run = run_ours(pair, settings, workdir / name / "curve", "regttr", options=options)
            scores = score(pair, run.field_mm)
            per_pair[name] = {"dice": scores["dice"], "sdlogj": scores["sdlogj"],
                              "folding_percent": scores["folding_percent"], "wall_s": run.wall_s}
        mean = {k: float(np.mean([v[k] for v in per_pair.values()])) for k in ("dice", "sdlogj", "folding_percent", "wall_s")}
        rows.append({"smoothness": weight, **mean, "pairs": per_pair})
        log(f"curve: smoothness {weight:g}: Dice {mean['dice']:.3f}, SDlogJ {mean['sdlogj']:.3f}, "
            f"folding {mean['folding_percent']:.3f} %, {mean['wall_s']:.2f} s")
    return rows


def curve_table(rows: list[dict]) -> str:
    return H.table(["Smoothness weight", "Dice", "SDlogJ", "Fold %", "Time (s)"],
                   [[f"{r['smoothness']:g}", H.fmt(r["dice"]), H.fmt(r["sdlogj"]), H.fmt(r["folding_percent"], 3),
                     H.fmt_time(r["wall_s"])] for r in rows])


MODALITY_NOISE_HU = 30.0   # CT quantum noise of the CT-like pairs (about a routine abdominal scan's)


def modality_presets(pairs: dict, settings: Settings, workdir: Path, log) -> list[dict]:
    """Reg-TTR with each ``--modality`` preset (mri, ct) on CT-like versions of the phantom ``pairs``
    (both images from their label maps: :func:`tttmedical.data.ct_phantom.attenuation`, own noise
    seed per image); Dice, SDlogJ, folding and time per pair and preset."""
    from tttmedical.data.ct_phantom import attenuation
    from tttmedical.registration.pipeline import RegisterOptions

    rows = []
    for index, (name, pair) in enumerate(pairs.items()):
        folder = workdir / name / "ct"
        folder.mkdir(parents=True, exist_ok=True)
        paths = dict(pair.paths)
        for role, labels in (("fixed", pair.fixed_labels), ("moving", pair.moving_labels)):
            paths[role] = str(folder / f"{role}_ct.nii.gz")
            labels.with_array(attenuation(labels.array, 2 * index + (role == "moving"), MODALITY_NOISE_HU)).write(paths[role])
        ct_pair = dataclasses.replace(pair, paths=paths)
        for modality in ("mri", "ct"):
            options = RegisterOptions(method="regttr", modality=modality, iterations=settings.ours_iterations)
            run = run_ours(ct_pair, settings, folder / modality, "regttr", options=options)
            scores = score(ct_pair, run.field_mm)
            rows.append({"pair": name, "modality": modality, "dice": scores["dice"], "hd95_mm": scores["hd95_mm"],
                         "sdlogj": scores["sdlogj"], "folding_percent": scores["folding_percent"], "wall_s": run.wall_s})
            log(f"modality: {name} CT-like, --modality {modality}: Dice {scores['dice']:.3f}, SDlogJ {scores['sdlogj']:.3f}, "
                f"{run.wall_s:.2f} s")
    return rows


def modality_table(rows: list[dict]) -> str:
    return H.table(["Pair (CT-like)", "--modality", "Dice", "HD95 (mm)", "SDlogJ", "Fold %", "Time (s)"],
                   [[r["pair"], r["modality"], H.fmt(r["dice"]), H.fmt(r["hd95_mm"], 2), H.fmt(r["sdlogj"]),
                     H.fmt(r["folding_percent"], 3), H.fmt_time(r["wall_s"])] for r in rows], numeric=False)


CONTENTION_CASES = (("regttr", "auto"), ("regttr", 2), ("regttr", 1), ("demons", 2), ("demons", 1))


def contention(pair: Pair, settings: Settings, workdir: Path, threads: int, log) -> list[dict]:
    """Each case of :data:`CONTENTION_CASES` timed on a quiet machine and beside one competing
    CPU-bound process (a Python busy loop, as Slicer's own process computing would be).
    ``"auto"`` is the engine's own policy (:func:`tttmedical.core.threads.auto_threads`, what
    ``tttmedical register`` uses without ``--threads``), chosen at the start of each run."""
    import subprocess

    import SimpleITK as sitk
    import torch

    from tttmedical.core.threads import auto_threads, busy_cores

    rows = []
    for load in ("quiet", "busy"):
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            if competitor is not None:
                time.sleep(1.0)
            for method, choice in CONTENTION_CASES:
                busy = busy_cores(0.2)
                n = auto_threads() if choice == "auto" else int(choice)
                torch.set_num_threads(n)
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
                run = RUNNERS[method](pair, settings, workdir / "contention", method=method)
                rows.append({"load": load, "method": method, "threads": choice, "threads_used": n,
                             "busy_cores_before": busy, "wall_s": run.wall_s})
                log(f"contention: {load:5s} {METHODS[method][0]:32s} threads {choice} ({n}): {run.wall_s:.2f} s "
                    f"(other processes busy on {busy:.1f} cores)")
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
            torch.set_num_threads(threads)
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return rows


def contention_table(rows: list[dict]) -> str:
    quiet = {(r["method"], r["threads"]): r for r in rows if r["load"] == "quiet"}
    out = []
    for r in rows:
        if r["load"] != "busy" or (r["method"], r["threads"]) not in quiet:
            continue
        q = quiet[(r["method"], r["threads"])]
        threads = f"auto ({q['threads_used']} quiet, {r['threads_used']} busy)" if r["threads"] == "auto" else str(r["threads"])
        out.append([METHODS[r["method"]][0], threads, H.fmt_time(q["wall_s"]), H.fmt_time(r["wall_s"]),
                    f"{r['wall_s'] / q['wall_s']:.2f} ×"])
    return H.table(["Method", "Threads", "Quiet (s)", "With a competing process (s)", "Slowdown"], out, numeric=False)


def sanity(all_results: dict) -> list[str]:
    """Every registration must improve Dice over identity; ANTs/elastix fields must reproduce the tools' own label warps."""
    problems = []
    for pair_name, res in all_results.items():
        base = res.get("identity", {}).get("dice")
        for key, r in res.items():
            if key == "identity" or r.get("status") != "ok":
                continue
            if base is not None and r["dice"] <= base:
                problems.append(f"{pair_name}: {METHODS[key][0]} does not improve Dice over identity ({r['dice']:.3f} <= {base:.3f})")
            native = r.get("extra", {}).get("native_dice")
            if native is not None and abs(native - r["dice"]) > 0.01:
                problems.append(f"{pair_name}: {METHODS[key][0]} Dice from its dense field ({r['dice']:.3f}) differs from the "
                                f"tool's own label warp ({native:.3f}): check the field conversion")
    return problems


VERSION_KEYS = ("tttmedical", "git_commit", "torch", "SimpleITK", "antspyx", "itk-elastix", "python")


def markdown(doc: dict) -> str:
    lines = H.Run.header(doc, "Registration benchmark", threads_note=f", ITK/ANTs/elastix threads {doc['machine']['itk_threads']}",
                         time_note=f" (data {doc['data_s']:.0f} s)", version_keys=VERSION_KEYS)
    lines += ["## Summary (mean over pairs)", "", summary_table(doc["summary"]), ""]
    for group, entry in doc["groups"].items():
        lines += [f"## Summary: {group} ({', '.join(entry['pairs'])})", "", summary_table(entry["summary"]), ""]
    for pair_name, res in doc["results"].items():
        info = doc["pairs"][pair_name]
        lines += [f"## {pair_name} ({info['group']})", "", f"{info['description']} Grid {'×'.join(map(str, info['shape_kji'][::-1]))} (I×J×K) at "
                  f"{'×'.join(f'{s:g}' for s in info['spacing_mm'])} mm.", "", pair_table(pair_name, res), ""]
    refined = refinement_table(doc["results"])
    if refined:
        lines += ["## Refining the peers' results", "", "Each peer's dense field is the initial transform of Reg-TTR "
                  "(`tttmedical register --init field.nii.gz`: Reg-TTR's refinement setting, see the notes).",
                  "", refined, ""]
    early = early_stop_table(doc["results"])
    if early:
        lines += ["## Early stop per level", "", "Reg-TTR's loss evaluations per pyramid level against the most its "
                  "schedule allows; a level that ends early stopped after `patience` evaluations without a relative "
                  "improvement of `min_delta` (the config is in the JSON).", "", early, ""]
    if doc.get("step"):
        st = doc["step"]
        lines += ["## Cost of one full-resolution iteration", "", f"Reg-TTR's default step (control grid at half "
                  f"resolution, scaling and squaring, warp, NCC + SSIM, backward, Adam) on a "
                  f"{'×'.join(map(str, st['shape_kji']))} pair, {st['threads']} thread(s): **{st['min_s']:.3f} s** at best, "
                  f"**{st['median_s']:.3f} s** median over {st['repeats']} iterations (goal <= 0.15 s).", ""]
    if doc.get("curve"):
        lines += ["## Dice vs SDlogJ over the smoothness weight", "", f"Reg-TTR from identity, mean over the tuning pairs "
                  f"({', '.join(doc['curve_pairs'])}; the held-out family is not used). The default weight is "
                  f"{doc['default_smoothness']:g}.", "", curve_table(doc["curve"]), ""]
    if doc.get("modality"):
        from tttmedical.data.ct_phantom import BLUR_VOXELS, PHANTOM_HU
        from tttmedical.data.phantom import PHANTOM_LABELS

        tissues = ", ".join(f"{PHANTOM_LABELS[k]} {v:g}" for k, v in PHANTOM_HU.items())
        lines += ["## Modality presets (CT-like phantom pairs)", "", "Both images of each phantom pair rebuilt from their "
                  f"tissue labels as contrast-enhanced CT ({tissues} HU, "
                  f"Gaussian blur {BLUR_VOXELS:g} voxel, "
                  f"{doc['modality_noise_hu']:g} HU white noise; synthetic: "
                  "`tttmedical.data.ct_phantom`), registered by Reg-TTR from identity with each preset: `mri` = "
                  "0.5-99.5 percentiles; `ct` = soft-tissue window (-160..240 HU) and a Gaussian low-pass of 1 voxel.", "",
                  modality_table(doc["modality"]), ""]
    if doc.get("contention"):
        lines += ["## Busy machine", "", f"On {doc['contention_pair']}: each method alone, then beside one competing "
                  "CPU-bound process (a Python busy loop). `auto` is `tttmedical register`'s default without `--threads` "
                  "(core.threads.auto_threads: the idle cores now, 1 to the physical cores). On this shared machine 'quiet' "
                  "means without the competitor; the other users' load is in the JSON (busy_cores_before).", "",
                  contention_table(doc["contention"]), ""]
    if doc["goals"]:
        lines += ["## Goals of issue 9", "", H.table(["Pair", "Goal", "Value", "Met"],
                  [[g["pair"], g["goal"], g["value"], "yes" if g["met"] else "**no**"] for g in doc["goals"]], numeric=False), ""]
    lines += ["## Sanity checks", ""]
    lines += [f"- {p}" for p in doc["sanity"]] or ["- Every method improves Dice over identity on every pair; the ANTs and "
                                                  "elastix dense fields reproduce the tools' own nearest-neighbour label "
                                                  "warps to within 0.01 Dice."]
    lines += ["", "## Notes", ""]
    lines += [
        "- Every method gets the same fixed and moving files and no pre-alignment. ANTs `SyN` includes its own affine stage "
        "(ANTsPy's standard `type_of_transform=\"SyN\"`); ours, elastix (default B-spline map) and demons have none.",
        "- All label metrics are computed the same way: each method's transform is turned into a dense LPS-mm displacement "
        "field on the fixed grid (ITK convention, fixed point p -> p + d(p) in moving space), the moving labels are "
        "resampled through it with nearest neighbour, and the Jacobian is taken of that field.",
        "- Dice: mean over foreground labels. HD95: symmetric 95th-percentile surface distance in mm, mean over labels; a "
        "label that vanished from the warped map counts at the grid diagonal (its Dice at 0) and is listed in the JSON's "
        "`labels_missing`. "
        "SDlogJ: std of log J over the whole fixed grid (J clipped at 1e-9, so folding dominates; std(log(J+3)) is in the "
        "JSON). Fold %: voxels with J <= 0. EPE (MNI pairs only): mean |d - d_true| in mm inside the fixed brain mask, "
        "d_true from `true_displacement.nii.gz` (same convention).",
        "- Time: the registration call alone, images in memory, one method at a time, after a warm-up: ours = `init_s + "
        "refine_s` of the engine report (predictor + optimisation); ANTs = `ants.registration`; elastix = "
        "`itk.elastix_registration_method`; demons = histogram matching + pyramid. × SyN(40,20,10) = that time / "
        "ANTs SyN(40,20,10)'s time on the same pair; the summary averages the per-pair ratios.",
        "- ANTs runs unseeded (its default), so its numbers vary slightly between runs.",
    ]
    for key in doc["methods"]:
        lines.append(f"- {METHODS[key][0]}: {METHODS[key][1]}.")
    if doc.get("skipped"):
        lines += [f"- Skipped: {s}" for s in doc["skipped"]]
    return "\n".join(lines) + "\n"


def figure(doc: dict, path: Path) -> Path:
    """Left: mean Dice against mean time per method and pair group; right: the Dice/SDlogJ curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    ax = axes[0]
    markers = dict(zip(GROUPS, ("o", "s", "^")))
    colours = {key: plt.cm.tab20(i % 20) for i, key in enumerate(METHODS)}
    for group, entry in doc["groups"].items():
        for key, s in entry["summary"].items():
            if key == "identity" or s.get("dice") is None or not s.get("wall_s"):
                continue
            ax.scatter(s["wall_s"], s["dice"], marker=markers[group], color=colours[key],
                       label=METHODS[key][0] if group == next(iter(doc["groups"])) else None)
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log)")
    ax.set_ylabel("mean Dice")
    ax.set_title("o samples, ■ new families, ▲ held-out family", fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    ax = axes[1]
    if doc.get("curve"):
        x = [r["sdlogj"] for r in doc["curve"]]
        y = [r["dice"] for r in doc["curve"]]
        ax.plot(x, y, "o-")
        for r in doc["curve"]:
            ax.annotate(f"λ={r['smoothness']:g}", (r["sdlogj"], r["dice"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("mean SDlogJ")
        ax.set_ylabel("mean Dice")
        ax.set_title("Reg-TTR over the smoothness weight (tuning pairs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ====================================================================== main
def parse_args(argv=None):
    p = H.base_parser("registration", "Registration benchmark: Reg-TTR / predictor / SSMSR against ANTs SyN, "
                                      "elastix B-spline and SimpleITK demons on the sample pairs.", list(METHODS),
                      quick_help="small samples and fewer iterations: checks the script in a few minutes",
                      data_help="cache folder for the sample pairs (default bench-output/data, bench-output/data-small "
                                "with --quick)", methods_note=" (identity is always added)")
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated subset of: {', '.join(PAIRS)}")
    p.add_argument("--weights", default=None, help="predictor weights (default: the bundled ones)")
    p.add_argument("--seed", type=int, default=0, help="sample-data seed (default 0)")
    p.add_argument("--no-curve", action="store_true", help="skip the Dice/SDlogJ curve over the smoothness weight")
    p.add_argument("--no-modality", action="store_true", help="skip the --modality presets on the CT-like phantom pairs")
    p.add_argument("--no-contention", action="store_true", help="skip the busy-machine timings")
    p.add_argument("--contention-pair", default="mni-smooth", help="pair of the busy-machine timings (default mni-smooth)")
    args = p.parse_args(argv)
    methods = H.choose(p, args.methods, METHODS)
    args.methods = ["identity"] + [m for m in DEFAULT_METHODS if m in methods and m != "identity"]
    args.pairs = H.choose(p, args.pairs, PAIRS, "pair")
    return args


def _skippable(key: str):
    """Without weights the predictor methods are skipped (an input problem), not failed (so are
    peers that are not installed: :class:`harness.Unavailable`)."""
    from tttmedical.core.errors import InputError

    return lambda exc: isinstance(exc, InputError) and key in ("predict", "regttr-pred")


def main(argv=None) -> int:
    args = parse_args(argv)
    H.set_threads(args.threads)  # before ITK (itk-elastix, ANTs) is first imported
    import torch

    log = H.log
    bench = H.Run("registration", args.quick, argv, extra_dists=("nilearn", "mrphantom"))  # records the commit under test
    output = Path(args.output)
    data_dir = Path(args.data) if args.data else output / ("data-small" if args.quick else "data")
    workdir = output / "runs"
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings.make(args.quick)
    log(f"machine: {H.cpu_model()}, {os.cpu_count()} cores, load {bench.loadavg_start}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); methods {', '.join(args.methods)}")

    paths = prepare_data(data_dir, args.pairs, args.quick, args.seed, log)
    data_s = bench.elapsed()
    warm_up(args.methods, settings, workdir, args.weights, log)

    all_results: dict[str, dict] = {}
    loaded: dict[str, Pair] = {}
    pair_info: dict[str, dict] = {}
    skipped: list[str] = []
    for pair_name in args.pairs:
        pair = load_pair(pair_name, paths[pair_name])
        meta = json.loads(Path(pair.paths["metadata"]).read_text())
        pair_info[pair_name] = {"description": meta.get("description", ""), "shape_kji": list(pair.fixed.shape),
                                "group": next(g for g, names in GROUPS.items() if pair_name in names),
                                "spacing_mm": list(pair.fixed.spacing), "files": pair.paths,
                                "labels": pair.label_names}
        results: dict[str, dict] = {}
        runs: dict[str, Run] = {}  # this pair's finished runs (the refinement methods start from the peers' fields)
        (workdir / pair_name).mkdir(parents=True, exist_ok=True)
        for key in args.methods:
            label = METHODS[key][0]
            entry = {"status": "ok", "loadavg_before": H.loadavg()}

            def attempt():
                run = RUNNERS[key](pair, settings, workdir / pair_name, method=key, weights=args.weights, fields=runs)
                return run, score(pair, run.field_mm)

            done, problem = H.guarded(attempt, skip=_skippable(key))
            if problem:
                entry.update(problem)
                if problem["status"] == "skipped":
                    skipped.append(f"{label} on {pair_name}: {problem['error']}")
                log(f"{pair_name:12s} {label:32s} {entry['status']}: {entry['error']}")
                results[key] = entry
                continue
            run, scores = done
            runs[key] = run
            entry.update(scores)
            entry["wall_s"] = run.wall_s
            entry["extra"] = run.extra
            results[key] = entry
            log(f"{pair_name:12s} {label:32s} Dice {entry['dice']:.3f}  HD95 {entry['hd95_mm']:6.2f}  "
                f"SDlogJ {entry['sdlogj']:.3f}  fold {entry['folding_percent']:.3f}%"
                + (f"  EPE {entry['epe_mm']:.2f} mm" if "epe_mm" in entry else "") + f"  {run.wall_s:8.2f} s")
        H.add_ratios(results, REFERENCE)
        H.add_ratios(results, "demons", out="ratio_demons")
        all_results[pair_name] = results
        loaded[pair_name] = pair
        print("\n" + f"## {pair_name}\n\n" + pair_table(pair_name, results) + "\n", flush=True)

    curve, curve_pairs = [], [name for name in loaded if name not in HELD_OUT_PAIRS]
    if not args.no_curve and "regttr" in args.methods and curve_pairs:
        curve = smoothness_curve({name: loaded[name] for name in curve_pairs}, settings, workdir, log)
    modality_rows = []
    ct_pairs = [name for name in loaded if name.startswith("phantom")]
    if not args.no_modality and "regttr" in args.methods and ct_pairs:
        modality_rows = modality_presets({name: loaded[name] for name in ct_pairs}, settings, workdir, log)
    step = step_cost(8 if args.quick else 15, log) if "regttr" in args.methods else None
    rows = []
    if not args.no_contention and "regttr" in args.methods and "demons" in args.methods:
        name = args.contention_pair if args.contention_pair in loaded else next(iter(loaded))
        rows = contention(loaded[name], settings, workdir / name, args.threads, log)
        args.contention_pair = name

    from tttmedical.registration.regttr import RegTTRConfig

    machine = H.machine_info(torch_threads=torch.get_num_threads(),
                             itk_threads=int(os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"]), device="cpu")
    doc = bench.document(
        machine,
        data_s=data_s,
        methods=args.methods,
        settings=dataclasses.asdict(settings),
        reference=REFERENCE,
        pairs=pair_info,
        results=all_results,
        summary=summary(all_results, args.methods),
        groups=group_summaries(all_results, args.methods),
        curve=curve,
        curve_pairs=curve_pairs,
        default_smoothness=RegTTRConfig().smoothness,
        modality=modality_rows,
        modality_noise_hu=MODALITY_NOISE_HU,
        contention=rows,
        contention_pair=args.contention_pair,
        step=step,
        goals=goals(all_results, step),
        sanity=sanity(all_results),
        skipped=skipped,
    )
    md_path, json_path = bench.write(output, doc, markdown(doc))
    figure(doc, output / f"{bench.stem()}.png")
    print("\n" + "## Summary (mean over pairs)\n\n" + summary_table(doc["summary"]) + "\n")
    for g in doc["goals"]:
        print(f"goal [{g['pair']}] {g['goal']}: {g['value']} -> {'met' if g['met'] else 'NOT met'}")
    for problem in doc["sanity"]:
        print(f"SANITY: {problem}")
    log(f"total {doc['total_s'] / 60:.1f} min; load {doc['loadavg_start']} -> {doc['loadavg_end']}; wrote {md_path} and {json_path.name}")
    return 1 if H.any_failed(all_results) else 0


if __name__ == "__main__":
    sys.exit(main())
