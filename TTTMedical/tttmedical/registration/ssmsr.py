"""SSMSR: multi-scale test-time training of a U-Net per scale, residual fields composed coarse to fine.

At each scale ``s`` (pyramid level, coarsest first) a U-Net sees the fixed image and the moving
image warped by the upsampled coarser field ``U(phi^{s/2})`` and predicts a residual ``r^s``;
the field of the scale is::

    phi^s(p) = U(phi^{s/2})(p) + r^s(p + U(phi^{s/2})(p))      (core.warp.compose(U(phi), r))

where ``U`` is x2 trilinear upsampling that also scales the vectors (core.warp.resize_field).
The network is trained on this one pair only (test-time training) with the Reg-TTR loss
(local NCC + ``ssim_weight`` (1 - SSIM) + lambda * smoothness of ``phi^s``), Adam, for at most
``steps`` steps per scale, stopping after ``patience`` steps without improvement and keeping the
best field.  Each scale's network starts from the previous scale's weights.  Fields are voxels of
the level's grid (engine convention).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable

import torch

from ..core.adam import Adam
from ..core.losses import LocalSimilarity, smoothness
from ..core.optimize import LoopSettings, StepOutput, optimize
from ..core.pyramid import auto_levels, build_pyramid, level_shape
from ..core.warp import compose, identity_grid, resize_field, warp
from .networks import UNet3D, autocast_context


@dataclasses.dataclass
class SSMSRConfig:
    steps: int = 150              # maximum training steps per scale
    lr: float = 5e-4              # Adam; 2e-3 before issue 9: its first steps doubled the pretrained network's loss,
                                  # which did not recover within ``patience``, so scales stopped after 10 steps at the
                                  # predictor's field (Dice mni-bspline / mni-smooth / phantom-pair / mni-swirl
                                  # 0.649 / 0.791 / 0.739 / 0.807 -> 0.838 / 0.819 / 0.855 / 0.918, 2-7x the time)
    smoothness: float = 1.0
    ssim_weight: float = 2.0
    ncc_windows: tuple = (5, 9)
    ssim_window: int = 5
    levels: int | None = None     # None: automatic pyramid depth
    finest_level: int | None = None  # last trained scale (0 = full resolution); None: the finest
                                     # level with at most `max_train_voxels` voxels, whose field is
                                     # then upsampled (network TTT above ~64^3 is slow on a CPU)
    max_train_voxels: int | None = None  # None: 64^3 on a CPU, 192^3 on CUDA
    patience: int = 10
    min_delta: float = 1e-4
    features: tuple = (16, 32, 32, 32)  # network widths when not pretrained (else the predictor's)
    pretrained: bool = True       # start the first scale from the bundled predictor's weights
                                  # (same architecture); False: from a near-identity random init


@dataclasses.dataclass
class SSMSRResult:
    field: torch.Tensor           # (1, 3, D, H, W) voxels at full resolution
    loss_curve: list[dict]
    scale_losses: list[dict]      # best loss and similarity per scale, coarse to fine
    scale_fields: list[torch.Tensor]  # best field of each scale on its own grid, coarse to fine
    steps: int
    network: torch.nn.Module
    weights: dict | None = None   # the starting weights (path, sha256) when pretrained


def register(fixed: torch.Tensor, moving: torch.Tensor, init: torch.Tensor | None = None,
             config: SSMSRConfig | None = None,
             callback: Callable[[float, str, float], None] | None = None,
             predictor=None) -> SSMSRResult:
    """Multi-scale TTT of a U-Net on one pair; ``fixed``/``moving`` (1, 1, D, H, W) in [0, 1].

    ``init`` (optional voxel field at full resolution) seeds the coarsest scale's ``phi``.
    ``predictor`` (a loaded :class:`~tttmedical.registration.predictor.Predictor`, e.g. the user's
    ``--weights``) gives the first scale's starting weights when ``config.pretrained``; default:
    the bundled predictor.  Its network is copied, never trained in place.
    """
    cfg = config or SSMSRConfig()
    device = fixed.device
    shape = tuple(fixed.shape[2:])
    levels = cfg.levels or auto_levels(shape)
    if cfg.finest_level is not None:
        finest = min(cfg.finest_level, levels - 1)
    else:
        budget = cfg.max_train_voxels or (192 ** 3 if device.type == "cuda" else 64 ** 3)
        finest = next((lv for lv in range(levels) if math.prod(level_shape(shape, lv)) <= budget), levels - 1)
    fixed_pyr = build_pyramid(fixed.float(), levels)
    moving_pyr = build_pyramid(moving.float(), levels)
    weights = None
    if cfg.pretrained:
        if predictor is None:
            from .predictor import Predictor

            predictor = Predictor.load(device=device)
        weights = predictor.describe()
        net = copy.deepcopy(predictor.model).to(device)
        net.train()
    else:
        net = UNet3D(in_channels=2, out_channels=3, features=cfg.features).to(device)
    net = net.to(memory_format=torch.channels_last_3d)
    phi = init.detach().float() if init is not None else None
    curve: list[dict] = []
    scales: list[dict] = []
    fields: list[torch.Tensor] = []
    n_scales = levels - finest
    for index, level in enumerate(reversed(range(finest, levels))):
        f, m = fixed_pyr[level], moving_pyr[level]
        lshape = tuple(f.shape[2:])
        up = resize_field(phi, lshape) if phi is not None else torch.zeros((1, 3) + lshape, device=device)
        base = identity_grid(lshape, device)
        m_up = warp(m, up, base=base)
        net_in = torch.cat([f, m_up], 1).contiguous(memory_format=torch.channels_last_3d)
        sim = LocalSimilarity(f, cfg.ncc_windows, cfg.ssim_window)
        stage = f"SSMSR scale {index + 1}/{n_scales} {'x'.join(map(str, lshape))}"

        def step() -> StepOutput:
            with autocast_context(device):
                r = net(net_in)
            field = compose(up, r.float().contiguous())
            sims = sim(warp(m, field, base=base))
            loss = (1 - sims["ncc"]) + cfg.ssim_weight * (1 - sims["ssim"]) + cfg.smoothness * smoothness(field)
            record = {"ncc": float(sims["ncc"].detach()), "ssim": float(sims["ssim"].detach())}
            return StepOutput(loss, record, (field, record))

        def snapshot(payload) -> dict:
            field, record = payload
            return {"field": field.detach().clone(), **record,
                    "state": {k: t.detach().clone() for k, t in net.state_dict().items()}}

        def report(i: int, total: int, value: float, index=index) -> None:
            if callback is not None:
                callback((index + (i + 1) / (total + 1)) / n_scales, stage, value)

        loop = optimize(step, Adam(net.parameters(), lr=cfg.lr),
                        LoopSettings(max_steps=cfg.steps, patience=cfg.patience, min_delta=cfg.min_delta),
                        snapshot=snapshot, callback=report)
        curve += [{"iteration": len(curve) + i, "level": index + 1, **entry} for i, entry in enumerate(loop.curve)]
        best = loop.best or {"field": up}
        if "state" in best:
            net.load_state_dict(best["state"])
        phi = best["field"]
        fields.append(phi)
        scales.append({"scale": index + 1, "shape": list(lshape), "loss": loop.best_loss,
                       "ncc": best.get("ncc"), "ssim": best.get("ssim"), "steps": loop.evaluations - 1,
                       "stopped": loop.stopped})
    if callback is not None:
        callback(1.0, "SSMSR done", scales[-1]["loss"])
    return SSMSRResult(field=resize_field(phi, shape), loss_curve=curve, scale_losses=scales, scale_fields=fields,
                       steps=sum(s["steps"] for s in scales), network=net, weights=weights)
