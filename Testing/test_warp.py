"""The warp convention: channel order, units, align_corners, composition, Jacobian, mm conversion."""
import numpy as np
import SimpleITK as sitk
import torch

from engine_helpers import rotation
from tttmedical.core.volume import Volume
from tttmedical.core.warp import (compose, field_volume, folded_voxels, jacobian_determinant, jacobian_determinant_tensor,
                                  linear_to_voxel_field, mm_to_voxels, resize_field, voxels_to_mm, warp)


def _ramp(shape=(9, 10, 11)):
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return torch.from_numpy(np.stack([k, j, i]))[None]  # channel c holds the index along axis c


def test_constant_displacement_samples_the_shifted_voxel():
    img = _ramp()
    for c, shift in [(0, 2.0), (1, -1.5), (2, 3.25)]:
        u = torch.zeros(1, 3, 9, 10, 11)
        u[:, c] = shift
        out = warp(img, u)
        inner = (slice(None), slice(None), slice(3, 5), slice(3, 6), slice(4, 7))
        np.testing.assert_allclose(out[inner][:, c].numpy(), img[inner][:, c].numpy() + shift, atol=1e-4)
        others = [o for o in range(3) if o != c]
        np.testing.assert_allclose(out[inner][:, others].numpy(), img[inner][:, others].numpy(), atol=1e-4)


def test_compose_of_translations_adds_and_follows_the_first_field():
    a = torch.zeros(1, 3, 9, 10, 11); a[:, 2] = 1.0
    b = torch.zeros(1, 3, 9, 10, 11); b[:, 2] = torch.arange(11.0)  # b depends on i
    out = compose(a, b)
    # out(x) = a(x) + b(x + a(x)) = 1 + (i + 1) away from the border
    np.testing.assert_allclose(out[0, 2, 4, 4, 3:8].numpy(), 1 + np.arange(4, 9), atol=1e-5)


def test_resize_field_scales_vectors():
    u = torch.zeros(1, 3, 5, 5, 5); u[:, 1] = 2.0
    up = resize_field(u, (9, 9, 9))
    np.testing.assert_allclose(up[:, 1].numpy(), 4.0, atol=1e-5)  # (9-1)/(5-1) = 2


def test_jacobian_of_scaling_and_folding():
    k, j, i = np.meshgrid(*[np.arange(12.0)] * 3, indexing="ij")
    u = np.stack([0.1 * k, 0.0 * j, -0.2 * i])
    np.testing.assert_allclose(jacobian_determinant(u), 1.1 * 0.8, atol=1e-6)
    fold = np.stack([-2.0 * k, 0 * j, 0 * i])
    assert (jacobian_determinant(fold) < 0).all()


def test_jacobian_tensor_matches_numpy_gradient_and_counts_folds():
    u = np.random.default_rng(0).normal(0.0, 0.6, (3, 10, 11, 12))
    grads = [np.gradient(u[c], axis=(0, 1, 2)) for c in range(3)]  # the definition, written out
    jac = np.linalg.det(np.stack([np.stack([grads[c][a] + (a == c) for a in range(3)], -1) for c in range(3)], -2))
    tensor = torch.from_numpy(u)
    np.testing.assert_allclose(jacobian_determinant_tensor(tensor).numpy(), jac, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jacobian_determinant(u), jac, rtol=1e-5, atol=1e-5)
    assert folded_voxels(tensor[None]) == int((jac <= 0).sum()) > 0


def test_mm_conversion_matches_itk_on_an_oblique_anisotropic_grid():
    grid = Volume(np.zeros((6, 7, 8), np.float32), (0.8, 1.7, 3.1), (3.0, -4.0, 10.0), rotation(np.deg2rad(30), 0.0, np.deg2rad(-25)))
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3, 6, 7, 8)).astype(np.float32)
    mm = voxels_to_mm(u, grid)
    np.testing.assert_allclose(mm_to_voxels(mm, grid), u, atol=1e-4)
    image = grid.to_sitk()
    k, j, i = 2, 3, 4
    p0 = np.array(image.TransformContinuousIndexToPhysicalPoint((i, j, k)))
    p1 = np.array(image.TransformContinuousIndexToPhysicalPoint([float(i + u[2, k, j, i]), float(j + u[1, k, j, i]), float(k + u[0, k, j, i])]))
    np.testing.assert_allclose(mm[k, j, i], p1 - p0, atol=1e-4)


def test_itk_displacement_transform_reproduces_engine_warp():
    """Resampling through the mm field with SimpleITK equals the engine's voxel warp."""
    grid = Volume(np.zeros((10, 12, 14), np.float32), (1.5, 1.0, 2.0), (5.0, 2.0, -3.0), rotation(np.deg2rad(15), 0.0, np.deg2rad(40)))
    rng = np.random.default_rng(2)
    from scipy import ndimage

    img = ndimage.gaussian_filter(rng.random((10, 12, 14)), 2).astype(np.float32)
    u = np.stack([ndimage.gaussian_filter(rng.normal(size=(10, 12, 14)), 3) * 3 for _ in range(3)]).astype(np.float32)
    engine = warp(torch.from_numpy(img)[None, None], torch.from_numpy(u)[None])[0, 0].numpy()
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field_volume(u, grid).to_sitk(), sitk.sitkVectorFloat64))
    itk = sitk.GetArrayFromImage(sitk.Resample(grid.with_array(img).to_sitk(), grid.to_sitk(), transform, sitk.sitkLinear))
    inner = (slice(2, -2),) * 3
    np.testing.assert_allclose(itk[inner], engine[inner], atol=1e-4)


def test_known_translation_becomes_the_voxel_field():
    grid = Volume(np.zeros((6, 7, 8), np.float32), (2.0, 1.0, 0.5), (0, 0, 0), rotation(np.deg2rad(0), 0.0, np.deg2rad(90)))
    t = sitk.TranslationTransform(3, (2.0, 0.0, 1.0))  # LPS mm
    u = linear_to_voxel_field(t, grid)
    # direction rotates i onto +y: x shift of 2 mm is along -j (1 mm voxels), z shift 1 mm = 2 voxels of k
    np.testing.assert_allclose(u[:, 3, 3, 3], [2.0, -2.0, 0.0], atol=1e-5)
