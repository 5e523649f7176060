"""Built-in pretrained registration predictor: a VoxelMorph-style U-Net run at a working grid.

Conventions (those of :mod:`tttmedical.core.warp`):

* ``fixed`` and ``moving`` are ``(1, 1, D, H, W)`` float tensors on the same grid with intensities
  in [0, 1] (normalise first, e.g. :func:`tttmedical.core.volume.normalize`).
* :meth:`Predictor.predict` returns the displacement ``u`` ``(1, 3, D, H, W)`` in **voxels of the
  input grid**, channel ``c`` along array axis ``c``, for pull warping ``warp(moving, u)``.
* The network runs on a *working grid*: each axis is scaled by one factor so that the longest axis
  has ``working_size`` voxels (grids already that small are used as they are).  Images go there
  with trilinear ``F.interpolate(align_corners=True)``; the predicted field comes back with
  :func:`tttmedical.core.warp.resize_field`, which also scales the vectors.

Weights: a ``.pt`` file holding ``{"format", "config", "working_size", "state_dict"}`` loaded with
``torch.load(weights_only=True)`` only after its sha256 matches the expected one (the model card
``<name>.json`` beside the file, or a checksum the user passes).  The bundled weights live in
``TTTMedical/Resources/Models/register_unet.pt`` (:func:`default_weights_path`).

Training (:func:`train_predictor`) is unsupervised: loss ``(1 - NCC) + w_ssim (1 - SSIM) +
lambda * smoothness(u)`` on random pairs -- every frame pair of the ``phantom-4d`` sample and the
MNI152 template -- each image warped by a fresh random smooth deformation (Gaussian-smoothed noise
or coarse-grid trilinear noise, plus a small affine) and intensity-jittered (gamma, smooth bias,
Rician-like noise).  No flips: they would need the vectors flipped too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.device import device_description, run_with_fallback, select_device
from ..core.errors import InputError
from ..core.losses import LocalSimilarity, box_mean, smoothness
from ..core.progress import Progress
from ..core.report import seed_everything, to_jsonable, versions
from ..core.warp import identity_grid, jacobian_determinant, resize_field, warp
from .networks import UNet3D, count_parameters

FORMAT = "tttmedical.register_unet/1"
DEFAULT_NAME = "register_unet"


# ====================================================================== weights files
def models_dir() -> Path:
    """``TTTMedical/Resources/Models`` (bundled weights and model cards), located from this package."""
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


def default_weights_path() -> Path:
    return models_dir() / f"{DEFAULT_NAME}.pt"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(weights: str | Path) -> Path:
    """The model card JSON beside a weights file: ``name.pt`` -> ``name.json``."""
    return Path(weights).with_suffix(".json")


def expected_sha256(weights: str | Path) -> str | None:
    """The sha256 recorded in the model card JSON beside ``weights`` (None when there is none)."""
    card = card_path(weights)
    if not card.is_file():
        return None
    try:
        value = json.loads(card.read_text()).get("sha256")
    except (OSError, ValueError):
        return None
    return str(value).lower() if value else None


def load_weights(path: str | Path, sha256: str | None = None) -> dict:
    """Verify ``path`` against ``sha256`` (or its model card's) and load it with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"The predictor weights file '{path}' does not exist; train one with "
                         f"'tttmedical train register -o DIR' or pass an existing file with --weights.")
    expected = (sha256 or expected_sha256(path) or "").strip().lower()
    if not expected:
        raise InputError(f"No checksum is known for the predictor weights '{path}'; pass its expected sha256 "
                         f"(--weights-sha256) or keep its model card '{card_path(path).name}' beside it.")
    actual = sha256_of(path)
    if actual != expected:
        raise InputError(f"The predictor weights '{path}' have sha256 {actual[:12]}... but {expected[:12]}... was "
                         f"expected; the file is corrupt or not the one meant, so restore it or pass its correct checksum.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise InputError(f"The predictor weights '{path}' could not be read as safe torch weights "
                         f"({str(exc).splitlines()[0][:120]}); use a file written by 'tttmedical train register'.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "state_dict" not in data:
        raise InputError(f"The file '{path}' is not a TTTMedical registration predictor ({FORMAT}); "
                         f"use a file written by 'tttmedical train register'.")
    return data


def save_weights(model: UNet3D, working_size: int, path: str | Path) -> str:
    """Write ``model`` with its config and working size (float32, contiguous); return the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "config": model.config(), "working_size": int(working_size), "state_dict": state}, tmp)
    tmp.replace(path)
    return sha256_of(path)


# ====================================================================== the predictor
def working_shape(shape: tuple[int, ...], working_size: int) -> tuple[int, int, int]:
    """Scale all axes by one factor so the longest has ``working_size`` voxels (never upsample)."""
    shape = tuple(int(n) for n in shape)
    longest = max(shape)
    if longest <= working_size:
        return shape
    s = working_size / longest
    return tuple(max(4, int(round(n * s))) for n in shape)


def to_working(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling with ``align_corners=True`` (same extent, end voxels coincide)."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=True)


class Predictor:
    """A trained :class:`UNet3D` that maps a (fixed, moving) pair to a voxel displacement field."""

    def __init__(self, model: UNet3D, working_size: int, device: str | torch.device = "auto",
                 weights_path: Path | None = None, sha256: str | None = None):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.model = model.to(self.device).eval()
        self.working_size = int(working_size)
        self.weights_path = weights_path
        self.sha256 = sha256

    @classmethod
    def load(cls, weights: str | Path | None = None, sha256: str | None = None,
             device: str | torch.device = "auto") -> "Predictor":
        """Load ``weights`` (default: the bundled file) after a sha256 check."""
        path = Path(weights).expanduser() if weights else default_weights_path()
        data = load_weights(path, sha256)
        try:
            model = UNet3D(**data["config"])
            model.load_state_dict(data["state_dict"])
        except (TypeError, RuntimeError, KeyError) as exc:
            raise InputError(f"The predictor weights '{path}' do not match the network they describe "
                             f"({str(exc).splitlines()[0][:120]}); retrain them with 'tttmedical train register'.") from None
        return cls(model, int(data.get("working_size", 64)), device, path, sha256_of(path))

    def describe(self) -> dict:
        return {"weights": str(self.weights_path) if self.weights_path else None, "sha256": self.sha256,
                "working_size": self.working_size, "architecture": self.model.config(),
                "parameters": count_parameters(self.model)}

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """Displacement ``(1, 3, D, H, W)`` in input-grid voxels (float32, on ``fixed``'s device)."""
        fixed, moving = _as_input(fixed, "fixed"), _as_input(moving, "moving")
        if fixed.shape != moving.shape:
            raise InputError(f"The fixed {tuple(fixed.shape[2:])} and moving {tuple(moving.shape[2:])} images must be on "
                             f"the same grid for the predictor; resample the moving image onto the fixed grid first.")
        out_device = fixed.device
        shape = tuple(fixed.shape[2:])
        wshape = working_shape(shape, self.working_size)

        def run(dev: torch.device) -> torch.Tensor:
            self.model.to(dev)
            pair = torch.cat([to_working(fixed.to(dev).float(), wshape), to_working(moving.to(dev).float(), wshape)], 1)
            return resize_field(self.model(pair), shape)

        field, used = run_with_fallback(run, self.device, lambda s: None)
        self.device = used
        return field.to(out_device)


def _as_input(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"The {name} image must be a tensor or array, not {type(x).__name__}.")
    if x.dim() == 3:
        x = x[None, None]
    if x.dim() != 5 or x.shape[:2] != (1, 1):
        raise InputError(f"The {name} image must be (1, 1, D, H, W) or (D, H, W), got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise InputError(f"The {name} image contains NaN or infinite values; clean or normalise it first.")
    return x


# ====================================================================== random deformations
def random_field(shape: tuple[int, int, int], max_disp: float, generator: torch.Generator,
                 family: str | None = None, affine: bool = True) -> torch.Tensor:
    """A random smooth displacement ``(1, 3, D, H, W)`` in voxels with maximum magnitude ``max_disp``.

    ``family``: ``"gaussian"`` (white noise smoothed by repeated box filters) or ``"coarse"``
    (noise on a 3-6 point control grid, trilinearly upsampled then lightly smoothed); None picks
    one at random.  ``affine`` adds a small rotation/scaling (<= 3 deg, 3 %) and shift (<= 1.5 voxels).
    """
    def uniform(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=generator))

    if family is None:
        family = "gaussian" if float(torch.rand((), generator=generator)) < 0.5 else "coarse"
    if family == "gaussian":
        width = max(3, int(round(min(shape) * uniform(0.15, 0.3))) | 1)
        u = torch.randn((1, 3) + tuple(shape), generator=generator)
        for _ in range(3):
            u = box_mean(u, width)
    elif family == "coarse":
        n = int(uniform(3, 7))
        u = torch.randn((1, 3, n, n, n), generator=generator)
        u = F.interpolate(u, size=tuple(shape), mode="trilinear", align_corners=True)
        width = max(3, int(round(min(shape) / n / 2)) | 1)
        u = box_mean(u, width)
    else:
        raise ValueError(f"family must be 'gaussian' or 'coarse', not {family!r}")
    peak = u.norm(dim=1).max().clamp_min(1e-6)
    u = u * (max_disp / peak)
    if affine:
        ang = [math.radians(uniform(-3.0, 3.0)) for _ in range(3)]
        rot = _rotation(*ang) @ torch.diag(torch.tensor([uniform(0.97, 1.03) for _ in range(3)], dtype=torch.float64))
        shift = torch.tensor([uniform(-1.5, 1.5) for _ in range(3)], dtype=torch.float64)
        axes = [torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0 for n in shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), 0).reshape(3, -1)
        lin = ((rot - torch.eye(3, dtype=torch.float64)) @ grid + shift[:, None]).reshape((1, 3) + tuple(shape))
        u = u + lin.float()
    return u


def _rotation(a: float, b: float, c: float) -> torch.Tensor:
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float64)
    ry = torch.tensor([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]], dtype=torch.float64)
    rz = torch.tensor([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def jitter_intensity(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random gamma (0.8-1.25), smooth multiplicative bias (up to exp(+-0.15)) and Rician-like noise (<= 3 %), clipped to [0, 1]."""
    def uniform(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=generator))

    shape = tuple(x.shape[2:])
    gamma = math.exp(uniform(-0.22, 0.22) * strength)
    y = x.clamp(0.0, 1.0) ** gamma
    bias = F.interpolate(torch.randn((1, 1, 3, 3, 3), generator=generator), size=shape, mode="trilinear", align_corners=True)
    bias = bias / bias.abs().max().clamp_min(1e-6)
    y = y * torch.exp(uniform(0.0, 0.15) * strength * bias)
    sigma = uniform(0.0, 0.03) * strength
    if sigma > 0:
        n1 = torch.randn(x.shape, generator=generator) * sigma
        n2 = torch.randn(x.shape, generator=generator) * sigma
        y = torch.sqrt((y + n1) ** 2 + n2 ** 2)
    return y.clamp(0.0, 1.0)


# ====================================================================== training
@dataclasses.dataclass
class ImageSet:
    """Training images at the working grid, ``(1, 1, d, h, w)`` in [0, 1]; pairs are drawn within a set."""

    name: str
    images: list
    weight: float = 1.0
    fixed_warp: tuple = (0.5, 3.0)    # (probability, max voxels) of deforming the fixed image
    moving_warp: tuple = (0.8, 6.0)   # the same for the moving image
    jitter: float = 1.0               # strength of the intensity jitter (0: none)


@dataclasses.dataclass
class TrainConfig:
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
    for role, (p, amp) in (("fixed", s.fixed_warp), ("moving", s.moving_warp)):
        if float(torch.rand((), generator=generator)) < p:
            mag = amp * float(torch.rand((), generator=generator))
            u = random_field(shape, mag, generator)
            if role == "fixed":
                fixed = warp(fixed, u)
            else:
                moving = warp(moving, u)
    if s.jitter > 0:
        fixed = jitter_intensity(fixed, generator, s.jitter)
        moving = jitter_intensity(moving, generator, s.jitter)
    return fixed.to(device), moving.to(device), s.name


def train(model: UNet3D, sets: list[ImageSet], cfg: TrainConfig, device: torch.device,
          callback: Callable[[int, float], None] | None = None) -> dict:
    """Train ``model`` in place with Adam on random pairs from ``sets``; returns the loss curve and timings.

    bf16 autocast and ``channels_last_3d`` come from the model (``UNet3D(fast=True)``); losses are float32.
    Pair generation uses a CPU ``torch.Generator`` seeded with ``cfg.seed``.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    curve, window, t0 = [], [], time.perf_counter()
    stopped_early = False
    step, skipped = 0, 0
    for step in range(cfg.steps):
        lr = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * step / max(cfg.steps, 1)))
        for group in opt.param_groups:
            group["lr"] = lr
        fixed, moving, name = sample_pair(sets, generator, device)
        loss, parts = pair_loss(model, fixed, moving, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"Training diverged at step {step} (loss {value}); lower the learning rate.")
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if torch.isfinite(norm):
            opt.step()
        else:  # a non-finite gradient would poison Adam's moments: skip the step, count it
            skipped += 1
        window.append(value)
        curve.append({"step": step, "set": name, "loss": round(value, 5), **{k: round(v, 5) for k, v in parts.items()}})
        if callback is not None:
            callback(step, value)
        if cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s:
            stopped_early = True
            break
    model.eval()
    done = step + 1 if cfg.steps else 0
    tail = [c["loss"] for c in curve[-max(1, min(100, len(curve) // 10)):]]
    return {"steps_done": done, "skipped_steps": skipped, "stopped_early": stopped_early, "train_s": time.perf_counter() - t0,
            "final_loss": float(np.mean(tail)) if tail else float("nan"), "curve": curve}


def _normalised_tensor(array: np.ndarray) -> torch.Tensor:
    from ..core.volume import normalize_percentile

    return torch.from_numpy(normalize_percentile(array))[None, None]


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
    frames = [_normalised_tensor(frame.array) for frame in seq]
    template = Volume.read(mni_dir / "fixed.nii.gz", "MNI template")
    mni = _normalised_tensor(template.array)
    pshape = working_shape(frames[0].shape[2:], working_size)
    mshape = working_shape(mni.shape[2:], working_size)
    phantom_set = ImageSet("phantom-4d", [to_working(f, pshape) for f in frames], 1.0,
                           fixed_warp=(0.4, 3.0), moving_warp=(0.8, 5.0))
    mni_set = ImageSet("mni152", [to_working(mni, mshape)], 1.0, fixed_warp=(0.6, 3.0), moving_warp=(1.0, 6.0))
    description = {
        "phantom-4d": {"sample_seed": data_seed, "small": small, "frames": len(frames), "shape": list(frames[0].shape[2:]),
                       "working_shape": list(pshape), "pairs": "all ordered frame pairs (incl. identical), each image "
                       "deformed at random: fixed p=0.4 up to 3 voxels, moving p=0.8 up to 5 voxels"},
        "mni152": {"sample_seed": data_seed, "small": small, "shape": list(mni.shape[2:]), "working_shape": list(mshape),
                   "pairs": "two fresh random deformations of the template per step: fixed p=0.6 up to 3 voxels, "
                            "moving p=1.0 up to 6 voxels (working-grid voxels)"},
        "deformations": "random_field: Gaussian-smoothed or coarse-grid (3-6 points) trilinear noise + small affine "
                        "(<= 3 deg, 3 %, 1.5 voxels)",
        "intensity": "per image: gamma exp(U(-0.22, 0.22)), smooth bias exp(<= 0.15), Rician-like noise sigma <= 0.03",
        "normalisation": "0.5-99.5 percentile to [0, 1] (tttmedical.core.volume.normalize_percentile)",
    }
    return [phantom_set, mni_set], description


def train_predictor(out_dir: str | Path, steps: int = 4500, seed: int = 0, device: str = "auto",
                    progress: Progress | None = None, *, working_size: int = 48, features=(16, 32, 32, 32),
                    final_features=(16, 16), lr: float = 1e-3, smoothness_weight: float = 1.5,
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
        out_dir.mkdir(parents=True, exist_ok=True)
        weights = out_dir / f"{name}.pt"
        digest = save_weights(model, working_size, weights)
        total_s = time.perf_counter() - t_start
        curve = result.pop("curve")
        report = {
            "name": name,
            "weights": str(weights),
            "file": weights.name,
            "sha256": digest,
            "size_bytes": weights.stat().st_size,
            "format": FORMAT,
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
        card = {k: v for k, v in report.items() if k != "weights"}  # the card travels with the file
        card_path(weights).write_text(json.dumps(to_jsonable(card), indent=2) + "\n")
        write_model_card_markdown(card, weights.with_suffix(".md"))
        progress.update(1.0, "training done", loss=result["final_loss"])
        return report
    finally:
        torch.set_num_threads(old_threads)


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


# ====================================================================== evaluation and model card
def evaluate_pair(predictor: Predictor, pair_dir: str | Path, repeats: int = 3) -> dict:
    """Dice/HD95 of a sample pair folder (``fixed``, ``moving``, ``*_labels`` NIfTI) for identity vs the predictor.

    Moving labels are pulled through the predicted field with nearest-neighbour sampling.
    ``predict_s`` is the best of ``repeats`` predictor calls (normalised tensors already in memory).
    """
    from ..core.metrics import folding_percent, label_metrics
    from ..core.volume import Volume

    pair_dir = Path(pair_dir)
    fixed = Volume.read(pair_dir / "fixed.nii.gz", "fixed")
    moving = Volume.read(pair_dir / "moving.nii.gz", "moving")
    fl = Volume.read(pair_dir / "fixed_labels.nii.gz", "fixed labels").array
    ml = Volume.read(pair_dir / "moving_labels.nii.gz", "moving labels").array
    f, m = _normalised_tensor(fixed.array), _normalised_tensor(moving.array)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        u = predictor.predict(f, m)
        times.append(time.perf_counter() - t0)
    warped = warp(torch.from_numpy(ml.astype(np.float32))[None, None], u, mode="nearest")[0, 0].numpy().astype(ml.dtype)
    before = label_metrics(fl, ml, fixed.spacing)
    after = label_metrics(fl, warped, fixed.spacing)
    jac = jacobian_determinant(u)
    return {"pair": pair_dir.name, "shape": list(fixed.shape),
            "working_shape": list(working_shape(fixed.shape, predictor.working_size)),
            "dice_identity": before["dice"], "dice_predictor": after["dice"],
            "hd95_mm_identity": before["hd95_mm"], "hd95_mm_predictor": after["hd95_mm"],
            "dice_per_label_identity": before["dice_per_label"], "dice_per_label_predictor": after["dice_per_label"],
            "folding_percent": folding_percent(jac), "jacobian_min": float(jac.min()),
            "max_displacement_voxels": float(u.norm(dim=1).max()), "predict_s": min(times),
            "threads": torch.get_num_threads()}


def add_evaluation_to_card(weights: str | Path, pair_dirs, note: str = "", device: str = "cpu") -> dict:
    """Evaluate ``weights`` on sample pair folders and record the results in its model card (JSON + Markdown)."""
    weights = Path(weights)
    predictor = Predictor.load(weights, None, device)
    pairs = [evaluate_pair(predictor, d) for d in pair_dirs]
    card = json.loads(card_path(weights).read_text())
    card["evaluation"] = {"note": note, "pairs": pairs, "versions": versions()}
    card_path(weights).write_text(json.dumps(to_jsonable(card), indent=2) + "\n")
    write_model_card_markdown(card, weights.with_suffix(".md"))
    return card


def write_model_card_markdown(card: dict, path: str | Path) -> Path:
    """Human-readable model card from the card dict (the JSON is the authoritative copy)."""
    t = card["training"]
    arch = card["architecture"]
    lines = [
        f"# {card['name']}: built-in registration predictor",
        "",
        "VoxelMorph-style 3D U-Net (`tttmedical.registration.networks.UNet3D`) that predicts a dense displacement",
        "field from a (fixed, moving) pair of intensity-normalised images. It gives the initial field that",
        "Reg-TTR refines (`tttmedical register --init predictor`) or a result on its own (`--method predict`).",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{card['file']}` ({card['size_bytes'] / 1e6:.2f} MB) |",
        f"| sha256 | `{card['sha256']}` |",
        f"| architecture | encoder {arch['features']}, final {arch['final_features']}, {arch['parameters']:,} parameters |",
        f"| working grid | longest axis {card['working_size']} voxels, aspect kept; field resized back with vector scaling |",
        f"| output | displacement in voxels of the input grid, channel c along array axis c, pull warping |",
        f"| training | {t['steps']} steps, seed {t['seed']}, {t['train_s'] / 60:.1f} min on {t['device']} |",
        f"| loss | {t['loss']} |",
        f"| loss first 20 steps -> last 10% | {t['initial_loss']:.4f} -> {t['final_loss']:.4f} |",
        f"| optimiser | {t['optimizer']}; {t['precision']} |",
        "",
        "## Training command",
        "",
        "```",
        t["command"],
        "```",
        "",
        "## Training data (all generated offline, no download)",
        "",
    ]
    for key, value in t["data"].items():
        lines.append(f"- **{key}**: {value if isinstance(value, str) else json.dumps(value)}")
    evaluation = card.get("evaluation")
    if evaluation:
        lines += ["", "## Evaluation on held-out sample pairs", "",
                  evaluation.get("note", ""), "",
                  "| pair | grid | working grid | Dice identity | Dice predictor | HD95 identity (mm) | HD95 predictor (mm) | folding % | predict time (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in evaluation["pairs"]:
            lines.append(f"| {r['pair']} | {'x'.join(map(str, r['shape']))} | {'x'.join(map(str, r['working_shape']))} | "
                         f"{r['dice_identity']:.3f} | {r['dice_predictor']:.3f} | {r['hd95_mm_identity']:.2f} | "
                         f"{r['hd95_mm_predictor']:.2f} | {r['folding_percent']:.3f} | {r['predict_s']:.2f} |")
    lines += ["", "## Limits", "",
              "- Trained on two anatomies only (a simulated thorax phantom and one brain template); treat other",
              "  anatomies and modalities as out of distribution and refine with Reg-TTR.",
              "- The MNI evaluation pairs share the template anatomy with the training data; their deformations,",
              "  bias fields, gamma and noise are unseen. The phantom evaluation pair has a larger breathing",
              "  amplitude (0.10) than the training sequence (0.06) and a different noise/coil realisation.",
              "- Intensities must be normalised to [0, 1] (0.5-99.5 percentiles) as in training.", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
