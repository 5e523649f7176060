"""mrphantom samples: a dynamic MRI phantom with breathing and heartbeat, its labels and coil maps.

* ``phantom-4d`` (:func:`build_phantom_4d`): bSSFP contrast at 1.5 T with respiratory and cardiac
  motion over one breathing cycle, 8-coil sensitivity shading, partial volume and Rician noise, as
  Slicer volume-sequence NRRDs (frame axis ``time`` in seconds).
* ``phantom-pair`` (:func:`build_phantom_pair`): end-inspiration (fixed) and end-expiration
  (moving) frames of the same phantom with a large breathing amplitude.
* :func:`coil_maps`: the complex 8-coil sensitivity maps (for simulated multi-coil k-space).

Geometry is LPS millimetres, arrays ``[k, j, i]``; labels are ``uint8`` (:data:`PHANTOM_LABELS`).
Builders write data files into a folder and return the sample's metadata (``files`` by role);
:func:`tttmedical.data.samples.write_sample` writes it as ``sample.json``, atomically.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import InputError
from ..core.sequence import LABELMAP_NODE_CLASS, Sequence, write_sequence
from ..core.volume import Volume

__all__ = ["PHANTOM_LABELS", "coil_maps", "build_phantom_4d", "build_phantom_pair"]

PHANTOM_LABELS = {0: "air", 1: "fat", 2: "myocardium", 3: "blood", 4: "liver"}
PHANTOM_LABEL_NOTES = ("mrphantom enum values; 'fat' is the body wall plus 23 small fat balls that mrphantom places "
                       "inside the body as vessel-like structures; 'liver' is all remaining tissue outside the heart")
_PHANTOM_SUPERSAMPLE = 2
_RESP_PERIOD_S = 4.0
_CARD_PERIOD_S = 0.8


def _import_mrphantom():
    """The ``mrphantom`` module, or an InputError saying how to install it."""
    try:
        import mrphantom
    except ImportError:
        raise InputError("The phantom samples need the 'mrphantom' package; install it with: pip install mrphantom") from None
    return mrphantom


def coil_maps(shape: tuple[int, int, int], n_coils: int = 8, seed: int = 0) -> np.ndarray:
    """Complex coil sensitivity maps ``(n_coils, K, J, I)`` of mrphantom (``genCsm``) for a grid ``shape``.

    mrphantom draws the coil phases from numpy's global generator: it is seeded with ``seed`` for
    the call and restored afterwards, so the maps are reproducible and other numpy draws unaffected.
    The phantom samples use ``coil_maps(layout shape, 8, seed)``; their root-sum-of-squares is the
    shading of the magnitude images.
    """
    mp = _import_mrphantom()
    state = np.random.get_state()
    np.random.seed(int(seed) % (2**32))
    try:
        return np.asarray(mp.genCsm(tuple(int(n) for n in shape), nCh=int(n_coils)))
    finally:
        np.random.set_state(state)


def _phantom_metadata(layout: dict) -> dict:
    """Label names and grid geometry shared by the phantom samples' JSON."""
    return {"label_names": {str(k): v for k, v in PHANTOM_LABELS.items()},
            "label_notes": PHANTOM_LABEL_NOTES,
            "shape_kji": list(layout["shape"]),
            "spacing_mm_ijk": list(layout["spacing"]),
            "origin_lps_mm": [float(v) for v in layout["origin"]],
            "direction_lps": layout["direction"].tolist()}


def _phantom_layout(small: bool) -> dict:
    """Core phantom shape (what mrphantom's radii scale with), padding, spacing and a sensible geometry."""
    if small:
        core, pad, spacing = (28, 32, 40), (2, 4, 4), (6.0, 6.0, 8.0)
    else:
        # Padding keeps the body inside the field of view at the largest breathing amplitude (0.1):
        # the anterior-posterior radius is (0.4 + ampRes) * ny.
        core, pad, spacing = (56, 64, 80), (4, 8, 8), (3.0, 3.0, 4.0)
    shape = tuple(c + 2 * p for c, p in zip(core, pad))  # (K, J, I)
    angle = math.radians(8.0)  # slightly oblique axial acquisition: rotated about the S axis
    direction = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    centre = np.array([0.0, 20.0, -60.0])  # LPS position of the volume centre (mm)
    extent = (np.array(shape[::-1], dtype=float) - 1.0) * np.array(spacing)
    origin = centre - direction @ (extent / 2.0)
    return {"core": core, "pad": pad, "shape": shape, "spacing": spacing, "direction": direction, "origin": tuple(origin)}


def _breathing_curves(n_frames: int, resp_amplitude: float, rng: np.random.Generator) -> dict:
    """Frame times over one breathing cycle, respiratory (ampRes) and cardiac (ampCar) amplitudes.

    Breathing follows the cos^(2n) model of Lujan et al. (1999) with n = 2, shifted so that the
    cycle starts at end-expiration: ``r(t) = sin^4(pi t / T)`` is 0 at end-expiration (flat: the
    long expiratory dwell) and 1 at end-inspiration (t = T/2, a short peak); ampRes goes from
    ``-resp_amplitude`` (expiration) to ``+resp_amplitude`` (inspiration, the chest expands
    anterior-posteriorly).  The heart beats with a sinusoidal ampCar of amplitude 0.012 and a period
    of about 0.8 s (about 3 frames per beat at 16 frames per 4 s breathing cycle).
    """
    dt = _RESP_PERIOD_S / n_frames
    times = np.arange(n_frames) * dt
    period = _RESP_PERIOD_S * (1.0 + 0.04 * rng.uniform(-1.0, 1.0))
    phase = rng.uniform(-0.05, 0.05) * math.pi
    r = np.sin(math.pi * times / period + phase) ** 4
    amp_res = -resp_amplitude + 2.0 * resp_amplitude * r
    card_period = _CARD_PERIOD_S * (1.0 + 0.05 * rng.uniform(-1.0, 1.0))
    amp_car = 0.012 * np.sin(2.0 * math.pi * times / card_period + rng.uniform(0.0, 2.0 * math.pi))
    return {"times": times, "amp_res": amp_res, "amp_car": amp_car, "resp_period": period, "card_period": card_period}


def _mode_downsample(labels: np.ndarray, factor: int, n_labels: int) -> np.ndarray:
    k, j, i = (s // factor for s in labels.shape)
    blocks = labels[: k * factor, : j * factor, : i * factor].reshape(k, factor, j, factor, i, factor)
    counts = np.stack([(blocks == lab).sum(axis=(1, 3, 5)) for lab in range(n_labels)], axis=0)
    return counts.argmax(axis=0).astype(np.uint8)


def _mean_downsample(values: np.ndarray, factor: int) -> np.ndarray:
    k, j, i = (s // factor for s in values.shape)
    return values[: k * factor, : j * factor, : i * factor].reshape(k, factor, j, factor, i, factor).mean(axis=(1, 3, 5))


class _PhantomScanner:
    """Renders mrphantom frames: bSSFP signal with partial volume, coil shading and Rician noise."""

    def __init__(self, layout: dict, seed: int, rng: np.random.Generator, b0: float = 1.5, tr: float = 5e-3, flip_deg: float = 60.0):
        mp = _import_mrphantom()
        self.mp, self.layout, self.rng = mp, layout, rng
        mp.initSS_bSSFP(b0, TR=tr, FA_deg=flip_deg)
        self.lut = np.zeros(256, dtype=np.float64)
        for tissue in mp.lstTissue:
            self.lut[mp.dictNmrPara[tissue]["enum"]] = mp.dictNmrPara[tissue]["Mss"]
        csm = coil_maps(layout["shape"], 8, seed)
        rss = np.sqrt((np.abs(csm) ** 2).sum(axis=0))
        self.shading = (rss / rss.max()).astype(np.float64)
        self.sequence_params = {"B0_T": b0, "TR_s": tr, "flip_angle_deg": flip_deg, "contrast": "bSSFP steady state", "coils": 8}
        self.noise_sigma, self.scale = None, 1.0

    def frame(self, amp_res: float, amp_car: float) -> tuple[np.ndarray, np.ndarray]:
        f = _PHANTOM_SUPERSAMPLE
        core = self.layout["core"]
        fine = self.mp.genPhant(tuple(c * f for c in core), float(amp_res), float(amp_car))
        labels = _mode_downsample(fine, f, len(PHANTOM_LABELS))
        signal = _mean_downsample(self.lut[fine], f)  # partial-volume signal
        pad = [(p, p) for p in self.layout["pad"]]
        labels = np.pad(labels, pad)
        signal = np.pad(signal, pad) * self.shading
        if self.noise_sigma is None:  # fixed by the first rendered frame, shared by all frames
            reference = float(np.percentile(signal[labels > 0], 99))
            self.noise_sigma, self.scale = 0.02 * reference, 1000.0 / reference
        noisy = np.sqrt((signal + self.rng.normal(0.0, self.noise_sigma, signal.shape)) ** 2
                        + self.rng.normal(0.0, self.noise_sigma, signal.shape) ** 2)
        return (noisy * self.scale).astype(np.float32), labels


def build_phantom_4d(tmp: Path, seed: int, log: Callable[[str], object], small: bool) -> dict:
    """Write ``sequence.seq.nrrd`` and ``labels.seq.nrrd`` into ``tmp``; return the sample metadata (with ``files``)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = _phantom_layout(small)
    n_frames = 8 if small else 16
    resp_amplitude = 0.06
    curves = _breathing_curves(n_frames, resp_amplitude, rng)
    scanner = _PhantomScanner(layout, seed, rng)
    images, labels = [], []
    for t in range(n_frames):
        image, label = scanner.frame(curves["amp_res"][t], curves["amp_car"][t])
        images.append(image)
        labels.append(label)
        log(f"phantom-4d: frame {t + 1}/{n_frames} (ampRes {curves['amp_res'][t]:+.3f}, ampCar {curves['amp_car'][t]:+.4f})")
    geometry = dict(spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])
    index_values = [round(float(v), 6) for v in curves["times"]]
    image_seq = Sequence([Volume(a, **geometry) for a in images], "time", "s", index_values)
    label_seq = Sequence([Volume(a, **geometry) for a in labels], "time", "s", index_values,
                         {"DataNodeClassName": LABELMAP_NODE_CLASS})
    write_sequence(image_seq, tmp / "sequence.seq.nrrd")
    write_sequence(label_seq, tmp / "labels.seq.nrrd", labelmap=True)
    metadata = {
        "files": {"sequence": "sequence.seq.nrrd", "labels": "labels.seq.nrrd"},
        "index_name": "time",
        "index_unit": "s",
        "index_values": index_values,
        **_phantom_metadata(layout),
        "axes": "i: right-to-left, j: anterior-to-posterior (breathing expands the body along j), k: inferior-to-superior; oblique by 8 degrees about S",
        "respiratory_ampRes": [float(v) for v in curves["amp_res"]],
        "cardiac_ampCar": [float(v) for v in curves["amp_car"]],
        "end_inspiration_frame": int(np.argmax(curves["amp_res"])),
        "end_expiration_frame": int(np.argmin(curves["amp_res"])),
        "generation": {
            "source": "mrphantom.genPhant(shape, ampRes, ampCar) tissue map at 2x supersampling per axis; signal = "
                      "mrphantom bSSFP steady state per tissue, block-averaged (partial volume); labels = majority tissue per voxel",
            "core_shape_kji": list(layout["core"]),
            "padding_kji": list(layout["pad"]),
            "supersampling": _PHANTOM_SUPERSAMPLE,
            "breathing_model": "ampRes(t) = -A + 2A sin^4(pi t / T + phase) (Lujan 1999, n = 2), A = %.3f" % resp_amplitude,
            "respiratory_period_s": curves["resp_period"],
            "cardiac_model": "ampCar(t) = 0.012 sin(2 pi t / Tc + phase)",
            "cardiac_period_s": curves["card_period"],
            "sequence": scanner.sequence_params,
            "coil_shading": "root-sum-of-squares of mrphantom.genCsm 8-coil maps (static)",
            "noise": "Rician, sigma = 2% of the 99th percentile body signal; intensities scaled so that percentile = 1000",
            "seed": seed,
            "small": small,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    return metadata


def build_phantom_pair(tmp: Path, seed: int, log: Callable[[str], object], small: bool) -> dict:
    """Write the fixed/moving images and labels (NIfTI) into ``tmp``; return the sample metadata (with ``files``)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = _phantom_layout(small)
    n_frames = 16
    resp_amplitude = 0.1
    curves = _breathing_curves(n_frames, resp_amplitude, rng)
    t_fixed = int(np.argmax(curves["amp_res"]))  # end-inspiration
    t_moving = int(np.argmin(curves["amp_res"]))  # end-expiration
    scanner = _PhantomScanner(layout, seed, rng)
    geometry = dict(spacing=layout["spacing"], origin=layout["origin"], direction=layout["direction"])
    out = {}
    for role, t in (("fixed", t_fixed), ("moving", t_moving)):
        image, label = scanner.frame(curves["amp_res"][t], curves["amp_car"][t])
        Volume(image, **geometry).write(tmp / f"{role}.nii.gz")
        Volume(label, **geometry).write(tmp / f"{role}_labels.nii.gz")
        out[role] = {"frame": t, "time_s": float(curves["times"][t]), "ampRes": float(curves["amp_res"][t]),
                     "ampCar": float(curves["amp_car"][t])}
        log(f"phantom-pair: {role} = frame {t} (ampRes {curves['amp_res'][t]:+.3f})")
    metadata = {
        "description": "Intra-subject registration pair from one mrphantom breathing cycle: fixed = end-inspiration, "
                       "moving = end-expiration (frames chosen as the maximum and minimum of the breathing curve).",
        "files": {"fixed": "fixed.nii.gz", "moving": "moving.nii.gz", "fixed_labels": "fixed_labels.nii.gz",
                  "moving_labels": "moving_labels.nii.gz"},
        **_phantom_metadata(layout),
        "frames": out,
        "true_displacement": "none (mrphantom defines tissues by ellipsoids, not by a deformation); evaluate with label overlap",
        "generation": {
            "source": "mrphantom.genPhant tissue map at 2x supersampling, bSSFP steady-state signal, partial volume, "
                      "8-coil RSS shading, Rician noise (2%)",
            "breathing_model": "ampRes(t) = -A + 2A sin^4(pi t / T + phase) (Lujan 1999, n = 2), A = %.2f, 16 samples over T = %.2f s"
                               % (resp_amplitude, curves["resp_period"]),
            "cardiac_model": "ampCar(t) = 0.012 sin(2 pi t / Tc + phase), Tc = %.3f s" % curves["card_period"],
            "sequence": scanner.sequence_params,
            "seed": seed,
            "small": small,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }
    return metadata
