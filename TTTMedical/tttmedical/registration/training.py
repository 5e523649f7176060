"""Training the registration predictor: training data, the unsupervised pair loss, :func:`train_predictor`.

Training is unsupervised: loss ``(1 - NCC) + w_ssim (1 - SSIM) + lambda * smoothness(u)`` on
random pairs -- every frame pair of the ``phantom-4d`` sample and the MNI152 template -- each image
warped by a fresh random smooth deformation and intensity-jittered (:mod:`.augment`).  The steps
run in :func:`tttmedical.core.training.train_loop` (Adam, cosine decay, gradient clip, non-finite
steps skipped); weights and model card are written by :func:`tttmedical.core.checkpoints.save_checkpoint`.
Tensors follow :mod:`.predictor`: images ``(1, 1, d, h, w)`` in [0, 1] on the working grid,
displacements in working-grid voxels.
"""
from __future__ import annotations

import dataclasses
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core.checkpoints import save_checkpoint
from ..core.device import device_description, run_with_fallback, select_device
from ..core.errors import InputError
from ..core.losses import LocalSimilarity, smoothness
from ..core.progress import Progress
from ..core.report import seed_everything, versions
from ..core.training import train_loop
from ..core.warp import warp
from .augment import jitter_intensity, random_field, structured_field
from .model_card import model_card_markdown
from .networks import UNet3D, count_parameters
from .predictor import DEFAULT_NAME, FORMAT, normalised_tensor, to_working, working_shape


@dataclasses.dataclass
class ImageSet:
    """Training images at the working grid, ``(1, 1, d, h, w)`` in [0, 1]; pairs are drawn within a set."""

    name: str
    images: list
    weight: float = 1.0
    fixed_warp: tuple = (0.5, 3.0)    # (probability, max voxels) of deforming the fixed image
    moving_warp: tuple = (0.8, 6.0)   # the same for the moving image
    jitter: float = 1.0               # strength of the intensity jitter (0: none)
    structured: tuple = (0.0, 0.0)    # probabilities of swirls / expansion-atrophy bumps (augment.structured_field)


@dataclasses.dataclass
class TrainConfig:
    """Loss weights, windows and optimiser settings of :func:`train` (see :func:`pair_loss`)."""

    steps: int = 2000
    lr: float = 1e-3
    lr_final: float = 1e-4            # cosine decay from lr to lr_final
    smoothness: float = 1.0
    ssim_weight: float = 1.0
    ncc_windows: tuple = (5, 9)
    ssim_window: int = 5
    grad_clip: float = 5.0
    seed: int = 0
    time_limit_s: float | None = None  # stop early (recorded) when the wall time is exceeded


def pair_loss(model: UNet3D, fixed: torch.Tensor, moving: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """Unsupervised loss of ``model`` on one pair (both ``(1, 1, d, h, w)``); returns (loss, parts)."""
    u = model(torch.cat([fixed, moving], 1))
    sims = LocalSimilarity(fixed, cfg.ncc_windows, cfg.ssim_window)(warp(moving, u))
    smooth = smoothness(u)
    loss = (1 - sims["ncc"]) + cfg.ssim_weight * (1 - sims["ssim"]) + cfg.smoothness * smooth
    return loss, {"ncc": float(sims["ncc"].detach()), "ssim": float(sims["ssim"].detach()), "smooth": float(smooth.detach())}


def sample_pair(sets: list[ImageSet], generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A random training pair: two images of one set, each maybe deformed, both intensity-jittered."""
    weights = torch.tensor([s.weight for s in sets], dtype=torch.float64)
    s = sets[int(torch.multinomial(weights, 1, generator=generator))]
    i = int(torch.randint(len(s.images), (), generator=generator))
    j = int(torch.randint(len(s.images), (), generator=generator))
    fixed, moving = s.images[i], s.images[j]
    shape = tuple(fixed.shape[2:])
    fields = {}
    for role, (p, amp) in (("fixed", s.fixed_warp), ("moving", s.moving_warp)):
        if float(torch.rand((), generator=generator)) < p:
            fields[role] = random_field(shape, amp * float(torch.rand((), generator=generator)), generator)
    if any(s.structured):
        role = "moving" if float(torch.rand((), generator=generator)) < 0.7 else "fixed"
        w = structured_field(moving if role == "moving" else fixed, generator, *s.structured)
        if w is not None:
            fields[role] = fields[role] + w if role in fields else w
    if "fixed" in fields:
        fixed = warp(fixed, fields["fixed"])
    if "moving" in fields:
        moving = warp(moving, fields["moving"])
    if s.jitter > 0:
        fixed = jitter_intensity(fixed, generator, s.jitter)
        moving = jitter_intensity(moving, generator, s.jitter)
    return fixed.to(device), moving.to(device), s.name


def train(model: UNet3D, sets: list[ImageSet], cfg: TrainConfig, device: torch.device,
          callback: Callable[[int, float], None] | None = None) -> dict:
    """Train ``model`` in place on random pairs from ``sets`` with :func:`tttmedical.core.training.train_loop`.

    bf16 autocast and ``channels_last_3d`` come from the model (``UNet3D(fast=True)``); losses are float32.
    Pair generation uses a CPU ``torch.Generator`` seeded with ``cfg.seed``.  Returns the loop's result.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    model.to(device)

    def batch_loss(step: int) -> tuple[torch.Tensor, dict]:
        fixed, moving, name = sample_pair(sets, generator, device)
        loss, parts = pair_loss(model, fixed, moving, cfg)
        return loss, {"set": name, **parts}

    return train_loop(model, batch_loss, cfg.steps, lr=cfg.lr, lr_final=cfg.lr_final, grad_clip=cfg.grad_clip,
                      time_limit_s=cfg.time_limit_s, callback=callback)


def load_training_sets(data_dir: str | Path, working_size: int, seed: int = 0, small: bool = False,
                       log: Callable[[str], object] = lambda s: None) -> tuple[list[ImageSet], dict]:
    """Write (once) and read the training samples; return the image sets at the working grid and a description.

    ``phantom-4d`` (all frames; pairs within the sequence) and the MNI152 template (the fixed image
    of ``mni-smooth``; pairs are two random deformations of it).  The samples are generated with
    seed ``seed + 101`` so that they differ from the evaluation samples (seed 0).
    """
    from ..core.sequence import read_sequence
    from ..core.volume import Volume
    from ..data.samples import write_sample

    data_dir = Path(data_dir)
    data_seed = seed + 101
    phantom_dir, mni_dir = data_dir / "phantom-4d", data_dir / "mni-smooth"
    if not (phantom_dir / "sequence.seq.nrrd").is_file():
        write_sample("phantom-4d", phantom_dir, seed=data_seed, log=log, small=small)
    if not (mni_dir / "fixed.nii.gz").is_file():
        write_sample("mni-smooth", mni_dir, seed=data_seed, log=log, small=small)
    seq = read_sequence(phantom_dir / "sequence.seq.nrrd")
    frames = [normalised_tensor(frame.array) for frame in seq]
    template = Volume.read(mni_dir / "fixed.nii.gz", "MNI template")
    mni = normalised_tensor(template.array)
    pshape = working_shape(frames[0].shape[2:], working_size)
    mshape = working_shape(mni.shape[2:], working_size)
    phantom_set = ImageSet("phantom-4d", [to_working(f, pshape) for f in frames], 1.0,
                           fixed_warp=(0.4, 3.0), moving_warp=(0.8, 5.0), structured=(0.3, 0.3))
    mni_set = ImageSet("mni152", [to_working(mni, mshape)], 1.0, fixed_warp=(0.6, 3.0), moving_warp=(1.0, 6.0),
                       structured=(0.45, 0.45))
    description = {
        "phantom-4d": {"sample_seed": data_seed, "small": small, "frames": len(frames), "shape": list(frames[0].shape[2:]),
                       "working_shape": list(pshape), "pairs": "all ordered frame pairs (incl. identical), each image "
                       "deformed at random: fixed p=0.4 up to 3 voxels, moving p=0.8 up to 5 voxels"},
        "mni152": {"sample_seed": data_seed, "small": small, "shape": list(mni.shape[2:]), "working_shape": list(mshape),
                   "pairs": "two fresh random deformations of the template per step: fixed p=0.6 up to 3 voxels, "
                            "moving p=1.0 up to 6 voxels (working-grid voxels)"},
        "deformations": "random_field: Gaussian-smoothed or coarse-grid (3-6 points) trilinear noise + small affine "
                        "(<= 3 deg, 3 %, 1.5 voxels); plus, on the moving (p=0.7) or fixed image, structured_field: "
                        "1-2 Gaussian-decaying swirls (15-45 deg) with p=0.3 (phantom) / 0.45 (MNI) and 2-4 "
                        "expansion/atrophy bumps (strength +-[0.15, 0.5]) with the same p, centred in the foreground, "
                        "added to the random field; the held-out mni-intersubject family is never used",
        "intensity": "per image: gamma exp(U(-0.22, 0.22)), smooth bias exp(<= 0.15), Rician-like noise sigma <= 0.03",
        "normalisation": "0.5-99.5 percentile to [0, 1] (tttmedical.core.volume.normalize_percentile)",
    }
    return [phantom_set, mni_set], description


def train_predictor(out_dir: str | Path, steps: int = 4500, seed: int = 0, device: str = "auto",
                    progress: Progress | None = None, *, working_size: int = 48, features=(16, 32, 32, 32),
                    final_features=(16, 16), lr: float = 1e-3, smoothness_weight: float = 2.5,
                    ssim_weight: float = 1.0, threads: int | None = None, time_limit_s: float | None = None,
                    data_dir: str | Path | None = None, small: bool = False, name: str = DEFAULT_NAME,
                    command: str | None = None) -> dict:
    """Train the registration predictor on the sample data; write ``<name>.pt``, ``<name>.json`` and ``<name>.md``.

    Returns the report (also the model card JSON): ``weights``, ``sha256``, architecture, working
    size, training data, steps, time, final loss and the loss curve (every 10th step).
    ``threads`` sets ``torch.set_num_threads`` for the run; ``data_dir`` caches the training
    samples (a temporary folder otherwise); ``small`` uses the reduced samples (tests).
    """
    progress = progress or Progress("none")
    out_dir = Path(out_dir).expanduser()
    if steps < 1:
        raise InputError(f"The number of training steps must be at least 1 (got {steps}).")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"The training output '{out_dir}' is a file; choose a folder path.")
    t_start = time.perf_counter()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        seed_everything(seed)
        dev = select_device(device)
        progress.update(0.0, "preparing training data")
        with tempfile.TemporaryDirectory(prefix="tttmedical-train-") as tmp:
            t_data = time.perf_counter()
            sets, data = load_training_sets(data_dir or tmp, working_size, seed, small, progress.log)
            data_s = time.perf_counter() - t_data
        cfg = TrainConfig(steps=int(steps), lr=lr, lr_final=lr / 10, smoothness=smoothness_weight,
                          ssim_weight=ssim_weight, seed=seed, time_limit_s=time_limit_s)

        def run(d: torch.device) -> dict:
            seed_everything(seed)
            model = UNet3D(2, 3, features, final_features)
            every = max(1, cfg.steps // 200)

            def callback(step: int, loss: float) -> None:
                if step % every == 0 or step == cfg.steps - 1:
                    progress.update((step + 1) / cfg.steps, f"training step {step + 1}/{cfg.steps}", loss=loss)

            result = train(model, sets, cfg, d, callback)
            result["model"] = model
            return result

        result, used = run_with_fallback(run, dev, progress.log)
        model = result.pop("model")
        weights = out_dir / f"{name}.pt"
        total_s = time.perf_counter() - t_start
        curve = result.pop("curve")
        fields = {
            "architecture": {"class": "tttmedical.registration.networks.UNet3D", **model.config(),
                             "parameters": count_parameters(model),
                             "output": "displacement (1, 3, D, H, W) in working-grid voxels, channel c along array axis c"},
            "working_size": working_size,
            "working_grid": "each axis scaled by one factor so the longest has working_size voxels; trilinear "
                            "align_corners=True resampling; field brought back with core.warp.resize_field",
            "training": {
                "command": command or _command_line(),
                "data": data,
                "loss": f"(1 - NCC{list(cfg.ncc_windows)}) + {ssim_weight} * (1 - SSIM{cfg.ssim_window}) + "
                        f"{smoothness_weight} * smoothness_l2(u)",
                "optimizer": f"Adam, lr {cfg.lr} -> {cfg.lr_final} cosine, gradient-norm clip {cfg.grad_clip}, batch 1",
                "precision": "bf16 autocast + channels_last_3d (network), float32 losses",
                "seed": seed,
                "steps_requested": cfg.steps,
                "steps": result["steps_done"],
                "stopped_early": result["stopped_early"],
                "skipped_steps": result["skipped_steps"],
                "final_loss": result["final_loss"],
                "initial_loss": float(np.mean([c["loss"] for c in curve[:20]])) if curve else float("nan"),
                "data_s": round(data_s, 2),
                "train_s": round(result["train_s"], 2),
                "total_s": round(total_s, 2),
                "device": device_description(used),
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "versions": versions(),
                "loss_curve_every_10": [c for c in curve if c["step"] % 10 == 0],
            },
        }
        card = save_checkpoint(weights, FORMAT, model, model.config(), fields, model_card_markdown,
                               working_size=int(working_size))
        report = {"weights": str(weights), **card}
        progress.update(1.0, "training done", loss=result["final_loss"])
        return report
    finally:
        torch.set_num_threads(old_threads)


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
