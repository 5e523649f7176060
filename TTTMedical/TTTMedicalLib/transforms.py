"""Displacement fields <-> Slicer transform nodes.

Conventions:

* Engine/file side (see :mod:`tttmedical.core.warp`): a displacement field is a vector
  :class:`~tttmedical.core.volume.Volume` ``(K, J, I, 3)`` on the *fixed* grid, **LPS millimetres**,
  ITK displacement-field convention: the fixed point ``p`` maps to ``p + d(p)`` in moving space.
* Slicer side: a transform that maps fixed (world) points to moving points is a *resampling*
  transform and is stored as the node's **transform from parent**.  This is how Slicer itself reads
  ITK displacement fields (``vtkMRMLTransformStorageNode``: "resampling" fields are set with
  ``SetAndObserveTransformFromParentAutoInvert``; ``vtkITKTransformConverter::
  SetVTKOrientedGridTransformFromITKImage`` converts the grid with origin ``(-x, -y, z)``,
  direction ``diag(-1, -1, 1) @ D`` and vectors ``(-dx, -dy, dz)``).  Placing the moving volume under
  such a node aligns it with the fixed volume.
* The grid uses **cubic** interpolation, because that is what Slicer reads back from any saved
  displacement field (``vtkITKTransformConverter::SetVTKOrientedGridTransformFromITKImage`` calls
  ``SetInterpolationModeToCubic``): a result saved and reloaded moves every point as it did before
  saving.  VTK's cubic grid interpolation passes through the samples, so at the fixed volume's voxel
  centres (where the engine computed the warped volume) the node moves points exactly as the engine
  did; between voxel centres it differs from the engine's trilinear interpolation by the field's
  interpolation error (tested).
* Arbitrary transforms are sampled on a grid in slabs of at most ``SAMPLE_CHUNK_VOXELS`` voxels, so
  memory stays bounded (a 256^3 grid no longer needs several GB of float64 meshgrids).
"""
from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer
from tttmedical.core.errors import InputError
from tttmedical.core.volume import Volume

from .scene import get_scene, unique_name

LPS_TO_RAS_VECTOR = np.array([-1.0, -1.0, 1.0])


def _name(node) -> str:
    return node.GetName() or node.GetID()


def oriented_grid_transform(field: Volume) -> "slicer.vtkOrientedGridTransform":
    """A ``vtkOrientedGridTransform`` (RAS) that moves points exactly as the LPS-mm ``field`` does."""
    vectors = np.asarray(field.array, dtype=np.float64)
    if vectors.ndim != 4 or vectors.shape[-1] != 3:
        raise InputError(f"A displacement field needs 3 components per voxel (got an array of shape {vectors.shape}).")
    size_i, size_j, size_k = field.size_ijk
    image = vtk.vtkImageData()
    image.SetDimensions(size_i, size_j, size_k)
    image.SetSpacing(*field.spacing)
    image.SetOrigin(*(np.asarray(field.origin) * LPS_TO_RAS_VECTOR))
    vectors_ras = np.ascontiguousarray((vectors * LPS_TO_RAS_VECTOR).reshape(-1, 3))
    array = numpy_support.numpy_to_vtk(vectors_ras, deep=True, array_type=vtk.VTK_DOUBLE)
    array.SetName("DisplacementField")
    image.GetPointData().SetScalars(array)

    direction_ras = np.eye(4)
    direction_ras[:3, :3] = np.diag(LPS_TO_RAS_VECTOR) @ field.direction
    transform = slicer.vtkOrientedGridTransform()
    transform.SetGridDirectionMatrix(slicer.util.vtkMatrixFromArray(direction_ras))
    transform.SetDisplacementGridData(image)
    transform.SetInterpolationModeToCubic()
    return transform


def add_grid_transform_node(field: Volume, name: str, scene=None, moving_node=None, fixed_node=None):
    """New ``vtkMRMLGridTransformNode`` holding ``field`` as its transform from parent.

    ``moving_node`` / ``fixed_node`` are recorded with Slicer's registration reference roles
    (``vtkMRMLTransformNode.GetMovingNodeReferenceRole()`` / ``GetFixedNodeReferenceRole()``);
    the moving node itself is not modified.
    """
    scene = get_scene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", unique_name(scene, name))
    node.SetAndObserveTransformFromParent(oriented_grid_transform(field))
    if moving_node is not None:
        node.SetNodeReferenceID(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole(), moving_node.GetID())
    if fixed_node is not None:
        node.SetNodeReferenceID(slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole(), fixed_node.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def field_from_grid_transform_node(node) -> Volume:
    """The stored displacement grid of a grid transform node, back as an LPS-mm field (exact inverse
    of :func:`add_grid_transform_node`).  Use :func:`sample_transform` for any other transform."""
    transform = node.GetTransformFromParentAs("vtkOrientedGridTransform", False, True)
    if transform is None:
        raise InputError(f"The transform '{_name(node)}' does not store a displacement grid as its transform from parent.")
    image = transform.GetDisplacementGrid()
    size_i, size_j, size_k = image.GetDimensions()
    vectors = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(size_k, size_j, size_i, 3)
    direction_ras = slicer.util.arrayFromVTKMatrix(transform.GetGridDirectionMatrix())[:3, :3]
    return Volume(
        (vectors * LPS_TO_RAS_VECTOR).astype(np.float64),
        image.GetSpacing(),
        tuple(np.asarray(image.GetOrigin()) * LPS_TO_RAS_VECTOR),
        np.diag(LPS_TO_RAS_VECTOR) @ direction_ras,
    )


def resampling_transform(transform_node) -> vtk.vtkGeneralTransform:
    """World (RAS) -> ``transform_node``'s local frame: where a fixed point is found in the moving
    volume when the moving volume sits under ``transform_node``.  Works for any transform type
    (linear, grid, B-spline, thin-plate, composite) and any parent chain."""
    general = vtk.vtkGeneralTransform()
    transform_node.GetTransformFromWorld(general)
    return general


def transform_points_ras(transform: vtk.vtkAbstractTransform, points_ras: np.ndarray) -> np.ndarray:
    """Apply a VTK transform to an ``(N, 3)`` array of RAS points (in C++, not point by point)."""
    points_ras = np.ascontiguousarray(points_ras, dtype=np.float64).reshape(-1, 3)
    source = vtk.vtkPoints()
    source.SetData(numpy_support.numpy_to_vtk(points_ras, deep=True, array_type=vtk.VTK_DOUBLE))
    target = vtk.vtkPoints()
    target.SetDataTypeToDouble()
    transform.TransformPoints(source, target)
    return numpy_support.vtk_to_numpy(target.GetData()).reshape(-1, 3).astype(np.float64)


SAMPLE_CHUNK_VOXELS = 1 << 18
"""Voxels sampled per slab (about 6 MB of float64 points and results each)."""


def voxel_centres_ras(grid: Volume, k_range: tuple[int, int] | None = None) -> np.ndarray:
    """RAS coordinates ``(K, J, I, 3)`` of the voxel centres of ``grid`` (slices ``k_range`` only if given)."""
    k0, k1 = k_range or (0, grid.shape[0])
    k, j, i = np.meshgrid(np.arange(k0, k1, dtype=np.float64), *(np.arange(n, dtype=np.float64) for n in grid.shape[1:3]),
                          indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1)
    return (ijk1 @ grid.ijk_to_ras().T)[..., :3]


def sample_transform(transform_node, grid: Volume, dtype=np.float64, chunk_voxels: int = SAMPLE_CHUNK_VOXELS) -> Volume:
    """Displacement field (LPS mm, ITK convention, ``dtype``) of ``transform_node``'s resampling
    transform, sampled at the voxel centres of ``grid`` (the fixed volume in world coordinates).
    Works slab by slab (``chunk_voxels`` voxels at a time): besides the result, memory is bounded."""
    transform = resampling_transform(transform_node)
    size_k, size_j, size_i = grid.shape[:3]
    field = np.empty((size_k, size_j, size_i, 3), dtype=dtype)
    step = max(1, chunk_voxels // max(1, size_j * size_i))
    for k0 in range(0, size_k, step):
        k1 = min(size_k, k0 + step)
        points = voxel_centres_ras(grid, (k0, k1))
        moved = transform_points_ras(transform, points.reshape(-1, 3)).reshape(points.shape)
        field[k0:k1] = (moved - points) * LPS_TO_RAS_VECTOR
    return grid.with_array(field)


def write_transform_as_field(transform_node, grid: Volume, path) -> None:
    """Write ``transform_node`` as a displacement-field image on ``grid`` for ``--init`` (float32
    vectors: half the size of float64, ~1e-6 mm rounding; the engine reads any vector type)."""
    sample_transform(transform_node, grid, dtype=np.float32).write(path, compress=False)
