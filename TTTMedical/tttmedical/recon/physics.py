"""Multi-coil Cartesian forward model ``y = M F S x``, its adjoint and root-sum-of-squares.

Tensors are complex (``torch.complex64``): images ``[..., ky, kx]``, coil maps ``[..., C, ky, kx]``,
k-space ``[..., C, ky, kx]``, masks real/bool ``[ky, kx]`` broadcast over coils.  ``F`` is the
centred orthonormal 2D FFT (MONAI's :func:`monai.networks.blocks.fft_utils_t.fftn_centered_t`), so
``F^H = F^{-1}`` and the adjoint of ``A = M F S`` is ``A^H y = sum_c conj(S_c) F^{-1}(M y_c)``.
"""
from __future__ import annotations

import torch
from monai.networks.blocks.fft_utils_t import fftn_centered_t, ifftn_centered_t

__all__ = ["fft2c", "ifft2c", "forward", "adjoint", "normal", "rss", "to_channels", "from_channels", "sense_cg",
           "haar_shrink", "sparse_dc"]


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes of a complex tensor."""
    return torch.view_as_complex(fftn_centered_t(torch.view_as_real(image.contiguous()), spatial_dims=2).contiguous())


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2D FFT over the last two axes of a complex tensor."""
    return torch.view_as_complex(ifftn_centered_t(torch.view_as_real(kspace.contiguous()), spatial_dims=2).contiguous())


def forward(image: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A x = M F (S x)``: image ``[..., ky, kx]`` -> k-space ``[..., C, ky, kx]``."""
    return fft2c(maps * image.unsqueeze(-3)) * mask


def adjoint(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A^H y = sum_c conj(S_c) F^-1 (M y_c)``: k-space ``[..., C, ky, kx]`` -> image ``[..., ky, kx]``."""
    return (maps.conj() * ifft2c(kspace * mask)).sum(dim=-3)


def normal(image: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """``(A^H A + lam I) x`` (the mask is 0/1, so ``M^H M = M``)."""
    return adjoint(forward(image, maps, mask), maps, mask) + lam * image


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares magnitude over the coil axis ``dim``."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=dim))


def to_channels(image: torch.Tensor) -> torch.Tensor:
    """Complex ``[B, H, W]`` -> real ``[B, 2, H, W]`` (real, imaginary)."""
    return torch.view_as_real(image).permute(0, 3, 1, 2).contiguous()


def from_channels(x: torch.Tensor) -> torch.Tensor:
    """Real ``[B, 2, H, W]`` -> complex ``[B, H, W]``."""
    return torch.complex(x[:, 0].float(), x[:, 1].float())


@torch.no_grad()
def sense_cg(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, iterations: int = 30,
             lam: float = 1e-3, tol: float = 1e-6, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Conjugate gradients on ``(A^H A + lam I) x = A^H y + lam prior``, started at ``prior`` (or 0).

    Without ``prior``: SENSE with Tikhonov ``lam``; with one: the data-consistency step
    ``argmin ||A x - y||^2 + lam ||x - prior||^2`` (a network output as the prior).
    """
    b = adjoint(kspace, maps, mask)
    if prior is not None:
        b = b + lam * prior
    x = torch.zeros_like(b) if prior is None else prior.clone()
    r = b - normal(x, maps, mask, lam)
    p = r.clone()
    rs = (r.abs() ** 2).sum()
    b_norm = float(torch.linalg.vector_norm(b)) or 1.0
    for _ in range(iterations):
        if float(rs.sqrt()) < tol * b_norm:
            break
        ap = normal(p, maps, mask, lam)
        alpha = rs / (p.conj() * ap).sum().real.clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r.abs() ** 2).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def _haar_split(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2D Haar transform: approximation and the 3 detail bands ``[3, ...]``."""
    x00, x01, x10, x11 = a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]
    details = torch.stack([x00 - x01 + x10 - x11, x00 + x01 - x10 - x11, x00 - x01 - x10 + x11]) / 2
    return (x00 + x01 + x10 + x11) / 2, details


def _haar_merge(a: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    h, v, d = details
    out = a.new_empty(*a.shape[:-2], 2 * a.shape[-2], 2 * a.shape[-1])
    out[..., 0::2, 0::2] = (a + h + v + d) / 2
    out[..., 0::2, 1::2] = (a - h + v - d) / 2
    out[..., 1::2, 0::2] = (a + h - v - d) / 2
    out[..., 1::2, 1::2] = (a - h - v + d) / 2
    return out


def haar_shrink(image: torch.Tensor, threshold: float, levels: int = 3, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Soft-threshold (complex: the magnitude) the detail coefficients of an orthonormal ``levels``-level
    2D Haar transform of ``image`` ``[..., H, W]`` circularly shifted by ``shift`` (cycle spinning);
    the image is zero-padded to a multiple of ``2**levels`` and cropped back."""
    h, w = image.shape[-2:]
    step = 2 ** levels
    padded = image.new_zeros(*image.shape[:-2], -(-h // step) * step, -(-w // step) * step)
    padded[..., :h, :w] = image
    a = torch.roll(padded, shift, (-2, -1))
    bands = []
    for _ in range(levels):
        a, details = _haar_split(a)
        magnitude = details.abs()
        bands.append(details * (1 - threshold / magnitude.clamp_min(1e-12)).clamp_min(0))
    for details in reversed(bands):
        a = _haar_merge(a, details)
    return torch.roll(a, (-shift[0], -shift[1]), (-2, -1))[..., :h, :w]


@torch.no_grad()
def sparse_dc(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor, weight: float,
              sparsity: float, iterations: int = 30, levels: int = 3, seed: int = 0) -> torch.Tensor:
    """FISTA on ``||A x - y||^2 + weight ||x - prior||^2 + sparsity ||W x||_1`` started at ``prior``:
    ``W`` the detail coefficients of a ``levels``-level orthonormal Haar transform, cycle-spun by a
    random shift per iteration (seeded).  ``weight = 0``: L1-Haar compressed sensing, in which ``prior``
    is only the starting point (it still matters after a few tens of steps).  The step
    is ``1 / L`` with ``L = 2 (1 + weight)`` (maps with ``sum_c |S_c|^2 <= 1``, so ``||A^H A|| <= 1``)."""
    generator = torch.Generator().manual_seed(int(seed))
    lipschitz = 2.0 * (1.0 + weight)
    x = prior.clone()
    z, t = x.clone(), 1.0
    for _ in range(iterations):
        grad = 2 * adjoint(forward(z, maps, mask) - kspace * mask, maps, mask) + 2 * weight * (z - prior)
        shift = tuple(int(v) for v in torch.randint(0, 2 ** levels, (2,), generator=generator))
        x_new = haar_shrink(z - grad / lipschitz, sparsity / lipschitz, levels, shift)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x
