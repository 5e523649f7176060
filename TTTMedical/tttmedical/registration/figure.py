"""Registration quality figure: fixed, moving, warped, differences before/after, Jacobian."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.figures import Panel, slice_panels
from ..core.warp import warp


def _warped(moving: np.ndarray, field: torch.Tensor | None) -> np.ndarray:
    if field is None:
        return moving
    with torch.no_grad():
        m = torch.from_numpy(np.ascontiguousarray(moving, np.float32))[None, None].to(field.device)
        return warp(m, field.float())[0, 0].cpu().numpy()


def registration_figure(path: str | Path, fixed: np.ndarray, moving: np.ndarray, field: torch.Tensor,
                        init_field: torch.Tensor | None, jacobian: np.ndarray, report: dict) -> Path:
    """Intensities in [0, 1] on the fixed grid; fields are engine voxel fields ``(1, 3, D, H, W)``."""
    before, after = _warped(moving, init_field), _warped(moving, field)
    panels = [Panel("fixed", fixed), Panel("moving", moving), Panel("warped", after),
              Panel("|fixed - initial|", np.abs(fixed - before), "magma", (0, 0.5), True),
              Panel("|fixed - warped|", np.abs(fixed - after), "magma", (0, 0.5), True),
              Panel("Jacobian det.", jacobian, "RdBu_r", (0, 2), True)]
    metrics = report.get("metrics", {})
    parts = [f"{report.get('method', '')} from {report.get('initial_transform', '')}"]
    for key, label, fmt in (("dice", "Dice", "{:.3f}"), ("hd95_mm", "HD95 mm", "{:.2f}"), ("ncc", "local NCC", "{:.3f}")):
        if metrics.get(key) is not None and metrics.get(f"initial_{key}") is not None:
            parts.append(f"{label} {fmt.format(metrics[f'initial_{key}'])} -> {fmt.format(metrics[key])}")
    if metrics.get("folding_percent") is not None:
        parts.append(f"folding {metrics['folding_percent']:.3f}%")
    parts.append(f"{report.get('timings', {}).get('total_s', 0):.1f} s on {report.get('device', '')}")
    return slice_panels(path, panels, "   |   ".join(parts))
