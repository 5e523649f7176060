"""JSON run report: inputs, parameters, device, versions, seed, metrics, timings, loss curve.

Every engine command writes one ``report.json`` into its output folder.
"""
from __future__ import annotations

import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import SimpleITK as sitk

        out["SimpleITK"] = sitk.Version_VersionString()
    except Exception:  # pragma: no cover - SimpleITK is a hard dependency
        pass
    from .. import __version__

    out["tttmedical"] = __version__
    return out


def to_jsonable(value):
    """Plain JSON types from numpy/torch/Path values; non-finite floats become null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.device):
        return str(value)
    return value


def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` (with versions added) atomically as indented JSON."""
    path = Path(path)
    data = dict(report)
    data.setdefault("versions", versions())
    data.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    tmp.replace(path)
    return path
