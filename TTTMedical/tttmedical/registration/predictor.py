"""Built-in pretrained registration predictor: loading and inference of a VoxelMorph-style U-Net.

Conventions (those of :mod:`tttmedical.core.warp`):

* ``fixed`` and ``moving`` are ``(1, 1, D, H, W)`` float tensors on the same grid with intensities
  in [0, 1] (normalise first: :func:`normalised_tensor`, the 0.5-99.5 percentile mapping used in
  training).
* :meth:`Predictor.predict` returns the displacement ``u`` ``(1, 3, D, H, W)`` in **voxels of the
  input grid**, channel ``c`` along array axis ``c``, for pull warping ``warp(moving, u)``.
* The network runs on a *working grid*: each axis is scaled by one factor so that the longest axis
  has ``working_size`` voxels (grids already that small are used as they are).  Images go there
  with trilinear ``F.interpolate(align_corners=True)``; the predicted field comes back with
  :func:`tttmedical.core.warp.resize_field`, which also scales the vectors.

Weights: a checkpoint of format :data:`FORMAT` (:mod:`tttmedical.core.checkpoints`: config = the
``UNet3D`` arguments, extra ``working_size``) loaded with ``weights_only=True`` only after its
sha256 matches the expected one (the model card ``<name>.json`` beside the file, or a checksum the
user passes).  The bundled weights are package data: ``tttmedical/models/register_unet.pt``
(:func:`default_weights_path`).

Related modules: :mod:`.augment` (random deformations and intensity jitter), :mod:`.training`
(training data and :func:`~tttmedical.registration.training.train_predictor`), :mod:`.model_card`
(evaluation on sample pairs and the Markdown card).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.checkpoints import bundled_weights, load_checkpoint
from ..core.device import run_with_fallback, select_device
from ..core.errors import InputError
from ..core.warp import resize_field
from .networks import UNet3D, count_parameters

FORMAT = "tttmedical.register_unet/1"
DEFAULT_NAME = "register_unet"
PRODUCER = "tttmedical train register"


def default_weights_path() -> Path:
    """The bundled predictor weights (package data)."""
    return bundled_weights(DEFAULT_NAME)


def normalised_tensor(array: np.ndarray) -> torch.Tensor:
    """``(1, 1, D, H, W)`` float32 tensor of ``array`` mapped to [0, 1] by its 0.5-99.5 percentiles (as in training)."""
    from ..core.volume import normalize_percentile

    return torch.from_numpy(normalize_percentile(array))[None, None]


def working_shape(shape: tuple[int, ...], working_size: int) -> tuple[int, int, int]:
    """Scale all axes by one factor so the longest has ``working_size`` voxels (never upsample)."""
    shape = tuple(int(n) for n in shape)
    longest = max(shape)
    if longest <= working_size:
        return shape
    s = working_size / longest
    return tuple(max(4, int(round(n * s))) for n in shape)


def to_working(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling with ``align_corners=True`` (same extent, end voxels coincide)."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=True)


class Predictor:
    """A trained :class:`UNet3D` that maps a (fixed, moving) pair to a voxel displacement field."""

    def __init__(self, model: UNet3D, working_size: int, device: str | torch.device = "auto",
                 weights_path: Path | None = None, sha256: str | None = None):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.model = model.to(self.device).eval()
        self.working_size = int(working_size)
        self.weights_path = weights_path
        self.sha256 = sha256

    @classmethod
    def load(cls, weights: str | Path | None = None, sha256: str | None = None,
             device: str | torch.device = "auto") -> "Predictor":
        """Load ``weights`` (default: the bundled file) after a sha256 check."""
        path = Path(weights).expanduser() if weights else default_weights_path()
        ckpt = load_checkpoint(path, FORMAT, sha256, what="predictor weights", producer=PRODUCER)
        try:
            model = UNet3D(**ckpt.config)
            model.load_state_dict(ckpt.state_dict)
        except (TypeError, RuntimeError, KeyError) as exc:
            raise InputError(f"The predictor weights '{path}' do not match the network they describe "
                             f"({str(exc).splitlines()[0][:120]}); retrain them with '{PRODUCER}'.") from None
        return cls(model, int(ckpt.data.get("working_size", 64)), device, ckpt.path, ckpt.sha256)

    def describe(self) -> dict:
        """Weights path and sha256, working size, architecture and parameter count (for reports)."""
        return {"weights": str(self.weights_path) if self.weights_path else None, "sha256": self.sha256,
                "working_size": self.working_size, "architecture": self.model.config(),
                "parameters": count_parameters(self.model)}

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """Displacement ``(1, 3, D, H, W)`` in input-grid voxels (float32, on ``fixed``'s device)."""
        fixed, moving = _as_input(fixed, "fixed"), _as_input(moving, "moving")
        if fixed.shape != moving.shape:
            raise InputError(f"The fixed {tuple(fixed.shape[2:])} and moving {tuple(moving.shape[2:])} images must be on "
                             f"the same grid for the predictor; resample the moving image onto the fixed grid first.")
        out_device = fixed.device
        shape = tuple(fixed.shape[2:])
        wshape = working_shape(shape, self.working_size)

        def run(dev: torch.device) -> torch.Tensor:
            self.model.to(dev)
            pair = torch.cat([to_working(fixed.to(dev).float(), wshape), to_working(moving.to(dev).float(), wshape)], 1)
            return resize_field(self.model(pair), shape)

        field, used = run_with_fallback(run, self.device)
        self.device = used
        return field.to(out_device)


def _as_input(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"The {name} image must be a tensor or array, not {type(x).__name__}.")
    if x.dim() == 3:
        x = x[None, None]
    if x.dim() != 5 or x.shape[:2] != (1, 1):
        raise InputError(f"The {name} image must be (1, 1, D, H, W) or (D, H, W), got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise InputError(f"The {name} image contains NaN or infinite values; clean or normalise it first.")
    return x

