"""The part of a TTTMedical panel that every module shares.

A panel is :class:`EngineJobWidgetMixin` + ``ScriptedLoadableModuleWidget`` + ``VTKObservationMixin``,
a ``.ui`` file and a ``@parameterNodeWrapper`` parameter node.  The ``.ui`` file has ``applyButton``,
``progressBar`` (range 0-1000), ``statusLabel`` and ``logTextEdit``; the panel implements the hooks:

* ``createJob(on_progress, on_log, on_finished)`` -> a not-yet-started ``TTTMedicalLib.job.EngineJob``
  (default: ``self.logic.createJob(parameterNode, **callbacks)``);
* ``missingInputs()`` -> ``""`` when Apply may run, else the sentence shown as the button's tooltip;
* ``onJobSucceeded(job)`` -> the status text after success (show results here; default:
  ``self.logic.showResults(outputs)`` and ``"Done: " + self.logic.summary(outputs)``);

* ``createLogic()`` -> the module's ``ScriptedLoadableModuleLogic``;

and optionally ``updatePanelWidgets(running)`` (enable or disable its own widgets).  The panel lists :class:`EngineJobWidgetMixin` **first** among its
bases (``class XWidget(EngineJobWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin)``),
so the widget life cycle is the mixin's: ``__init__`` runs both bases' constructors, ``setup()`` is
``ScriptedLoadableModuleWidget.setup`` + :meth:`~EngineJobWidgetMixin.setupModulePanel` (loads
``Resources/UI/<moduleName>.ui``, binds the parameter node, follows scene closes), ``cleanup()``
and ``enter()`` are :meth:`~EngineJobWidgetMixin.cleanupModulePanel` and
:meth:`~EngineJobWidgetMixin.enterModulePanel`.

Binding (read in Slicer's ``Base/Python/slicer/parameterNodeWrapper/wrapper.py``): on Slicer 5.8
``connectGui`` returns no tag, so the template's disconnect-on-exit/reconnect-on-enter leaves stale
connectors that reset combo boxes each time the module is entered.  Here the widgets are connected
once per parameter node and the connection is kept across exit/enter; it is replaced only when the
scene's parameter node changes, using the tag that ``connectParametersToGui`` returns on every version.
"""
from __future__ import annotations

import logging

import qt
import vtk

import slicer

PARAMETER_PROPERTY = "SlicerParameterName"


def describeModule(parent, title: str, category: str, helpText: str, acknowledgementText: str) -> None:
    """The module's entry in Slicer's module list (every TTTMedical module: no module dependencies,
    the same contributors)."""
    parent.title = title
    parent.categories = [category]
    parent.dependencies = []
    parent.contributors = ["TTTMedical contributors"]
    parent.helpText = helpText
    parent.acknowledgementText = acknowledgementText


def panel_range(option, decimals: int | None = None) -> tuple[float, float]:
    """``(minimum, maximum)`` for a spin box bound to a declared engine option
    (``tttmedical.core.options.Option``); an exclusive minimum becomes the smallest value shown
    with ``decimals`` digits."""
    low, high = option.minimum, option.maximum
    if option.exclusive_minimum:
        low = low + 10.0 ** -(decimals if decimals is not None else 6)
    return low, high


class EngineJobWidgetMixin:
    """Apply <-> Cancel, polling, dependency check, progress, log and errors for a panel running an EngineJob."""

    pollIntervalMs = 100
    runningToolTip = "Stop the computation; the scene is left as it was."
    applyToolTip = "Run in the background; click again to cancel."

    # -------------------------------------------------------------- module widget life cycle
    def __init__(self, parent=None) -> None:
        from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget

        self.logic = None
        slicer.util.VTKObservationMixin.__init__(self)        # before: without a parent the base calls setup()
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self) -> None:
        from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget

        ScriptedLoadableModuleWidget.setup(self)
        self.setupModulePanel(self.createLogic())

    def cleanup(self) -> None:
        self.cleanupModulePanel()

    def enter(self) -> None:
        self.enterModulePanel()

    def setupModulePanel(self, logic) -> None:
        """The whole ``setup()`` after ``ScriptedLoadableModuleWidget.setup``: load
        ``Resources/UI/<moduleName>.ui``, keep ``logic``, set up the engine-job panel, follow scene
        closes and bind the logic's parameter node."""
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.setupEngineJobPanel()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.bindParameterNode(self.logic.getParameterNode())

    def cleanupModulePanel(self) -> None:
        """The whole ``cleanup()``: cancel a running job, stop polling, drop observers."""
        self.cleanupEngineJobPanel()
        self.removeObservers()

    def enterModulePanel(self) -> None:
        """The whole ``enter()``: bind the parameter node (a no-op while bound to the same node)."""
        self.bindParameterNode(self.logic.getParameterNode())

    def onSceneStartClose(self, caller, event) -> None:
        self.cleanupEngineJobPanel()
        self.bindParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.bindParameterNode(self.logic.getParameterNode())

    # -------------------------------------------------------------- set-up
    def setupEngineJobPanel(self) -> None:
        self._job = None
        self._installing = False
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = qt.QTimer()
        self._timer.setInterval(self.pollIntervalMs)
        self._timer.timeout.connect(self._pollJob)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

    def cleanupEngineJobPanel(self) -> None:
        """Cancel a running job (the scene stays as it was) and stop polling."""
        if self.jobRunning:
            self._job.cancel()
        self._timer.stop()

    @property
    def jobRunning(self) -> bool:
        return self._job is not None and self._job.running

    def bindParameterNode(self, parameterNode) -> None:
        """Connect the ``.ui`` widgets to ``parameterNode`` unless already connected to the same MRML node."""
        if parameterNode is not None and self._parameterNode is not None and \
                _mrml_node(parameterNode) is _mrml_node(self._parameterNode):
            self.updateApplyButton()
            return
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
        self._parameterNode, self._parameterNodeGuiTag = parameterNode, None
        if parameterNode is not None:
            widgets = {w.property(PARAMETER_PROPERTY): w for w in vars(self.ui).values()
                       if hasattr(w, "property") and w.property(PARAMETER_PROPERTY)}
            self._parameterNodeGuiTag = parameterNode.connectParametersToGui(widgets)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
        self.updateApplyButton()

    # -------------------------------------------------------------- hooks with defaults
    def createJob(self, on_progress=None, on_log=None, on_finished=None):
        """Hook: the logic's job for the bound parameter node (not started)."""
        return self.logic.createJob(self._parameterNode, on_progress=on_progress, on_log=on_log, on_finished=on_finished)

    def onJobSucceeded(self, job) -> str:
        """Hook: show the results, return the status text."""
        self.logic.showResults(job.outputs)
        return "Done: " + self.logic.summary(job.outputs)

    # -------------------------------------------------------------- state
    def updatePanelWidgets(self, running: bool) -> None:
        """Hook: enable or disable the panel's own widgets."""

    def updateApplyButton(self, caller=None, event=None) -> None:
        button = self.ui.applyButton
        running = self.jobRunning
        self.updatePanelWidgets(running or self._installing)
        if running:
            button.text, button.toolTip, button.enabled = "Cancel", self.runningToolTip, True
        elif self._installing:
            button.text, button.toolTip, button.enabled = "Apply", "Installing Python packages...", False
        else:
            missing = self.missingInputs() if self._parameterNode is not None else "No parameter node."
            button.text, button.toolTip, button.enabled = "Apply", missing or self.applyToolTip, not missing

    # -------------------------------------------------------------- actions
    def onApplyButton(self) -> None:
        if self._installing:  # a dependency dialog is open: no second run underneath it
            return
        if self.jobRunning:
            self.ui.statusLabel.text = "Cancelling..."
            self._job.cancel()
            return
        from tttmedical.core.errors import InputError
        from TTTMedicalLib.dependencies import DependencyError, ensure_dependencies

        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        self._job = None
        try:
            self._installing = True
            self.updateApplyButton()
            try:
                with slicer.util.WaitCursor():
                    ensure_dependencies(log=self.appendLog)
            finally:
                self._installing = False
            job = self.createJob(on_progress=self._onProgress, on_log=self.appendLog, on_finished=self._onFinished)
            with slicer.util.WaitCursor():
                job.start()
            self._job = job
        except (InputError, DependencyError) as exc:
            self.showError(str(exc))
            return
        except Exception as exc:
            logging.exception("The run could not start")
            self.showError(f"Could not start: {exc}")
            return
        finally:
            self.updateApplyButton()
        self.ui.statusLabel.text = "Running..."
        self._timer.start()

    def showError(self, text: str) -> None:
        self.ui.statusLabel.text = text
        self.appendLog(f"Error: {text}")
        slicer.util.errorDisplay(text)

    def appendLog(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
        logging.info(text)

    # -------------------------------------------------------------- job events
    def _pollJob(self) -> None:
        if self._job is None or not self._job.poll():
            self._timer.stop()

    def _onProgress(self, fraction: float, text: str) -> None:
        self.ui.progressBar.value = int(round(1000 * fraction))
        self.ui.statusLabel.text = text

    def _onFinished(self, job) -> None:
        self._timer.stop()
        if job.outputs is not None:
            self.ui.progressBar.value = 1000
            self.ui.statusLabel.text = self.onJobSucceeded(job)
        elif job.cancelled:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        else:
            self.ui.statusLabel.text = str(job.error)
            slicer.util.errorDisplay(str(job.error))
        self.updateApplyButton()


def _mrml_node(parameterNode):
    """The MRML node behind a ``parameterNodeWrapper`` object."""
    return getattr(parameterNode, "parameterNode", parameterNode)
