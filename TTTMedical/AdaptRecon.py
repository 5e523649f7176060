"""AdaptRecon: test-time-adapted multi-coil MRI reconstruction (D2SA and its baselines).

Thin GUI layer: the ``.ui`` file, a ``@parameterNodeWrapper`` parameter node whose choices, defaults
and ranges come from the engine's option declarations (``tttmedical.recon.options``), and the hooks
of ``TTTMedicalGUI.panel.EngineJobWidgetMixin`` (Apply <-> Cancel, polling, dependencies, errors).
Everything else (exporting the volume, the background engine, importing results) lives in
``TTTMedicalLib.recon`` and the ``tttmedical`` engine, tested without Slicer.
"""

import logging
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
from slicer import vtkMRMLScalarVolumeNode

from tttmedical.core.options import COMMON
from tttmedical.recon.options import SETTINGS, SIMULATION
from TTTMedicalGUI.panel import EngineJobWidgetMixin, describeModule, panel_range


class AdaptRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describeModule(self.parent, "Adapt Recon", "Reconstruction", helpText="""
Reconstructs undersampled multi-coil MRI with a small U-Net adapted to this patient at test time.
Input: a k-space file (fastMRI-style HDF5 or .npy) or a volume from which an undersampled acquisition
is simulated (mask, acceleration, centre fraction, coils, noise). Methods: zero-filled, pretrained,
DIP-TTT, data fidelity, Noisier2Noise, SSDU; D2SA stage 1 (INR modulation) and stage 2 (difference
convolutions with edge stopping). <b>Compare</b> runs several methods on the same data into separate
volumes with error maps and one metrics table. Outputs keep the reference's geometry.
See <a href="https://github.com/TTTMedical/TTTMedical#adaptrecon">the documentation</a>.
""",
                       acknowledgementText="Runs on PyTorch (installed through the PyTorch extension) and MONAI.")


OVERRIDABLE = ("iterations", "lr")
"""Settings the panel passes only when "Override the method's defaults" is ticked (engine names)."""
LR_DECIMALS = 5
DEFAULT_COMPARE = "zero, pretrained, ssdu, ssdu+inr+sst"


@parameterNodeWrapper
class AdaptReconParameterNode:
    """
    inputVolume - a volume to simulate an undersampled acquisition from (the reference), or
    kspaceFile - a k-space file (HDF5 'kspace' [slices, coils, ky, kx] or .npy); exactly one of them.
    mask, acceleration, centerFraction, coils, noise - the sampling (and, for a volume, the simulation).
    method, inr, sst, iterations, lr, device - the engine's options (``tttmedical recon``); iterations
      and lr are passed only if overrideDefaults is set.
    compare, compareMethods - run every "METHOD[+inr][+sst]" listed into separate volumes.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    kspaceFile: str = ""
    mask: Annotated[str, Choice(list(SETTINGS["mask"].choices))] = SETTINGS["mask"].shown_default
    acceleration: Annotated[float, WithinRange(*panel_range(SETTINGS["acceleration"])), Decimals(1)] = SETTINGS["acceleration"].shown_default
    centerFraction: Annotated[float, WithinRange(*panel_range(SETTINGS["center_fraction"], 3)),
                              Decimals(3)] = SETTINGS["center_fraction"].shown_default
    coils: Annotated[int, WithinRange(*panel_range(SIMULATION["coils"]))] = SIMULATION["coils"].shown_default
    noise: Annotated[float, WithinRange(*panel_range(SIMULATION["noise"])), Decimals(4)] = SIMULATION["noise"].shown_default
    method: Annotated[str, Choice(list(SETTINGS["method"].choices))] = SETTINGS["method"].shown_default
    inr: bool = SETTINGS["inr"].default
    sst: bool = SETTINGS["sst"].default
    overrideDefaults: bool = False
    iterations: Annotated[int, WithinRange(*panel_range(SETTINGS["iterations"]))] = SETTINGS["iterations"].shown_default
    lr: Annotated[float, WithinRange(*panel_range(SETTINGS["lr"], LR_DECIMALS)), Decimals(LR_DECIMALS)] = SETTINGS["lr"].shown_default
    device: Annotated[str, Choice(list(COMMON["device"].choices))] = COMMON["device"].shown_default
    compare: bool = False
    compareMethods: str = DEFAULT_COMPARE


class AdaptReconWidget(EngineJobWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    applyToolTip = "Run the reconstruction in the background; click again to cancel."

    # -------------------------------------------------------------- EngineJobWidgetMixin hooks
    def createLogic(self) -> "AdaptReconLogic":
        return AdaptReconLogic()

    def missingInputs(self) -> str:
        p = self._parameterNode
        if bool(p.inputVolume) == bool(p.kspaceFile.strip()):
            return "Select a volume to simulate from or enter a k-space file (one of them)."
        return ""

    def updatePanelWidgets(self, running: bool) -> None:
        p = self._parameterNode
        simulate = bool(p and p.inputVolume)
        for widget, on in ((self.ui.coilsSpinBox, simulate), (self.ui.noiseSpinBox, simulate),
                           (self.ui.iterationsSpinBox, bool(p and p.overrideDefaults)),
                           (self.ui.lrSpinBox, bool(p and p.overrideDefaults)),
                           (self.ui.compareMethodsLineEdit, bool(p and p.compare)),
                           (self.ui.methodComboBox, not (p and p.compare)), (self.ui.inrCheckBox, not (p and p.compare)),
                           (self.ui.sstCheckBox, not (p and p.compare))):
            widget.enabled = on and not running


class AdaptReconLogic(ScriptedLoadableModuleLogic):
    """Batch-usable entry points; the work is done by ``TTTMedicalLib.recon``."""

    def getParameterNode(self):
        return AdaptReconParameterNode(super().getParameterNode())

    @staticmethod
    def parseCompareMethods(text: str) -> list:
        """``"pretrained, ssdu+inr+sst"`` -> ``["pretrained", "ssdu+inr+sst"]`` (the engine checks each entry)."""
        return [item.strip() for item in text.split(",") if item.strip()]

    @staticmethod
    def settingsFromParameters(p):
        from TTTMedicalLib.recon import ReconSettings

        chosen = {name: getattr(p, name) for name in OVERRIDABLE} if p.overrideDefaults else {}
        return ReconSettings(mask=p.mask, acceleration=p.acceleration, center_fraction=p.centerFraction, coils=p.coils,
                             noise=p.noise, method=p.method, inr=p.inr, sst=p.sst, device=p.device, **chosen)

    @staticmethod
    def inputsFromParameters(p):
        from TTTMedicalLib.recon import ReconInputs

        return ReconInputs(volume=p.inputVolume, kspace_file=p.kspaceFile.strip() or None)

    def createJob(self, p, **callbacks):
        from TTTMedicalLib.recon import ReconJob

        compare = self.parseCompareMethods(p.compareMethods) if p.compare else None
        return ReconJob(self.inputsFromParameters(p), self.settingsFromParameters(p), compare=compare,
                        scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, **callbacks)

    def run(self, inputVolume=None, kspaceFile=None, compare=None, showResult=True, log=logging.info, timeout=None,
            processFactory=None, **settings):
        """Blocking run for Python scripts; returns ``ReconOutputs`` (raises on failure).  ``settings`` are
        the engine's options by their engine names; ``compare`` a list of ``METHOD[+inr][+sst]`` entries."""
        from TTTMedicalLib.recon import ReconInputs, ReconJob, ReconSettings

        job = ReconJob(ReconInputs(inputVolume, kspaceFile), ReconSettings(**settings), compare=compare,
                       scene=slicer.mrmlScene, temp_root=slicer.app.temporaryPath, on_log=log, process_factory=processFactory)
        outputs = job.run_blocking(timeout)
        if showResult:
            self.showResults(outputs)
        return outputs

    @staticmethod
    def summary(outputs) -> str:
        report = outputs.report
        parts = []
        if report.get("metrics"):
            parts.append(f"PSNR {report['baseline_zero']['psnr']:.2f} (zero-filled) / {report['baseline_pretrained']['psnr']:.2f} "
                         f"(pretrained) -> {report['metrics']['psnr']:.2f} dB")
        if report.get("device"):
            parts.append(f"on {report['device']}")
        return ", ".join(parts) or "results added to the scene"

    @staticmethod
    def showResults(outputs) -> None:
        """Reconstructions side by side in the slice views (first three), each with its error map as the
        foreground at opacity 0 (raise it in the slice view to see it); the self-validation plot in the layout."""
        recons = list(outputs.reconstructions.items())
        layoutManager = slicer.app.layoutManager()
        if len(recons) > 1:  # three axial slice views side by side (Red, Yellow, Green) over the plot row
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutThreeOverThreePlotView)
        for view, (label, node) in zip(("Red", "Yellow", "Green"), recons):
            sliceWidget = layoutManager.sliceWidget(view)
            if sliceWidget is None:
                continue
            sliceWidget.mrmlSliceNode().SetOrientationToAxial()
            composite = sliceWidget.mrmlSliceCompositeNode()
            composite.SetBackgroundVolumeID(node.GetID())
            error = outputs.error_maps.get(label)
            composite.SetForegroundVolumeID(error.GetID() if error is not None else None)
            composite.SetForegroundOpacity(0.0)  # raise the opacity in the slice view to see the error map
            sliceWidget.sliceLogic().FitSliceToAll()
        if outputs.loss_chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(outputs.loss_chart)


class AdaptReconTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic volume built with ``slicer.util.addVolumeFromArray`` (no download): the
    reconstruction with the real engine runs when the engine's packages (torch first) are installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_AdaptRecon_beats_zero_filled()

    def test_AdaptRecon_beats_zero_filled(self):
        import numpy as np
        from TTTMedicalLib import dependencies

        if not dependencies.torch_installed() or dependencies.missing_requirements():
            self.delayDisplay("PyTorch or another engine package is not installed (nothing is installed in testing mode): "
                              "the reconstruction with the real engine was not run.")
            return
        self.delayDisplay("Reconstructing a simulated acquisition with the real engine")
        j, i = np.mgrid[:48, :48]
        image = (((j - 24) ** 2 / 300 + (i - 24) ** 2 / 200) < 1) * (1.0 + 0.3 * np.sin(j / 3.0))
        volume = slicer.util.addVolumeFromArray(np.repeat(image[None].astype(np.float32), 2, axis=0), name="phantom")
        outputs = AdaptReconLogic().run(volume, method="ssdu", inr=True, sst=True, iterations=5, acceleration=2.0,
                                        center_fraction=0.16, coils=4, showResult=False, timeout=600)
        report = outputs.report
        self.assertGreater(report["metrics"]["psnr"], report["baseline_zero"]["psnr"])
        self.delayDisplay("Test passed")
