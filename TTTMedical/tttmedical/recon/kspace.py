"""The k-space container and its readers (fastMRI-style HDF5, ``.npy``).

:class:`KSpace` holds complex k-space ``[slices, coils, ky, kx]`` as acquired (zeros where not
sampled), the sampling mask ``[ky, kx]`` (one per patient), optionally the coil maps and a
magnitude reference ``[slices, ky, kx]``, and the output geometry: a :class:`~tttmedical.core.volume.Volume`
whose ``[k, j, i]`` grid is ``[slice, ky, kx]`` (the input image's geometry when simulated from
one, 1 mm isotropic for bare k-space).

Readers (:func:`read_kspace_file`): HDF5 needs a ``kspace`` dataset ``[slices, coils, ky, kx]``
(fastMRI multi-coil); ``reconstruction_rss`` ``[slices, ky, kx]`` is used as the reference when its
shape fits, and an optional ``mask`` (``[kx]`` or ``[ky, kx]``) gives the sampling pattern, which
otherwise is the set of ``(ky, kx)`` with any non-zero sample.  ``.npy`` holds the complex array
itself.  Every problem is one :class:`~tttmedical.core.errors.InputError` sentence.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..core.checks import input_file
from ..core.errors import InputError
from ..core.volume import Volume

__all__ = ["KSpace", "RawKSpace", "read_kspace_file", "check_kspace", "KSPACE_SUFFIXES"]

KSPACE_SUFFIXES = (".h5", ".hdf5", ".npy")


@dataclasses.dataclass
class RawKSpace:
    """What a k-space file holds, checked: data ``[S, C, ky, kx]`` complex64, mask/reference when given."""

    data: np.ndarray
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class KSpace:
    data: np.ndarray                 # complex64 [S, C, ky, kx], zeros where not sampled
    mask: np.ndarray                 # bool [ky, kx]
    geometry: Volume                 # output grid [S, ky, kx] (array of zeros)
    reference: np.ndarray | None = None   # float32 [S, ky, kx] magnitude
    maps: np.ndarray | None = None   # complex64 [S, C, ky, kx] (given by the simulation) or None (estimate)
    source: dict = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.data.shape)

    def select(self, slices: slice) -> "KSpace":
        """The same acquisition restricted to ``slices`` (geometry origin moved to the first one kept)."""
        index = range(self.data.shape[0])[slices]
        if len(index) == 0:
            raise InputError(f"The slice range selects no slice of the {self.data.shape[0]} in the input; "
                             f"pass --slices A:B within 0:{self.data.shape[0]}.")
        keep = np.asarray(list(index))
        g = self.geometry
        origin = np.asarray(g.origin) + g.direction @ (np.array([0.0, 0.0, keep[0]]) * np.asarray(g.spacing))
        spacing = list(g.spacing)
        if len(keep) > 1:
            spacing[2] *= abs(keep[1] - keep[0])
        geometry = Volume(np.zeros((len(keep), *self.data.shape[-2:]), np.float32), tuple(spacing), tuple(origin), g.direction.copy())
        return dataclasses.replace(self, data=self.data[keep], geometry=geometry,
                                   reference=None if self.reference is None else self.reference[keep],
                                   maps=None if self.maps is None else self.maps[keep],
                                   source={**self.source, "slices": [int(i) for i in keep]})


def parse_slices(text: str | None) -> slice | None:
    """``"A:B"`` -> ``slice(A, B)`` (either side may be empty); ``None`` -> ``None``."""
    if text is None or text == "":
        return None
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            a = int(parts[0])
            return slice(a, a + 1)
        if len(parts) == 2:
            return slice(int(parts[0]) if parts[0] else None, int(parts[1]) if parts[1] else None)
    except ValueError:
        pass
    raise InputError(f"The slice range '{text}' (--slices) is not of the form A:B; pass e.g. --slices 10:14.")


def check_kspace(data: np.ndarray, name: str) -> np.ndarray:
    """Shape and value checks of a k-space array; returns it as complex64 ``[S, C, ky, kx]``."""
    if data.ndim != 4:
        what = "has no coil axis" if data.ndim == 3 else f"has {data.ndim} axes"
        raise InputError(f"The k-space in '{name}' {what} (shape {tuple(data.shape)}); pass multi-coil k-space "
                         f"[slices, coils, ky, kx] (a single slice as [1, coils, ky, kx]).")
    if not np.iscomplexobj(data):
        raise InputError(f"The k-space in '{name}' is real-valued ({data.dtype}); pass complex k-space.")
    if min(data.shape[-2:]) < 8:
        raise InputError(f"The k-space in '{name}' has {data.shape[-2]} x {data.shape[-1]} samples per slice; "
                         f"pass at least 8 x 8.")
    data = data.astype(np.complex64, copy=False)
    if not np.isfinite(data.view(np.float32)).all():
        raise InputError(f"The k-space in '{name}' contains NaN or infinite samples; replace them (e.g. with 0).")
    if not np.any(data):
        raise InputError(f"The k-space in '{name}' is all zero; check that the right file or dataset was given.")
    return data


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    ky, kx = shape[-2:]
    if mask.ndim == 1 and mask.shape[0] == kx:
        mask = np.broadcast_to(mask[None, :], (ky, kx))
    elif mask.shape[-2:] != (ky, kx) or mask.ndim not in (2, 3):
        raise InputError(f"The mask in '{name}' has shape {tuple(mask.shape)} but the k-space has {ky} x {kx} samples "
                         f"per slice; pass a mask of shape [{kx}] or [{ky}, {kx}].")
    if mask.ndim == 3:
        mask = mask.any(axis=0)
    mask = np.asarray(mask != 0)
    if not mask.any():
        raise InputError(f"The mask in '{name}' samples nothing; pass the acquisition's mask.")
    return mask.copy()


def read_kspace_file(path: str | Path) -> RawKSpace:
    """Read and check a k-space file (see module docstring)."""
    path = input_file(path, "k-space")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise InputError(f"The k-space file '{path.name}' could not be read as a NumPy array ({exc}); "
                             f"save it with numpy.save.") from None
        return RawKSpace(check_kspace(np.asarray(data), path.name))
    if suffix not in (".h5", ".hdf5"):
        raise InputError(f"The k-space file '{path.name}' is neither HDF5 (.h5) nor NumPy (.npy); pass fastMRI-style "
                         f"HDF5 or .npy, or add --simulate to simulate k-space from an image volume.")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise InputError(f"The HDF5 file '{path.name}' has no 'kspace' dataset (found: "
                                 f"{', '.join(sorted(f.keys())) or 'nothing'}); pass fastMRI-style k-space.")
            data = check_kspace(np.asarray(f["kspace"]), path.name)
            raw = RawKSpace(data)
            if "mask" in f:
                raw.mask = _check_mask(np.asarray(f["mask"]), data.shape, path.name)
            if "reconstruction_rss" in f:
                ref = np.asarray(f["reconstruction_rss"], np.float32)
                if ref.shape == (data.shape[0], *data.shape[-2:]) and np.isfinite(ref).all():
                    raw.reference = ref
                else:
                    raw.notes.append(f"reconstruction_rss of shape {ref.shape} does not match the k-space grid; "
                                     f"the reference is the RSS of fully sampled k-space when available")
    except OSError as exc:
        raise InputError(f"The k-space file '{path.name}' could not be read as HDF5 ({exc}); check the file.") from None
    return raw


def bare_geometry(shape: tuple[int, ...]) -> Volume:
    """1 mm isotropic geometry for k-space without one: grid ``[S, ky, kx]``."""
    return Volume(np.zeros((shape[0], shape[-2], shape[-1]), np.float32))
