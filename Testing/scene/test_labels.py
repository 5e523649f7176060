"""Segmentations and label maps -> label volumes matched by name (segmentations) or value (label maps)."""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.volume import Volume  # noqa: E402
from TTTMedicalLib import labels, volumes  # noqa: E402
from TTTMedicalLib.scene import node_ids  # noqa: E402

GRID = Volume(np.zeros((8, 9, 10), np.float32), (1.5, 1.0, 2.0), (3.0, 4.0, 5.0),
              np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def label_array(first, second):
    array = np.zeros(GRID.shape, np.uint8)
    array[first] = 1
    array[second] = 2
    return array


@pytest.fixture
def pair(scene):
    rng = np.random.default_rng(0)
    fixed = volumes.add_volume_node(GRID.with_array(rng.random(GRID.shape).astype(np.float32)), "fixed", scene)
    moving = volumes.add_volume_node(GRID.with_array(rng.random(GRID.shape).astype(np.float32)), "moving", scene)
    fixed_labels = label_array(np.s_[1:3, 1:3, 1:3], np.s_[4:6, 4:7, 4:8])           # liver 8 voxels, heart 24
    moving_labels = label_array(np.s_[5:7, 4:7, 4:8], np.s_[2:4, 1:3, 1:3])          # heart 24 voxels, liver 8
    fixed_seg = labels.add_segmentation_from_labels(GRID.with_array(fixed_labels), ["liver", "heart"], "fixed seg", scene)
    moving_seg = labels.add_segmentation_from_labels(GRID.with_array(moving_labels), ["heart", "liver"], "moving seg", scene)
    return fixed, moving, fixed_seg, moving_seg, fixed_labels, moving_labels


def test_segments_are_matched_by_name_and_scene_is_unchanged(scene, pair):
    fixed, moving, fixed_seg, moving_seg, fixed_labels, moving_labels = pair
    assert labels.segment_names(moving_seg) == ["heart", "liver"]
    before = node_ids(scene)
    fixed_grid, moving_grid = volumes.volume_from_node(fixed), volumes.volume_from_node(moving)
    f, m, names = labels.matched_label_volumes(fixed_seg, moving_seg, fixed, moving, fixed_grid, moving_grid, scene)
    assert node_ids(scene) == before
    assert names == ["liver", "heart"]
    assert np.array_equal(f.array, fixed_labels)
    # In the moving segmentation "liver" was label 2: now it is label 1, like in the fixed one.
    expected_moving = np.where(moving_labels == 2, 1, np.where(moving_labels == 1, 2, 0))
    assert np.array_equal(m.array, expected_moving)
    assert f.same_grid(fixed_grid) and m.same_grid(moving_grid)


def test_label_maps_are_accepted_and_match_by_value(scene, pair):
    fixed, moving, *_, fixed_labels, moving_labels = pair
    fixed_map = volumes.add_volume_node(GRID.with_array(fixed_labels), "fixed map", scene, "vtkMRMLLabelMapVolumeNode")
    moving_map = volumes.add_volume_node(GRID.with_array(moving_labels), "moving map", scene, "vtkMRMLLabelMapVolumeNode")
    f, m, names = labels.matched_label_volumes(fixed_map, moving_map, fixed, moving,
                                               volumes.volume_from_node(fixed), volumes.volume_from_node(moving), scene)
    assert names == ["Label_1", "Label_2"]
    assert np.array_equal(f.array, fixed_labels) and np.array_equal(m.array, moving_labels)


def test_missing_segment_name_is_an_input_error(scene, pair):
    fixed, moving, fixed_seg, *_ = pair
    other = labels.add_segmentation_from_labels(GRID.with_array(label_array(np.s_[1:3, 1:3, 1:3], np.s_[0:0])),
                                                ["lungs"], "other seg", scene)
    before = node_ids(scene)
    with pytest.raises(InputError) as info:
        labels.matched_label_volumes(fixed_seg, other, fixed, moving,
                                     volumes.volume_from_node(fixed), volumes.volume_from_node(moving), scene)
    assert str(info.value) == ("The moving segmentation 'other seg' has no segment named 'liver', 'heart'; segments are "
                               "matched by name, so rename them to match the fixed segmentation.")
    assert node_ids(scene) == before


def test_segmentation_outside_its_volume_is_an_input_error(scene, pair):
    fixed, moving, fixed_seg, moving_seg, *_ = pair
    far = Volume(np.zeros((4, 4, 4), np.float32) + np.arange(4, dtype=np.float32), (1, 1, 1), (500.0, 500.0, 500.0))
    far_node = volumes.add_volume_node(far, "far away", scene)
    with pytest.raises(InputError, match=r"^The moving segmentation 'moving seg' does not overlap the moving volume 'far away'"):
        labels.matched_label_volumes(fixed_seg, moving_seg, fixed, far_node,
                                     volumes.volume_from_node(fixed), volumes.volume_from_node(far_node), scene)


def test_only_one_segmentation_is_an_input_error(scene, pair):
    fixed, moving, fixed_seg, *_ = pair
    with pytest.raises(InputError, match=r"^Only one segmentation is selected; select a moving segmentation too, or clear both\.$"):
        labels.matched_label_volumes(fixed_seg, None, fixed, moving, None, None, scene)


def _with_colour_table(node, scene, name):
    """Give a label map Slicer's *Labels* colour table, as a real Slicer scene does (segments are named from it)."""
    colours = scene.GetFirstNodeByName(name)
    if colours is None:
        colours = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
        colours.SetTypeToLabels()
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAndObserveColorNodeID(colours.GetID())
    return colours


def test_label_maps_with_different_colour_tables_match_by_value(scene, pair):
    """Real Slicer names imported segments from the colour table ("jake", "Peach"): two label maps, one
    coloured and one not, must still match label value to label value."""
    fixed, moving, *_, fixed_labels, moving_labels = pair
    fixed_map = volumes.add_volume_node(GRID.with_array(fixed_labels), "fixed map", scene, "vtkMRMLLabelMapVolumeNode")
    moving_map = volumes.add_volume_node(GRID.with_array(moving_labels), "moving map", scene, "vtkMRMLLabelMapVolumeNode")
    colours = _with_colour_table(fixed_map, scene, "Labels")
    before = node_ids(scene)
    f, m, names = labels.matched_label_volumes(fixed_map, moving_map, fixed, moving,
                                               volumes.volume_from_node(fixed), volumes.volume_from_node(moving), scene)
    assert names == [colours.GetColorName(1), colours.GetColorName(2)] == ["jake", "Peach"]
    assert np.array_equal(f.array, fixed_labels) and np.array_equal(m.array, moving_labels)
    assert node_ids(scene) == before


def test_label_map_missing_a_value_is_an_input_error(scene, pair):
    fixed, moving, *_, fixed_labels, _ = pair
    fixed_map = volumes.add_volume_node(GRID.with_array(fixed_labels), "fixed map", scene, "vtkMRMLLabelMapVolumeNode")
    only_one = volumes.add_volume_node(GRID.with_array(np.where(fixed_labels == 2, 2, 0).astype(np.uint8)), "one label",
                                       scene, "vtkMRMLLabelMapVolumeNode")
    _with_colour_table(only_one, scene, "Labels")
    with pytest.raises(InputError) as info:
        labels.matched_label_volumes(fixed_map, only_one, fixed, moving,
                                     volumes.volume_from_node(fixed), volumes.volume_from_node(moving), scene)
    assert str(info.value) == ("The moving label map 'one label' has no voxel with label value 1; label maps are matched "
                               "by value, so select the moving label map with the same labels as the fixed one.")


def test_segmentation_and_coloured_label_map_match_by_name(scene, pair):
    fixed, moving, _, _, fixed_labels, moving_labels = pair
    moving_map = volumes.add_volume_node(GRID.with_array(moving_labels), "moving map", scene, "vtkMRMLLabelMapVolumeNode")
    _with_colour_table(moving_map, scene, "Labels")  # moving segments: 1 "jake", 2 "Peach"
    fixed_seg = labels.add_segmentation_from_labels(GRID.with_array(fixed_labels), ["Peach", "jake"], "named", scene)
    f, m, names = labels.matched_label_volumes(fixed_seg, moving_map, fixed, moving,
                                               volumes.volume_from_node(fixed), volumes.volume_from_node(moving), scene)
    assert names == ["Peach", "jake"]
    assert np.array_equal(m.array, np.where(moving_labels == 2, 1, np.where(moving_labels == 1, 2, 0)))
