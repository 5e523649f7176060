"""Segmentations / label maps -> label volumes with matched label values, and back.

The engine compares label ``n`` of the fixed label volume with label ``n`` of the moving one; the
fixed input's segments, in their order, get labels 1, 2, ... and each needs a partner in the moving
input (extra moving segments are ignored):

* two **label map volumes** are matched **by label value**.  Slicer names the segments imported from
  a label map after its colour table ("jake", "Peach" with the *Labels* table; ``Label_<value>``
  only without a colour node), so two label maps with different colour tables still match;
* otherwise (two segmentations, or a segmentation and a label map) segments are matched **by name**.

The fixed input's segment names name the labels of the results (warped segmentation, Dice rows).

Labels are rasterised on the grid of the volume they belong to (fixed segmentation on the fixed
volume, moving on the moving volume) with Slicer's own export
(``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode``), which resamples through any
transform between the segmentation and that volume.  Temporary nodes are removed afterwards.
"""
from __future__ import annotations

import numpy as np
import vtk

import slicer
from tttmedical.core.errors import InputError
from tttmedical.core.volume import Volume

from .scene import get_scene, module_logic, temporary_nodes, unique_name
from .volumes import add_volume_node


def _name(node) -> str:
    return node.GetName() or node.GetID()


def segmentations_logic(scene):
    """Segmentations module logic (binding registers the converter rules that binary labelmaps need)."""
    return module_logic(scene, "segmentations", "vtkSlicerSegmentationsModuleLogic")


def _as_segmentation(node, role: str, scene):
    """``node`` itself if it is a segmentation, else a temporary segmentation imported from a label map."""
    if node.IsA("vtkMRMLSegmentationNode"):
        return node
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__TTTMedical_temp__")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(node, segmentation, ""):
            raise InputError(f"The {role} '{_name(node)}' could not be converted to segments; check that it holds integer labels.")
        return segmentation
    raise InputError(f"The {role} '{_name(node)}' is a {node.GetClassName()}; select a segmentation or a label map volume.")


def segment_names(segmentation_node) -> list[str]:
    """Segment names in the segmentation's order."""
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def _export(segmentation_node, segment_ids: list[str], reference_node, scene) -> np.ndarray:
    """Labels 1..N (in ``segment_ids`` order) rasterised on ``reference_node``'s grid, ``[k, j, i]``."""
    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__TTTMedical_temp__")
    ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, ids, labelmap, reference_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    )
    if not ok:
        raise InputError(f"The segmentation '{_name(segmentation_node)}' could not be rasterised on the volume '{_name(reference_node)}'.")
    array = np.array(slicer.util.arrayFromVolume(labelmap), dtype=np.uint16, copy=True)
    expected = tuple(reversed(reference_node.GetImageData().GetDimensions()))
    if array.shape != expected:
        raise RuntimeError(f"Exported labels have shape {array.shape}, expected {expected}")
    return array


def _match_by_value(fixed_seg, fixed_ids: list[str], moving_seg, moving_name: str) -> list[str]:
    """Moving segment IDs with the fixed segments' label values (label maps)."""
    moving = moving_seg.GetSegmentation()
    by_value = {moving.GetNthSegment(i).GetLabelValue(): moving.GetNthSegmentID(i) for i in range(moving.GetNumberOfSegments())}
    values = [fixed_seg.GetSegmentation().GetSegment(segment_id).GetLabelValue() for segment_id in fixed_ids]
    missing = [value for value in values if value not in by_value]
    if missing:
        raise InputError(
            f"The moving label map '{moving_name}' has no voxel with label value {', '.join(map(str, missing))}; "
            f"label maps are matched by value, so select the moving label map with the same labels as the fixed one."
        )
    return [by_value[value] for value in values]


def _match_by_name(names: list[str], moving_seg, moving_name: str) -> list[str]:
    """Moving segment IDs with the fixed segments' names (segmentations)."""
    moving_ids = [moving_seg.GetSegmentation().GetSegmentIdBySegmentName(name) for name in names]
    missing = [name for name, segment_id in zip(names, moving_ids) if not segment_id]
    if missing:
        raise InputError(
            f"The moving segmentation '{moving_name}' has no segment named {', '.join(repr(m) for m in missing)}; "
            f"segments are matched by name, so rename them to match the fixed segmentation."
        )
    return moving_ids


def matched_label_volumes(fixed_segmentation, moving_segmentation, fixed_node, moving_node,
                          fixed_grid: Volume, moving_grid: Volume, scene=None) -> tuple[Volume, Volume, list[str]]:
    """Fixed and moving label volumes with the same label value for the same segment name.

    ``fixed_grid`` / ``moving_grid`` are the engine volumes exported for ``fixed_node`` /
    ``moving_node`` (their geometry is reused, so labels and images share one grid exactly).
    Returns ``(fixed_labels, moving_labels, names)`` where ``names[n - 1]`` is label ``n``'s name.
    """
    if (fixed_segmentation is None) != (moving_segmentation is None):
        missing = "moving" if moving_segmentation is None else "fixed"
        raise InputError(f"Only one segmentation is selected; select a {missing} segmentation too, or clear both.")
    scene = get_scene(scene, fixed_node)
    segmentations_logic(scene)
    with temporary_nodes(scene):
        fixed_seg = _as_segmentation(fixed_segmentation, "fixed segmentation", scene)
        moving_seg = _as_segmentation(moving_segmentation, "moving segmentation", scene)
        names = segment_names(fixed_seg)
        if not names:
            raise InputError(f"The fixed segmentation '{_name(fixed_segmentation)}' has no segments; add segments or clear it.")
        fixed_ids = [fixed_seg.GetSegmentation().GetNthSegmentID(i) for i in range(len(names))]
        if fixed_segmentation.IsA("vtkMRMLLabelMapVolumeNode") and moving_segmentation.IsA("vtkMRMLLabelMapVolumeNode"):
            moving_ids = _match_by_value(fixed_seg, fixed_ids, moving_seg, _name(moving_segmentation))
        else:
            moving_ids = _match_by_name(names, moving_seg, _name(moving_segmentation))
        fixed_labels = _export(fixed_seg, fixed_ids, fixed_node, scene)
        moving_labels = _export(moving_seg, moving_ids, moving_node, scene)
    for labels, node, role, volume_role in ((fixed_labels, fixed_segmentation, "fixed", fixed_node),
                                            (moving_labels, moving_segmentation, "moving", moving_node)):
        present = set(np.unique(labels).tolist())
        absent = [names[n - 1] for n in range(1, len(names) + 1) if n not in present]
        if absent:
            raise InputError(
                f"The {role} segmentation '{_name(node)}' does not overlap the {role} volume '{_name(volume_role)}' "
                f"(segment {', '.join(repr(a) for a in absent)} is empty there); select the segmentation that belongs to that volume."
            )
    return fixed_grid.with_array(fixed_labels), moving_grid.with_array(moving_labels), names


def add_segmentation_from_labels(labels: Volume, names: list[str], name: str, scene=None):
    """New segmentation node from a label volume; label ``n`` becomes a segment named ``names[n - 1]``."""
    scene = get_scene(scene)
    segmentations_logic(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", unique_name(scene, name))
    segmentation.CreateDefaultDisplayNodes()  # before the block below, which removes what it adds
    with temporary_nodes(scene):
        labelmap = add_volume_node(labels.with_array(np.asarray(labels.array).astype(np.int16)), "__TTTMedical_temp__",
                                   scene, "vtkMRMLLabelMapVolumeNode")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, ""):
            scene.RemoveNode(segmentation)
            raise RuntimeError(f"Importing labels into the segmentation '{name}' failed.")
    content = segmentation.GetSegmentation()
    for index in range(content.GetNumberOfSegments()):
        segment = content.GetNthSegment(index)
        value = segment.GetLabelValue()
        if 1 <= value <= len(names):
            segment.SetName(names[value - 1])
    return segmentation
