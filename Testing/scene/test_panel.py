"""The panel mixin shared by the module panels (TTTMedicalGUI.panel), driven without Qt.

``qt`` is replaced by a stand-in with a recording ``QTimer``; widgets are plain objects with the
properties the mixin sets; the parameter node records connect/disconnect calls as Slicer's
``parameterNodeWrapper`` does (``connectParametersToGui`` returns a tag on every version;
``connectGui`` returns none on 5.8); the job is a recorder with the ``EngineJob`` interface.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types

import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)


class Timer:
    def __init__(self):
        self.timeout, self.active, self.interval = Signal(), False, None

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


class Widget:
    def __init__(self, parameter=None):
        self.text, self.toolTip, self.enabled, self.value = "", "", True, 0
        self._parameter = parameter
        self.connections, self.lines = [], []

    def property(self, name):
        return self._parameter if name == "SlicerParameterName" else None

    def connect(self, signal, slot):
        self.connections.append((signal, slot))

    def clear(self):
        self.lines.clear()

    def appendPlainText(self, text):
        self.lines.append(text)


class ParameterNode:
    """Records GUI connections like ``parameterNodeWrapper`` (tags from ``connectParametersToGui``)."""

    def __init__(self, mrml, ready=True):
        self.parameterNode, self.ready = mrml, ready
        self.connected, self.disconnected = [], []

    def connectParametersToGui(self, mapping):
        self.connected.append(dict(mapping))
        return len(self.connected)

    def disconnectGui(self, tag):
        self.disconnected.append(tag)


class Job:
    def __init__(self, callbacks, fail_start=None):
        self.callbacks, self.fail_start = callbacks, fail_start
        self.running = self.cancelled = False
        self.outputs = self.error = None
        self.polls = 0

    def start(self):
        if self.fail_start:
            raise self.fail_start
        self.running = True

    def poll(self):
        self.polls += 1
        return self.running

    def cancel(self):
        self.running, self.cancelled = False, True
        self.callbacks["on_finished"](self)


@pytest.fixture
def panel_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(QTimer=Timer))
    sys.modules.pop("TTTMedicalGUI.panel", None)
    module = importlib.import_module("TTTMedicalGUI.panel")
    yield module
    sys.modules.pop("TTTMedicalGUI.panel", None)


@pytest.fixture
def panel(panel_module, monkeypatch):
    errors, installs = [], []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: errors.append(text))
    monkeypatch.setattr(slicer.util, "WaitCursor", contextlib.nullcontext)  # needs the application
    from TTTMedicalLib import dependencies

    monkeypatch.setattr(dependencies, "ensure_dependencies", lambda log: installs.append(log))

    class Panel(panel_module.EngineJobWidgetMixin):
        def __init__(self):
            self.ui = types.SimpleNamespace(applyButton=Widget(), progressBar=Widget(), statusLabel=Widget(),
                                            logTextEdit=Widget(), methodComboBox=Widget("method"),
                                            iterationsSpinBox=Widget("iterations"))
            self.observed, self.jobs, self.next_error, self.widgets_running = [], [], None, []
            self.setupEngineJobPanel()

        def addObserver(self, obj, event, method):
            self.observed.append(obj)

        def removeObserver(self, obj, event, method):
            self.observed.remove(obj)

        def missingInputs(self):
            return "" if self._parameterNode.ready else "Select the inputs."

        def updatePanelWidgets(self, running):
            self.widgets_running.append(running)

        def createJob(self, **callbacks):
            job = Job(callbacks, self.next_error)
            self.jobs.append(job)
            return job

        def onJobSucceeded(self, job):
            return "Done: all good"

    instance = Panel()
    instance.errors, instance.installs = errors, installs
    return instance


def test_widgets_are_connected_once_per_parameter_node(panel):
    first = ParameterNode("mrml-1")
    panel.bindParameterNode(first)
    panel.bindParameterNode(ParameterNode("mrml-1"))  # entering the module again: a new wrapper, same node
    assert first.connected == [{"method": panel.ui.methodComboBox, "iterations": panel.ui.iterationsSpinBox}]
    assert first.disconnected == [] and panel.observed == [first]
    second = ParameterNode("mrml-2")  # after a scene close
    panel.bindParameterNode(second)
    assert first.disconnected == [1] and len(second.connected) == 1 and panel.observed == [second]
    panel.bindParameterNode(None)
    assert second.disconnected == [1] and panel.observed == []
    assert not panel.ui.applyButton.enabled


def test_apply_becomes_cancel_and_back(panel):
    panel.bindParameterNode(ParameterNode("mrml", ready=False))
    assert not panel.ui.applyButton.enabled and panel.ui.applyButton.toolTip == "Select the inputs."
    panel._parameterNode.ready = True
    panel.updateApplyButton()
    assert panel.ui.applyButton.enabled and panel.ui.applyButton.text == "Apply"

    panel.onApplyButton()
    job = panel.jobs[-1]
    assert len(panel.installs) == 1 and job.running and panel._timer.active
    assert (panel.ui.applyButton.text, panel.ui.applyButton.enabled) == ("Cancel", True) and panel.widgets_running[-1]
    job.callbacks["on_progress"](0.25, "level 1/3")
    assert panel.ui.progressBar.value == 250 and panel.ui.statusLabel.text == "level 1/3"
    panel._pollJob()
    assert job.polls == 1 and panel._timer.active

    panel.onApplyButton()  # the button now cancels
    assert job.cancelled and not panel._timer.active
    assert panel.ui.applyButton.text == "Apply" and panel.ui.statusLabel.text == "Cancelled; the scene is unchanged."
    assert len(panel.jobs) == 1 and not panel.widgets_running[-1]


def test_success_and_engine_failure_reach_the_panel(panel):
    panel.bindParameterNode(ParameterNode("mrml"))
    panel.onApplyButton()
    job = panel.jobs[-1]
    job.running, job.outputs = False, object()
    job.callbacks["on_finished"](job)
    assert panel.ui.progressBar.value == 1000 and panel.ui.statusLabel.text == "Done: all good" and not panel.errors

    panel.onApplyButton()
    job = panel.jobs[-1]
    job.running, job.error = False, InputError("The fixed image is 2D; pass a 3D volume.")
    job.callbacks["on_finished"](job)
    assert panel.errors == ["The fixed image is 2D; pass a 3D volume."]
    assert panel.ui.statusLabel.text == "The fixed image is 2D; pass a 3D volume."


def test_bad_input_at_start_is_one_sentence_and_no_job_runs(panel):
    panel.bindParameterNode(ParameterNode("mrml"))
    panel.next_error = InputError("The fixed and moving volumes are the same node 'A'; select two different volumes.")
    panel.onApplyButton()
    assert panel.errors == ["The fixed and moving volumes are the same node 'A'; select two different volumes."]
    assert not panel.jobRunning and not panel._timer.active and panel.ui.applyButton.text == "Apply"


def test_no_second_run_while_dependencies_install(panel, monkeypatch):
    """Installing torch shows dialogs that process events: a second click must not start anything."""
    from TTTMedicalLib import dependencies

    panel.bindParameterNode(ParameterNode("mrml"))
    states = []

    def install(log):
        states.append((panel.ui.applyButton.enabled, panel.ui.applyButton.toolTip))
        panel.onApplyButton()  # the user clicks again while the installer runs

    monkeypatch.setattr(dependencies, "ensure_dependencies", install)
    panel.onApplyButton()
    assert states == [(False, "Installing Python packages...")]
    assert len(panel.jobs) == 1 and panel.jobs[0].running


def test_declined_dependencies_are_reported(panel, monkeypatch):
    from TTTMedicalLib import dependencies

    def decline(log):
        raise dependencies.DependencyError("TTTMedical needs nibabel>=5.0; the installation was declined.")

    monkeypatch.setattr(dependencies, "ensure_dependencies", decline)
    panel.bindParameterNode(ParameterNode("mrml"))
    panel.onApplyButton()
    assert panel.errors == ["TTTMedical needs nibabel>=5.0; the installation was declined."]
    assert panel.jobs == [] and panel.ui.applyButton.enabled and not panel._installing


def test_panel_range_of_declared_options(panel_module):
    from tttmedical.registration.options import SETTINGS

    assert panel_module.panel_range(SETTINGS["iterations"]) == (1, 100000)
    assert panel_module.panel_range(SETTINGS["lr"], 4) == (0.0001, 100.0)
    assert panel_module.panel_range(SETTINGS["smoothness"], 3) == (0.0, 1000.0)
