"""Image pyramids on ``(N, C, D, H, W)`` tensors, consistent with :mod:`tttmedical.core.warp`.

Level 0 is the full grid; level ``l`` has ``ceil(n / 2**l)`` voxels per axis and covers the same
extent with ``align_corners=True`` semantics (end voxels coincide), so fields move between levels
with :func:`tttmedical.core.warp.resize_field`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import box_mean


def level_shape(shape: tuple[int, int, int], level: int) -> tuple[int, int, int]:
    out = tuple(shape)
    for _ in range(level):
        out = tuple(max(2, (n + 1) // 2) for n in out)
    return out


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Blur with a 3^3 box (anti-aliasing) and resample to half size."""
    return F.interpolate(box_mean(x, 3), size=level_shape(tuple(x.shape[2:]), 1), mode="trilinear", align_corners=True)


def build_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[full, half, quarter, ...]`` with ``levels`` entries."""
    out = [x]
    for _ in range(levels - 1):
        out.append(downsample(out[-1]))
    return out


def auto_levels(shape: tuple[int, int, int], min_size: int = 16, max_levels: int = 4) -> int:
    """Number of levels so that the coarsest grid keeps at least ``min_size`` voxels on its shortest axis."""
    levels = 1
    while levels < max_levels and min(level_shape(shape, levels)) >= min_size:
        levels += 1
    return levels
