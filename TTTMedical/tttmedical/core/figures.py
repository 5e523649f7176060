"""PNG figures a person can look at (matplotlib, Agg backend, no display needed).

Images are engine arrays ``[k, j, i]``; slices are shown through the middle of the K and J axes
with array rows drawn top-down (no attempt at radiological orientation: the figure is for quality
checks, the volumes themselves carry the geometry).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _warped(m_np: np.ndarray, field) -> np.ndarray:
    import torch

    from .warp import warp

    if field is None:
        return m_np
    with torch.no_grad():
        m = torch.from_numpy(np.ascontiguousarray(m_np, np.float32))[None, None].to(field.device)
        return warp(m, field.float())[0, 0].cpu().numpy()


def registration_figure(path: str | Path, fixed: np.ndarray, moving: np.ndarray, field, init_field,
                        jacobian: np.ndarray, report: dict) -> Path:
    """Fixed / moving / warped / |difference| before and after / Jacobian, two orthogonal slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = _warped(moving, init_field)
    after = _warped(moving, field)
    panels = [("fixed", fixed, "gray", (0, 1)), ("moving", moving, "gray", (0, 1)),
              ("warped", after, "gray", (0, 1)),
              ("|fixed - initial|", np.abs(fixed - before), "magma", (0, 0.5)),
              ("|fixed - warped|", np.abs(fixed - after), "magma", (0, 0.5)),
              ("Jacobian det.", jacobian, "RdBu_r", (0, 2))]
    k, j = fixed.shape[0] // 2, fixed.shape[1] // 2
    fig, axes = plt.subplots(2, len(panels), figsize=(3 * len(panels), 6.4))
    for col, (title, vol, cmap, (lo, hi)) in enumerate(panels):
        for row, sl in enumerate((vol[k], vol[:, j][::-1])):
            ax = axes[row, col]
            im = ax.imshow(sl, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=10)
        if col >= 3:
            fig.colorbar(im, ax=axes[:, col], shrink=0.6)
    mt = report.get("metrics", {})
    parts = [f"{report.get('method', '')} from {report.get('initial_transform', '')}"]
    for key, label, fmt in (("dice", "Dice", "{:.3f}"), ("hd95_mm", "HD95 mm", "{:.2f}"), ("ncc", "local NCC", "{:.3f}")):
        if mt.get(key) is not None and mt.get(f"initial_{key}") is not None:
            parts.append(f"{label} {fmt.format(mt[f'initial_{key}'])} -> {fmt.format(mt[key])}")
    if mt.get("folding_percent") is not None:
        parts.append(f"folding {mt['folding_percent']:.3f}%")
    parts.append(f"{report.get('timings', {}).get('total_s', 0):.1f} s on {report.get('device', '')}")
    fig.suptitle("   |   ".join(parts), fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
