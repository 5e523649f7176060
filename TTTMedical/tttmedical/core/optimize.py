"""One test-time optimisation loop for every task (registration fields, networks adapted on a scan).

:func:`optimize` evaluates ``step()`` (a loss tensor plus numbers for the curve), keeps the **best**
iterate (never the one after it), and stops after ``patience`` evaluations without a relative
improvement of ``min_delta``::

    improved  <=>  loss < best - min_delta * |best|

After a non-improving evaluation the learning rate of every parameter group is multiplied by
``lr_decay`` (1.0: never).  With ``max_steps`` optimiser steps the loop evaluates ``max_steps + 1``
times: the last evaluation scores the last step and is not followed by another step.  A
non-finite loss or gradient stops the loop before any step is taken with it (the best iterate so far
is kept, and the parameters are left as the last finite step made them).

``callback(step, max_steps, loss)`` is called after every evaluation; it may raise (e.g.
:class:`~tttmedical.core.errors.CancelledError`) to cancel, and the exception propagates.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

if TYPE_CHECKING:
    from .adam import Adam


@dataclasses.dataclass
class StepOutput:
    """What one evaluation returns: the loss to minimise, numbers for the curve, and a payload
    that :func:`optimize` hands to ``snapshot`` when this evaluation is the best so far."""

    loss: torch.Tensor
    record: dict = dataclasses.field(default_factory=dict)
    payload: Any = None


@dataclasses.dataclass
class LoopSettings:
    max_steps: int                 # optimiser steps (the loop evaluates max_steps + 1 times)
    patience: int = 3              # non-improving evaluations before stopping
    min_delta: float = 1e-4        # relative improvement that counts as progress
    lr_decay: float = 1.0          # learning-rate factor after a non-improving evaluation
    grad_clip: float | None = None  # gradient-norm clip (None: no clipping)


@dataclasses.dataclass
class LoopResult:
    best_loss: float
    best_step: int
    best: Any                      # what ``snapshot`` returned for the best evaluation
    curve: list[dict]              # one entry per evaluation: {"step", "loss", **record}
    evaluations: int
    stopped: str                   # "max_steps", "patience" or "nonfinite"


def optimize(step: Callable[[], StepOutput], optimizer: "Adam | torch.optim.Optimizer", settings: LoopSettings,
             snapshot: Callable[[Any], Any] = lambda payload: payload,
             callback: Callable[[int, int, float], None] | None = None,
             parameters: Iterable[torch.Tensor] | None = None) -> LoopResult:
    """Minimise ``step().loss`` with ``optimizer`` (:class:`tttmedical.core.adam.Adam` for test-time loops: it
    starts 1-2 s faster than ``torch.optim``; anything with ``param_groups``, ``zero_grad`` and ``step``);
    see the module docstring for the rules.

    ``parameters`` are the tensors to clip (default: every parameter of ``optimizer``).
    """
    params = list(parameters) if parameters is not None else [p for g in optimizer.param_groups for p in g["params"]]
    best_loss, best_step, best = math.inf, -1, None
    curve: list[dict] = []
    stale = 0
    stopped = "max_steps"
    for index in range(settings.max_steps + 1):
        optimizer.zero_grad(set_to_none=True)
        out = step()
        value = float(out.loss.detach())
        if not math.isfinite(value):
            stopped = "nonfinite"
            break
        curve.append({"step": index, "loss": value, **out.record})
        if best_step < 0 or value < best_loss - settings.min_delta * abs(best_loss):
            best_loss, best_step, best = value, index, snapshot(out.payload)
            stale = 0
        else:
            stale += 1
            for group in optimizer.param_groups:
                group["lr"] *= settings.lr_decay
        if callback is not None:
            callback(index, settings.max_steps, value)
        if stale >= settings.patience:
            stopped = "patience"
            break
        if index == settings.max_steps:
            break
        out.loss.backward()
        # the gradient norm (clipped when asked); a non-finite gradient would poison the parameters
        norm = torch.nn.utils.clip_grad_norm_(params, settings.grad_clip if settings.grad_clip is not None else math.inf)
        if not math.isfinite(float(norm)):
            stopped = "nonfinite"
            break
        optimizer.step()
    return LoopResult(best_loss, best_step, best, curve, len(curve), stopped)
