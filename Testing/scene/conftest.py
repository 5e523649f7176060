"""Fixtures for the scene-layer tests (real MRML from the ``slicer-core`` wheel, no Slicer application).

* The module folder ``TTTMedical/`` goes first on ``sys.path`` so ``TTTMedicalLib`` and the engine
  package ``tttmedical`` import exactly as inside Slicer.
* ``scene`` gives a fresh ``vtkMRMLScene`` assigned to ``slicer.mrmlScene`` (slicer-core has none).
* ``fake_engine_factory`` runs ``TTTMedicalLib/fake_engine.py`` (the stand-in the module's self-test
  uses too) instead of the engine, through the runner's injectable process factory.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "TTTMedical"
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


@pytest.fixture
def fake_engine_factory():
    from TTTMedicalLib.fake_engine import process_factory

    return process_factory
