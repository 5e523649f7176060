"""Volume nodes <-> engine volumes/files keep voxels and geometry (oblique, anisotropic)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.volume import Volume  # noqa: E402
from engine_helpers import rotation  # noqa: E402
from TTTMedicalLib import volumes  # noqa: E402


OBLIQUE_IJK_TO_RAS = np.eye(4)
OBLIQUE_IJK_TO_RAS[:3, :3] = rotation(0.3, -0.2, 0.5) @ np.diag([0.7, 1.3, 2.9])
OBLIQUE_IJK_TO_RAS[:3, 3] = [12.5, -40.25, 7.0]


def corners(shape_kji):
    k, j, i = (n - 1 for n in shape_kji)
    return [np.array(c, dtype=float) for c in itertools.product((0, i), (0, j), (0, k))]


def ras_of(node, ijk):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint([*ijk, 1.0])[:3])


def make_node(scene, shape=(5, 6, 7), ijk_to_ras=OBLIQUE_IJK_TO_RAS, name="vol", dtype=np.float32):
    array = (np.arange(np.prod(shape)).reshape(shape) * 1.5 + 3).astype(dtype)
    return slicer.util.addVolumeFromArray(array, ijk_to_ras, name), array


def test_node_to_file_to_node_keeps_voxels_and_corner_positions(scene, tmp_path):
    node, array = make_node(scene)
    path = volumes.write_volume_node(node, tmp_path / "vol.nrrd", "test volume")

    # Independent check with SimpleITK: file voxels and LPS corners equal the node's voxels and RAS corners.
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    for ijk in corners(array.shape):
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(ijk)))
        assert np.allclose(lps * [-1, -1, 1], ras_of(node, ijk), atol=1e-9)

    back = volumes.load_volume_file(path, "back", scene)
    assert back.GetID() != node.GetID() and back.GetName() == "back"
    assert np.array_equal(slicer.util.arrayFromVolume(back), array)
    for ijk in corners(array.shape):
        assert np.allclose(ras_of(back, ijk), ras_of(node, ijk), atol=1e-9)
    assert np.allclose(back.GetSpacing(), [0.7, 1.3, 2.9])


def test_engine_volume_to_node_matches_engine_geometry(scene):
    direction = rotation(-0.4, 0.1, 0.25)
    vol = Volume(np.random.default_rng(1).random((4, 3, 6)).astype(np.float32), (2.0, 0.5, 1.25), (-3.0, 4.5, 10.0), direction)
    node = volumes.add_volume_node(vol, "engine", scene)
    m = vol.index_to_lps()
    for ijk in corners(vol.shape):
        lps = (m @ np.r_[ijk, 1.0])[:3]
        assert np.allclose(ras_of(node, ijk), lps * [-1, -1, 1], atol=1e-9)
    again = volumes.volume_from_node(node)
    assert again.same_grid(vol, tol=1e-9) and np.array_equal(again.array, vol.array)


def test_parent_linear_transform_is_folded_only_for_world(scene):
    node, array = make_node(scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    to_parent = np.eye(4)
    to_parent[:3, :3] = rotation(0.0, 0.0, 0.3)
    to_parent[:3, 3] = [5.0, -2.0, 1.0]
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(to_parent))
    node.SetAndObserveTransformNodeID(transform.GetID())
    world = volumes.volume_from_node(node, world=True)
    local = volumes.volume_from_node(node, world=False)
    for ijk in corners(array.shape):
        assert np.allclose(world.ijk_to_ras() @ np.r_[ijk, 1], to_parent @ OBLIQUE_IJK_TO_RAS @ np.r_[ijk, 1], atol=1e-9)
        assert np.allclose(local.ijk_to_ras() @ np.r_[ijk, 1], OBLIQUE_IJK_TO_RAS @ np.r_[ijk, 1], atol=1e-9)


def test_nonlinear_parent_transform_is_an_input_error(scene):
    node, _ = make_node(scene, name="under grid")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    from TTTMedicalLib.transforms import oriented_grid_transform

    grid.SetAndObserveTransformFromParent(oriented_grid_transform(Volume(np.ones((3, 3, 3, 3)))))
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match=r"'under grid' is under the non-linear transform 'warp'"):
        volumes.volume_from_node(node, "fixed volume", world=True)
    assert volumes.volume_from_node(node, world=False).shape == (5, 6, 7)


@pytest.mark.parametrize("shape, message", [
    ((1, 6, 7), r"The fixed volume 'flat' is 2D \(7x6x1 voxels\); select a 3D volume"),
    ((5, 1, 7), r"is 2D \(7x1x5 voxels\)"),
])
def test_two_dimensional_volume_is_an_input_error(scene, shape, message):
    node = slicer.util.addVolumeFromArray(np.ones(shape, np.float32), name="flat")
    with pytest.raises(InputError, match=message) as info:
        volumes.volume_from_node(node, "fixed volume")
    assert str(info.value).count(".") == 1  # one sentence


def test_missing_or_wrong_node_is_an_input_error(scene):
    with pytest.raises(InputError, match=r"^No moving volume is selected; select a 3D volume\.$"):
        volumes.volume_from_node(None, "moving volume")
    vector = slicer.util.addVolumeFromArray(np.ones((3, 4, 5, 3), np.float32), name="rgb", nodeClassName="vtkMRMLVectorVolumeNode")
    with pytest.raises(InputError, match=r"The moving volume 'rgb' has 3 components per voxel; select a scalar 3D volume\.$"):
        volumes.volume_from_node(vector, "moving volume")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nothing")
    with pytest.raises(InputError, match=r"'nothing' has no voxels"):
        volumes.volume_from_node(empty, "moving volume")
