"""Image-similarity and regularisation losses on ``(N, C, D, H, W)`` tensors.

Local statistics use separable box sums: along each axis the ``w - 1`` shifted neighbours are added in
place into one copy, with no padded copies (issue 9: 96^3, 3 channels, window 5 on 1 thread: 5.7 vs 8.4
ms for the partial sums of lengths 1, 2, 4, ... with a zero-padded copy per axis, which were 2-3x faster
than an integral-image cumsum; same values up to float rounding).  Windows are cubes of
``w`` voxels, zero-padded at the borders, and every window's statistics are stacked as channels so
one pass serves them all.  The fixed image's statistics are computed once
(:class:`LocalSimilarity`).  Intensities are expected in [0, 1] (SSIM constants assume range 1).
Statistics stay in float32.
"""
from __future__ import annotations

import torch


def _box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    r = window // 2
    for dim in (2, 3, 4):
        out = x.clone()
        n = x.shape[dim]
        for shift in range(1, min(r, n - 1) + 1):  # add the neighbours at +-shift in place (zero beyond the ends)
            out.narrow(dim, 0, n - shift).add_(x.narrow(dim, shift, n - shift))
            out.narrow(dim, shift, n - shift).add_(x.narrow(dim, 0, n - shift))
        x = out
    return x


class _BoxSum(torch.autograd.Function):
    """Zero-padded box sum; it is self-adjoint, so its backward is the same box sum."""

    @staticmethod
    def forward(ctx, x, window):
        ctx.window = window
        return _box_sum(x, window)

    @staticmethod
    def backward(ctx, grad):
        return _box_sum(grad.contiguous(), ctx.window), None


def box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a ``window``^3 cube centred on each voxel (zero padding), same shape as ``x``."""
    if window % 2 != 1:
        raise ValueError(f"window must be odd, got {window}")
    if window == 1:
        return x
    return _BoxSum.apply(x, window)


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    return box_sum(x, window) / float(window ** 3)


class LocalSimilarity:
    """Local NCC over several windows plus box-window 3D SSIM against one fixed image.

    ``ncc`` is the squared local correlation ``cov^2 / (var_f var_m)`` averaged over voxels and
    windows (in [0, 1]; the loss is ``1 - ncc``).  ``ssim`` uses a ``ssim_window`` box with the usual
    constants for unit intensity range.  The fixed image's box means are computed once here.
    """

    def __init__(self, fixed: torch.Tensor, ncc_windows=(5, 9), ssim_window: int = 7, eps: float = 1e-5):
        self.fixed = fixed.float()
        self.ncc_windows = tuple(int(w) for w in ncc_windows)
        self.ssim_window = int(ssim_window)
        self.eps = eps
        self.windows = sorted(set(self.ncc_windows) | {self.ssim_window})
        c = fixed.shape[1]
        self._fixed_stats = {}
        for w in self.windows:
            m = box_mean(torch.cat([self.fixed, self.fixed * self.fixed], 1), w)
            mu = m[:, :c]
            var = (m[:, c:] - mu * mu).clamp_min(0.0)
            self._fixed_stats[w] = (mu, var)

    def _moving_stats(self, moving: torch.Tensor) -> dict:
        stats = {}
        prods = torch.cat([moving, moving * moving, moving * self.fixed], 1)
        for w in self.windows:
            mu_m, mm, mf = box_mean(prods, w).chunk(3, dim=1)  # chunk: one cheap backward, not 3 zero-filled slices
            mu_f, var_f = self._fixed_stats[w]
            var_m = (mm - mu_m * mu_m).clamp_min(0.0)
            cov = mf - mu_f * mu_m
            stats[w] = (mu_f, var_f, mu_m, var_m, cov)
        return stats

    def __call__(self, moving: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"ncc": scalar, "ssim": scalar}`` (both higher-is-better, differentiable)."""
        stats = self._moving_stats(moving.float())
        nccs = []
        for w in self.ncc_windows:
            _, var_f, _, var_m, cov = stats[w]
            nccs.append((cov * cov / (var_f * var_m + self.eps)).mean())
        mu_f, var_f, mu_m, var_m, cov = stats[self.ssim_window]
        ssim = ssim_from_stats(mu_f, mu_m, var_f, var_m, cov).mean()
        return {"ncc": torch.stack(nccs).mean(), "ssim": ssim}


def pair_stats(a: torch.Tensor, b: torch.Tensor, window: int):
    """Local ``(mu_a, mu_b, var_a, var_b, cov)`` over a ``window``^3 box (one stacked cumsum pass)."""
    c = a.shape[1]
    m = box_mean(torch.cat([a, b, a * a, b * b, a * b], 1).float(), window)
    mu_a, mu_b = m[:, :c], m[:, c:2 * c]
    var_a = (m[:, 2 * c:3 * c] - mu_a * mu_a).clamp_min(0.0)
    var_b = (m[:, 3 * c:4 * c] - mu_b * mu_b).clamp_min(0.0)
    return mu_a, mu_b, var_a, var_b, m[:, 4 * c:] - mu_a * mu_b


def local_ncc_map(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Signed local correlation coefficient map in [-1, 1] (for metrics)."""
    _, _, var_a, var_b, cov = pair_stats(a, b, window)
    return cov / torch.sqrt(var_a * var_b + eps)


def ssim_from_stats(mu_a, mu_b, var_a, var_b, cov, data_range: float = 1.0) -> torch.Tensor:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 7, data_range: float = 1.0) -> torch.Tensor:
    """Box-window 3D SSIM map (constants K1 = 0.01, K2 = 0.03 of ``data_range``)."""
    return ssim_from_stats(*pair_stats(a, b, window), data_range=data_range)


def smoothness(u: torch.Tensor, penalty: str = "l2") -> torch.Tensor:
    """Diffusion regulariser: mean squared (``l2``) or absolute (``l1``) forward differences of ``u``."""
    diffs = [torch.diff(u, dim=d) for d in (2, 3, 4)]
    if penalty == "l2":
        return sum((d * d).mean() for d in diffs) / 3.0
    if penalty == "l1":
        return sum(d.abs().mean() for d in diffs) / 3.0
    raise ValueError(f"penalty must be 'l1' or 'l2', not {penalty!r}")
