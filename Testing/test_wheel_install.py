"""A built wheel installed into a fresh virtual environment runs ``tttmedical register --method predict``.

The wheel is built from a copy of the sources (nothing is written into the checkout), installed
with ``--no-deps`` into a new venv that sees the project's dependencies (torch, numpy, SimpleITK,
...) through a ``.pth`` line pointing at this interpreter's site-packages.  Only the new venv's
site directory processes ``.pth`` files, so the editable install of the checkout stays invisible:
the test checks that ``tttmedical`` is imported from the wheel and that the bundled weights are
the wheel's package data.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env=None, timeout=120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _blob_pair(folder: Path) -> tuple[Path, Path]:
    """Two 28x32x24 images of smooth blobs, the moving one shifted by two voxels, with non-unit geometry."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (24, 32, 28)], indexing="ij")
    paths = []
    for name, shift in (("fixed", 0.0), ("moving", 0.15)):
        img = np.exp(-((x - 0.2 - shift) ** 2 + y ** 2 + (z + 0.1) ** 2) / 0.15) + 0.6 * np.exp(
            -((x + 0.4 - shift) ** 2 + (y - 0.3) ** 2 + z ** 2) / 0.05)
        image = sitk.GetImageFromArray((1000 * img).astype(np.float32))
        image.SetSpacing((1.5, 1.2, 2.0))
        image.SetOrigin((10.0, -5.0, 3.0))
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
        paths.append(folder / f"{name}.nii.gz")
    return paths[0], paths[1]


@pytest.mark.slow
def test_wheel_install_runs_predictor(tmp_path):
    src = tmp_path / "src"
    (src / "TTTMedical").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "TTTMedical" / "tttmedical", src / "TTTMedical" / "tttmedical",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", "."],
         cwd=src)
    wheel = next((tmp_path / "dist").glob("tttmedical-*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    where = _run([python, "-c", "import tttmedical, tttmedical.core.checkpoints as c; "
                  "print(tttmedical.__file__); print(c.bundled_weights('register_unet'))"], cwd=tmp_path, env=env)
    package_file, weights = where.stdout.split()
    assert Path(package_file).is_relative_to(site), package_file  # the wheel, not the checkout
    assert Path(weights) == site / "tttmedical" / "models" / "register_unet.pt"

    fixed, moving = _blob_pair(tmp_path)
    out = tmp_path / "out"
    _run([env_dir / "bin" / "tttmedical", "register", fixed, moving, "-o", out, "--method", "predict",
          "--device", "cpu", "--progress", "none"], cwd=tmp_path, env=env)
    report = json.loads((out / "report.json").read_text())
    listed = report.get("outputs") or {}
    assert listed and all((out / Path(str(p)).name).is_file() for p in listed.values()), report
    card = json.loads((site / "tttmedical" / "models" / "register_unet.json").read_text())
    assert report["weights"]["weights"] == str(weights) and report["weights"]["sha256"] == card["sha256"]
    assert {"displacement", "warped"} <= set(listed)
