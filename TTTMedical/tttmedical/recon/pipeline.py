"""`recon`: k-space (or an image volume to simulate from) in, reconstruction and a report out.

Flow: :func:`read_input` builds a :class:`.kspace.KSpace` (checked: shape, values, mask; simulated
from an image volume with :mod:`.simulate`, or a fully sampled file undersampled retrospectively
with :mod:`.masks`), then :func:`reconstruct` opens a :class:`~tttmedical.core.run.RunContext`,
loads the backbone (checked before any heavy work), estimates coil maps when none are given
(:mod:`.coils`), and runs the method on the device (CUDA out-of-memory falls back to the CPU).

Every network output is made data consistent at the end: ``argmin ||A x - y||^2 + w ||x - f||^2
+ l s ||W x||_1`` with the network output ``f`` as the prior (``W``: Haar details; ``l = 0``: 15
conjugate-gradient steps, else 30 FISTA steps) on all acquired samples and the coil maps, ``(w, l)``
picked per slice by self-validation among :data:`.problem.DC_CANDIDATES` and no step, whichever
predicts the held-out samples best (:meth:`.problem.SliceProblem.data_consistent`), or
``--dc-weight`` (CG only; 0: no step).  The choices are in the report (``data_consistency``).  ``zero`` is
``A^H y`` (coil-combined zero-filled image).  Outputs (written as a whole only on success):
``recon.nii.gz`` and ``zero_filled.nii.gz`` (magnitude, on the input image's grid or 1 mm for bare
k-space), ``reference.nii.gz`` when a reference exists, ``report.json`` and, on request,
``figure.png``.

Reference (fastMRI convention, the reconstruction of the fully sampled k-space): for a simulated
acquisition the RSS of the noise-free fully sampled simulated k-space (:mod:`.simulate`), on the
input image's grid; for a k-space file its ``reconstruction_rss`` when present, else the RSS of the
fully sampled k-space when the file is fully sampled; none otherwise.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..core.options import COMMON
from ..core.progress import Progress
from ..core.run import RunContext
from ..core.volume import Volume
from . import d2sa, tta
from .coils import estimate_maps
from .evaluation import slice_metrics
from .kspace import KSPACE_SUFFIXES, KSpace, bare_geometry, parse_slices, read_kspace_file
from .masks import acceleration_of, make_mask
from .options import METHOD_DEFAULTS, SETTINGS, SIMULATION, STAGE_DEFAULTS
from .physics import rss, ifft2c
from .problem import DC_CANDIDATES, DC_ITERATIONS, DC_SPARSE_ITERATIONS, make_problem
from .simulate import simulate_kspace

FULLY_SAMPLED = 0.99   # fraction of non-zero (ky, kx) above which k-space counts as fully sampled


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One reconstruction: a method and the D2SA stages on top of it (``ssdu+inr+sst``)."""

    method: str
    inr: bool = False
    sst: bool = False
    diffusion: bool = False

    @property
    def staged(self) -> bool:
        return self.inr or self.sst

    @property
    def label(self) -> str:
        return self.method + ("+inr" if self.inr else "") + ("+sst" if self.sst else "") + ("+diffusion" if self.diffusion else "")

    @property
    def file_name(self) -> str:
        return f"recon_{self.label.replace('+', '_')}.nii.gz"

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        parts = [p.strip().lower() for p in str(text).split("+")]
        from .options import METHODS

        if parts[0] not in METHODS or any(p not in ("inr", "sst", "diffusion") for p in parts[1:]):
            raise InputError(f"Unknown entry '{text}' in --compare; use METHOD[+inr][+sst][+diffusion] with METHOD one of "
                             f"{', '.join(METHODS)}.")
        return cls(parts[0], "inr" in parts[1:], "sst" in parts[1:], "diffusion" in parts[1:])

    def validate(self) -> None:
        if self.staged and self.method not in tta.ADAPT_METHODS:
            raise InputError(f"--inr/--sst adapt the backbone with a self-supervised loss, which --method {self.method} "
                             f"does not have; use --method {'|'.join(tta.ADAPT_METHODS)}.")
        if self.diffusion and not self.sst:
            raise InputError("--diffusion belongs to stage 2; add --sst or drop --diffusion.")


@dataclasses.dataclass
class ReconOptions:
    """User-facing options (declared in :mod:`tttmedical.recon.options`); ``None``: the method's default."""

    method: str = "ssdu"
    inr: bool = False
    sst: bool = False
    diffusion: bool = False
    iterations: int | None = None
    lr: float | None = None
    simulate: bool = False
    coils: int = 8
    noise: float = 0.005
    acceleration: float = 4.0
    mask: str = "equispaced"
    center_fraction: float = 0.08
    dc_weight: float | None = None
    coil_maps: str = "calibration"
    compare: str | None = None
    slices: str | None = None
    figure: bool = False
    device: str = "auto"
    seed: int = 0
    weights: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def from_values(cls, values: dict) -> "ReconOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def specs(self) -> list[MethodSpec]:
        """The reconstructions to run: the ``--compare`` entries, else the one method."""
        if self.compare:
            specs = [MethodSpec.parse(t) for t in self.compare.split(",") if t.strip()]
            if not specs or len(set(specs)) != len(specs):
                raise InputError(f"--compare '{self.compare}' needs distinct comma-separated entries, e.g. pretrained,ssdu+inr+sst.")
            return specs
        return [MethodSpec(self.method, self.inr, self.sst, self.diffusion)]

    @property
    def label(self) -> str:
        return ",".join(s.label for s in self.specs())

    def consistent(self, problem, image) -> tuple[torch.Tensor, dict]:
        """``image`` after the data-consistency step with ``dc_weight`` (None: prior and L1 weights
        self-validated; 0: none), and the weights used (``weight`` null: no step)."""
        if self.dc_weight is None:
            weight, sparsity = problem.dc_choice(image)
        else:
            weight, sparsity = (self.dc_weight or math.inf), 0.0
        return (problem.data_consistent(image, weight, sparsity),
                {"weight": None if math.isinf(weight) else weight, "sparsity": sparsity})

    def validate(self) -> None:
        """One :class:`InputError` sentence for the first bad value or combination."""
        values = dataclasses.asdict(self)
        SETTINGS.validate({k: values[k] for k in SETTINGS.names()})
        SIMULATION.validate({k: values[k] for k in SIMULATION.names()})
        COMMON.validate({k: values[k] for k in ("device", "seed")})
        for spec in self.specs():
            spec.validate()
        parse_slices(self.slices)

    def schedule(self, spec: MethodSpec, stage: str) -> tuple[int, float]:
        """(iterations, learning rate) of ``stage``: ``backbone``, ``inr`` or ``sst``."""
        its, lr = METHOD_DEFAULTS[spec.method] if stage == "backbone" else STAGE_DEFAULTS[stage]
        return self.iterations or its, self.lr or lr


# ====================================================================== inputs
def read_input(path: str | Path, options: ReconOptions) -> KSpace:
    """Read, check and (when asked) simulate or undersample the input; nothing heavy happens before this."""
    options.validate()
    path = Path(path)
    selection = parse_slices(options.slices)
    if options.simulate:
        volume = Volume.read(path, "image volume")
        if selection is not None:
            volume = _select_volume(volume, selection)
        images = np.abs(np.asarray(volume.array, np.float32))
        if min(images.shape[1:]) < 8:
            raise InputError(f"The image volume '{path.name}' has slices of {images.shape[1]} x {images.shape[2]} voxels; "
                             f"pass slices of at least 8 x 8.")
        mask = make_mask(options.mask, images.shape[1:], options.acceleration, options.center_fraction, options.seed)
        sim = simulate_kspace(images, options.coils, options.noise, options.seed)
        maps = np.broadcast_to(sim.maps, (len(images), *sim.maps.shape))
        return KSpace(sim.kspace * mask, mask, volume.with_array(np.zeros(volume.shape, np.float32)), sim.reference, maps,
                      {"input": str(path), "kind": "image volume", **sim.info, "mask": _mask_info(options, mask, "simulated")})
    if path.suffix.lower() not in KSPACE_SUFFIXES and not path.name.lower().endswith(KSPACE_SUFFIXES):
        if path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
            raise InputError(f"'{path.name}' is an image volume, not k-space; add --simulate to simulate an acquisition from it.")
    raw = read_kspace_file(path)
    data = raw.data
    full = bare_geometry(data.shape)
    kspace = KSpace(data, np.ones(data.shape[-2:], bool), full, raw.reference, None, {"input": str(path), "kind": "k-space file"})
    if selection is not None:
        kspace = kspace.select(selection)
    sampled = raw.mask if raw.mask is not None else np.any(kspace.data != 0, axis=(0, 1))
    if raw.mask is None and sampled.mean() > FULLY_SAMPLED:
        mask = make_mask(options.mask, data.shape[-2:], options.acceleration, options.center_fraction, options.seed)
        reference = kspace.reference
        if reference is None:
            reference = rss(ifft2c(torch.from_numpy(kspace.data))).numpy().astype(np.float32)
        kspace.source["mask"] = _mask_info(options, mask, "retrospective undersampling of fully sampled k-space")
        kspace.source["reference"] = "reconstruction_rss" if kspace.reference is not None else "RSS of the fully sampled k-space"
        return dataclasses.replace(kspace, data=kspace.data * mask, mask=mask, reference=reference)
    mask = np.asarray(sampled, bool)
    kspace.source["mask"] = {"origin": "given in the file" if raw.mask is not None else "non-zero samples of the k-space",
                             "acceleration": acceleration_of(mask)}
    kspace.source["notes"] = raw.notes
    if kspace.reference is not None:
        kspace.source["reference"] = "reconstruction_rss"
    return dataclasses.replace(kspace, data=kspace.data * mask, mask=mask)


def _select_volume(volume: Volume, selection: slice) -> Volume:
    index = list(range(volume.shape[0]))[selection]
    if not index:
        raise InputError(f"The slice range selects no slice of the {volume.shape[0]} in the input; "
                         f"pass --slices A:B within 0:{volume.shape[0]}.")
    step = index[1] - index[0] if len(index) > 1 else 1
    origin = np.asarray(volume.origin) + volume.direction @ (np.array([0.0, 0.0, index[0]]) * np.asarray(volume.spacing))
    spacing = (volume.spacing[0], volume.spacing[1], volume.spacing[2] * abs(step))
    return Volume(np.ascontiguousarray(volume.array[index]), spacing, tuple(origin), volume.direction.copy())


def _mask_info(options: ReconOptions, mask: np.ndarray, origin: str) -> dict:
    return {"origin": origin, "type": options.mask, "acceleration_asked": options.acceleration,
            "acceleration": acceleration_of(mask), "center_fraction": options.center_fraction, "seed": options.seed}


# ====================================================================== reconstruction
def reconstruct(data: KSpace, outdir: str | Path, options: ReconOptions | None = None,
                progress: Progress | None = None) -> dict:
    """Reconstruct ``data`` with ``options`` and write the outputs into ``outdir``; returns the report."""
    opts = options or ReconOptions()
    opts.validate()
    ctx = RunContext("recon", outdir, progress, seed=opts.seed, device=opts.device,
                     stages={"prepare": 1, "baseline": 1, "adapt": 12, "write": 1})
    from .unet import load_backbone

    net, weights = load_backbone(opts.weights, opts.weights_sha256, "cpu")
    for p in net.parameters():
        p.requires_grad_(False)
    slices = data.data.shape[0]
    ctx.log(f"{slices} slice(s) of {data.data.shape[2]} x {data.data.shape[3]}, {data.data.shape[1]} coils, "
            f"acceleration {acceleration_of(data.mask):.2f}; method {opts.label}")

    def run(dev: torch.device) -> dict:
        model = net.to(dev)
        ctx.stage("prepare", 0.0, "Coil maps")
        with ctx.timer("prepare"):
            y = torch.from_numpy(np.ascontiguousarray(data.data)).to(dev)
            if data.maps is not None:
                maps = torch.from_numpy(np.ascontiguousarray(data.maps)).to(dev)
            else:
                maps = estimate_maps(y, data.mask, opts.coil_maps)
            problems = [make_problem(y[s], maps[s], data.mask, opts.seed + 101 * s) for s in range(slices)]
        ctx.stage("baseline", 0.0, "Zero-filled and pretrained reconstructions")
        with ctx.timer("baseline"), torch.no_grad():
            zero = [p.acquired_zero_filled for p in problems]
            pretrained, pretrained_dc = zip(*[opts.consistent(p, model(z[None])[0]) for p, z in zip(problems, zero)])
        runs = []
        for n, spec in enumerate(specs):
            t0 = time.perf_counter()
            with ctx.timer("adapt"):
                part = (lambda f, text, **kw: ctx.stage("adapt", (n + f) / len(specs), f"[{spec.label}] {text}", **kw))
                if spec.method in ("zero", "pretrained"):
                    images, validation, per_slice = (zero if spec.method == "zero" else pretrained), None, []
                    steps = [] if spec.method == "zero" else list(pretrained_dc)
                else:
                    images, validation, per_slice = _adapt(model, problems, spec, opts, part)
                    images, steps = (list(v) for v in zip(*[opts.consistent(p, x) for p, x in zip(problems, images)]))
            runs.append({"spec": spec, "images": images, "validation": validation, "per_slice_s": per_slice,
                         "adapt_s": time.perf_counter() - t0, "data_consistency": steps})
        return {"zero": zero, "pretrained": pretrained, "runs": runs}

    specs = opts.specs()
    out = ctx.on_device(run)
    magnitude = lambda images: np.stack([x.abs().float().cpu().numpy() for x in images]).astype(np.float32)
    zero, pretrained = magnitude(out["zero"]), magnitude(out["pretrained"])
    recons = [magnitude(r["images"]) for r in out["runs"]]
    ctx.stage("write", 0.0, "Evaluating and writing results")
    ref = data.reference
    evaluate = (lambda image: slice_metrics(ref, image)) if ref is not None else (lambda image: None)
    runs = [{"label": r["spec"].label, "file": r["spec"].file_name if opts.compare else "recon.nii.gz",
             "metrics": evaluate(image), "adapt_s": r["adapt_s"], "per_slice_s": r["per_slice_s"],
             "seconds_per_slice": float(np.mean(r["per_slice_s"])) if r["per_slice_s"] else 0.0,
             "self_validation": r["validation"], "data_consistency": r["data_consistency"]}
            for r, image in zip(out["runs"], recons)]
    first = runs[0]
    fields = {"metrics": first["metrics"], "baseline_zero": evaluate(zero), "baseline_pretrained": evaluate(pretrained)}
    if opts.compare:
        fields["compare"] = runs
    spec = specs[0]
    report = ctx.report(method=spec.method, method_label=opts.label, stages={"inr": spec.inr, "sst": spec.sst,
                        "diffusion": spec.diffusion}, input=data.source, simulated=bool(data.source.get("simulated")),
                        kspace={"shape_slices_coils_ky_kx": list(data.data.shape), "acceleration": acceleration_of(data.mask),
                                "coil_maps": "given by the simulation" if data.maps is not None else opts.coil_maps},
                        parameters=dataclasses.asdict(opts), weights=weights, **fields,
                        self_validation=first["self_validation"], data_consistency={
                            "rule": "every network output f: argmin ||A x - y||^2 + w ||x - f||^2 + l s ||Haar details of x||_1 "
                                    f"on all acquired samples ({DC_ITERATIONS} CG steps when l = 0, else {DC_SPARSE_ITERATIONS} FISTA "
                                    "steps; s = the zero-filled image's maximum); "
                                    + (f"w = {opts.dc_weight}, l = 0" if opts.dc_weight is not None else
                                       f"(w, l) per slice by self-validation among {[list(c) for c in DC_CANDIDATES]} and no step, "
                                       "whichever predicts the held-out samples best"),
                            "per_slice": first["data_consistency"]})
    report["timings"]["adapt_s"] = report["timings"].get("adapt_s", 0.0)
    report["timings"]["per_slice_s"] = first["per_slice_s"]
    report["timings"]["seconds_per_slice"] = first["seconds_per_slice"]

    def write(tmp: Path, final_dir: Path) -> dict[str, str]:
        names = {"recon": "recon.nii.gz", "zero_filled": "zero_filled.nii.gz"}
        data.geometry.with_array(recons[0]).write(tmp / names["recon"])
        if opts.compare:
            for run_info, image in zip(runs, recons):
                names[f"recon_{run_info['label']}"] = run_info["file"]
                data.geometry.with_array(image).write(tmp / run_info["file"])
        data.geometry.with_array(zero).write(tmp / names["zero_filled"])
        if data.reference is not None:
            names["reference"] = "reference.nii.gz"
            data.geometry.with_array(np.asarray(data.reference, np.float32)).write(tmp / names["reference"])
        if opts.figure:
            from .figure import recon_figure

            names["figure"] = "figure.png"
            recon_figure(tmp / names["figure"], data.reference, zero, pretrained, recons[-1], report, runs[-1]["label"])
        return names

    ctx.finish(write, report)
    return report


def _adapt(net, problems, spec: MethodSpec, opts: ReconOptions, stage):
    """The adapted network outputs (before data consistency), self-validation record and seconds of
    adaptation per slice; ``stage(fraction, text, loss=...)`` reports progress."""
    n = len(problems)
    if not spec.staged:
        its, lr = opts.schedule(spec, "backbone")
        images, curves, per_slice = [], [], []
        for s, p in enumerate(problems):
            t0 = time.perf_counter()
            cb = lambda i, m, v, s=s: stage((s + (i + 1) / (m + 1)) / n, f"slice {s + 1}/{n}: step {i}/{m}", loss=v)
            with torch.enable_grad():
                r = tta.adapt_backbone(net, p, spec.method, its, lr, opts.seed + s, cb)
            images.append(r.image)
            curves.append(_curve_record(r.curve, r.best_step, r.stopped))
            per_slice.append(time.perf_counter() - t0)
        return images, {"backbone": curves, "iterations": its, "lr": lr}, per_slice
    validation = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        caches = d2sa.build_caches(net, problems, spec.method, opts.seed)
    images = [c.inference.start for c in caches]
    share = 0.5 if spec.inr and spec.sst else 1.0
    if spec.inr:
        its, lr = opts.schedule(spec, "inr")
        cb = lambda i, m, v: stage(share * (i + 1) / (m + 1), f"stage 1 (INR): step {i}/{m}", loss=v)
        with torch.enable_grad():
            r1 = d2sa.adapt_inr(net, caches, its, lr, opts.seed, callback=cb)
        images = r1.images
        validation["inr"] = {**_curve_record(r1.curve, r1.best_step, r1.stopped), "iterations": its, "lr": lr}
        if spec.sst:  # stage 2 adapts on the modulated features (their outputs are its anchors)
            caches = d2sa.modulate(caches, r1.modules)
    stage1_s = time.perf_counter() - t0
    per_slice = [stage1_s / n] * n
    if spec.sst:
        its, lr = opts.schedule(spec, "sst")
        records = []
        for s, c in enumerate(caches):
            t1 = time.perf_counter()
            start = 1.0 - share
            cb = lambda i, m, v, s=s: stage(start + share * (s + (i + 1) / (m + 1)) / n,
                                            f"stage 2 (SST) slice {s + 1}/{n}: step {i}/{m}", loss=v)
            with torch.enable_grad():
                r2 = d2sa.adapt_sst(net, c, its, lr, spec.diffusion, callback=cb, seed=opts.seed + s)
            images[s] = r2.images[0]
            records.append(_curve_record(r2.curve, r2.best_step, r2.stopped))
            per_slice[s] += time.perf_counter() - t1
        validation["sst"] = {"slices": records, "iterations": its, "lr": lr}
    return images, validation, per_slice


def _curve_record(curve: list, best_step: int, stopped: str) -> dict:
    return {"curve": [{k: round(float(v), 6) if k != "step" else int(v) for k, v in c.items()} for c in curve],
            "best_step": best_step, "stopped": stopped,
            "initial_val": curve[0]["val"] if curve else None, "best_val": curve[best_step]["val"] if curve else None}
