"""A synthetic CT-like attenuation volume from a tissue label map (no real 3D CT ships offline).

Used to measure the ``--modality ct`` preset (:mod:`tttmedical.registration.modality`) on the phantom pairs: each tissue of
:data:`tttmedical.data.phantom.PHANTOM_LABELS` gets a typical contrast-enhanced (portal venous)
Hounsfield value, the map is blurred by a Gaussian of ``blur`` voxels (partial volume) and white
Gaussian noise of ``noise_hu`` HU is added (CT quantum noise).  Arrays ``[k, j, i]``, HU float32.
Synthetic: tissue values and noise are textbook figures, not a scanner model.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# air, fat, myocardium, blood (contrast-enhanced), liver
PHANTOM_HU = {0: -1000.0, 1: -100.0, 2: 100.0, 3: 180.0, 4: 110.0}
BLUR_VOXELS = 0.7   # partial-volume blur (Gaussian sigma, voxels)


def attenuation(labels: np.ndarray, seed: int, noise_hu: float = 20.0, blur: float = BLUR_VOXELS,
                hu: dict[int, float] | None = None) -> np.ndarray:
    """HU volume of ``labels`` (values not in ``hu`` count as air)."""
    table = hu or PHANTOM_HU
    lut = np.full(int(labels.max()) + 1, -1000.0, np.float32)
    for label, value in table.items():
        if label < lut.size:
            lut[label] = value
    volume = ndimage.gaussian_filter(lut[np.asarray(labels, np.int64)], blur)
    noise = np.random.default_rng(seed).normal(0.0, noise_hu, volume.shape)
    return (volume + noise).astype(np.float32)
