"""D2SA: two-stage test-time adaptation of a frozen backbone (few parameters, cached activations).

Stage 1 (:func:`adapt_inr`, ``--inr``, patient level): an implicit neural representation -- random
Fourier features of the pixel coordinates (fixed Gaussian matrix, ``sigma`` cycles per field of
view) concatenated with a learnable latent code per slice, then a SIREN (sine activations,
``omega0 = 30`` first layer) -- evaluated on a grid ``coarse`` times coarser than the image and
upsampled bilinearly.  It outputs per-pixel FiLM parameters ``(gamma, beta)`` for the backbone's
last decoder features (``f <- gamma * f + beta``) and a two-channel INR image.  The FiLM output
layer starts at zero with ``gamma = 1 + dgamma``: at initialisation the backbone's output is
unchanged.  Loss, summed over the slices: the method's self-supervised loss of the modulated output
+ ``ANCHOR_WEIGHT`` x relative L1 distance of the modulated output to the backbone's own output for
the same input + ``INR_WEIGHT`` x relative-L1 k-space consistency of the INR image (training
samples) + ``LATENT_WEIGHT`` x mean squared latent.

Why the anchor (not in the reference): every k-space loss and the held-out check see only acquired
samples, and only where the coil maps are non-zero (the figures in this docstring were measured with
the earlier L2-only data-consistency step, see :mod:`.problem`).  A modulation of the features changes the whole
image, so without an anchor it also rewrites what no measurement constrains -- the unacquired
k-space lines and the background outside estimated maps -- while the self-validation error still
falls.  Measured on the ``recon-brain`` k-space sample (T2 phantom, 4x, maps from the calibration
region, SSDU loss, after data consistency): 24.2 dB without the anchor, 31.3 dB with weight 1,
pretrained 31.2 dB; on simulated MNI brain slices at 4x: 23.1 without, 24.2 with, pretrained 22.0.
Weights 0.3 and 3, and an anchor on the unacquired k-space and the background only, were worse on
at least one of the two.  The anchor makes the stage a trust region around the pretrained output.

Stage 2 (:func:`adapt_sst`, ``--sst``, per slice): a residual branch on the (modulated) last decoder
features: five difference convolutions -- central (sum_i w_i (x_i - x_c)), angular (sum_i w_i (x_i -
x_{i+1}) around the ring), horizontal and vertical (left-right / top-bottom differences) and vanilla
-- each followed by LeakyReLU, concatenated, projected by a zero-initialised 1x1 convolution and
multiplied by a Perona-Malik edge-stopping function ``g = 1 / (1 + (|grad u| / kappa)^2)`` of the
current output magnitude ``u`` (normalised to its maximum) with a learnable ``kappa``.  Optionally
(``diffusion``) one explicit Perona-Malik step ``u <- u + dt div(g(|grad u|) grad u)`` (``dt = 0.2``)
is applied to the output channels with the same ``g``.

Stage 2 has the same blind spot and gets the same kind of anchor (``SST_ANCHOR_WEIGHT`` x relative L1
of the output to the stage's own starting output for the same input).  Measured (quick reconstruction
benchmark, SSDU + both stages): contrast shift 36.44 -> 36.89 dB (SSIM 0.904 -> 0.972), 4x 35.50 ->
36.31 (SSIM 0.849 -> 0.955), anatomy 33.81 -> 33.82, real images 39.79 -> 39.73; with the anchor
stage 2 no longer harms but adds at most 0.1 dB to stage 1.

Both stages run through :func:`tttmedical.core.optimize.optimize`, are early-stopped on the
self-validation error and return the **best** state.  The frozen backbone's features are computed
once per slice and per input draw (:class:`.unet.Cached`): stochastic losses (``ssdu``, ``n2n``)
cycle through ``DRAWS`` fixed input draws per slice.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..core.adam import Adam
from ..core.optimize import LoopSettings, StepOutput, optimize
from .problem import SliceProblem, relative_l1
from .tta import MIN_DELTA, PATIENCE, draw, selection_loss
from .unet import Cached, ReconUNet

__all__ = ["INR", "SST", "SliceCaches", "build_caches", "adapt_inr", "adapt_sst", "StageResult"]

DRAWS = 4
ANCHOR_WEIGHT = 1.0
SST_ANCHOR_WEIGHT = 1.0
INR_WEIGHT = 0.1
LATENT_WEIGHT = 1e-3


@contextlib.contextmanager
def _seeded(seed: int):
    """Torch's global generator starts from ``seed`` inside and is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


# ====================================================================== stage 1: INR + FiLM
class _Sine(nn.Module):
    def __init__(self, cin: int, cout: int, omega: float, first: bool):
        super().__init__()
        self.linear, self.omega = nn.Linear(cin, cout), omega
        bound = 1.0 / cin if first else math.sqrt(6.0 / cin) / omega
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x):
        return torch.sin(self.omega * self.linear(x))


class INR(nn.Module):
    """Fourier features + SIREN + per-slice latents -> FiLM ``(gamma, beta)`` and an INR image."""

    def __init__(self, slices: int, chans: int, features: int = 32, sigma: float = 6.0, latent: int = 16,
                 hidden: int = 64, layers: int = 3, seed: int = 0):
        super().__init__()
        with _seeded(seed):   # the same initial state whatever ran before (compare mode, tests)
            self.register_buffer("B", torch.randn(2, features) * sigma)
            self.latents = nn.Parameter(torch.zeros(slices, latent))
            dims = [2 * features + latent] + [hidden] * layers
            self.siren = nn.Sequential(*[_Sine(a, b, 30.0 if i == 0 else 1.0, i == 0) for i, (a, b) in enumerate(zip(dims, dims[1:]))])
            self.film = nn.Linear(hidden, 2 * chans)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            self.image = nn.Linear(hidden, 2)
        self.chans = chans

    def forward(self, index: int, size: tuple[int, int], coarse: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(gamma, beta)`` ``[1, chans, H, W]`` and the INR image ``[1, 2, H, W]`` for slice ``index``."""
        h, w = max(size[0] // coarse, 4), max(size[1] // coarse, 4)
        device = self.B.device
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device), indexing="ij")
        proj = torch.stack([yy, xx], dim=-1).reshape(-1, 2) @ self.B * math.pi
        z = self.latents[index].expand(proj.shape[0], -1)
        hidden = self.siren(torch.cat([torch.sin(proj), torch.cos(proj), z], dim=-1))
        film = self.film(hidden).T.reshape(1, 2 * self.chans, h, w)
        img = self.image(hidden).T.reshape(1, 2, h, w)
        film = F.interpolate(film, size=size, mode="bilinear", align_corners=False)
        img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
        return 1.0 + film[:, :self.chans], film[:, self.chans:], img


# ====================================================================== stage 2: difference convolutions
def _ring_next(kernel: torch.Tensor) -> torch.Tensor:
    """Each ring position's weight moved to the next position clockwise (centre unchanged)."""
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    out = torch.zeros_like(kernel)
    for (a, b), (c, d) in zip(ring, ring[1:] + ring[:1]):
        out[..., c, d] = kernel[..., a, b]
    return out


class SST(nn.Module):
    """Five difference-convolution branches gated by a learnable Perona-Malik edge-stopping function."""

    KINDS = ("central", "angular", "horizontal", "vertical", "vanilla")

    def __init__(self, chans: int, diffusion: bool = False, kappa: float = 0.1, seed: int = 0):
        super().__init__()
        with _seeded(seed):
            self.weights = nn.ParameterDict({k: nn.Parameter(torch.empty(chans, chans, 3, 3)) for k in ("central", "angular", "vanilla")})
            self.columns = nn.ParameterDict({k: nn.Parameter(torch.empty(chans, chans, 3)) for k in ("horizontal", "vertical")})
            for p in list(self.weights.values()) + list(self.columns.values()):
                nn.init.kaiming_uniform_(p.view(chans, -1), a=0.2)
            self.project = nn.Conv2d(5 * chans, chans, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.log_kappa = nn.Parameter(torch.tensor(math.log(kappa)))
        self.diffusion = diffusion

    def kernels(self) -> torch.Tensor:
        c = self.weights["central"]
        central = c.clone()
        central[..., 1, 1] = c[..., 1, 1] - c.sum(dim=(-2, -1))
        a = self.weights["angular"].clone()
        a[..., 1, 1] = 0
        angular = a - _ring_next(a)
        h, v = self.columns["horizontal"], self.columns["vertical"]
        zero = torch.zeros_like(h)
        horizontal = torch.stack([h, zero, -h], dim=-1)          # [out, in, rows, cols]
        vertical = torch.stack([v, zero, -v], dim=-2)
        return torch.cat([central, angular, horizontal, vertical, self.weights["vanilla"]], dim=0)

    def edge_stop(self, u: torch.Tensor) -> torch.Tensor:
        """``g(|grad u|)`` for ``u`` ``[1, 1, H, W]`` in [0, 1]."""
        gy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
        gx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
        grad = torch.sqrt(gx ** 2 + gy ** 2 + 1e-12)
        return 1.0 / (1.0 + (grad / self.log_kappa.exp()) ** 2)

    def forward(self, features: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        branches = F.leaky_relu(F.conv2d(features, self.kernels(), padding=1), 0.2)
        return features + self.project(branches) * self.edge_stop(magnitude)

    def diffuse(self, x: torch.Tensor, dt: float = 0.2) -> torch.Tensor:
        """One Perona-Malik step on the channels of ``x`` ``[1, 2, H, W]`` (conductance from their magnitude)."""
        mag = torch.sqrt((x ** 2).sum(1, keepdim=True) + 1e-12)
        mag = mag / mag.amax().clamp_min(1e-12)
        gy_u = F.pad(mag[..., 1:, :] - mag[..., :-1, :], (0, 0, 0, 1))
        gx_u = F.pad(mag[..., :, 1:] - mag[..., :, :-1], (0, 1, 0, 0))
        g = 1.0 / (1.0 + (gx_u ** 2 + gy_u ** 2) / self.log_kappa.exp() ** 2)
        dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1)) * g
        dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0)) * g
        div = (dy - F.pad(dy[..., :-1, :], (0, 0, 1, 0))) + (dx - F.pad(dx[..., :, :-1], (1, 0, 0, 0)))
        return x + dt * div


# ====================================================================== caches
@dataclasses.dataclass
class SliceCaches:
    """Frozen-backbone features of one slice: for inference (training samples) and per input draw."""

    problem: SliceProblem
    inference: Cached
    draws: list                    # [(Cached, loss(image) -> tensor)]
    same_input: bool               # dip/fine: the draw's input is the inference input


@torch.no_grad()
def build_caches(net: ReconUNet, problems: list[SliceProblem], method: str, seed: int) -> list[SliceCaches]:
    out = []
    for s, problem in enumerate(problems):
        rng = torch.Generator().manual_seed(int(seed) + 7919 * s)
        inference = Cached(net, problem.zero_filled(problem.train)[None])
        draws = []
        for _ in range(DRAWS):
            d = draw(method, problem, rng)
            cache = inference if d.same_input_as_inference else Cached(net, problem.zero_filled(d.input_mask)[None])
            draws.append((cache, d.loss))
            if d.same_input_as_inference:
                break
        out.append(SliceCaches(problem, inference, draws, draws[0][0] is inference))
    return out


@dataclasses.dataclass
class StageResult:
    images: list                   # complex [H, W] per slice: best validation state
    modules: object                # the best module state(s): INR (stage 1) or a list of SST (stage 2)
    curve: list
    best_step: int
    stopped: str


# ====================================================================== stage 1 loop
def _film(cache: Cached, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The cached last-decoder features of one slice under the stage-1 modulation ``(gamma, beta)``."""
    return cache.features * gamma + beta


def _relative_change(image: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``||image - anchor||_1 / ||anchor||_1`` (complex images)."""
    return (image - anchor).abs().sum() / anchor.abs().sum().clamp_min(1e-12)


def adapt_inr(net: ReconUNet, caches: list[SliceCaches], iterations: int, lr: float, seed: int, coarse: int = 4,
              callback: Callable[[int, int, float], None] | None = None) -> StageResult:
    """Stage 1 over all slices of the patient (module docstring)."""
    device = caches[0].problem.y.device
    inr = INR(len(caches), net.config.chans, seed=seed).to(device)
    opt = Adam(inr.parameters(), lr=lr)
    counter = {"step": 0}

    def step() -> StepOutput:
        t = counter["step"]
        counter["step"] += 1
        train_total, val_total, outputs = 0.0, 0.0, []
        for s, c in enumerate(caches):
            cache, loss_fn = c.draws[t % len(c.draws)]
            gamma, beta, inr_img = inr(s, tuple(cache.features.shape[-2:]), coarse)  # once per slice and step
            out = cache.output(_film(cache, gamma, beta))[0]
            inr_image = net.denormalise(inr_img, cache.norm)[0]
            consistency = relative_l1(c.problem.kspace(inr_image), c.problem.y, c.problem.train)
            train_total = (train_total + loss_fn(out) + ANCHOR_WEIGHT * _relative_change(out, cache.start)
                           + INR_WEIGHT * consistency)
            if c.same_input:
                inference = out.detach()
            else:
                with torch.no_grad():
                    inference = c.inference.output(_film(c.inference, gamma, beta))[0]
            val_total = val_total + c.problem.val_error(inference)
            outputs.append(inference)
        n = len(caches)
        train_loss = train_total / n + LATENT_WEIGHT * (inr.latents ** 2).mean()
        val = val_total / n
        payload = (outputs, inr)
        return StepOutput(selection_loss(train_loss, val), {"train": float(train_loss.detach()), "val": float(val)}, payload)

    def snapshot(payload):
        outputs, module = payload
        return [o.detach().clone() for o in outputs], copy.deepcopy(module)

    result = optimize(step, opt, LoopSettings(iterations, patience=PATIENCE, min_delta=MIN_DELTA), snapshot=snapshot,
                      callback=callback)
    images, best_inr = result.best
    return StageResult(images, best_inr, result.curve, result.best_step, result.stopped)


@torch.no_grad()
def modulate(caches: list[SliceCaches], inr: INR | None, coarse: int = 4) -> list[SliceCaches]:
    """Caches whose features carry the (frozen) stage-1 modulation."""
    if inr is None:
        return caches
    out = []
    for s, c in enumerate(caches):
        gamma, beta, _ = inr(s, tuple(c.inference.features.shape[-2:]), coarse)  # the same for every draw

        def mod(cache: Cached) -> Cached:
            new = copy.copy(cache)
            new.features = _film(cache, gamma, beta)
            new.refresh_start()
            return new
        inference = mod(c.inference)
        draws = [(inference if cache is c.inference else mod(cache), fn) for cache, fn in c.draws]
        out.append(SliceCaches(c.problem, inference, draws, c.same_input))
    return out


# ====================================================================== stage 2 loop
def adapt_sst(net: ReconUNet, c: SliceCaches, iterations: int, lr: float, diffusion: bool = False,
              callback: Callable[[int, int, float], None] | None = None, seed: int = 0) -> StageResult:
    """Stage 2 on one slice (module docstring); ``c`` may carry stage-1 modulated features."""
    device = c.problem.y.device
    sst = SST(net.config.chans, diffusion, seed=seed).to(device)
    opt = Adam(sst.parameters(), lr=lr)
    with torch.no_grad():
        magnitude = c.inference.start.abs()[None, None]
        magnitude = magnitude / magnitude.amax().clamp_min(1e-12)
        magnitude = F.pad(magnitude, c.inference.norm.pad)
    counter = {"step": 0}

    def output(cache: Cached) -> torch.Tensor:
        y = net.head(sst(cache.features, magnitude), cache.norm.x)
        if sst.diffusion:
            y = sst.diffuse(y)
        return net.denormalise(y, cache.norm)[0]

    def step() -> StepOutput:
        t = counter["step"]
        counter["step"] += 1
        cache, loss_fn = c.draws[t % len(c.draws)]
        out = output(cache)
        train_loss = loss_fn(out) + SST_ANCHOR_WEIGHT * _relative_change(out, cache.start)
        if c.same_input:
            inference = out.detach()
        else:
            with torch.no_grad():
                inference = output(c.inference)
        val = c.problem.val_error(inference)
        return StepOutput(selection_loss(train_loss, val), {"train": float(train_loss.detach()), "val": float(val)}, (inference, sst))

    result = optimize(step, opt, LoopSettings(iterations, patience=PATIENCE, min_delta=MIN_DELTA),
                      snapshot=lambda payload: (payload[0].detach().clone(), copy.deepcopy(payload[1])), callback=callback)
    image, best_sst = result.best
    return StageResult([image], best_sst, result.curve, result.best_step, result.stopped)
