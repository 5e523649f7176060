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

Data consistency (:meth:`SliceProblem.data_consistent`): the network output ``f`` is the prior of
``argmin_x ||A x - y||^2 + w ||x - f||^2 + l s ||W x||_1`` on all acquired samples (``W``: the detail
coefficients of a cycle-spun 3-level Haar transform, ``s``: the zero-filled image's maximum):
conjugate gradients when ``l = 0``, FISTA from ``f`` otherwise.  ``(w, l)`` is chosen per slice by
the same self-validation: the solutions from the training samples for every candidate in
:data:`DC_CANDIDATES`, and ``f`` itself (no step), are scored by their squared error on the held-out
samples and the best-scoring one is taken (plain minimum).  Why the L1 term: at 2x with 8 coils the
SENSE unfolding amplifies the measurement noise (SENSE alone: 32 dB on the MNI brain slices against
45 dB fully sampled), and a network output far from the anatomy (a shifted domain) cannot
regularise it; with the sparsity candidates the step is compressed sensing started from the network
output.  Measured on the quick reconstruction benchmark (2 slices per domain, bundled backbone):
MNI brain at 2x, pretrained U-Net 34.0 dB with the L2-only step -> 39.5 dB (sigpy L1-wavelet 37.9,
``bart pics`` 38.1); source domain 41.8 -> 46.3 dB.  An earlier version required a 3 dB held-out
gain before taking any step; it had been calibrated against a reference that was not the fully
sampled RSS, and cost 2-7 dB (on 20 slices of five domains the plain minimum was within 0.2-1.4 dB
of the best L2-only candidate and never below the network output).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from . import physics as P
from .masks import calibration_region

__all__ = ["SliceProblem", "make_problem", "ssdu_split", "n2n_mask", "relative_l1", "relative_l2"]

VALIDATION_FRACTION = 0.05
SSDU_WIDTH = 0.35   # SSDU's loss set: density exp(-r^2 / 2 w^2), r the normalised distance from the k-space centre
DC_WEIGHTS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)   # prior weights against A^H A (eigenvalues in [0, 1]): scale-free
DC_ITERATIONS = 15
DC_SPARSE_ITERATIONS = 30   # FISTA from the network output; measured: 30 steps as good as 60 or better (2 domains x 2 slices)
# (prior weight, L1-Haar weight relative to the zero-filled image's maximum)
DC_CANDIDATES = tuple((w, 0.0) for w in DC_WEIGHTS) + tuple((w, c) for w in (0.0, 0.03, 0.3) for c in (0.002, 0.005))
NO_STEP = (math.inf, 0.0)


@dataclasses.dataclass
class SliceProblem:
    y: torch.Tensor
    maps: torch.Tensor
    acquired: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    calib: torch.Tensor

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

    def data_consistent(self, image: torch.Tensor, weight: float | None = None, sparsity: float = 0.0) -> torch.Tensor:
        """The data-consistency step on all acquired samples with ``image`` as the prior:
        ``argmin_x ||M F S x - y||^2 + weight ||x - image||^2 + sparsity s ||W x||_1`` (``s`` =
        :attr:`scale`, ``W`` Haar details): conjugate gradients (:func:`.physics.sense_cg`) without
        the L1 term, FISTA (:func:`.physics.sparse_dc`) with it; both start from ``image`` and use the
        coil sensitivities.  ``weight=None`` picks both by self-validation (:meth:`dc_choice`);
        ``weight=inf`` returns ``image`` unchanged."""
        if weight is None:
            weight, sparsity = self.dc_choice(image)
        return self._step(image, weight, sparsity, self.acquired)

    def _step(self, image: torch.Tensor, weight: float, sparsity: float, mask: torch.Tensor) -> torch.Tensor:
        if math.isinf(weight):
            return image.detach()
        if sparsity > 0:
            return P.sparse_dc(self.y, self.maps, mask, image.detach(), weight, sparsity * self.scale, DC_SPARSE_ITERATIONS)
        return P.sense_cg(self.y, self.maps, mask, DC_ITERATIONS, weight, prior=image.detach())

    @functools.cached_property
    def acquired_zero_filled(self) -> torch.Tensor:
        """The zero-filled image of all acquired samples, ``A^H (M y)``, complex ``[H, W]`` (computed once)."""
        return self.zero_filled(self.acquired)

    @functools.cached_property
    def scale(self) -> float:
        """The largest magnitude of :attr:`acquired_zero_filled` (the L1 weights' unit; computed once per
        slice, not once per candidate step)."""
        return float(self.acquired_zero_filled.abs().max())

    @torch.no_grad()
    def dc_choice(self, image: torch.Tensor) -> tuple[float, float]:
        """``(weight, sparsity)`` among :data:`DC_CANDIDATES` whose solution from the training samples
        best predicts the held-out samples, or ``(inf, 0)`` (no step) when ``image`` itself predicts
        them better (module docstring)."""
        return self.dc_scores(image)["choice"]

    @torch.no_grad()
    def dc_scores(self, image: torch.Tensor) -> dict:
        """``{"choice", "gain", "errors"}``: the chosen ``(weight, sparsity)``, the held-out
        squared-error ratio (network output / best step) and the relative held-out L2 error per
        candidate (``(inf, 0)``: no step)."""
        errors = {NO_STEP: float(self.val_error(image))}
        for candidate in DC_CANDIDATES:
            errors[candidate] = float(self.val_error(self._step(image, *candidate, self.train)))
        best = min(errors, key=errors.get)
        gain = (errors[NO_STEP] / max(errors[best], 1e-12)) ** 2
        return {"choice": best, "gain": gain, "errors": errors}


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
