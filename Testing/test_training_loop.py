"""The shared training loop (tttmedical.core.training): schedule, skipped steps, cancel, time limit, curve."""
from __future__ import annotations

import math

import pytest
import torch

from tttmedical.core.errors import CancelledError
from tttmedical.core.training import cosine_lr, train_loop


def _regression(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.25
    return model, lambda step: (torch.nn.functional.mse_loss(model(x), y), {"set": "toy", "mse": 0.0})


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1e-3, 1e-4) == pytest.approx(1e-3)
    assert cosine_lr(50, 100, 1e-3, 1e-4) == pytest.approx(5.5e-4)
    assert cosine_lr(100, 100, 1e-3, 1e-4) == pytest.approx(1e-4)
    assert cosine_lr(70, 100, 1e-3, None) == 1e-3


def test_loss_decreases_and_curve_is_recorded():
    model, batch_loss = _regression()
    seen = []
    result = train_loop(model, batch_loss, 200, lr=0.05, lr_final=0.005, callback=lambda s, v: seen.append((s, v)))
    curve = result["curve"]
    assert result["steps_done"] == 200 and len(curve) == 200 and result["skipped_steps"] == 0
    assert list(curve[0]) == ["step", "set", "loss", "mse"] and curve[0]["set"] == "toy"
    assert curve[-1]["loss"] < 0.01 * curve[0]["loss"]
    assert result["final_loss"] == pytest.approx(sum(c["loss"] for c in curve[-20:]) / 20)
    assert [s for s, _ in seen] == list(range(200)) and not model.training


def test_same_seed_same_weights():
    runs = []
    for _ in range(2):
        model, batch_loss = _regression(seed=3)
        train_loop(model, batch_loss, 20, lr=0.01, lr_final=0.001)
        runs.append(model.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])


def test_non_finite_steps_are_skipped_then_divergence_raises():
    model, batch_loss = _regression()

    def sometimes_nan(step):
        loss, parts = batch_loss(step)
        return (loss * math.nan if step in (3, 4) else loss), parts

    weights = []
    result = train_loop(model, sometimes_nan, 8, lr=0.01,
                        callback=lambda s, v: weights.append(model.weight.detach().clone()))
    assert result["skipped_steps"] == 2 and result["steps_done"] == 8
    assert torch.equal(weights[2], weights[3]) and torch.equal(weights[3], weights[4])  # untouched
    assert not torch.equal(weights[4], weights[5]) and math.isfinite(result["final_loss"])
    with pytest.raises(RuntimeError, match="diverged"):
        train_loop(model, lambda s: (torch.tensor(math.inf, requires_grad=True), {}), 50, max_skipped_in_a_row=5)


def test_callback_cancels_and_time_limit_stops():
    model, batch_loss = _regression()

    def cancel(step, loss):
        if step == 2:
            raise CancelledError("cancelled by the user")

    with pytest.raises(CancelledError):
        train_loop(model, batch_loss, 100, callback=cancel)
    assert not model.training
    result = train_loop(model, batch_loss, 10_000, time_limit_s=0.0)
    assert result["stopped_early"] and result["steps_done"] == 1


def test_bf16_autocast_option():
    model, _ = _regression()
    x = torch.randn(8, 4)
    dtypes = []

    def batch_loss(step):
        out = model(x)
        dtypes.append(out.dtype)
        return out.float().pow(2).mean(), {}

    train_loop(model, batch_loss, 2, autocast_bf16=True)
    train_loop(model, batch_loss, 1)
    assert dtypes == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert model.weight.dtype == torch.float32
