"""RefineRegistration: test-time refinement of a deformable registration (Reg-TTR, SSMSR).

Thin GUI layer: the panel is bound to a ``@parameterNodeWrapper`` parameter node through the .ui
file's ``SlicerParameterName`` properties; every decision (exporting nodes, coordinate frames,
running the engine in a background process, importing results) lives in
``TTTMedicalLib.registration`` and the ``tttmedical`` engine, where it is tested without Slicer.
"""

import enum
import logging
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, Decimals, WithinRange, parameterNodeWrapper
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTransformNode,
)


#
# RefineRegistration
#


class RefineRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Refine Registration"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["TTTMedical contributors"]
        self.parent.helpText = """
Refines a deformable registration of a moving volume to a fixed volume at test time, starting from
any initial transform (linear, grid or B-spline, e.g. from the Elastix or ANTs modules).
<b>Reg-TTR</b> optimises the displacement field itself (local NCC + SSIM + smoothness);
<b>SSMSR</b> trains a small network per scale on this very pair; <b>Predictor</b> only runs the
bundled network. Outputs (new nodes, inputs are never modified): a grid transform, the warped moving
volume, its Jacobian determinant, a metrics table (initial vs refined) and a loss plot.
The computation runs in a separate process; click the button again to cancel.
See <a href="https://github.com/TTTMedical/TTTMedical#refineregistration">the documentation</a>.
"""
        self.parent.acknowledgementText = """
Implements Reg-TTR and SSMSR test-time registration refinement on PyTorch (installed through the
PyTorch extension).
"""


#
# Parameter node
#


class Method(enum.Enum):
    REGTTR = "regttr"
    SSMSR = "ssmsr"
    PREDICT = "predict"

    def label(self):
        return {"regttr": "Reg-TTR (refine the field)", "ssmsr": "SSMSR (multi-scale TTT)",
                "predict": "Predictor only"}[self.value]


@parameterNodeWrapper
class RefineRegistrationParameterNode:
    """
    fixedVolume, movingVolume - the pair; results are on the fixed grid.
    initialTransform - optional; else the moving volume's parent transform is the starting point.
    fixedSegmentation, movingSegmentation - optional, segments matched by name.
    method - Reg-TTR, SSMSR or predictor only.
    overrideDefaults - if False the engine's defaults are used for iterations, learning rate, smoothness.
    modality - intensity normalisation: mri (percentiles), ct (soft-tissue window) or none.
    device - auto (CUDA when available), cpu or cuda.
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    initialTransform: vtkMRMLTransformNode
    fixedSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    movingSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    method: Method = Method.REGTTR
    overrideDefaults: bool = False
    iterations: Annotated[int, WithinRange(1, 10000)] = 60
    learningRate: Annotated[float, WithinRange(0.0001, 10.0), Decimals(4)] = 0.25
    smoothness: Annotated[float, WithinRange(0.0, 1000.0), Decimals(3)] = 1.0
    modality: Annotated[str, Choice(["mri", "ct", "none"])] = "mri"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"


#
# Widget
#


class RefineRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RefineRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RefineRegistrationLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._pollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[RefineRegistrationParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _updateGUI(self, caller=None, event=None) -> None:
        running = self._job is not None and self._job.running
        p = self._parameterNode
        for widget in (self.ui.iterationsSpinBox, self.ui.learningRateSpinBox, self.ui.smoothnessSpinBox):
            widget.enabled = bool(p and p.overrideDefaults) and not running
        if running:
            self.ui.applyButton.text = "Cancel"
            self.ui.applyButton.toolTip = "Stop the computation; the scene is left as it was."
            self.ui.applyButton.enabled = True
        elif p and p.fixedVolume and p.movingVolume:
            self.ui.applyButton.text = "Apply"
            self.ui.applyButton.toolTip = "Run the refinement in the background."
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = "Apply"
            self.ui.applyButton.toolTip = "Select a fixed and a moving volume."
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        if self._job is not None and self._job.running:
            self.ui.statusLabel.text = "Cancelling..."
            self._job.cancel()
            return
        from tttmedical.core.errors import InputError
        from TTTMedicalLib.dependencies import DependencyError, ensure_dependencies

        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        try:
            with slicer.util.WaitCursor():
                ensure_dependencies(log=self._appendLog)
                self._job = self.logic.createJob(self._parameterNode, on_progress=self._onProgress,
                                                 on_log=self._appendLog, on_finished=self._onFinished)
                self._job.start()
        except (InputError, DependencyError) as exc:
            self._job = None
            self.ui.statusLabel.text = str(exc)
            slicer.util.errorDisplay(str(exc))
            return
        except Exception as exc:
            self._job = None
            logging.exception("RefineRegistration could not start")
            slicer.util.errorDisplay(f"Could not start the refinement: {exc}")
            return
        self.ui.statusLabel.text = "Running..."
        self._timer.start()
        self._updateGUI()

    def _pollJob(self) -> None:
        if self._job is None or not self._job.poll():
            self._timer.stop()

    def _onProgress(self, fraction: float, text: str) -> None:
        self.ui.progressBar.value = int(round(1000 * fraction))
        self.ui.statusLabel.text = text

    def _appendLog(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
        logging.info(text)

    def _onFinished(self, job) -> None:
        self._timer.stop()
        if job.outputs is not None:
            self.ui.progressBar.value = 1000
            self.ui.statusLabel.text = "Done: " + self.logic.summary(job.outputs)
            self.logic.showResults(job.outputs, job.inputs.fixed)
        elif job.cancelled:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        else:
            self.ui.statusLabel.text = str(job.error)
            slicer.util.errorDisplay(str(job.error))
        self._updateGUI()


#
# Logic
#


class RefineRegistrationLogic(ScriptedLoadableModuleLogic):
    """Batch-usable entry points; the work is done by ``TTTMedicalLib.registration``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RefineRegistrationParameterNode(super().getParameterNode())

    @staticmethod
    def settingsFromParameters(parameterNode):
        from TTTMedicalLib.registration import RegistrationSettings

        override = parameterNode.overrideDefaults
        return RegistrationSettings(
            method=parameterNode.method.value,
            iterations=parameterNode.iterations if override else None,
            learning_rate=parameterNode.learningRate if override else None,
            smoothness=parameterNode.smoothness if override else None,
            modality=parameterNode.modality,
            device=parameterNode.device,
        )

    @staticmethod
    def inputsFromParameters(parameterNode):
        from TTTMedicalLib.registration import RegistrationInputs

        return RegistrationInputs(
            fixed=parameterNode.fixedVolume,
            moving=parameterNode.movingVolume,
            initial_transform=parameterNode.initialTransform,
            fixed_segmentation=parameterNode.fixedSegmentation,
            moving_segmentation=parameterNode.movingSegmentation,
        )

    def createJob(self, parameterNode, on_progress=None, on_log=None, on_finished=None):
        """A not-yet-started ``RegistrationJob`` for the panel's parameters."""
        from TTTMedicalLib.registration import RegistrationJob

        return RegistrationJob(self.inputsFromParameters(parameterNode), self.settingsFromParameters(parameterNode),
                               scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath,
                               on_progress=on_progress, on_log=on_log, on_finished=on_finished)

    def run(self, fixedVolume, movingVolume, initialTransform=None, fixedSegmentation=None, movingSegmentation=None,
            method="regttr", iterations=None, learningRate=None, smoothness=None, modality="mri", device="auto",
            showResult=True, log=logging.info, timeout=None):
        """Blocking run for Python scripts; returns ``RegistrationOutputs`` (raises on failure)."""
        from TTTMedicalLib.registration import RegistrationInputs, RegistrationJob, RegistrationSettings

        job = RegistrationJob(
            RegistrationInputs(fixedVolume, movingVolume, initialTransform, fixedSegmentation, movingSegmentation),
            RegistrationSettings(method=method, iterations=iterations, learning_rate=learningRate,
                                 smoothness=smoothness, modality=modality, device=device),
            scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, on_log=log)
        outputs = job.run_blocking(timeout)
        if showResult:
            self.showResults(outputs, fixedVolume)
        return outputs

    @staticmethod
    def summary(outputs) -> str:
        metrics = outputs.report.get("metrics", {})
        parts = []
        for name in ("ncc", "dice"):
            if isinstance(metrics.get(name), (int, float)) and isinstance(metrics.get(f"initial_{name}"), (int, float)):
                parts.append(f"{name.upper()} {metrics[f'initial_{name}']:.3f} -> {metrics[name]:.3f}")
        if outputs.report.get("device"):
            parts.append(f"on {outputs.report['device']}")
        return ", ".join(parts) or "results added to the scene"

    @staticmethod
    def showResults(outputs, fixedVolume) -> None:
        """Fixed in the background, refined moving in the foreground at 50 %, loss plot in the layout."""
        slicer.util.setSliceViewerLayers(background=fixedVolume, foreground=outputs.warped, foregroundOpacity=0.5, fit=True)
        if outputs.loss_chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(outputs.loss_chart)


#
# Test
#


class RefineRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test: a synthetic pair built with ``slicer.util.addVolumeFromArray`` (no download)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RefineRegistration_improves_ncc()

    def test_RefineRegistration_improves_ncc(self):
        import numpy as np
        from TTTMedicalLib import dependencies, samples
        from TTTMedicalLib.results import table_as_dict

        if not dependencies.torch_installed() or dependencies.missing_requirements():
            self.skipTest("PyTorch or another engine package is not installed (nothing is installed in testing mode); "
                          "install them with the module once, then rerun the test.")
        self.delayDisplay("Building a synthetic pair")
        fixed, moving = samples.add_registration_pair(size=24, amplitude_voxels=1.5)
        movingBefore = slicer.util.arrayFromVolume(moving).copy()

        self.delayDisplay("Refining (Reg-TTR)")
        outputs = RefineRegistrationLogic().run(fixed, moving, method="regttr", iterations=20, showResult=False,
                                                timeout=600)

        metrics = outputs.report["metrics"]
        self.assertGreater(metrics["ncc"], metrics["initial_ncc"])
        table = table_as_dict(outputs.metrics_table)
        self.assertAlmostEqual(table["ncc"][1], metrics["ncc"], places=6)
        self.assertTrue(outputs.transform.IsA("vtkMRMLGridTransformNode"))
        self.assertEqual(outputs.warped.GetImageData().GetDimensions(), fixed.GetImageData().GetDimensions())
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(moving), movingBefore))
        self.assertIsNone(moving.GetParentTransformNode())
        self.delayDisplay("Test passed")
