"""Test-time adaptation of the whole backbone on one slice: ``dip``, ``fine``, ``n2n``, ``ssdu``.

Every method starts from the pretrained weights (a fresh copy per slice), optimises all U-Net
weights with Adam through :func:`tttmedical.core.optimize.optimize` and is early-stopped on the
self-validation error (relative L2 error on the 5 % held-out samples, :class:`.problem.SliceProblem`):
the loop keeps the output of the **best** validation evaluation and stops after ``patience``
evaluations without improvement.  ``optimize`` selects on the value of ``StepOutput.loss``; here that
value is the validation error while its gradient is the training loss's
(``train + (val - train).detach()``), so the weights follow the self-supervised loss and the
selection follows the validation error.

Losses (k-space ``F S x`` compared with the measurements ``y``):

* ``dip`` (DIP-TTT): relative L1 on the training samples, input = the training samples;
* ``fine``: data fidelity, squared relative L2 on the training samples, same input;
* ``n2n`` (Noisier2Noise): input = a further undersampled (noisier) mask, loss on all training
  samples weighted by ``(1 - K)^(-1/2)`` (:func:`.problem.n2n_mask`), output from the original data;
* ``ssdu``: input = ``Theta``, loss ``0.5 relL1 + 0.5 relL2`` on ``Lambda`` (``rho = 0.4``).

Draws of the stochastic partitions come from a seeded generator, a fresh one per step.  Precision:
float32 by default -- bf16 autocast (``autocast=True``) pays for training batches but measured 2x
slower here for one-slice adaptation steps (128^2, 8 coils: 0.12 s vs 0.06 s per step, 1 thread).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import torch

from ..core.adam import Adam
from ..core.optimize import LoopSettings, StepOutput, optimize
from .problem import SliceProblem, n2n_mask, relative_l1, relative_l2, ssdu_split
from .unet import ReconUNet

__all__ = ["ADAPT_METHODS", "Draw", "draw", "AdaptResult", "adapt_backbone", "selection_loss", "PATIENCE"]

ADAPT_METHODS = ("dip", "fine", "n2n", "ssdu")
PATIENCE = 10
MIN_DELTA = 1e-3


@dataclasses.dataclass
class Draw:
    """One step's network input samples and self-supervised loss of an output image."""

    input_mask: torch.Tensor
    loss: Callable[[torch.Tensor], torch.Tensor]
    same_input_as_inference: bool


def draw(method: str, problem: SliceProblem, rng: torch.Generator) -> Draw:
    """The input set and loss of ``method`` for one step (see the module docstring)."""
    y, train = problem.y, problem.train
    if method == "dip":
        return Draw(train, lambda x: relative_l1(problem.kspace(x), y, train), True)
    if method == "fine":
        return Draw(train, lambda x: relative_l2(problem.kspace(x), y, train) ** 2, True)
    if method == "ssdu":
        theta, lam = ssdu_split(problem, rng)
        return Draw(theta, lambda x: 0.5 * relative_l1(problem.kspace(x), y, lam) + 0.5 * relative_l2(problem.kspace(x), y, lam), False)
    if method == "n2n":
        noisier, weight = n2n_mask(problem, rng)
        return Draw(noisier, lambda x: relative_l2(problem.kspace(x), y, train, weight), False)
    raise ValueError(f"unknown adaptation method {method!r}")


def selection_loss(train_loss: torch.Tensor, val_error: torch.Tensor) -> torch.Tensor:
    """A tensor whose value is ``val_error`` and whose gradient is ``train_loss``'s."""
    return train_loss + (val_error - train_loss).detach()


@dataclasses.dataclass
class AdaptResult:
    image: torch.Tensor          # complex [H, W]: output of the best validation evaluation
    curve: list                  # {"step", "loss" (= validation error), "train", "val"}
    best_step: int
    stopped: str
    initial_val: float


def adapt_backbone(pretrained: ReconUNet, problem: SliceProblem, method: str, iterations: int, lr: float, seed: int,
                   callback: Callable[[int, int, float], None] | None = None, autocast: bool = False) -> AdaptResult:
    """Adapt a copy of ``pretrained`` to ``problem`` with ``method`` (module docstring)."""
    net = copy.deepcopy(pretrained)
    for p in net.parameters():
        p.requires_grad_(True)
    device_type = problem.y.device.type
    rng = torch.Generator().manual_seed(int(seed))
    inference_input = problem.zero_filled(problem.train)[None]
    opt = Adam(net.parameters(), lr=lr)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            return net(x)[0]

    def step() -> StepOutput:
        d = draw(method, problem, rng)
        out = forward(problem.zero_filled(d.input_mask)[None])
        train_loss = d.loss(out)
        if d.same_input_as_inference:
            inference = out.detach()
        else:
            with torch.no_grad():
                inference = forward(inference_input)
        val = problem.val_error(inference)
        return StepOutput(selection_loss(train_loss, val), {"train": float(train_loss.detach()), "val": float(val)}, inference)

    result = optimize(step, opt, LoopSettings(iterations, patience=PATIENCE, min_delta=MIN_DELTA),
                      snapshot=lambda image: image.detach().clone(), callback=callback)
    return AdaptResult(result.best, result.curve, result.best_step, result.stopped,
                       result.curve[0]["val"] if result.curve else float("nan"))
