"""Run RefineRegistration.py's logic and its own self-test against slicer-core.

The Slicer application is not available, so the parts of it that the module imports but that
slicer-core lacks are replaced by minimal stand-ins *for this test only*: ``qt`` (used by the
widget, not exercised here), ``slicer.ScriptedLoadableModule`` (base classes; the test base is
``unittest.TestCase`` as in Slicer), ``slicer.parameterNodeWrapper`` (annotations only),
``slicer.app`` (``temporaryPath``, no layout manager) and ``slicer.modules.plots``.  Everything the logic does to the scene
and the engine is real: the module's ``RefineRegistrationTest`` runs end to end (the scene round trip
with the stand-in engine, cancelling, and the real engine: it must improve NCC) and may not skip.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import typing
import unittest
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.options import COMMON  # noqa: E402
from tttmedical.registration.options import SETTINGS  # noqa: E402

MODULE = Path(__file__).resolve().parents[2] / "TTTMedical" / "RefineRegistration.py"


class _Base:
    def __init__(self, *args, **kwargs):
        pass


class _TestBase(unittest.TestCase):
    def delayDisplay(self, message, *args, **kwargs):
        pass


@pytest.fixture
def module(scene, tmp_path, monkeypatch):
    shown = []
    stubs = {
        "qt": types.ModuleType("qt"),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=_Base, ScriptedLoadableModuleWidget=_Base, ScriptedLoadableModuleLogic=_Base,
            ScriptedLoadableModuleTest=_TestBase),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            parameterNodeWrapper=lambda cls: cls, Choice=lambda *a: ("Choice", a), Decimals=lambda *a: ("Decimals", a),
            WithinRange=lambda *a: ("WithinRange", a)),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(temporaryPath=str(tmp_path), layoutManager=lambda: None),
                        raising=False)
    plots_logic = types.SimpleNamespace(ShowChartInLayout=shown.append)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(plots=types.SimpleNamespace(logic=lambda: plots_logic)),
                        raising=False)
    spec = importlib.util.spec_from_file_location("RefineRegistration", MODULE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    loaded.shown_charts = shown
    return loaded


def test_parameters_become_engine_settings(module):
    params = types.SimpleNamespace(
        fixedVolume="F", movingVolume="M", initialTransform=None, fixedSegmentation=None, movingSegmentation=None,
        method=module.Method.SSMSR, overrideDefaults=False, iterations=7, lr=0.5, smoothness=2.0, levels=2,
        modality="ct", device="cpu")
    settings = module.RefineRegistrationLogic.settingsFromParameters(params)
    assert settings.arguments() == ["--method", "ssmsr", "--modality", "ct", "--device", "cpu", "--seed", "0"]
    params.overrideDefaults = True
    assert module.RefineRegistrationLogic.settingsFromParameters(params).arguments() == [
        "--method", "ssmsr", "--iterations", "7", "--lr", "0.5", "--smoothness", "2", "--levels", "2",
        "--modality", "ct", "--device", "cpu", "--seed", "0"]
    inputs = module.RefineRegistrationLogic.inputsFromParameters(params)
    assert (inputs.fixed, inputs.moving, inputs.initial_transform) == ("F", "M", None)
    assert [m.label() for m in module.Method] == ["Reg-TTR (refine the field)", "SSMSR (multi-scale TTT)", "Predictor only"]


def test_parameter_node_defaults_choices_and_ranges_are_the_engine_declarations(module):
    cls = module.RefineRegistrationParameterNode
    hints = typing.get_type_hints(cls, include_extras=True)

    def metadata(name, kind):
        return [m[1] for m in getattr(hints[name], "__metadata__", ()) if m[0] == kind]

    assert [m.value for m in module.Method] == list(SETTINGS["method"].choices)
    assert cls.method.value == SETTINGS["method"].shown_default
    for name in module.OVERRIDABLE:
        option = SETTINGS[name]
        assert getattr(cls, name) == option.shown_default and option.shown_default is not None, name
        (low, high), = metadata(name, "WithinRange")
        assert high == option.maximum, name
        decimals = metadata(name, "Decimals")
        if option.exclusive_minimum:  # the smallest value the spin box shows above the bound
            assert low == option.minimum + 10.0 ** -decimals[0][0], name
        else:
            assert low == option.minimum, name
    assert cls.iterations == 12  # the engine's Reg-TTR default (the panel said 60 before)
    for name, option in (("modality", SETTINGS["modality"]), ("device", COMMON["device"])):
        assert metadata(name, "Choice") == [(list(option.choices),)] and getattr(cls, name) == option.shown_default
    assert set(module.OVERRIDABLE) | {"method", "modality", "device"} <= set(SETTINGS.names() + COMMON.names())


def test_module_self_test_passes_without_skipping(module, tmp_path):
    result = unittest.TestResult()
    module.RefineRegistrationTest("runTest").run(result)
    assert not result.errors and not result.failures and not result.skipped, result.errors + result.failures + result.skipped
    assert list(tmp_path.iterdir()) == []  # every run's temporary folder (under slicer.app.temporaryPath) is gone


def test_self_test_without_torch_still_runs_the_scene_round_trip(module, monkeypatch):
    from TTTMedicalLib import dependencies

    monkeypatch.setattr(dependencies, "torch_installed", lambda: False)
    shown = []
    monkeypatch.setattr(module.RefineRegistrationTest, "delayDisplay", lambda self, message, *a, **k: shown.append(message))
    result = unittest.TestResult()
    module.RefineRegistrationTest("runTest").run(result)
    assert result.wasSuccessful() and not result.skipped
    assert shown[0] == "Scene round trip with the stand-in engine" and "was not run" in shown[-1]


def test_logic_run_shows_results(module, scene):
    from TTTMedicalLib import samples

    fixed, moving = samples.add_registration_pair(size=16)
    view = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")  # what a slice view shows
    outputs = module.RefineRegistrationLogic().run(fixed, moving, iterations=3, device="cpu", showResult=True)
    assert module.shown_charts == [outputs.loss_chart]
    assert (view.GetBackgroundVolumeID(), view.GetForegroundVolumeID()) == (fixed.GetID(), outputs.warped.GetID())
    assert view.GetForegroundOpacity() == 0.5
    assert "NCC" in module.RefineRegistrationLogic.summary(outputs) and "cpu" in module.RefineRegistrationLogic.summary(outputs)
