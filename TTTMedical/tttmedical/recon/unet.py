"""The reconstruction backbone: a fastMRI-style 2D U-Net on complex images as two channels.

:class:`ReconUNet` maps the coil-combined zero-filled image ``x0 = A^H y`` (complex ``[B, H, W]``)
to a complex image of the same scale:

* normalisation (fastMRI's NormUnet): real and imaginary channels centred by their mean and divided
  by their standard deviation per slice; sizes padded to a multiple of ``2**pools``;
* encoder: ``pools`` levels of [conv3x3 - InstanceNorm - LeakyReLU(0.2)] x 2, 2x2 average pooling,
  ``chans * 2**level`` channels; bottleneck; decoder: 2x2 transposed convolutions and the same
  double convolutions on the skip concatenations;
* :meth:`ReconUNet.features` stops after the last decoder block (``chans`` channels at full
  resolution): the attachment point of D2SA's FiLM modulation (stage 1) and residual branches
  (stage 2); :meth:`ReconUNet.head` is the final 1x1 convolution to two channels, added to the
  normalised input (residual learning) before un-normalising.

Everything before :meth:`head` can be cached when the backbone is frozen (:class:`Cached`).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from .physics import from_channels, to_channels

__all__ = ["ReconUNet", "UNetConfig", "Normalised", "Cached"]


@dataclasses.dataclass
class UNetConfig:
    chans: int = 16
    pools: int = 4


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.InstanceNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


@dataclasses.dataclass
class Normalised:
    """The normalised, padded two-channel input and what is needed to undo it."""

    x: torch.Tensor          # [B, 2, Hp, Wp]
    mean: torch.Tensor       # [B, 2, 1, 1]
    std: torch.Tensor        # [B, 2, 1, 1]
    size: tuple[int, int]    # (H, W) before padding
    pad: tuple[int, int, int, int]


class ReconUNet(nn.Module):
    def __init__(self, chans: int = 16, pools: int = 4):
        super().__init__()
        self.config = UNetConfig(chans, pools)
        self.down = nn.ModuleList([_double_conv(2, chans)])
        ch = chans
        for _ in range(pools - 1):
            self.down.append(_double_conv(ch, ch * 2))
            ch *= 2
        self.bottom = _double_conv(ch, ch * 2)
        self.ups, self.up_convs = nn.ModuleList(), nn.ModuleList()
        for _ in range(pools):
            self.ups.append(_up(ch * 2, ch))
            self.up_convs.append(_double_conv(ch * 2, ch))
            ch //= 2
        self.final = nn.Conv2d(chans, 2, 1)

    # ------------------------------------------------------------------ normalisation
    def normalise(self, image: torch.Tensor) -> Normalised:
        x = to_channels(image)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-8)
        x = (x - mean) / std
        h, w = x.shape[-2:]
        m = 2 ** self.config.pools
        ph, pw = (-h) % m, (-w) % m
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        return Normalised(F.pad(x, pad), mean, std, (h, w), pad)

    def denormalise(self, y: torch.Tensor, n: Normalised) -> torch.Tensor:
        h, w = n.size
        y = y[..., n.pad[2]:n.pad[2] + h, n.pad[0]:n.pad[0] + w]
        return from_channels(y.float() * n.std + n.mean)

    # ------------------------------------------------------------------ parts
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised two-channel input -> last decoder features ``[B, chans, Hp, Wp]``."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for up, conv in zip(self.ups, self.up_convs):
            x = conv(torch.cat([up(x), skips.pop()], dim=1))
        return x

    def head(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Final 1x1 convolution plus the residual input (normalised units)."""
        return x + self.final(features)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Complex ``[B, H, W]`` -> complex ``[B, H, W]``."""
        n = self.normalise(image)
        return self.denormalise(self.head(self.features(n.x), n.x), n)


class Cached:
    """The frozen backbone's last decoder features of a batch of input images, computed once."""

    def __init__(self, net: ReconUNet, image: torch.Tensor):
        self.net = net
        with torch.no_grad():
            self.norm = net.normalise(image)
            self.features = net.features(self.norm.x)
        self.refresh_start()

    @torch.no_grad()
    def refresh_start(self) -> None:
        """``start``: the output of the current features, complex ``[H, W]`` (a D2SA stage's anchor: the
        backbone's own output, or after stage 1 the modulated one)."""
        self.start = self.output()[0]

    def output(self, features: torch.Tensor | None = None) -> torch.Tensor:
        """Complex output image from (modified) features through the backbone's head."""
        f = self.features if features is None else features
        return self.net.denormalise(self.net.head(f, self.norm.x), self.norm)


FORMAT = "tttmedical.recon_unet/1"
DEFAULT_NAME = "recon_unet"


def load_backbone(weights: str | None = None, sha256: str | None = None, device: torch.device | str = "cpu") -> tuple[ReconUNet, dict]:
    """The bundled (or given) backbone, verified by :func:`tttmedical.core.checkpoints.load_checkpoint`;
    returns the network (eval mode, on ``device``) and a description for reports."""
    from ..core.checkpoints import bundled_weights, load_checkpoint

    path = weights or bundled_weights(DEFAULT_NAME)
    ckpt = load_checkpoint(path, FORMAT, sha256, what="reconstruction backbone weights", producer="tttmedical train recon")
    try:
        net = ReconUNet(**{k: int(ckpt.config[k]) for k in ("chans", "pools")})
        net.load_state_dict(ckpt.state_dict)
    except (KeyError, TypeError, ValueError, RuntimeError):
        from ..core.errors import InputError

        raise InputError(f"The weights '{ckpt.path}' do not fit the reconstruction U-Net (config {ckpt.config}); "
                         f"use a file written by 'tttmedical train recon'.") from None
    return net.to(device).eval(), {"file": str(ckpt.path), "sha256": ckpt.sha256, "format": FORMAT, "config": ckpt.config}
