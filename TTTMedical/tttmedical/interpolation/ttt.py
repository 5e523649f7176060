"""Test-time training of the interpolation model on the frame pairs of one sequence (TTT4MII).

Tasks (which loss, which parameters):

* ``rotation``: cross-entropy of the rotation head on both frames of the pair; updates the shared
  encoder and the rotation head.
* ``mae``: masked-patch MSE of the 3D-MAE head on both frames; updates the shared **encoder** and
  the MAE head (the reference code never stepped the encoder, so MAE could not change the result).
* ``cycle``: the model's own unsupervised loss (:func:`.losses.uvi_loss`: registration both ways,
  cycle, residual) on the pair; updates the flow and refinement networks.
* ``none``: no adaptation.

Each step sees the same random window (``crop``, default 32 x 64 x 64 as in training) of both frames
of its pair, so that a step costs the same whatever the frame size; prediction uses whole frames.

Schemes over the pairs ``0 .. P-1`` (in time order), each adaptation being ``epochs`` Adam steps
through :func:`tttmedical.core.optimize.optimize` (no early stop; the weights after the last step
are kept):

* ``naive``: ``epochs`` epochs over all pairs (one step per pair per epoch, pairs in time order),
  then every pair is predicted with the final weights.
* ``online``: each pair starts from the trained weights ``theta0`` with a fresh optimiser, adapts
  on itself, is predicted, and the weights are discarded.
* ``minibatch``: weights and optimiser carried from pair to pair in time order; each pair is seen
  once (its ``epochs`` steps) and predicted right after its own update.

``predict(model, k)`` is called by the scheme with the weights meant for pair ``k``;
``callback(fraction, text, loss)`` after every TTT evaluation and prediction (``loss`` None for
predictions).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable

import torch

from ..core.adam import Adam
from ..core.optimize import LoopSettings, StepOutput, optimize
from .losses import mae_loss, rotation_loss, uvi_loss
from .model import InterpolationModel

ADAPTED = {"rotation": ("encoder", "rotation_head"), "mae": ("encoder", "mae_head"), "cycle": ("flow", "refine"), "none": ()}
"""The sub-networks each task updates."""


@dataclasses.dataclass
class TTTSettings:
    task: str = "mae"
    scheme: str = "naive"
    epochs: int = 4
    lr: float = 1e-3
    mask_ratio: float = 0.75
    seed: int = 0
    crop: tuple | None = (32, 64, 64)  # each step sees a random window of the pair (None: whole frames)


def adapted_parameters(model: InterpolationModel, task: str) -> list[torch.nn.Parameter]:
    return [p for name in ADAPTED[task] for p in getattr(model, name).parameters()]


def ssl_loss(model: InterpolationModel, task: str, i0: torch.Tensor, i1: torch.Tensor, generator: torch.Generator,
             mask_ratio: float = 0.75) -> tuple[torch.Tensor, dict]:
    """The self-supervised loss of ``task`` on one pair (frames padded to the model's multiple)."""
    if task == "rotation":
        return rotation_loss(model, torch.cat([i0, i1], 0))
    if task == "mae":
        return mae_loss(model, torch.cat([i0, i1], 0), generator, mask_ratio)
    if task == "cycle":
        return uvi_loss(model, i0, i1, generator)
    raise ValueError(f"task {task!r} has no loss")


class _Frozen:
    """Within the block only ``params`` need gradients (the rest of the model is not differentiated)."""

    def __init__(self, model: torch.nn.Module, params: list[torch.nn.Parameter]):
        self.model, self.keep = model, {id(p) for p in params}

    def __enter__(self):
        self.saved = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.saved:
            p.requires_grad_(id(p) in self.keep)

    def __exit__(self, *exc):
        for p, flag in self.saved:
            p.requires_grad_(flag)


def random_window(i0: torch.Tensor, i1: torch.Tensor, crop, generator: torch.Generator):
    """The same random ``crop`` window (clipped to the frame size) of both frames."""
    if crop is None:
        return i0, i1
    sizes = [min(int(c), n) for c, n in zip(crop, i0.shape[2:])]
    starts = [int(torch.randint(n - c + 1, (), generator=generator)) for n, c in zip(i0.shape[2:], sizes)]
    window = (..., *[slice(s, s + c) for s, c in zip(starts, sizes)])
    return i0[window], i1[window]


def adapt(model: InterpolationModel, pairs: list[tuple[torch.Tensor, torch.Tensor]], order: list[int], settings: TTTSettings,
          optimizer: Adam, generator: torch.Generator,
          callback: Callable[[int, int, float], None] | None = None) -> list[dict]:
    """``len(order)`` Adam steps, step ``s`` on pair ``order[s]``; return the loss curve (``len(order) + 1`` evaluations)."""
    params = adapted_parameters(model, settings.task)
    state = {"index": 0}

    def step() -> StepOutput:
        k = order[min(state["index"], len(order) - 1)]
        state["index"] += 1
        i0, i1 = random_window(*pairs[k], settings.crop, generator)
        loss, parts = ssl_loss(model, settings.task, i0, i1, generator, settings.mask_ratio)
        return StepOutput(loss, {"pair": k, **parts})

    with _Frozen(model, params):
        result = optimize(step, optimizer, LoopSettings(max_steps=len(order), patience=len(order) + 2, min_delta=0.0),
                          snapshot=lambda payload: None, callback=callback)
    return result.curve


def run_scheme(model: InterpolationModel, pairs: list[tuple[torch.Tensor, torch.Tensor]], settings: TTTSettings,
               predict: Callable[[InterpolationModel, int], object],
               callback: Callable[[float, str, float], None] | None = None) -> dict:
    """Adapt ``model`` with ``settings.scheme`` and call ``predict(model, k)`` for every pair.

    Returns ``{"predictions": [predict(...) per pair], "curve": [{"step", "loss", "pair", ...}],
    "adapt_s": seconds of adaptation (prediction excluded), "steps": optimiser steps}``.  The
    model's weights after the call are those of the last pair's prediction (``online``: ``theta0``).
    """
    n, epochs = len(pairs), int(settings.epochs)
    generator = torch.Generator().manual_seed(settings.seed)
    task = settings.task
    curve: list[dict] = []
    predictions: list = [None] * n
    adapt_s, steps = 0.0, 0
    active = task != "none" and epochs > 0
    total = max(1, (epochs * n if active else 0) + n)
    done = {"units": 0}

    def report(text: str, loss: float | None = None) -> None:
        if callback is not None:
            callback(done["units"] / total, text, loss)

    def tick():
        def cb(index: int, max_steps: int, loss: float) -> None:
            if index > 0:
                done["units"] += 1
            report(f"{task} TTT step {index}/{max_steps}", loss)
        return cb

    def run_adapt(order: list[int], opt: Adam) -> None:
        nonlocal adapt_s, steps
        t0 = time.perf_counter()
        part = adapt(model, pairs, order, settings, opt, generator, tick())
        adapt_s += time.perf_counter() - t0
        offset = curve[-1]["step"] + 1 if curve else 0
        curve.extend({**c, "step": c["step"] + offset, "scheme_step": c["step"]} for c in part)
        steps += len(order)

    def new_optimizer() -> Adam:
        return Adam(adapted_parameters(model, task), lr=settings.lr)

    def predict_pair(k: int) -> None:
        with torch.no_grad():
            predictions[k] = predict(model, k)
        done["units"] += 1
        report(f"predicted pair {k + 1}/{n}")

    if not active:
        for k in range(n):
            predict_pair(k)
    elif settings.scheme == "naive":
        run_adapt([k for _ in range(epochs) for k in range(n)], new_optimizer())
        for k in range(n):
            predict_pair(k)
    elif settings.scheme == "online":
        theta0 = copy.deepcopy(model.state_dict())
        for k in range(n):
            model.load_state_dict(theta0)
            run_adapt([k] * epochs, new_optimizer())
            predict_pair(k)
        model.load_state_dict(theta0)
    elif settings.scheme == "minibatch":
        opt = new_optimizer()
        for k in range(n):
            run_adapt([k] * epochs, opt)
            predict_pair(k)
    else:
        raise ValueError(f"unknown scheme {settings.scheme!r}")
    return {"predictions": predictions, "curve": curve, "adapt_s": adapt_s, "steps": steps}
