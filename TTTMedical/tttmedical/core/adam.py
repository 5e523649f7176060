"""Adam written with plain tensor operations, for test-time loops that must start fast.

``torch.optim.Optimizer.__init__`` imports ``torch._dynamo`` on first use (1.1-1.8 s on a 2-core
CPU, measured with torch 2.13), which a registration of a few seconds cannot afford.  :class:`Adam`
has the interface :func:`tttmedical.core.optimize.optimize` uses (``param_groups`` with ``lr``,
``zero_grad(set_to_none=True)``, ``step()``) and the update of ``torch.optim.Adam`` with its
defaults (no weight decay, no AMSGrad)::

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


class Adam:
    """Adam over ``params`` (one parameter group); same update as ``torch.optim.Adam(params, lr, betas, eps)``."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups = [{"params": list(params), "lr": float(lr), "betas": tuple(betas), "eps": float(eps)}]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                state["step"] += 1
                t = state["step"]
                m, v, g = state["m"], state["v"], p.grad
                m.lerp_(g, 1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                denom = (v.sqrt() / math.sqrt(1.0 - b2 ** t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1.0 - b1 ** t))
