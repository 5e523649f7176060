"""Sample data built offline from packages that ship real or simulated MRI data: the registry.

``SAMPLES`` names the samples; :func:`write_sample` writes one into a folder and returns the paths
by role.  The folder is written as a whole with :func:`tttmedical.core.outputs.write_output_set`
(checked first with :func:`~tttmedical.core.outputs.check_output_dir`): files go to a hidden
partial folder that then replaces ``outdir``, so a half-written sample never appears and a rerun
replaces a previous TTTMedical result.  The manifest ``sample.json`` at the folder top holds the
sample's metadata and lists its files under ``files``.

Conventions:

* Geometry is LPS millimetres (ITK); arrays are ``[k, j, i]`` (see :mod:`tttmedical.core.volume`).
* Label maps are ``uint8`` with the ids listed in ``sample.json`` (``label_names``).
* 4D samples are Slicer volume-sequence NRRDs (``.seq.nrrd``, frame axis ``time`` in seconds),
  see :mod:`tttmedical.core.sequence`.

Builders: :mod:`tttmedical.data.phantom` (``phantom-4d``, ``phantom-pair``; also the complex coil
maps, :func:`~tttmedical.data.phantom.coil_maps`) and :mod:`tttmedical.data.mni` (``mni-smooth``,
``mni-bspline``, with the true displacement and its convention).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..core.errors import InputError
from ..core.outputs import check_output_dir, write_output_set
from .deformations import FAMILIES, build_family
from .mni import MNI_LABELS, build_mni
from .phantom import PHANTOM_LABELS, build_phantom_4d, build_phantom_pair
from .recon_samples import build_recon_sample

__all__ = ["SAMPLES", "write_sample", "PHANTOM_LABELS", "MNI_LABELS", "MANIFEST"]

MANIFEST = "sample.json"

SAMPLES: dict[str, str] = {
    "phantom-4d": "mrphantom dynamic MRI: 16 frames over one 4 s breathing cycle with respiratory and cardiac motion, with tissue labels (.seq.nrrd).",
    "phantom-pair": "mrphantom registration pair: end-inspiration (fixed) and end-expiration (moving) with large breathing motion, with tissue labels (NIfTI).",
    "mni-smooth": "MNI152 2 mm T1 brain and a synthetic subject warped by a smooth Gaussian random field + small affine, with GM/WM/CSF labels and the true displacement (NIfTI).",
    "mni-bspline": "MNI152 2 mm T1 brain and a synthetic subject warped by a random coarse B-spline + small affine, with GM/WM/CSF labels and the true displacement (NIfTI).",
    **FAMILIES,  # registration benchmark families (data/deformations.py); one is held out of tuning
    "recon-brain": "AdaptRecon: MNI152 brain slices to simulate an acquisition from (NIfTI) and fastMRI-style multi-coil k-space of two mrphantom slices (HDF5).",
}

_BUILDERS: dict[str, Callable[[Path, int, Callable, bool], dict]] = {
    "phantom-4d": build_phantom_4d,
    "phantom-pair": build_phantom_pair,
    "mni-smooth": lambda tmp, seed, log, small: build_mni(tmp, seed, log, small, "smooth"),
    "mni-bspline": lambda tmp, seed, log, small: build_mni(tmp, seed, log, small, "bspline"),
    **{name: (lambda tmp, seed, log, small, name=name: build_family(tmp, seed, log, small, name)) for name in FAMILIES},
    "recon-brain": lambda tmp, seed, log, small: build_recon_sample(tmp, seed, log, small),
}


def write_sample(name: str, outdir, seed: int = 0, log: Callable[[str], object] = print, *,
                 small: bool = False) -> dict[str, Path]:
    """Write sample ``name`` (a key of :data:`SAMPLES`) into the folder ``outdir``; return paths by role.

    ``outdir`` must not exist, be empty, or hold a previous TTTMedical result (which is replaced).
    ``seed`` makes the output reproducible.  ``small=True`` writes a reduced version (fewer frames,
    coarser grid) for quick tests.  Roles: ``phantom-4d`` -> ``sequence``, ``labels``,
    ``metadata``; ``phantom-pair`` -> ``fixed``, ``moving``, ``fixed_labels``, ``moving_labels``,
    ``metadata``; ``mni-*`` -> the same plus ``true_displacement``.  ``metadata`` is ``sample.json``.
    """
    if name not in _BUILDERS:
        raise InputError(f"Unknown sample '{name}'; choose one of: {', '.join(SAMPLES)}.")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"The sample seed must be an integer (got {seed!r}); pass e.g. seed=0.") from None
    outdir = check_output_dir(outdir, "sample output folder")
    log = log or (lambda message: None)
    start = time.perf_counter()

    def write(tmp: Path, final: Path) -> dict[str, str]:
        metadata = {"sample": name, "description": SAMPLES[name], **_BUILDERS[name](tmp, seed, log, small)}
        metadata["generation"]["versions"] = _versions()
        _write_json(tmp / MANIFEST, metadata)
        return {**metadata["files"], "metadata": MANIFEST}

    paths = write_output_set(outdir, write)
    log(f"Sample '{name}' written to {outdir} in {time.perf_counter() - start:.1f} s.")
    return paths


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def _versions() -> dict[str, str]:
    """Versions of the packages the samples are built from (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("mrphantom", "nilearn", "SimpleITK", "numpy", "scipy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out
