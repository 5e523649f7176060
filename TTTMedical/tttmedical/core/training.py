"""One training loop for the bundled models (registration predictor now; interpolation and recon next).

:func:`train_loop` runs ``steps`` Adam steps on ``model``: at step ``s`` the learning rate is
``lr_final + (lr - lr_final) * (1 + cos(pi * s / steps)) / 2`` (cosine decay; ``lr_final=None``
keeps ``lr``), then ``batch_loss(s)`` gives ``(loss, parts)``, the gradient is clipped to norm
``grad_clip`` and Adam steps.  The task owns data, sampling and seeding: ``batch_loss`` draws its
batch from its own generator.

* A step whose loss or gradient norm is not finite leaves the weights and Adam's moments untouched
  and is counted in ``skipped_steps``; ``max_skipped_in_a_row`` such steps in a row raise
  (training diverged).
* ``parts`` values that are strings (e.g. the data set a batch came from) and numbers (loss terms)
  are kept in the loss curve: one entry ``{"step", <labels>, "loss", <numbers>}`` per step.
* ``callback(step, loss)`` runs after every step; it may raise (e.g.
  :class:`~tttmedical.core.errors.CancelledError`) to cancel.  ``time_limit_s`` stops early
  (``stopped_early`` in the result).
* Precision: bf16 autocast and ``channels_last_3d`` belong to the model (e.g. ``UNet3D(fast=True)``)
  or to ``autocast_bf16=True``, which runs ``batch_loss`` under ``torch.autocast(bfloat16)``; keep
  losses in float32.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

__all__ = ["train_loop", "cosine_lr"]


def cosine_lr(step: int, steps: int, lr: float, lr_final: float | None) -> float:
    """Learning rate at ``step`` of ``steps``: cosine decay from ``lr`` to ``lr_final`` (None: constant)."""
    if lr_final is None:
        return lr
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * step / max(steps, 1)))


def train_loop(model: torch.nn.Module, batch_loss: Callable[[int], tuple[torch.Tensor, dict]], steps: int, *,
               lr: float = 1e-3, lr_final: float | None = None, grad_clip: float | None = 5.0,
               time_limit_s: float | None = None, callback: Callable[[int, float], None] | None = None,
               autocast_bf16: bool = False, max_skipped_in_a_row: int = 20) -> dict:
    """Train ``model`` in place (see module docstring); return the result dict.

    Result: ``steps_done``, ``skipped_steps``, ``stopped_early``, ``train_s``, ``final_loss`` (mean
    of the last 10 % of finite losses, at most 100) and ``curve`` (one entry per step).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device_type = params[0].device.type if params else "cpu"
    opt = torch.optim.Adam(params, lr=lr)
    curve, t0 = [], time.perf_counter()
    stopped_early = False
    step, skipped, in_a_row = 0, 0, 0
    model.train()
    try:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, lr_final)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast_bf16):
                loss, parts = batch_loss(step)
            opt.zero_grad(set_to_none=True)
            value = float(loss.detach())
            finite = math.isfinite(value)
            if finite:
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else math.inf)
                finite = bool(torch.isfinite(norm))
            if finite:
                opt.step()
                in_a_row = 0
            else:  # a non-finite gradient would poison Adam's moments: skip the step, count it
                skipped += 1
                in_a_row += 1
                if in_a_row >= max_skipped_in_a_row:
                    raise RuntimeError(f"Training diverged at step {step} ({in_a_row} non-finite steps in a row, "
                                       f"last loss {value}); lower the learning rate.")
            labels = {k: v for k, v in parts.items() if isinstance(v, str)}
            numbers = {k: round(float(v), 5) for k, v in parts.items() if not isinstance(v, str)}
            curve.append({"step": step, **labels, "loss": round(value, 5), **numbers})
            if callback is not None:
                callback(step, value)
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                stopped_early = True
                break
    finally:
        model.eval()
    done = step + 1 if steps else 0
    finite_losses = [c["loss"] for c in curve if math.isfinite(c["loss"])]
    tail = finite_losses[-max(1, min(100, len(finite_losses) // 10)):]
    return {"steps_done": done, "skipped_steps": skipped, "stopped_early": stopped_early,
            "train_s": time.perf_counter() - t0, "final_loss": float(np.mean(tail)) if tail else float("nan"),
            "curve": curve}
