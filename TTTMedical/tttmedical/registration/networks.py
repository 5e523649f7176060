"""Small 3D networks for registration (VoxelMorph-style U-Net).

Tensors are ``(N, C, D, H, W)``.  :class:`UNet3D` maps the channel-stacked pair
``cat([fixed, moving], 1)`` to a displacement field ``(N, 3, D, H, W)`` in **voxels**, channel ``c``
along array axis ``c`` -- the convention of :mod:`tttmedical.core.warp` (pull warping
``warp(moving, u)``).  Any spatial size is accepted: the input is zero-padded at the far end of
each axis to a multiple of ``2**depth`` and the output cropped back, so voxel ``x`` of the output
belongs to voxel ``x`` of the input.  The last convolution starts near zero (weights
``N(0, 1e-5)``, bias 0) so an untrained network predicts an almost-identity transform.

Speed on CPU: bf16 autocast *together with* ``channels_last_3d`` gives 3-4x for this network
(either alone gives little).  With ``fast=True`` (default) the module keeps its weights in
``channels_last_3d``, feeds channels-last inputs and runs under :func:`autocast_context`; the
output is always float32 and contiguous.

Tiny grids (fewer than :data:`TINY_VOXELS` voxels, e.g. the bottleneck of a 48^3 input) run in
float32 with the default layout: oneDNN's bf16 channels-last weight gradient occasionally returns
NaN there (seen with torch 2.13 CPU at a 2x3x3 bottleneck), and those levels cost nothing anyway.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

TINY_VOXELS = 512


def autocast_context(device: torch.device | str, enabled: bool = True):
    """bf16 autocast for ``device`` (CPU; CUDA when bf16 is supported), else a no-op context."""
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ConvBlock(nn.Module):
    """3^3 convolution + LeakyReLU(0.2), as in VoxelMorph."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class UNet3D(nn.Module):
    """VoxelMorph-style 3D U-Net predicting a voxel displacement field.

    ``features`` are the encoder widths; level ``i`` runs at ``1 / 2**i`` resolution and the
    bottleneck at ``1 / 2**depth`` with ``depth = len(features)``.  The decoder mirrors the
    encoder with skip connections, then ``final_features`` full-resolution convolutions and the
    near-zero flow convolution to ``out_channels``.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 3, features=(16, 32, 32, 32),
                 final_features=(16, 16), fast: bool = True, init_std: float = 1e-5):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.features = tuple(int(f) for f in features)
        self.final_features = tuple(int(f) for f in final_features)
        self.depth = len(self.features)
        self.fast = bool(fast)
        self.encoder = nn.ModuleList()
        prev = self.in_channels
        for f in self.features:
            self.encoder.append(ConvBlock(prev, f))
            prev = f
        self.bottleneck = ConvBlock(prev, self.features[-1])
        prev = self.features[-1]
        self.decoder = nn.ModuleList()
        for f in reversed(self.features):
            self.decoder.append(ConvBlock(prev + f, f))
            prev = f
        self.final = nn.ModuleList()
        for f in self.final_features:
            self.final.append(ConvBlock(prev, f))
            prev = f
        self.flow = nn.Conv3d(prev, self.out_channels, 3, padding=1)
        nn.init.normal_(self.flow.weight, 0.0, init_std)
        nn.init.zeros_(self.flow.bias)
        if self.fast:
            self.to(memory_format=torch.channels_last_3d)

    def config(self) -> dict:
        """Constructor arguments (stored beside weights so a file rebuilds its own network)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "features": list(self.features), "final_features": list(self.final_features)}

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not (self.fast and torch.is_autocast_enabled(x.device.type)) or x.shape[2:].numel() >= TINY_VOXELS:
            return block(x)
        with torch.autocast(x.device.type, enabled=False):  # see TINY_VOXELS
            return block(x.float().contiguous())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = self._block(block, x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = self._block(self.bottleneck, x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self._block(block, torch.cat([x.to(skip.dtype), skip], 1))
        for block in self.final:
            x = block(x)
        return self.flow(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet3D expects (N, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        shape = tuple(x.shape[2:])
        m = 2 ** self.depth
        pad = [(-n) % m for n in shape]
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast_context(x.device):
                y = self._forward(x)
        else:
            y = self._forward(x)
        y = y[:, :, : shape[0], : shape[1], : shape[2]]
        return y.float().contiguous()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
