"""Interpolate4D.py and AdaptRecon.py with their .ui files checked without Slicer: the checks of
test_module_static.py (written for RefineRegistration.py) pointed at each module in turn."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import pytest

import test_module_static as static


@dataclass(frozen=True)
class TaskModule:
    name: str
    declarations: tuple[str, ...]
    """Names of the option sets the parameter node's defaults must come from."""
    panel_only: dict
    """Fields the engine has no option for: ``{field: default as written}``."""


MODULES = [
    TaskModule("Interpolate4D", ("SETTINGS", "COMMON"),
               {"useFrameRange": "False", "firstFrame": "0", "lastFrame": "2", "overrideDefaults": "False",
                "compare": "False", "compareSettings": "'mae/naive, rotation/naive, cycle/online'"}),
    TaskModule("AdaptRecon", ("SETTINGS", "SIMULATION", "COMMON"),
               {"kspaceFile": "''", "overrideDefaults": "False", "compare": "False", "compareMethods": "DEFAULT_COMPARE"}),
]


@pytest.fixture(params=MODULES, ids=lambda m: m.name)
def module(request, monkeypatch):
    m = request.param
    monkeypatch.setattr(static, "MODULE", static.MODULE_DIR / f"{m.name}.py")
    monkeypatch.setattr(static, "UI", static.MODULE_DIR / "Resources" / "UI" / f"{m.name}.ui")
    return m


def test_every_ui_attribute_used_exists_in_the_ui_file(module):
    static.test_every_ui_attribute_used_by_the_module_exists_in_the_ui_file()


def test_parameter_names_match_fields_and_widget_classes(module):
    static.test_parameter_names_match_fields_and_widget_classes()


def test_engine_options_come_from_their_declarations(module):
    node = next(n for n in static.module_tree().body
                if isinstance(n, ast.ClassDef) and n.name == f"{module.name}ParameterNode")
    declared = re.compile(rf"\b({'|'.join(module.declarations)})\[['\"]\w+['\"]\]")
    for item in node.body:
        if not isinstance(item, ast.AnnAssign) or item.value is None:
            continue
        name = item.target.id
        if name in module.panel_only:
            assert ast.unparse(item.value) == module.panel_only[name]
            continue
        assert declared.search(ast.unparse(item.value)), f"default of {name} is not a declaration"


def test_module_classes_and_icon(module):
    classes = {n.name for n in static.module_tree().body if isinstance(n, ast.ClassDef)}
    assert {module.name + suffix for suffix in ("", "Widget", "Logic", "Test")} <= classes
    assert (static.MODULE_DIR / "Resources" / "Icons" / f"{module.name}.png").is_file()
    # the CMake block is checked for every module in test_module_static


@pytest.mark.parametrize("name", ["RefineRegistration", "Interpolate4D", "AdaptRecon"])
def test_widget_life_cycle_comes_from_the_shared_panel(name):
    """The mixin is the first base (its __init__/setup/cleanup/enter win over ScriptedLoadableModuleWidget's)
    and the widget names its logic; it does not redefine the life cycle."""
    tree = ast.parse((static.MODULE_DIR / f"{name}.py").read_text())
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{name}Widget")
    assert [ast.unparse(b) for b in widget.bases] == ["EngineJobWidgetMixin", "ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert not {"__init__", "setup", "cleanup", "enter"} & set(methods)
    assert f"{name}Logic()" in ast.unparse(methods["createLogic"])


def test_recon_panel_compare_default_parses_as_engine_entries():
    from tttmedical.recon.pipeline import MethodSpec

    text = re.search(r'DEFAULT_COMPARE = "([^"]+)"', (static.MODULE_DIR / "AdaptRecon.py").read_text()).group(1)
    assert [MethodSpec.parse(t.strip()).label for t in text.split(",")] == ["zero", "pretrained", "ssdu", "ssdu+inr+sst"]
