"""`register`: files in, refined registration and a report out.

The working grid is the fixed image's grid: the moving image (and its labels) are first resampled
onto it through physical space, then every field is a voxel field on that grid (engine
convention, :mod:`tttmedical.core.warp`).  Outputs are written by applying the final LPS-mm field
to the *original* moving image with SimpleITK, so what a user gets from ``displacement.nii.gz``
with ITK, SimpleITK or Slicer is exactly ``warped.nii.gz``.

Outputs (the whole set replaces ``outdir`` only on success, :meth:`tttmedical.core.run.RunContext.finish`):
``displacement.nii.gz``, ``warped.nii.gz``, ``jacobian.nii.gz``, ``warped_labels.nii.gz`` (with
labels), ``report.json`` and, on request, ``figure.png``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..core import metrics as M
from ..core.checks import physical_overlap
from ..core.device import device_description
from ..core.errors import InputError
from ..core.losses import LocalSimilarity
from ..core.options import COMMON
from ..core.progress import Progress
from ..core.run import RunContext
from ..core.volume import Volume, resample_to
from ..core.warp import field_volume, jacobian_determinant, warp
from . import regttr, ssmsr
from .initial import read_initial_field
from .modality import prepare
from .options import SETTINGS


@dataclasses.dataclass
class RegisterOptions:
    """User-facing options (declared in :mod:`tttmedical.registration.options`); ``None`` means "the
    method's default"."""

    method: str = "regttr"
    init: str | None = None          # None/"identity", a transform/field file, or "predictor"
    iterations: int | None = None    # Reg-TTR: iterations per level; SSMSR: steps per scale
    lr: float | None = None
    smoothness: float | None = None
    levels: int | None = None
    modality: str = "mri"
    device: str = "auto"
    seed: int = 0
    weights: str | None = None       # predictor weights (default: the bundled ones)
    weights_sha256: str | None = None
    figure: bool = False

    def validate(self) -> None:
        """One :class:`InputError` sentence for the first bad value (ranges and choices as declared)."""
        values = dataclasses.asdict(self)
        SETTINGS.validate({k: values[k] for k in SETTINGS.names()})
        COMMON.validate({k: values[k] for k in ("device", "seed")})


@dataclasses.dataclass
class Inputs:
    fixed: Volume
    moving: Volume
    fixed_labels: Volume | None = None
    moving_labels: Volume | None = None
    paths: dict = dataclasses.field(default_factory=dict)


def read_inputs(fixed: str | Path, moving: str | Path, fixed_labels=None, moving_labels=None) -> Inputs:
    """Read and validate the pair (and optional label maps, which must lie on their image's grid)."""
    fx = Volume.read(fixed, "fixed image")
    mv = Volume.read(moving, "moving image")
    if (fixed_labels is None) != (moving_labels is None):
        raise InputError("Labels were given for only one image; pass both --fixed-labels and --moving-labels, or neither.")
    fl = ml = None
    if fixed_labels is not None:
        fl = _read_labels(fixed_labels, "fixed label map", fx, "fixed image")
        ml = _read_labels(moving_labels, "moving label map", mv, "moving image")
        if not set(np.unique(fl.array)) & set(np.unique(ml.array)) - {0}:
            raise InputError("The fixed and moving label maps share no foreground label; pass label maps that use the same label numbers.")
    paths = {"fixed": str(fixed), "moving": str(moving)}
    if fixed_labels is not None:
        paths.update(fixed_labels=str(fixed_labels), moving_labels=str(moving_labels))
    return Inputs(fx, mv, fl, ml, paths)


def _read_labels(path, name: str, image: Volume, image_name: str) -> Volume:
    """A label map on ``image``'s grid with its values kept as they are (integer type wide enough).

    :meth:`Volume.read` has already refused a map that is all background (constant) or holds NaN."""
    labels = Volume.read(path, name)
    path = Path(path)
    if not labels.same_grid(image, tol=1e-3):
        raise InputError(
            f"The {name} '{path.name}' does not lie on the {image_name}'s grid (shape {labels.shape} vs {image.shape}, or spacing/origin/direction differ); resample it onto the {image_name}."
        )
    arr = np.asarray(labels.array)
    if arr.dtype.kind == "f":
        if not np.allclose(arr, np.round(arr)):
            raise InputError(f"The {name} '{path.name}' has non-integer values; pass a label map (integer labels, 0 = background).")
        arr = np.round(arr)
    low, high = int(arr.min()), int(arr.max())
    dtype = np.int32 if np.iinfo(np.int32).min <= low and high <= np.iinfo(np.int32).max else np.int64
    return labels.with_array(arr.astype(dtype))


def apply_field(moving: Volume, field_mm: Volume, interpolation: str = "linear") -> Volume:
    """Resample the original ``moving`` onto the field's (fixed) grid through the LPS-mm field."""
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field_mm.to_sitk(), sitk.sitkVectorFloat64))
    return resample_to(moving, field_mm.with_array(np.zeros(field_mm.shape, np.float32)), interpolation, 0.0, transform)


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None].to(device)


def _evaluate(f: torch.Tensor, m: torch.Tensor, u: torch.Tensor | None, inputs: Inputs, field_mm: Volume):
    with torch.no_grad():
        warped = warp(m, u) if u is not None else m
    wf = warped[0, 0].cpu().numpy()
    fa = f[0, 0].cpu().numpy()
    jac = jacobian_determinant(u) if u is not None else np.ones(fa.shape, np.float32)
    out = {"ncc": M.ncc_local(fa, wf), "ncc_global": M.ncc_global(fa, wf), "ssim": M.ssim(fa, wf, data_range=1.0),
           "mse": M.mse(fa, wf), **M.sdlogj(jac), "folding_percent": M.folding_percent(jac),
           "jacobian_min": float(jac.min()), "jacobian_max": float(jac.max())}
    if inputs.fixed_labels is not None:
        warped_labels = apply_field(inputs.moving_labels, field_mm, "nearest")
        out.update(M.label_metrics(inputs.fixed_labels.array, warped_labels.array, inputs.fixed.spacing))
    return out, jac


def _inside_fraction(field: np.ndarray) -> float:
    """Fraction of fixed-grid voxels that the voxel field ``(3, D, H, W)`` maps inside the grid."""
    inside = np.ones(field.shape[1:], bool)
    for axis, n in enumerate(field.shape[1:]):
        index = np.arange(n, dtype=np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        position = index + field[axis]
        inside &= (position >= -0.5) & (position <= n - 0.5)
    return float(inside.mean())


def predictor_start(f: torch.Tensor, m: torch.Tensor, u: torch.Tensor) -> dict:
    """Local NCC (windows 5 and 9 voxels, :class:`~tttmedical.core.losses.LocalSimilarity`) of ``m`` and of ``m``
    warped by the predicted field ``u`` against ``f``; ``start`` is ``"predictor"`` if the field raises it, else ``"identity"``:
    Reg-TTR from the predictor then starts from identity, with the from-identity settings."""
    similarity = LocalSimilarity(f, (5, 9), 5)
    with torch.no_grad():
        identity = float(similarity(m)["ncc"])
        predicted = float(similarity(warp(m, u))["ncc"])
    return {"ncc_identity": identity, "ncc_predictor": predicted, "start": "predictor" if predicted > identity else "identity"}


def _initial_transform(opts: RegisterOptions) -> str | None:
    init = None if opts.init in (None, "", "identity") else opts.init
    if opts.method == "predict" and init not in (None, "predictor"):
        raise InputError("--method predict uses the built-in predictor as its only transform; drop --init or use --method regttr.")
    return "predictor" if opts.method == "predict" else init


def _predictor_needed(opts: RegisterOptions, init: str | None) -> bool:
    return init == "predictor" or (opts.method == "ssmsr" and ssmsr.SSMSRConfig().pretrained)


def register(inputs: Inputs, outdir: str | Path, options: RegisterOptions | None = None,
             progress: Progress | None = None) -> dict:
    """Run the registration and write the outputs; returns the report dict.

    Everything that can be checked is checked before the optimisation starts (options, output
    folder, overlap, initial transform, predictor weights); nothing is written unless it succeeds.
    """
    opts = options or RegisterOptions()
    opts.validate()
    init = _initial_transform(opts)
    ctx = RunContext("register", outdir, progress, seed=opts.seed, device=opts.device,
                     stages={"prepare": 1, "init": 2, "refine": 12, "write": 1})
    fixed = inputs.fixed
    ctx.stage("prepare", 0.0, "Resampling the moving image onto the fixed grid")
    init_field = read_initial_field(init, fixed) if init not in (None, "predictor") else None
    if init_field is None:
        physical_overlap(fixed, inputs.moving, "fixed image", "moving image",
                         "give an initial transform (--init) that aligns them, or check the images' origins")
    moving_on_fixed = inputs.moving if inputs.moving.same_grid(fixed) else resample_to(inputs.moving, fixed, "linear")
    f_np = prepare(fixed.array, opts.modality)
    m_np = prepare(moving_on_fixed.array, opts.modality)
    predictor = None
    if _predictor_needed(opts, init):
        from .predictor import Predictor

        predictor = Predictor.load(opts.weights, opts.weights_sha256, ctx.device)
    if init_field is not None and _inside_fraction(init_field) < 0.01:
        raise InputError("The initial transform maps the fixed image's grid outside the moving image; check that "
                         "--init is the transform from the fixed to the moving image (ITK resampling direction).")
    ctx.log(f"Device: {device_description(ctx.device)}")

    start = {}  # Reg-TTR from the predictor: which start was taken and why (predictor_start)

    def run(dev: torch.device):
        f, m = _tensor(f_np, dev), _tensor(m_np, dev)
        u0 = torch.from_numpy(init_field)[None].to(dev) if init_field is not None else None
        with ctx.timer("init"):
            if init == "predictor":
                ctx.stage("init", 0.0, "Predicting the initial field")
                predictor.device = dev
                u0 = predictor.predict(f, m)
                if opts.method == "regttr":
                    start.update(predictor_start(f, m, u0))
                    if start["start"] == "identity":
                        ctx.log(f"The predicted field lowers the local NCC ({start['ncc_predictor']:.4f} vs "
                                f"{start['ncc_identity']:.4f} at identity): Reg-TTR starts from identity")
                        u0 = None
        ctx.stage("init", 1.0, "Initial field ready")
        result = cfg = None
        overrides = {k: v for k, v in {"iterations": opts.iterations, "lr": opts.lr,
                                       "smoothness": opts.smoothness, "levels": opts.levels}.items() if v is not None}
        with ctx.timer("refine"):
            if opts.method == "predict":  # the prediction is the result; "initial" is identity
                field, curve, u0 = u0, [], None
            elif opts.method == "regttr":
                if u0 is None or init == "predictor":
                    # from the predictor: the whole coarse-to-fine schedule with the predicted field as the
                    # initial field of the coarsest level, which may reshape it (issue 9: mean Dice over the
                    # 7 benchmark pairs 0.867 -> 0.915 (run at 5cbfaf1) against 10 full-resolution steps on a composed
                    # increment, which kept the predictor's structured errors; 0.915 from identity)
                    cfg = regttr.RegTTRConfig(**overrides)
                else:  # a peer's field: the paper's short full-resolution refinement
                    cfg = regttr.RegTTRConfig.refinement(**overrides)
                result = regttr.refine(f, m, u0, cfg, ctx.stage_callback("refine"))
                field, curve = result.field, result.loss_curve
                if result.increment_kept < 1.0:
                    ctx.log(f"The initial transform folds; {result.increment_kept:.0%} of the refinement was kept "
                            "so that the result folds no more than it does")
            else:
                if "iterations" in overrides:
                    overrides["steps"] = overrides.pop("iterations")
                cfg = ssmsr.SSMSRConfig(**overrides)
                result = ssmsr.register(f, m, u0, cfg, ctx.stage_callback("refine"), predictor=predictor)
                field, curve = result.field, result.loss_curve
        return f, m, u0, field, curve, cfg, result

    f, m, u0, field, curve, cfg, result = ctx.on_device(run)
    if not torch.isfinite(field).all():
        raise RuntimeError("The registration produced a displacement field with NaN values; nothing was written. Try a smaller --lr.")
    ctx.stage("write", 0.0, "Evaluating and writing results")
    field_mm = field_volume(field, fixed)
    init_mm = field_volume(u0, fixed) if u0 is not None else field_volume(torch.zeros_like(field), fixed)
    initial, _ = _evaluate(f, m, u0, inputs, init_mm)
    final, jac = _evaluate(f, m, field, inputs, field_mm)
    metrics = dict(final)
    metrics.update({f"initial_{k}": v for k, v in initial.items()})
    report = ctx.report(
        method=opts.method,
        initial_transform="identity" if opts.method == "predict" else (init or "identity"),
        inputs=inputs.paths,
        grid={"shape_kji": list(fixed.shape), "spacing_mm": list(fixed.spacing)},
        parameters={**dataclasses.asdict(opts), **({"config": dataclasses.asdict(cfg)} if cfg is not None else {})},
        weights=predictor.describe() if predictor is not None else None,
        **({"predictor_start": start} if start else {}),
        **({"levels": result.levels} if isinstance(result, regttr.RegTTRResult) else {}),
        **({"increment_kept": result.increment_kept} if isinstance(result, regttr.RegTTRResult) and cfg.compose_init else {}),
        metrics=metrics,
        loss_curve=curve,
    )
    report["timings"] = {k: report["timings"].get(k, 0.0) for k in ("init_s", "refine_s", "total_s")}
    if isinstance(result, ssmsr.SSMSRResult):
        report["scale_losses"] = result.scale_losses

    def write(tmp: Path, final_dir: Path) -> dict[str, str]:
        names = {"displacement": "displacement.nii.gz", "warped": "warped.nii.gz", "jacobian": "jacobian.nii.gz"}
        field_mm.write(tmp / names["displacement"])
        apply_field(inputs.moving, field_mm, "linear").write(tmp / names["warped"])
        fixed.with_array(jac).write(tmp / names["jacobian"])
        if inputs.moving_labels is not None:
            names["warped_labels"] = "warped_labels.nii.gz"
            apply_field(inputs.moving_labels, field_mm, "nearest").write(tmp / names["warped_labels"])
        if opts.figure:
            from .figure import registration_figure

            names["figure"] = "figure.png"
            registration_figure(tmp / names["figure"], f_np, m_np, field, u0, jac, report)
        return names

    ctx.stage("write", 0.5, "Writing results")
    ctx.finish(write, report)
    return report
