"""Grid transform nodes move points exactly as the engine's displacement field says.

Geometry is oblique (rotations about three axes) and anisotropic throughout.
"""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")
import torch  # noqa: E402  (an engine requirement: missing torch fails, never skips)

from tttmedical.core.volume import Volume  # noqa: E402
from tttmedical.core.warp import field_volume, warp  # noqa: E402
from engine_helpers import rotation  # noqa: E402
from TTTMedicalLib import transforms  # noqa: E402

TOL_MM = 1e-3


@pytest.fixture
def grid():
    """An oblique, anisotropic fixed grid (LPS) with shape (K, J, I) = (6, 7, 8)."""
    return Volume(np.zeros((6, 7, 8), np.float32), (0.9, 1.4, 2.2), (-20.0, 13.0, 4.5), rotation(0.35, -0.25, 0.6))


@pytest.fixture
def engine_field(grid):
    """Smooth engine displacement ``u`` (1, 3, D, H, W) in voxels of ``grid`` (channel 0 = k)."""
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in grid.shape), indexing="ij")
    u = np.stack([0.8 * np.sin(0.5 * i + 0.2 * j), -1.1 * np.cos(0.4 * k) + 0.3 * np.sin(0.3 * i), 0.6 * np.sin(0.7 * j + 0.1 * k)])
    return torch.tensor(u[None], dtype=torch.float64)


def continuous_ijk_to_ras(grid, ijk):
    return (grid.ijk_to_ras() @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]


def test_voxel_centres_move_exactly_as_engine_field(scene, grid, engine_field):
    field = field_volume(engine_field, grid)  # engine: voxels -> LPS mm (D, H, W, 3)
    node = transforms.add_grid_transform_node(field, "refined", scene)
    from_parent = node.GetTransformFromParent()

    u = engine_field[0].numpy()
    kji = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), -1).reshape(-1, 3)
    ijk = kji[:, ::-1].astype(float)
    moved_ijk = ijk + u[:, kji[:, 0], kji[:, 1], kji[:, 2]].T[:, ::-1]  # x + u(x), channels (k, j, i) -> (i, j, k)
    expected = continuous_ijk_to_ras(grid, moved_ijk)
    points = continuous_ijk_to_ras(grid, ijk)
    got = transforms.transform_points_ras(from_parent, points)
    assert np.abs(got - expected).max() < TOL_MM
    assert node.GetTransformFromParentAs("vtkOrientedGridTransform", False, True) is not None


def _between_voxels(grid, engine_field):
    """Points shifted by a sub-voxel offset from every interior voxel, and the engine's (trilinear) image of them."""
    shift = np.array([0.3, 0.65, 0.45])  # (k, j, i) voxels
    shift_field = torch.tensor(shift, dtype=engine_field.dtype).view(1, 3, 1, 1, 1).expand_as(engine_field).contiguous()
    u_at_shifted = warp(engine_field, shift_field)[0].numpy()  # the engine's u(x + s), (3, D, H, W)
    interior = np.stack(np.meshgrid(*(np.arange(n - 1) for n in grid.shape), indexing="ij"), -1).reshape(-1, 3)
    kji = interior + shift
    disp = u_at_shifted[:, interior[:, 0], interior[:, 1], interior[:, 2]].T
    return continuous_ijk_to_ras(grid, kji[:, ::-1]), continuous_ijk_to_ras(grid, (kji + disp)[:, ::-1])


def test_node_uses_the_interpolation_slicer_reloads_and_stays_close_to_the_engine_between_voxels(scene, grid, engine_field):
    """The node interpolates cubically, as Slicer does for every field file it loads; between voxel centres
    it differs from the engine's trilinear interpolation only by interpolation error (documented)."""
    field = field_volume(engine_field, grid)
    node = transforms.add_grid_transform_node(field, "refined", scene)
    assert node.GetTransformFromParent().GetInterpolationModeAsString() == "Cubic"
    points, engine_image = _between_voxels(grid, engine_field)
    got = transforms.transform_points_ras(node.GetTransformFromParent(), points)
    largest_step_mm = max(np.abs(np.diff(field.array, axis=a)).max() for a in range(3))
    difference = np.abs(got - engine_image).max()
    assert 1e-4 < difference < 0.25 * largest_step_mm, (difference, largest_step_mm)

    # ITK's DisplacementFieldTransform (linear) on the same field agrees with the engine.
    itk = sitk.DisplacementFieldTransform(sitk.Cast(field.to_sitk(), sitk.sitkVectorFloat64))
    for p_ras, q_ras in zip(points[::7], engine_image[::7]):
        q_lps = np.array(itk.TransformPoint(tuple(p_ras * [-1, -1, 1])))
        assert np.abs(q_lps * [-1, -1, 1] - q_ras).max() < TOL_MM


@pytest.mark.parametrize("suffix", [".h5", ".nii.gz"])
def test_saved_and_reloaded_node_moves_every_point_as_before(scene, grid, engine_field, tmp_path, suffix):
    node = transforms.add_grid_transform_node(field_volume(engine_field, grid), "refined", scene)
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(tmp_path / f"refined{suffix}"))
    assert storage.WriteData(node)
    reloaded = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "reloaded")
    assert storage.ReadData(reloaded)
    points, _ = _between_voxels(grid, engine_field)
    before = transforms.transform_points_ras(node.GetTransformFromParent(), points)
    after = transforms.transform_points_ras(reloaded.GetTransformFromParent(), points)
    tolerance = 1e-9 if suffix == ".h5" else 1e-5  # NIfTI stores float32 vectors
    assert np.abs(after - before).max() < tolerance
    assert np.abs(before - points).max() > 0.5  # the field is not trivial


def test_sampling_works_in_bounded_slabs(scene):
    """A non-linear transform is sampled slab by slab: the result equals one-shot sampling, and the
    temporary arrays stay far below the float64 meshgrids of the whole grid."""
    import tracemalloc

    big = Volume(np.zeros((48, 40, 36), np.float32), (1.1, 0.9, 1.3), (5.0, -7.0, 2.0), rotation(0.2, 0.1, -0.3))
    coarse = Volume(np.zeros((5, 5, 5)), (12.0, 12.0, 12.0), (-20.0, -25.0, -10.0), rotation(0.2, 0.1, -0.3))
    rng = np.random.default_rng(3)
    node = transforms.add_grid_transform_node(coarse.with_array(rng.normal(scale=2.0, size=(5, 5, 5, 3))), "elastix", scene)
    whole = transforms.sample_transform(node, big, chunk_voxels=10 ** 9)
    tracemalloc.start()
    chunked = transforms.sample_transform(node, big, dtype=np.float32, chunk_voxels=40 * 36 * 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert chunked.array.dtype == np.float32 and chunked.same_grid(big)
    assert np.abs(chunked.array - whole.array).max() < 1e-4 and np.abs(whole.array).max() > 0.5
    result_bytes = chunked.array.nbytes
    one_shot_temporaries = big.array.size * 4 * 8 * 3  # the (K, J, I, 4) float64 meshgrid stack and its products
    assert peak < result_bytes + one_shot_temporaries / 10, (peak, result_bytes)


def test_same_convention_as_slicer_loading_the_field_file(scene, grid, engine_field, tmp_path):
    field = field_volume(engine_field, grid)
    path = field.write(tmp_path / "displacement.nii.gz")
    loaded = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "loaded by Slicer")
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(loaded)
    ours = transforms.add_grid_transform_node(field, "ours", scene)
    points = continuous_ijk_to_ras(grid, np.stack(np.meshgrid(*(np.arange(n) for n in grid.size_ijk), indexing="ij"), -1).reshape(-1, 3).astype(float))
    a = transforms.transform_points_ras(loaded.GetTransformFromParent(), points)
    b = transforms.transform_points_ras(ours.GetTransformFromParent(), points)
    assert np.abs(a - b).max() < TOL_MM
    assert np.abs(b - points).max() > 0.5  # the field is not trivial


def test_field_round_trip_through_node_is_exact(scene, grid, engine_field):
    field = field_volume(engine_field, grid)
    back = transforms.field_from_grid_transform_node(transforms.add_grid_transform_node(field, "g", scene))
    assert back.same_grid(field, tol=1e-12)
    assert np.abs(back.array - field.array).max() < 1e-6


def test_registration_references_point_to_inputs_without_modifying_them(scene, grid, engine_field):
    fixed = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.float32), name="fixed")
    moving = slicer.util.addVolumeFromArray(np.ones((6, 7, 8), np.float32), name="moving")
    node = transforms.add_grid_transform_node(field_volume(engine_field, grid), "g", scene, moving_node=moving, fixed_node=fixed)
    assert node.GetNodeReference(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole()).GetID() == moving.GetID()
    assert node.GetNodeReference(slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole()).GetID() == fixed.GetID()
    assert moving.GetParentTransformNode() is None


def test_sampling_any_transform_gives_its_resampling_displacement(scene, grid):
    linear = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rigid")
    to_parent = np.eye(4)
    to_parent[:3, :3] = rotation(0.1, 0.0, -0.2)
    to_parent[:3, 3] = [3.0, -1.0, 2.5]
    linear.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(to_parent))
    field = transforms.sample_transform(linear, grid)
    points = transforms.voxel_centres_ras(grid).reshape(-1, 3)
    from_parent = np.linalg.inv(to_parent)
    expected_ras = (from_parent @ np.c_[points, np.ones(len(points))].T).T[:, :3] - points
    assert np.abs(field.array.reshape(-1, 3) * [-1, -1, 1] - expected_ras).max() < 1e-9
    assert field.same_grid(grid)
