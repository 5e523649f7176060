"""PNG figures a person can look at (matplotlib, Agg backend, no display needed).

:func:`slice_panels` draws named volumes side by side.  Volumes are engine arrays ``[k, j, i]``:
each is shown through the middle of the K axis (top row) and of the J axis (bottom row, flipped so
that K grows upwards); 2D arrays get one row.  No attempt at radiological orientation: figures are
for quality checks, the volumes themselves carry the geometry.  Tasks build their panels and title
(e.g. :mod:`tttmedical.registration.figure`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class Panel:
    title: str
    image: np.ndarray            # [k, j, i] volume or [j, i] slice
    cmap: str = "gray"
    limits: tuple = (0.0, 1.0)   # colour range (vmin, vmax)
    colorbar: bool = False


def _views(image: np.ndarray) -> list[np.ndarray]:
    if image.ndim == 2:
        return [image]
    k, j = image.shape[0] // 2, image.shape[1] // 2
    return [image[k], image[:, j][::-1]]


def slice_panels(path: str | Path, panels: list[Panel], title: str = "", dpi: int = 80) -> Path:
    """Write ``panels`` (one column each, middle slices) with ``title`` on top to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(_views(p.image)) for p in panels)
    fig, axes = plt.subplots(rows, len(panels), figsize=(3 * len(panels), 3.2 * rows), squeeze=False)
    for col, panel in enumerate(panels):
        views = _views(panel.image)
        for row in range(rows):
            ax = axes[row, col]
            ax.set_axis_off()
            if row >= len(views):
                continue
            im = ax.imshow(views[row], cmap=panel.cmap, vmin=panel.limits[0], vmax=panel.limits[1], interpolation="nearest")
            if row == 0:
                ax.set_title(panel.title, fontsize=10)
        if panel.colorbar:
            fig.colorbar(im, ax=axes[:, col], shrink=0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
