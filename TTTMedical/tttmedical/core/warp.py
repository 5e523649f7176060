"""The one warp convention of the engine.

Inside the engine a displacement field is a tensor ``u`` of shape ``(N, 3, D, H, W)`` (or
``(3, D, H, W)`` as numpy) in **voxels of the fixed grid**; channel ``c`` is the displacement along
array axis ``c`` (channel 0 along D = index k, 1 along H = j, 2 along W = i).  Warping means
*backward* mapping (pull): ``warped(x) = moving(x + u(x))`` for every fixed voxel ``x``.
Sampling uses ``torch.nn.functional.grid_sample`` with ``align_corners=True`` (voxel centres at
-1 and +1 are the first and last voxels), trilinear for images, nearest for labels, and border
padding.

At the boundary (files, Slicer grid transforms) displacements are in **millimetres in LPS**, as
ITK displacement-field transforms expect: the vector at fixed point ``p`` is ``phi(p) - p`` where
``phi`` maps fixed to moving physical space.  :func:`voxels_to_mm` and :func:`mm_to_voxels` are
the only conversions.  Composition: :func:`compose` gives ``u_total(x) = a(x) + b(x + a(x))``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .volume import Volume


def normalised_scale(shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """Per-channel factor converting voxel displacements to grid_sample's normalised units."""
    return torch.tensor([2.0 / max(n - 1, 1) for n in shape], device=device, dtype=dtype).view(1, 3, 1, 1, 1)


def identity_grid(shape: tuple[int, int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised identity grid ``(1, D, H, W, 3)`` in grid_sample's ``(x, y, z) = (W, H, D)`` order."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((xx, yy, zz), dim=-1).unsqueeze(0)


def sampling_grid(u: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """grid_sample grid for displacement ``u`` (N, 3, D, H, W) in voxels."""
    shape = tuple(u.shape[2:])
    if base is None:
        base = identity_grid(shape, u.device, u.dtype)
    norm = u * normalised_scale(shape, u.device, u.dtype)
    return base + norm.permute(0, 2, 3, 4, 1).flip(-1)


def warp(image: torch.Tensor, u: torch.Tensor, mode: str = "bilinear", base: torch.Tensor | None = None) -> torch.Tensor:
    """Pull ``image`` (N, C, D, H, W) through ``u`` (N, 3, D, H, W, voxels): ``image(x + u(x))``.

    ``mode`` is ``"bilinear"`` (trilinear in 3D) or ``"nearest"`` (labels).
    """
    return F.grid_sample(image, sampling_grid(u, base), mode=mode, padding_mode="border", align_corners=True)


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Displacement of ``x -> x + a(x) -> (x + a(x)) + b(x + a(x))``: ``a + b o (id + a)``."""
    return a + warp(b, a)


def resize_field(u: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Resample a voxel displacement field onto a grid of ``shape`` covering the same extent.

    With ``align_corners=True`` the end voxels coincide, so a displacement of one coarse voxel is
    ``(n_fine - 1) / (n_coarse - 1)`` fine voxels along that axis; vectors are scaled accordingly.
    """
    src = tuple(u.shape[2:])
    if src == tuple(shape):
        return u
    out = F.interpolate(u, size=tuple(shape), mode="trilinear", align_corners=True)
    factor = torch.tensor([(n - 1) / max(m - 1, 1) for n, m in zip(shape, src)], device=u.device, dtype=u.dtype)
    return out * factor.view(1, 3, 1, 1, 1)


def jacobian_determinant_tensor(u: torch.Tensor) -> torch.Tensor:
    """Jacobian determinant of ``x -> x + u(x)`` for ``u`` (3, D, H, W) or (1, 3, D, H, W) in voxels, as a
    tensor (D, H, W) of ``u``'s dtype and device; differentiable (pass float64 for exact signs near 0).

    Central differences inside, one-sided at the borders (``torch.gradient``, as ``numpy.gradient``).
    Because displacement and derivative share voxel units, the determinant equals that of the
    physical mapping.
    """
    if u.ndim == 5:
        u = u[0]
    grads = [torch.gradient(u[c], dim=(0, 1, 2)) for c in range(3)]  # grads[c][a] = d u_c / d x_a
    j = [[grads[c][a] + (1.0 if a == c else 0.0) for a in range(3)] for c in range(3)]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def jacobian_determinant(u: np.ndarray | torch.Tensor) -> np.ndarray:
    """:func:`jacobian_determinant_tensor` as a float32 numpy array (D, H, W), for metrics and files."""
    t = u.detach() if isinstance(u, torch.Tensor) else torch.from_numpy(np.asarray(u, dtype=np.float64))
    return jacobian_determinant_tensor(t.double()).cpu().numpy().astype(np.float32)


def folded_voxels(u: torch.Tensor) -> int:
    """Number of voxels where the Jacobian determinant of ``x -> x + u(x)`` is <= 0 (``u`` in voxels), as
    :func:`jacobian_determinant` counts them (float64); a field whose float32 determinants all exceed 0.01
    is not recomputed (twice as fast: the usual case, a field that does not fold)."""
    with torch.no_grad():
        if bool((jacobian_determinant_tensor(u.float()) > 0.01).all()):
            return 0
        return int((jacobian_determinant_tensor(u.double()) <= 0).sum())


def voxels_to_mm(u: np.ndarray | torch.Tensor, grid: Volume) -> np.ndarray:
    """Voxel field (3, D, H, W) on ``grid`` -> LPS millimetre vectors (D, H, W, 3) in (x, y, z) order."""
    if isinstance(u, torch.Tensor):
        u = u.detach().cpu().numpy()
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 5:
        u = u[0]
    ijk = np.moveaxis(u[::-1], 0, -1)  # (D, H, W, 3) in (i, j, k) order
    matrix = grid.direction @ np.diag(grid.spacing)
    return (ijk @ matrix.T).astype(np.float32)


def mm_to_voxels(field_mm: np.ndarray, grid: Volume) -> np.ndarray:
    """LPS millimetre vectors (D, H, W, 3) on ``grid`` -> voxel field (3, D, H, W)."""
    matrix = grid.direction @ np.diag(grid.spacing)
    ijk = np.asarray(field_mm, dtype=np.float64) @ np.linalg.inv(matrix).T
    return np.ascontiguousarray(np.moveaxis(ijk, -1, 0)[::-1]).astype(np.float32)


def field_volume(u: np.ndarray | torch.Tensor, grid: Volume) -> Volume:
    """A 3-component float32 vector `Volume` in LPS mm on ``grid`` (cast to float64 for
    ``sitk.DisplacementFieldTransform``; float32 keeps files half the size)."""
    return grid.with_array(voxels_to_mm(u, grid))


def linear_to_voxel_field(transform, grid: Volume) -> np.ndarray:
    """Displacement (3, D, H, W, voxels) of any SimpleITK transform sampled on ``grid``'s voxels."""
    import SimpleITK as sitk

    ref = grid.with_array(np.zeros(grid.shape, np.float32)).to_sitk()
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(ref)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    field = sitk.GetArrayFromImage(to_field.Execute(transform))
    return mm_to_voxels(field, grid)
