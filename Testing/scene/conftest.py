"""Fixtures for the scene-layer tests (real MRML from the ``slicer-core`` wheel, no Slicer application).

* The module folder ``TTTMedical/`` goes first on ``sys.path`` so ``TTTMedicalLib`` and the engine
  package ``tttmedical`` import exactly as inside Slicer.
* ``scene`` gives a fresh ``vtkMRMLScene`` assigned to ``slicer.mrmlScene`` (slicer-core has none).
* ``fake_engine_factory`` runs ``Testing/scene/fake_engine.py`` instead of ``python -m tttmedical``,
  through the runner's injectable process factory.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "TTTMedical"
FAKE_ENGINE = Path(__file__).resolve().with_name("fake_engine.py")
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


@pytest.fixture
def scene():
    slicer = pytest.importorskip("slicer")
    mrml_scene = slicer.vtkMRMLScene()
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = mrml_scene
    yield mrml_scene
    mrml_scene.Clear(1)
    slicer.mrmlScene = previous


def start_fake_engine(command, env, cwd=None, behaviour="success"):
    """Process factory: same arguments as the engine command, run by ``fake_engine.py``."""
    engine_args = command[3:]  # drop [python, "-m", "tttmedical"]
    env = dict(env)
    env["FAKE_ENGINE_BEHAVIOUR"] = behaviour
    return subprocess.Popen([sys.executable, str(FAKE_ENGINE), *engine_args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=cwd,
                            start_new_session=(os.name != "nt"))


@pytest.fixture
def fake_engine_factory():
    def make(behaviour: str = "success"):
        return lambda command, env, cwd=None: start_fake_engine(command, env, cwd, behaviour)

    return make
