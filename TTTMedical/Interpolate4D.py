"""Interpolate4D: test-time-trained interpolation of 4D sequences (TTT4MII on a UVI-style model).

Thin GUI layer: the ``.ui`` file, a ``@parameterNodeWrapper`` parameter node whose choices, defaults
and ranges come from the engine's option declarations (``tttmedical.interpolation.options``), and
the hooks of ``TTTMedicalGUI.panel.EngineJobWidgetMixin``.  Exporting the sequence, the background
engine and importing results live in ``TTTMedicalLib.interpolation`` (tested without Slicer).
The sample 4D phantom is registered in the Sample Data module (generated offline by the engine).
"""

import logging
import os
from typing import Annotated

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, Decimals, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLSequenceNode

from tttmedical.core.options import COMMON
from tttmedical.interpolation.options import SETTINGS
from TTTMedicalGUI.panel import EngineJobWidgetMixin, describeModule, panel_range


class Interpolate4D(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describeModule(self.parent, "Interpolate 4D", "Sequences", helpText="""
Creates frames between the frames of a 4D sequence (cine MRI, 4D CT): the whole sequence at a higher
frame rate, or N frames between two chosen frames. A UVI-style interpolation model (trained without
intermediate frames) is first adapted to the sequence at hand by test-time training: <b>cycle</b>
(its own unsupervised loss), <b>rotation</b> or <b>mae</b> (self-supervised heads sharing its encoder),
with the naive, online or mini-batch scheme. <b>Evaluate</b> holds out real frames and reports PSNR,
NCC, SSIM and NMSE; <b>Compare</b> runs several task/scheme settings into one sequence browser.
The computation runs in a separate process; click the button again to cancel.
""",
                       acknowledgementText="""
Implements TTT4MII (test-time training for 4D medical image interpolation) on a UVI-Net-style model, on
PyTorch (installed through the PyTorch extension).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """The sample 4D phantom (mrphantom breathing cycle, generated offline by the engine) in Sample Data."""
    import SampleData

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="TTTMedical", sampleName="TTTPhantom4D", uris="tttmedical://sample-data/phantom-4d",
        fileNames="phantom-4d.seq.nrrd", nodeNames="TTT phantom 4D",
        thumbnailFileName=os.path.join(iconsPath, "Interpolate4D.png"),
        customDownloader=lambda source: loadSamplePhantom())


def loadSamplePhantom():
    from TTTMedicalLib.interpolation import add_sample_phantom

    sequence, browser = add_sample_phantom(slicer.mrmlScene, slicer.app.temporaryPath)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        slicer.util.setSliceViewerLayers(background=proxy, fit=True)
    return [sequence]


OVERRIDABLE = ("epochs", "lr")
LR_DECIMALS = 5


@parameterNodeWrapper
class Interpolate4DParameterNode:
    """
    inputSequence - the volume sequence; never modified.
    useFrameRange, firstFrame, lastFrame, num - N frames between frames A and B; else factor K over the whole sequence.
    task, scheme, epochs, lr, evaluate, modality, device - the engine's options (``tttmedical interpolate``);
      epochs and lr are passed only if overrideDefaults is set.
    compare, compareSettings - run every "task/scheme" listed into one browser with one metrics table.
    """

    inputSequence: vtkMRMLSequenceNode
    useFrameRange: bool = False
    firstFrame: Annotated[int, WithinRange(0, 10000)] = 0
    lastFrame: Annotated[int, WithinRange(0, 10000)] = 2
    num: Annotated[int, WithinRange(*panel_range(SETTINGS["num"]))] = SETTINGS["num"].shown_default
    factor: Annotated[int, WithinRange(*panel_range(SETTINGS["factor"]))] = SETTINGS["factor"].shown_default
    task: Annotated[str, Choice(list(SETTINGS["ttt_task"].choices))] = SETTINGS["ttt_task"].shown_default
    scheme: Annotated[str, Choice(list(SETTINGS["scheme"].choices))] = SETTINGS["scheme"].shown_default
    overrideDefaults: bool = False
    epochs: Annotated[int, WithinRange(*panel_range(SETTINGS["epochs"]))] = SETTINGS["epochs"].shown_default
    lr: Annotated[float, WithinRange(*panel_range(SETTINGS["lr"], LR_DECIMALS)), Decimals(LR_DECIMALS)] = SETTINGS["lr"].shown_default
    evaluate: bool = SETTINGS["evaluate"].default
    modality: Annotated[str, Choice(list(SETTINGS["modality"].choices))] = SETTINGS["modality"].shown_default
    device: Annotated[str, Choice(list(COMMON["device"].choices))] = COMMON["device"].shown_default
    compare: bool = False
    compareSettings: str = "mae/naive, rotation/naive, cycle/online"


class Interpolate4DWidget(EngineJobWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    applyToolTip = "Run the interpolation in the background; click again to cancel."

    # -------------------------------------------------------------- EngineJobWidgetMixin hooks
    def createLogic(self) -> "Interpolate4DLogic":
        return Interpolate4DLogic()

    def missingInputs(self) -> str:
        return "" if self._parameterNode.inputSequence else "Select a volume sequence."

    def updatePanelWidgets(self, running: bool) -> None:
        p = self._parameterNode
        rangeOn = bool(p and p.useFrameRange)
        for widget, on in ((self.ui.firstFrameSpinBox, rangeOn), (self.ui.lastFrameSpinBox, rangeOn),
                           (self.ui.numSpinBox, rangeOn and not (p and p.evaluate)), (self.ui.factorSpinBox, not rangeOn),
                           (self.ui.epochsSpinBox, bool(p and p.overrideDefaults)), (self.ui.lrSpinBox, bool(p and p.overrideDefaults)),
                           (self.ui.compareSettingsLineEdit, bool(p and p.compare)),
                           (self.ui.taskComboBox, not (p and p.compare)), (self.ui.schemeComboBox, not (p and p.compare))):
            widget.enabled = on and not running


class Interpolate4DLogic(ScriptedLoadableModuleLogic):
    """Batch-usable entry points; the work is done by ``TTTMedicalLib.interpolation``."""

    def getParameterNode(self):
        return Interpolate4DParameterNode(super().getParameterNode())

    @staticmethod
    def parseCompareSettings(text: str) -> list:
        """``"cycle/online, rotation/naive"`` -> ``[("cycle", "online"), ("rotation", "naive")]``."""
        from tttmedical.core.errors import InputError

        pairs = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if item.count("/") != 1:
                raise InputError(f"'{item}' is not a task/scheme pair; write e.g. cycle/online.")
            pairs.append(tuple(part.strip() for part in item.split("/")))
        return pairs

    @staticmethod
    def settingsFromParameters(p):
        from TTTMedicalLib.interpolation import InterpolationSettings

        chosen = {name: getattr(p, name) for name in OVERRIDABLE} if p.overrideDefaults else {}
        sizes = {} if p.evaluate else ({"num": p.num} if p.useFrameRange else {"factor": p.factor})
        return InterpolationSettings(ttt_task=p.task, scheme=p.scheme, evaluate=p.evaluate, modality=p.modality,
                                     device=p.device, **sizes, **chosen)

    def createJob(self, p, **callbacks):
        from TTTMedicalLib.interpolation import InterpolationCompareJob, InterpolationJob

        frames = (p.firstFrame, p.lastFrame) if p.useFrameRange else None
        settings = self.settingsFromParameters(p)
        common = dict(frames=frames, scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, **callbacks)
        if p.compare:
            return InterpolationCompareJob(p.inputSequence, settings, self.parseCompareSettings(p.compareSettings), **common)
        return InterpolationJob(p.inputSequence, settings, **common)

    def run(self, inputSequence, frames=None, compare=None, showResult=True, log=logging.info, timeout=None,
            processFactory=None, **settings):
        """Blocking run for Python scripts; returns ``InterpolationOutputs`` (raises on failure).

        ``settings`` are the engine's options by their engine names (``num``, ``factor``, ``ttt_task``,
        ``scheme``, ``epochs``, ``lr``, ``mask_ratio``, ``evaluate``, ``modality``, ``device``, ``seed``);
        ``compare`` is a list of ``(task, scheme)`` pairs for a comparison run.
        """
        from TTTMedicalLib.interpolation import InterpolationCompareJob, InterpolationJob, InterpolationSettings

        common = dict(frames=frames, scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, on_log=log,
                      process_factory=processFactory)
        if compare:
            job = InterpolationCompareJob(inputSequence, InterpolationSettings(**settings), compare, **common)
        else:
            job = InterpolationJob(inputSequence, InterpolationSettings(**settings), **common)
        outputs = job.run_blocking(timeout)
        if showResult:
            self.showResults(outputs)
        return outputs

    @staticmethod
    def summary(outputs) -> str:
        parts = [f"{len(outputs.sequences)} output sequence(s)"]
        for report in outputs.reports:
            if "metrics" in report:
                parts.append(f"{report['ttt']['task']}/{report['ttt']['scheme']} PSNR {report['metrics']['psnr']:.2f} dB "
                             f"(linear {report['baseline_linear']['psnr']:.2f})")
        return ", ".join(parts)

    @staticmethod
    def showResults(outputs) -> None:
        """The first output's proxy volume in the slice views, the browser's toolbar, the loss plot or metrics table."""
        proxy = outputs.browser.GetProxyNode(outputs.sequence) if outputs.browser else None
        if proxy is not None:
            slicer.util.setSliceViewerLayers(background=proxy, fit=True)
        if hasattr(slicer.modules, "sequences"):
            slicer.modules.sequences.setToolBarActiveBrowserNode(outputs.browser)
        if outputs.loss_chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(outputs.loss_chart)
        elif outputs.metrics_table is not None:
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(outputs.metrics_table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()


class Interpolate4DTest(ScriptedLoadableModuleTest):
    """Self-test: input checks without the engine; the real interpolation when the engine's packages are installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_Interpolate4D_single_frame_refused()
        self.setUp()
        self.test_Interpolate4D_real_engine()

    def _sequence(self, frames):
        import numpy as np
        from tttmedical.core.volume import Volume
        from TTTMedicalLib import sequences

        k, j, i = np.meshgrid(*[np.arange(16, dtype=np.float32)] * 3, indexing="ij")
        volumes = [Volume(100 * np.exp(-((k - 8) ** 2 + (j - 8) ** 2 + (i - 6 - t) ** 2) / 10).astype(np.float32))
                   for t in range(frames)]
        return sequences.add_sequence_from_volumes(volumes, [0.1 * t for t in range(frames)], "TTT cine", "time", "s",
                                                   slicer.mrmlScene, browser=False)[0]

    def test_Interpolate4D_single_frame_refused(self):
        from tttmedical.core.errors import InputError

        self.delayDisplay("A single-frame sequence is refused before any work")
        node = self._sequence(1)
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            Interpolate4DLogic().run(node, showResult=False)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)

    def test_Interpolate4D_real_engine(self):
        from TTTMedicalLib import dependencies, sequences

        if not dependencies.torch_installed() or dependencies.missing_requirements():
            self.delayDisplay("PyTorch or another engine package is not installed (nothing is installed in testing mode): "
                              "the interpolation with the real engine was not run.")
            return
        self.delayDisplay("Interpolating with the real engine")
        node = self._sequence(5)
        outputs = Interpolate4DLogic().run(node, ttt_task="rotation", epochs=1, evaluate=True, showResult=False, timeout=600)
        self.assertEqual(outputs.sequence.GetNumberOfDataNodes(), 5)
        self.assertEqual([float(v) for v in sequences.index_values(outputs.sequence)], [0.0, 0.1, 0.2, 0.3, 0.4])
        self.assertIsNotNone(outputs.metrics_table)
        self.delayDisplay("Test passed")
