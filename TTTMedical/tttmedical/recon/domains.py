"""Image domains for training and benchmarking, built offline from installed packages.

Every function returns magnitude slices ``[S, H, W]`` (float32, maximum 1) ready for
:func:`tttmedical.recon.simulate.simulate_kspace`.

* ``phantom``: mrphantom body slices (``genPhant`` tissue map at 2x supersampling, block-averaged:
  partial volume), spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` from mrphantom's 1.5 T
  tissue parameters: T1-weighted (TR 500 ms, TE 12 ms; the source domain the backbone is trained
  on) or T2-weighted (TR 4000 ms, TE 90 ms; the contrast shift), with a smooth multiplicative bias,
  random breathing/cardiac amplitudes and body aspect ratios.
* ``brain``: axial slices of nilearn's MNI152 T1 template (1 mm), cropped to the head and resized
  (the anatomy shift).
* ``scanner``: real scanner MR images shipped by the ``pydicom-data`` package (a Siemens abdominal
  slice, 484^2 at 0.72 mm, and a shoulder slice, 1024^2 at 0.2 mm), read with SimpleITK, padded square,
  resized (the scanner shift: real noise, textures and contrasts no simulation produces).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.errors import InputError
from ..data.phantom import _import_mrphantom

__all__ = ["CONTRASTS", "SCANNER_FILES", "phantom_slices", "brain_slices", "scanner_slices"]

CONTRASTS = {"t1": (0.5, 0.012), "t2": (4.0, 0.09)}   # (TR s, TE s)
SCANNER_FILES = ("MR-SIEMENS-DICOM-WithOverlays.dcm", "MR2_UNCR.dcm")   # in pydicom-data's data_store/data


def _signal_lut(contrast: str) -> np.ndarray:
    mp = _import_mrphantom()
    tr, te = CONTRASTS[contrast]
    lut = np.zeros(256)
    for tissue in mp.lstTissue:
        para = mp.dictNmrPara[tissue]
        p = para["B0_1T5"]
        if p["PD"] > 0:
            lut[para["enum"]] = p["PD"] * (1 - np.exp(-tr / p["T1"])) * np.exp(-te / p["T2"])
    return lut


def phantom_slices(count: int, size: int = 128, contrast: str = "t1", seed: int = 0) -> np.ndarray:
    """``count`` mrphantom body slices ``[count, size, size]`` (see module docstring)."""
    mp = _import_mrphantom()
    rng = np.random.default_rng(seed)
    lut = _signal_lut(contrast)
    out = np.zeros((count, size, size), np.float32)
    fine = 2 * size
    for n in range(count):
        aspect = rng.uniform(0.75, 1.0)
        width = int(round(fine * aspect / 2)) * 2
        depth = 24
        tissue = mp.genPhant((depth, fine, width), float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.02, 0.02)))
        k = int(rng.integers(int(0.3 * depth), int(0.7 * depth)))  # the heart and vessels lie mid-way
        plane = tissue[k]
        if rng.uniform() < 0.5:
            plane = plane.T
        canvas = np.zeros((fine, fine), np.uint8)
        h, w = plane.shape[0], plane.shape[1]
        canvas[(fine - min(h, fine)) // 2:(fine - min(h, fine)) // 2 + min(h, fine),
               (fine - min(w, fine)) // 2:(fine - min(w, fine)) // 2 + min(w, fine)] = plane[:fine, :fine]
        image = lut[canvas].reshape(size, 2, size, 2).mean(axis=(1, 3))
        bias = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 5, mode="reflect")
        image = image * np.exp(0.25 * bias / max(np.abs(bias).max(), 1e-12))
        out[n] = image / max(float(image.max()), 1e-12)
    return out


def brain_slices(count: int, size: int = 128, first: float = 0.35, last: float = 0.7) -> np.ndarray:
    """``count`` axial MNI152 T1 slices (1 mm template) evenly spaced between fractions ``first`` and ``last``
    of the head's inferior-superior extent, each cropped to the head, padded square and resized."""
    try:
        from nilearn import datasets
    except ImportError:
        raise InputError("The brain domain needs the 'nilearn' package; install it with: pip install nilearn") from None
    t1 = np.asarray(datasets.load_mni152_template(resolution=1).dataobj, dtype=np.float32)  # [i, j, k] RAS
    head = np.argwhere(t1 > 0.02 * t1.max())
    (i0, j0, k0), (i1, j1, k1) = head.min(axis=0), head.max(axis=0) + 1
    ks = np.linspace(k0 + first * (k1 - k0), k0 + last * (k1 - k0), count).round().astype(int)
    side = max(i1 - i0, j1 - j0) + 8
    out = np.zeros((count, size, size), np.float32)
    for n, k in enumerate(ks):
        plane = t1[i0:i1, j0:j1, k].T[::-1]  # rows: anterior at the top; columns: i
        canvas = np.zeros((side, side), np.float32)   # the head plus a 4-voxel margin, whatever its shape
        y, x = (side - plane.shape[0]) // 2, (side - plane.shape[1]) // 2
        canvas[y:y + plane.shape[0], x:x + plane.shape[1]] = plane
        out[n] = _square_resize(canvas, size)
    return out


def _square_resize(plane: np.ndarray, size: int) -> np.ndarray:
    """``plane`` zero-padded to a centred square, resized to ``size``^2 (cubic), non-negative, maximum 1."""
    side = max(plane.shape)
    canvas = np.zeros((side, side), np.float32)
    y, x = (side - plane.shape[0]) // 2, (side - plane.shape[1]) // 2
    canvas[y:y + plane.shape[0], x:x + plane.shape[1]] = plane
    image = ndimage.zoom(canvas, size / side, order=3, grid_mode=True, mode="grid-constant").clip(0, None)
    out = np.zeros((size, size), np.float32)
    out[:min(size, image.shape[0]), :min(size, image.shape[1])] = image[:size, :size]
    return out / max(float(out.max()), 1e-12)


def scanner_slices(count: int, size: int = 128) -> np.ndarray:
    """Up to ``count`` real MR slices ``[n, size, size]``, ``n = min(count, len(SCANNER_FILES))`` (module
    docstring); needs the ``pydicom-data`` package (``pip install pydicom-data``: files only, no download)."""
    import SimpleITK as sitk
    from pathlib import Path

    try:
        import data_store   # pydicom-data's package
    except ImportError:
        raise InputError("The scanner domain needs the 'pydicom-data' package of DICOM test files; "
                         "install it with: pip install pydicom-data") from None
    folder = Path(data_store.__file__).parent / "data"
    out = []
    for name in SCANNER_FILES[:count]:
        plane = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name), sitk.sitkFloat32))[0]
        out.append(_square_resize(plane, size))
    return np.stack(out)
