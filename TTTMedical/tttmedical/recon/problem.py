"""One slice's reconstruction problem and the sample partitions of the self-supervised losses.

:class:`SliceProblem` holds torch tensors on the working device: acquired k-space ``y`` ``[C, H, W]``
(zeros where not sampled), coil maps ``[C, H, W]``, and float 0/1 masks ``[H, W]``: ``acquired``;
``val`` = 5 % of the acquired samples outside the calibration box, held out for self-validation
(never seen by any input or loss); ``train`` = ``acquired - val``; ``calib`` = the calibration box.

Partitions of ``train`` (drawn from a seeded generator):

* :func:`ssdu_split`: SSDU's loss set ``Lambda`` = ``rho`` (0.4) of the training samples outside the
  calibration box, drawn with a 2D Gaussian density around the k-space centre; input set ``Theta``
  = the rest.
* :func:`n2n_mask`: Noisier2Noise's second (noisier) mask: each training sample is kept with the
  probability ``K(k)`` = 1 in the calibration box, falling linearly from 0.9 to 0.5 with the
  normalised distance from the centre outside it.  The loss uses *all* training samples, weighted by
  ``(1 - K)^(-1/2)`` (Millard & Chiew's correction, which makes the network applied to the original
  data estimate the fully sampled k-space; samples with ``K = 1`` carry no information and are left
  out).

Data consistency (:meth:`SliceProblem.data_consistent`): the network output is the prior of a
conjugate-gradient solve on all acquired samples; its weight is chosen per slice by the same
self-validation: the solutions from the training samples are scored by their squared error on the
held-out samples, and the step is taken (with the best-scoring weight) only when it removes at least
half of the network output's held-out squared error (:data:`DC_MIN_GAIN`, a 3 dB held-out gain).
Why a margin and not the plain minimum: the held-out samples lie outside the calibration box, where
the noise floor dominates, so a small held-out gain means "closer to the noisy measurements" more
than closer to the image.  The margin was measured when the simulated reference was the original
image (then ~31 dB from a fully sampled SENSE reconstruction; now the reference is the RSS of the
noise-free fully sampled k-space, :mod:`.simulate`): on 12 slices of six domains held-out
squared-error ratios of network output / best step were 1.0-1.3 where the step lost 0.6-7.8 dB and
2.6-3.7 where it gained 2.8-8.2 dB.  A good network output (the source domain) keeps
its denoising, a poor one (a shifted domain) is pulled towards the measurements.  The test is
fair for the unadapted backbone; an adapted output has been fitted to the training samples and its
held-out error hides damage (measured: held-out ratio 1.2-1.8 where the step gained 1.5-3.8 dB), so
on a slice where the backbone's own output needed the step (out of its distribution) the pipeline
lowers :attr:`SliceProblem.dc_min_gain` to 1 for every output of that slice (plain minimum).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from . import physics as P
from .masks import calibration_region

__all__ = ["SliceProblem", "make_problem", "ssdu_split", "n2n_mask", "relative_l1", "relative_l2"]

VALIDATION_FRACTION = 0.05
SSDU_WIDTH = 0.35   # SSDU's loss set: density exp(-r^2 / 2 w^2), r the normalised distance from the k-space centre
DC_WEIGHTS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)   # prior weights against A^H A (eigenvalues in [0, 1]): scale-free
DC_ITERATIONS = 15
DC_MIN_GAIN = 2.0   # held-out squared error of the network output / that after the step, needed to take it


@dataclasses.dataclass
class SliceProblem:
    y: torch.Tensor
    maps: torch.Tensor
    acquired: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    calib: torch.Tensor
    dc_min_gain: float = DC_MIN_GAIN   # the pipeline sets 1.0 on slices where the backbone's own output needed the step

    def zero_filled(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``A^H (M y)`` for the sample set ``mask`` (default: the training samples), complex ``[H, W]``."""
        m = self.train if mask is None else mask
        return P.adjoint(self.y * m, self.maps, m)

    def kspace(self, image: torch.Tensor) -> torch.Tensor:
        """``F S x`` on the whole grid (no mask), ``[C, H, W]``."""
        return P.fft2c(self.maps * image.unsqueeze(-3))

    def val_error(self, image: torch.Tensor) -> torch.Tensor:
        """Relative L2 error of ``image`` on the held-out samples (the self-validation error)."""
        return relative_l2(self.kspace(image), self.y, self.val)

    def data_consistent(self, image: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """The data-consistency step on all acquired samples with ``image`` as the prior:
        ``argmin_x ||M F S x - y||^2 + weight ||x - image||^2`` by conjugate gradients from ``image``
        (:func:`.physics.sense_cg`; it uses the coil sensitivities).  ``weight=None`` picks it by
        self-validation (:meth:`dc_weight`); ``inf`` returns ``image`` unchanged."""
        weight = self.dc_weight(image) if weight is None else weight
        if math.isinf(weight):
            return image.detach()
        return P.sense_cg(self.y, self.maps, self.acquired, DC_ITERATIONS, weight, prior=image.detach())

    @torch.no_grad()
    def dc_weight(self, image: torch.Tensor) -> float:
        """The prior weight among :data:`DC_WEIGHTS` whose solution from the training samples best
        predicts the held-out samples, if it divides the held-out squared error of ``image`` by at
        least :attr:`dc_min_gain`; otherwise ``inf`` (no data-consistency step; module docstring)."""
        return self.dc_scores(image)["weight"]

    @torch.no_grad()
    def dc_scores(self, image: torch.Tensor) -> dict:
        """``{"weight", "gain", "errors"}``: the chosen weight, the held-out squared-error ratio
        (network output / best step) and the relative held-out L2 error per candidate (``inf``: none)."""
        errors = {math.inf: float(self.val_error(image))}
        for weight in DC_WEIGHTS:
            x = P.sense_cg(self.y, self.maps, self.train, DC_ITERATIONS, weight, prior=image.detach())
            errors[weight] = float(self.val_error(x))
        best = min(DC_WEIGHTS, key=errors.get)
        gain = (errors[math.inf] / max(errors[best], 1e-12)) ** 2
        return {"weight": best if gain >= self.dc_min_gain else math.inf, "gain": gain, "errors": errors}

def relative_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    w = mask if weight is None else mask * weight
    return ((pred - target) * w).abs().sum() / (target * w).abs().sum().clamp_min(1e-12)


def relative_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    w = mask if weight is None else mask * weight
    return torch.linalg.vector_norm((pred - target) * w) / torch.linalg.vector_norm(target * w).clamp_min(1e-12)


def _radius(shape, device) -> torch.Tensor:
    h, w = shape
    ky = (torch.arange(h, device=device) - h // 2) / (h / 2)
    kx = (torch.arange(w, device=device) - w // 2) / (w / 2)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).clamp(max=1.0)


def _indicator(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(like.numel(), device=like.device)
    out[index] = 1.0
    return out.reshape(like.shape)


def make_problem(y: torch.Tensor, maps: torch.Tensor, mask: np.ndarray, seed: int) -> SliceProblem:
    """The slice problem with its held-out validation samples (seeded; module docstring)."""
    device = y.device
    acquired = torch.from_numpy(np.asarray(mask, np.float32)).to(device)
    calib = torch.zeros_like(acquired, dtype=torch.bool)
    rows, cols = calibration_region(mask)
    calib[rows, cols] = True
    candidates = torch.nonzero(((acquired > 0) & ~calib).flatten()).flatten()
    g = torch.Generator().manual_seed(int(seed))
    n_val = max(1, int(round(VALIDATION_FRACTION * float(acquired.sum()))))
    n_val = min(n_val, max(len(candidates) - 1, 0))
    val = torch.zeros_like(acquired)
    if n_val > 0:
        val = _indicator(candidates[torch.randperm(len(candidates), generator=g)[:n_val].to(device)], acquired)
    return SliceProblem(y, maps, acquired, acquired - val, val, calib)


def ssdu_split(problem: SliceProblem, rng: torch.Generator, rho: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Theta, Lambda)``: input and loss sets of SSDU (module docstring)."""
    train = problem.train
    outside = ((train > 0) & ~problem.calib).flatten()
    index = torch.nonzero(outside).flatten()
    n_loss = min(int(round(rho * float(train.sum()))), len(index) - 1)
    r = _radius(train.shape, train.device).flatten()[index]
    weights = torch.exp(-r ** 2 / (2 * SSDU_WIDTH ** 2))
    # weighted sampling without replacement by the Gumbel-top-k trick (fast on long candidate lists)
    gumbel = -torch.log(-torch.log(torch.rand(len(index), generator=rng).clamp(1e-12, 1 - 1e-7)))
    pick = index[torch.topk(torch.log(weights.cpu()) + gumbel, n_loss).indices.to(train.device)]
    loss_set = _indicator(pick, train)
    return train - loss_set, loss_set


def n2n_keep_probability(problem: SliceProblem) -> torch.Tensor:
    """``K(k)``: probability that a training sample stays in the noisier mask (module docstring)."""
    k = 0.9 - 0.4 * _radius(problem.train.shape, problem.train.device)
    return torch.where(problem.calib, torch.ones_like(k), k)


def n2n_mask(problem: SliceProblem, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noisier input mask, loss weight (1 - K)^(-1/2) on the training samples, 0 where K = 1)``."""
    keep = n2n_keep_probability(problem)
    draw = torch.rand(keep.shape, generator=rng).to(keep.device)
    noisier = problem.train * (draw < keep).float()
    weight = torch.where(keep < 1, (1 - keep).clamp_min(1e-6).rsqrt(), torch.zeros_like(keep))
    return noisier, weight
