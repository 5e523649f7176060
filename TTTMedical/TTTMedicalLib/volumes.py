"""Volume nodes <-> engine volumes, with their geometry.

Conventions:

* A Slicer volume node holds voxels as ``arrayFromVolume`` returns them, indexed ``[k, j, i]``,
  and an IJK-to-RAS matrix (millimetres, RAS).  The engine's
  :class:`~tttmedical.core.volume.Volume` holds the same ``[k, j, i]`` array with LPS spacing,
  origin and direction; the only RAS <-> LPS conversion used here is the engine's own
  (:meth:`Volume.from_ijk_to_ras` / :meth:`Volume.ijk_to_ras`), so both layers agree by construction.
* ``world=True`` folds the node's parent *linear* transforms into the geometry (what the user sees);
  a non-linear parent transform cannot be folded into a grid and is reported as an input error.
* Files are written by the engine (SimpleITK; NRRD/NIfTI/MHA, LPS on disk).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from tttmedical.core.errors import InputError
from tttmedical.core.volume import Volume

from .scene import get_scene, unique_name


def _name(node) -> str:
    return node.GetName() or node.GetID()


def ijk_to_ras_of(node, world: bool = True) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a volume node, including parent linear transforms if ``world``."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(matrix)
    parent = node.GetParentTransformNode()
    if world and parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(
                f"The volume '{_name(node)}' is under the non-linear transform '{_name(parent)}'; "
                "harden that transform on it (Data module) or remove it, then run again."
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = slicer.util.arrayFromVTKMatrix(to_world) @ ijk_to_ras
    return ijk_to_ras


def check_volume_node(node, role: str = "volume", allow_labelmap: bool = True) -> None:
    """Raise :class:`InputError` (one sentence naming ``role``) if ``node`` is not a usable 3D scalar volume."""
    if node is None:
        raise InputError(f"No {role} is selected; select a 3D volume.")
    if not node.IsA("vtkMRMLScalarVolumeNode") or (not allow_labelmap and node.IsA("vtkMRMLLabelMapVolumeNode")):
        raise InputError(f"The {role} '{_name(node)}' is a {node.GetClassName()}; select a scalar (grayscale) 3D volume.")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"The {role} '{_name(node)}' has no voxels; load its image data or select another volume.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"The {role} '{_name(node)}' has {image.GetNumberOfScalarComponents()} components per voxel; select a scalar 3D volume."
        )
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise InputError(
            f"The {role} '{_name(node)}' is 2D ({dims[0]}x{dims[1]}x{dims[2]} voxels); select a 3D volume with at least 2 voxels along each axis."
        )


def volume_from_node(node, role: str = "volume", world: bool = True, dtype=None) -> Volume:
    """Engine :class:`Volume` (a copy of the voxels, LPS geometry) of a scalar volume node."""
    check_volume_node(node, role)
    array = np.array(slicer.util.arrayFromVolume(node), dtype=dtype, copy=True)
    return Volume.from_ijk_to_ras(array, ijk_to_ras_of(node, world))


def write_volume_node(node, path: str | Path, role: str = "volume", world: bool = True, dtype=None) -> Path:
    """Write a volume node to ``path`` (format from the extension) with its geometry."""
    return volume_from_node(node, role, world, dtype).write(path, compress=False)


def update_node_from_volume(node, volume: Volume) -> None:
    """Set a volume node's voxels and IJK-to-RAS matrix from an engine volume (node keeps its name)."""
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras()))


def add_volume_node(volume: Volume, name: str, scene=None, class_name: str = "vtkMRMLScalarVolumeNode"):
    """Add a new volume node holding ``volume`` (never reuses an existing node; name made unique)."""
    scene = get_scene(scene)
    node = scene.AddNewNodeByClass(class_name, unique_name(scene, name))
    update_node_from_volume(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def read_volume_file(path: str | Path) -> Volume:
    """Read an engine output image as it is (no validation: a uniform Jacobian is a valid result)."""
    image = sitk.ReadImage(str(path))
    return Volume.from_sitk(image)


def load_volume_file(path: str | Path, name: str, scene=None, class_name: str = "vtkMRMLScalarVolumeNode"):
    """Read an image file into a new volume node (geometry converted LPS -> RAS)."""
    return add_volume_node(read_volume_file(path), name, scene, class_name)
