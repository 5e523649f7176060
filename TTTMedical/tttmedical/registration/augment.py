"""Random deformations and intensity changes for training the registration predictor.

Conventions: displacements are ``(1, 3, D, H, W)`` float32 tensors in **voxels**, channel ``c``
along array axis ``c`` (pull warping, :mod:`tttmedical.core.warp`); images are ``(1, 1, D, H, W)``
in [0, 1].  Every random draw comes from the ``torch.Generator`` passed in (CPU), so a seeded
generator gives the same deformations on every machine.  No flips: they would need the vectors
flipped too.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.losses import box_mean

__all__ = ["random_field", "structured_field", "jitter_intensity"]


def random_field(shape: tuple[int, int, int], max_disp: float, generator: torch.Generator,
                 family: str | None = None, affine: bool = True) -> torch.Tensor:
    """A random smooth displacement ``(1, 3, D, H, W)`` in voxels with maximum magnitude ``max_disp``.

    ``family``: ``"gaussian"`` (white noise smoothed by repeated box filters) or ``"coarse"``
    (noise on a 3-6 point control grid, trilinearly upsampled then lightly smoothed); None picks
    one at random.  ``affine`` adds a small rotation/scaling (<= 3 deg, 3 %) and shift (<= 1.5 voxels).
    """
    def uniform(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=generator))

    if family is None:
        family = "gaussian" if float(torch.rand((), generator=generator)) < 0.5 else "coarse"
    if family == "gaussian":
        width = max(3, int(round(min(shape) * uniform(0.15, 0.3))) | 1)
        u = torch.randn((1, 3) + tuple(shape), generator=generator)
        for _ in range(3):
            u = box_mean(u, width)
    elif family == "coarse":
        n = int(uniform(3, 7))
        u = torch.randn((1, 3, n, n, n), generator=generator)
        u = F.interpolate(u, size=tuple(shape), mode="trilinear", align_corners=True)
        width = max(3, int(round(min(shape) / n / 2)) | 1)
        u = box_mean(u, width)
    else:
        raise ValueError(f"family must be 'gaussian' or 'coarse', not {family!r}")
    peak = u.norm(dim=1).max().clamp_min(1e-6)
    u = u * (max_disp / peak)
    if affine:
        ang = [math.radians(uniform(-3.0, 3.0)) for _ in range(3)]
        rot = _rotation(*ang) @ torch.diag(torch.tensor([uniform(0.97, 1.03) for _ in range(3)], dtype=torch.float64))
        shift = torch.tensor([uniform(-1.5, 1.5) for _ in range(3)], dtype=torch.float64)
        axes = [torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0 for n in shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), 0).reshape(3, -1)
        lin = ((rot - torch.eye(3, dtype=torch.float64)) @ grid + shift[:, None]).reshape((1, 3) + tuple(shape))
        u = u + lin.float()
    return u


def structured_field(image: torch.Tensor, generator: torch.Generator, swirl_p: float = 0.4,
                     bump_p: float = 0.4) -> torch.Tensor | None:
    """Swirls and/or expansion/atrophy bumps ``(1, 3, D, H, W)`` in voxels centred in ``image``'s foreground, or None.

    The kinds of the ``mni-swirl`` and ``mni-atrophy`` families (:mod:`tttmedical.data.deformations`
    generators, called on the voxel grid of ``image``): with probability ``swirl_p`` one or two
    swirls (angle 15-45 deg, either sign, Gaussian decay sigma 8-18 % of the longest axis), with
    probability ``bump_p`` two to four radial bumps (strength +-[0.15, 0.5], sigma 4.5-9 % of the
    longest axis).  Centres are foreground voxels (intensity > 0.15) pulled towards its centroid.
    The sum is halved until its Jacobian determinant stays above 0.2 (no folding).
    """
    from ..core.warp import jacobian_determinant
    from ..data.deformations import brain_points, bump, random_direction, swirl

    with_swirls = float(torch.rand((), generator=generator)) < swirl_p
    with_bumps = float(torch.rand((), generator=generator)) < bump_p
    if not (with_swirls or with_bumps):
        return None
    rng = np.random.default_rng(int(torch.randint(2 ** 31 - 1, (), generator=generator)))
    shape = tuple(image.shape[2:])
    length = float(max(shape))
    points = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    mask = image[0, 0].detach().cpu().numpy() > 0.15
    if mask.sum() < 8:
        mask = np.ones(shape, bool)
    w = np.zeros(shape + (3,))
    if with_swirls:
        for centre in brain_points(points, mask, rng, int(rng.integers(1, 3)), 0.5):
            angle = math.radians(rng.uniform(15.0, 45.0)) * rng.choice([-1.0, 1.0])
            w += swirl(points, centre, random_direction(rng), angle, rng.uniform(0.08, 0.18) * length)
    if with_bumps:
        for centre in brain_points(points, mask, rng, int(rng.integers(2, 5)), 0.8):
            w += bump(points, centre, rng.uniform(0.15, 0.5) * rng.choice([-1.0, 1.0]), rng.uniform(0.045, 0.09) * length)
    u = torch.from_numpy(np.moveaxis(w, -1, 0)[None].astype(np.float32))
    while jacobian_determinant(u).min() <= 0.2:
        u = u * 0.5
    return u


def _rotation(a: float, b: float, c: float) -> torch.Tensor:
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float64)
    ry = torch.tensor([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]], dtype=torch.float64)
    rz = torch.tensor([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def jitter_intensity(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random gamma (0.8-1.25), smooth multiplicative bias (up to exp(+-0.15)) and Rician-like noise (<= 3 %), clipped to [0, 1]."""
    def uniform(a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=generator))

    shape = tuple(x.shape[2:])
    gamma = math.exp(uniform(-0.22, 0.22) * strength)
    y = x.clamp(0.0, 1.0) ** gamma
    bias = F.interpolate(torch.randn((1, 1, 3, 3, 3), generator=generator), size=shape, mode="trilinear", align_corners=True)
    bias = bias / bias.abs().max().clamp_min(1e-6)
    y = y * torch.exp(uniform(0.0, 0.15) * strength * bias)
    sigma = uniform(0.0, 0.03) * strength
    if sigma > 0:
        n1 = torch.randn(x.shape, generator=generator) * sigma
        n2 = torch.randn(x.shape, generator=generator) * sigma
        y = torch.sqrt((y + n1) ** 2 + n2 ** 2)
    return y.clamp(0.0, 1.0)
