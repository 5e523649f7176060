"""Small synthetic registration inputs (no download, no torch) for self-tests and examples.

The fixed image is a sum of anisotropic Gaussian blobs evaluated analytically; the moving image is
the same pattern evaluated at ``y - v(y)`` with a smooth sinusoidal ``v`` (millimetres), so the
moving anatomy is displaced by about ``amplitude_mm``.  Both share an oblique, anisotropic grid.
"""
from __future__ import annotations

import numpy as np

import slicer

BLOBS = (  # centre (fraction of the extent, i j k), sigma (fraction), weight
    ((0.50, 0.50, 0.50), (0.22, 0.16, 0.18), 1.0),
    ((0.30, 0.62, 0.40), (0.08, 0.10, 0.09), 0.8),
    ((0.68, 0.35, 0.62), (0.10, 0.07, 0.08), 0.6),
)


def oblique_ijk_to_ras(size: int, spacing=(1.2, 1.0, 1.5), angle_deg: float = 20.0) -> np.ndarray:
    """4x4 IJK-to-RAS with a rotation about the S axis and anisotropic spacing (mm)."""
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag(spacing)
    matrix[:3, 3] = -matrix[:3, :3] @ np.full(3, (size - 1) / 2.0) + np.array([5.0, -3.0, 2.0])
    return matrix


def _pattern(points_ijk: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Intensity and a label (1 inside the main blob, 2 inside the second) at continuous ``(i, j, k)``."""
    extent = float(size - 1)
    value = np.zeros(points_ijk.shape[:-1])
    label = np.zeros(points_ijk.shape[:-1], dtype=np.uint8)
    for index, (centre, sigma, weight) in enumerate(BLOBS):
        r2 = sum(((points_ijk[..., a] - centre[a] * extent) / (sigma[a] * extent)) ** 2 for a in range(3))
        value += weight * np.exp(-0.5 * r2)
        if index < 2:
            label[(r2 < 1.0) & (label == 0)] = index + 1
    return value.astype(np.float32), label


def registration_pair_arrays(size: int = 24, amplitude_voxels: float = 1.5):
    """``(fixed, moving, fixed_labels, moving_labels)`` arrays ``[k, j, i]`` on a ``size``^3 grid."""
    k, j, i = np.meshgrid(*(np.arange(size, dtype=np.float64),) * 3, indexing="ij")
    ijk = np.stack([i, j, k], axis=-1)
    fixed, fixed_labels = _pattern(ijk, size)
    phase = 2.0 * np.pi / (size - 1)
    v = np.stack([
        amplitude_voxels * np.sin(phase * j),
        amplitude_voxels * np.cos(phase * k) * 0.8,
        amplitude_voxels * np.sin(phase * i) * 0.6,
    ], axis=-1)
    moving, moving_labels = _pattern(ijk - v, size)
    return fixed, moving, fixed_labels, moving_labels


def add_registration_pair(size: int = 24, amplitude_voxels: float = 1.5, with_labels: bool = False, name: str = "TTT"):
    """Add fixed and moving volumes (and label map volumes if ``with_labels``) to ``slicer.mrmlScene``.

    Returns ``(fixed, moving)`` or ``(fixed, moving, fixed_labels, moving_labels)``.
    """
    fixed, moving, fixed_labels, moving_labels = registration_pair_arrays(size, amplitude_voxels)
    ijk_to_ras = oblique_ijk_to_ras(size)
    fixed_node = slicer.util.addVolumeFromArray(fixed * 100.0, ijk_to_ras, f"{name} fixed")
    moving_node = slicer.util.addVolumeFromArray(moving * 100.0, ijk_to_ras, f"{name} moving")
    if not with_labels:
        return fixed_node, moving_node
    fixed_label_node = slicer.util.addVolumeFromArray(fixed_labels, ijk_to_ras, f"{name} fixed labels", "vtkMRMLLabelMapVolumeNode")
    moving_label_node = slicer.util.addVolumeFromArray(moving_labels, ijk_to_ras, f"{name} moving labels", "vtkMRMLLabelMapVolumeNode")
    return fixed_node, moving_node, fixed_label_node, moving_label_node
