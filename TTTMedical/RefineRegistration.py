"""RefineRegistration: test-time refinement of a deformable registration (Reg-TTR, SSMSR).

Thin GUI layer: the ``.ui`` file, a ``@parameterNodeWrapper`` parameter node whose choices, defaults
and ranges come from the engine's option declarations (``tttmedical.registration.options``), and
the hooks of ``TTTMedicalGUI.panel.EngineJobWidgetMixin`` (Apply <-> Cancel, polling, dependencies,
errors).  Everything else (exporting nodes, coordinate frames, the background engine, importing
results) lives in ``TTTMedicalLib.registration`` and the ``tttmedical`` engine, tested without Slicer.
"""

import enum
import logging
from typing import Annotated, Union

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

from tttmedical.core.options import COMMON
from tttmedical.registration.options import SETTINGS
from TTTMedicalGUI.panel import EngineJobWidgetMixin, describeModule, panel_range


#
# RefineRegistration
#


class RefineRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describeModule(self.parent, "Refine Registration", "Registration", helpText="""
Refines a deformable registration of a moving volume to a fixed volume at test time, starting from
any initial transform (linear, grid or B-spline, e.g. from the Elastix or ANTs modules).
<b>Reg-TTR</b> optimises the displacement field itself (local NCC + SSIM + smoothness);
<b>SSMSR</b> trains a small network per scale on this very pair; <b>Predictor</b> only runs the
bundled network. Outputs (new nodes, inputs are never modified): a grid transform, the warped moving
volume, its Jacobian determinant, a metrics table (initial vs refined) and a loss plot.
The computation runs in a separate process; click the button again to cancel.
See <a href="https://github.com/TTTMedical/TTTMedical#refineregistration">the documentation</a>.
""",
                       acknowledgementText="""
Implements Reg-TTR and SSMSR test-time registration refinement on PyTorch (installed through the
PyTorch extension).
""")


#
# Parameter node
#

OVERRIDABLE = ("iterations", "lr", "smoothness", "levels")
"""Settings the panel passes only when "Override the method's defaults" is ticked (engine names)."""
LR_DECIMALS, SMOOTHNESS_DECIMALS = 4, 3


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
    fixedSegmentation, movingSegmentation - optional; label maps matched by value, segmentations by name.
    method, iterations, lr, smoothness, levels, modality, device - the engine's options (same names,
      defaults and ranges as ``tttmedical register``); iterations, lr, smoothness and levels are passed
      only if overrideDefaults is set, else each method uses its own defaults.
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    initialTransform: vtkMRMLTransformNode
    fixedSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    movingSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    method: Method = Method(SETTINGS["method"].shown_default)
    overrideDefaults: bool = False
    iterations: Annotated[int, WithinRange(*panel_range(SETTINGS["iterations"]))] = SETTINGS["iterations"].shown_default
    lr: Annotated[float, WithinRange(*panel_range(SETTINGS["lr"], LR_DECIMALS)),
                  Decimals(LR_DECIMALS)] = SETTINGS["lr"].shown_default
    smoothness: Annotated[float, WithinRange(*panel_range(SETTINGS["smoothness"], SMOOTHNESS_DECIMALS)),
                          Decimals(SMOOTHNESS_DECIMALS)] = SETTINGS["smoothness"].shown_default
    levels: Annotated[int, WithinRange(*panel_range(SETTINGS["levels"]))] = SETTINGS["levels"].shown_default
    modality: Annotated[str, Choice(list(SETTINGS["modality"].choices))] = SETTINGS["modality"].shown_default
    device: Annotated[str, Choice(list(COMMON["device"].choices))] = COMMON["device"].shown_default


#
# Widget
#


class RefineRegistrationWidget(EngineJobWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    applyToolTip = "Run the refinement in the background; click again to cancel."

    # -------------------------------------------------------------- EngineJobWidgetMixin hooks
    def createLogic(self) -> "RefineRegistrationLogic":
        return RefineRegistrationLogic()

    def missingInputs(self) -> str:
        p = self._parameterNode
        return "" if p.fixedVolume and p.movingVolume else "Select a fixed and a moving volume."

    def updatePanelWidgets(self, running: bool) -> None:
        override = bool(self._parameterNode and self._parameterNode.overrideDefaults)
        for widget in (self.ui.iterationsSpinBox, self.ui.lrSpinBox, self.ui.smoothnessSpinBox,
                       self.ui.levelsSpinBox):
            widget.enabled = override and not running

    def onJobSucceeded(self, job) -> str:
        self.logic.showResults(job.outputs, job.inputs.fixed)
        return "Done: " + self.logic.summary(job.outputs)


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

        chosen = {name: getattr(parameterNode, name) for name in OVERRIDABLE} if parameterNode.overrideDefaults else {}
        return RegistrationSettings(method=parameterNode.method.value, modality=parameterNode.modality,
                                    device=parameterNode.device, **chosen)

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

    def createJob(self, parameterNode, **callbacks):
        """A not-yet-started ``RegistrationJob`` for the panel's parameters."""
        from TTTMedicalLib.registration import RegistrationJob

        return RegistrationJob(self.inputsFromParameters(parameterNode), self.settingsFromParameters(parameterNode),
                               scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, **callbacks)

    def run(self, fixedVolume, movingVolume, initialTransform=None, fixedSegmentation=None, movingSegmentation=None,
            showResult=True, log=logging.info, timeout=None, processFactory=None, **settings):
        """Blocking run for Python scripts; returns ``RegistrationOutputs`` (raises on failure).

        ``settings`` are the engine's options by their engine names (``method``, ``iterations``,
        ``lr``, ``smoothness``, ``levels``, ``modality``, ``device``, ``seed``); ``None`` or absent
        leaves the method's own default.  ``processFactory`` replaces the engine process (self-test).
        """
        from TTTMedicalLib.registration import RegistrationInputs, RegistrationJob, RegistrationSettings

        job = RegistrationJob(
            RegistrationInputs(fixedVolume, movingVolume, initialTransform, fixedSegmentation, movingSegmentation),
            RegistrationSettings(**settings), scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, on_log=log,
            process_factory=processFactory)
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
    """Self-test on a synthetic pair built with ``slicer.util.addVolumeFromArray`` (no download).

    The scene round trip always runs, with the torch-free stand-in engine
    (``TTTMedicalLib.fake_engine``: a known constant displacement); the real refinement runs when
    the engine's packages (torch first) are installed, which is never done in testing mode.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RefineRegistration_scene_round_trip()
        self.setUp()
        self.test_RefineRegistration_cancel_leaves_scene_unchanged()
        self.setUp()
        self.test_RefineRegistration_improves_ncc()

    def test_RefineRegistration_scene_round_trip(self):
        import numpy as np
        from TTTMedicalLib import fake_engine, samples, transforms
        from TTTMedicalLib.results import table_as_dict

        self.delayDisplay("Scene round trip with the stand-in engine")
        fixed, moving, fixedLabels, movingLabels = samples.add_registration_pair(size=12, with_labels=True)
        movingBefore = slicer.util.arrayFromVolume(moving).copy()
        outputs = RefineRegistrationLogic().run(fixed, moving, fixedSegmentation=fixedLabels, movingSegmentation=movingLabels,
                                                iterations=3, showResult=False, timeout=120,
                                                processFactory=fake_engine.process_factory("success"))
        corner = np.array(fixed.GetOrigin())
        moved = transforms.transform_points_ras(outputs.transform.GetTransformFromParent(), corner[None])[0]
        shiftRas = np.array(fake_engine.FAKE_SHIFT_LPS) * [-1, -1, 1]
        self.assertLess(np.abs(moved - corner - shiftRas).max(), 1e-6)
        self.assertEqual(table_as_dict(outputs.metrics_table)["ncc"], (0.5, 0.75))
        self.assertEqual(outputs.warped.GetImageData().GetDimensions(), fixed.GetImageData().GetDimensions())
        self.assertEqual(outputs.warped_segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(moving), movingBefore))
        self.assertIsNone(moving.GetParentTransformNode())

    def test_RefineRegistration_cancel_leaves_scene_unchanged(self):
        import time
        from TTTMedicalLib import fake_engine, samples
        from TTTMedicalLib.registration import RegistrationInputs, RegistrationJob

        self.delayDisplay("Cancelling leaves the scene as it was")
        fixed, moving = samples.add_registration_pair(size=12)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        progress = []
        job = RegistrationJob(RegistrationInputs(fixed, moving), scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath,
                              on_progress=lambda fraction, text: progress.append(fraction),
                              process_factory=fake_engine.process_factory("slow"))
        job.start()
        deadline = time.monotonic() + 60
        while not progress and job.poll() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(progress and job.running)
        job.cancel()
        self.assertTrue(job.cancelled and job.outputs is None)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)

    def test_RefineRegistration_improves_ncc(self):
        import numpy as np
        from TTTMedicalLib import dependencies, samples
        from TTTMedicalLib.results import table_as_dict

        if not dependencies.torch_installed() or dependencies.missing_requirements():
            self.delayDisplay("PyTorch or another engine package is not installed (nothing is installed in testing mode): "
                              "the refinement with the real engine was not run.")
            return
        self.delayDisplay("Refining with the real engine (Reg-TTR)")
        fixed, moving = samples.add_registration_pair(size=24, amplitude_voxels=1.5)
        movingBefore = slicer.util.arrayFromVolume(moving).copy()
        outputs = RefineRegistrationLogic().run(fixed, moving, method="regttr", iterations=20, showResult=False, timeout=600)
        metrics = outputs.report["metrics"]
        self.assertGreater(metrics["ncc"], metrics["initial_ncc"])
        self.assertAlmostEqual(table_as_dict(outputs.metrics_table)["ncc"][1], metrics["ncc"], places=6)
        self.assertTrue(outputs.transform.IsA("vtkMRMLGridTransformNode"))
        self.assertEqual(outputs.warped.GetImageData().GetDimensions(), fixed.GetImageData().GetDimensions())
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(moving), movingBefore))
        self.assertIsNone(moving.GetParentTransformNode())
        self.delayDisplay("Test passed")
