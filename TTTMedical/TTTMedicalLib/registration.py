"""RefineRegistration in the scene: input nodes -> files -> ``tttmedical register`` -> new nodes.

Coordinate frames (all RAS in the scene, LPS millimetres in the files):

* The **fixed** volume is exported in world coordinates (parent linear transforms folded into its
  geometry); the results live on that grid.
* The **moving** volume is exported in its own (local) coordinates.  The *initial transform* is the
  selected transform node, or else the moving volume's parent transform: in both cases the one that,
  placed as the moving volume's parent, aligns it with the fixed volume.  It is passed to the engine
  as its resampling transform (world -> moving local): an ITK ``.tfm`` when linear, otherwise a
  displacement field sampled on the fixed grid.
* The result is a new grid transform node storing the engine's displacement field as its transform
  from parent (see :mod:`.transforms`): placing the moving volume under it (instead of the initial
  transform) aligns it.  The input nodes are never modified.

Outputs (new nodes in a subject hierarchy folder next to the moving volume): the grid transform
(with Slicer's moving/fixed registration references), the warped moving volume and the Jacobian
determinant on the fixed grid, the warped moving segmentation (if segmentations were given), a
metrics table (initial vs refined) and a loss plot.  Nothing is added to the scene unless the
engine succeeded; the temporary folder is always removed.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from tttmedical.core.errors import CancelledError, InputError

from . import labels as labels_lib
from . import results as results_lib
from . import transforms as transforms_lib
from . import volumes as volumes_lib
from .runner import EngineRunner, RunResult
from .scene import (create_output_folder, get_scene, node_ids, place_in_folder, remove_nodes_added_since,
                    subject_hierarchy)

METHODS = ("regttr", "ssmsr", "predict")
DEVICES = ("auto", "cpu", "cuda")
MODALITIES = ("mri", "ct", "none")
OUTPUT_FILES = {
    "displacement": "displacement.nii.gz",
    "warped": "warped.nii.gz",
    "jacobian": "jacobian.nii.gz",
    "warped_labels": "warped_labels.nii.gz",
    "report": "report.json",
}


def _name(node) -> str:
    return node.GetName() or node.GetID()


@dataclasses.dataclass
class RegistrationSettings:
    """Engine options; ``None`` leaves the engine's default for the chosen method (and for whether an
    initial transform is given).  ``modality`` picks the intensity normalisation: ``mri``
    (0.5-99.5 percentiles), ``ct`` (soft-tissue window) or ``none``."""

    method: str = "regttr"
    iterations: int | None = None
    learning_rate: float | None = None
    smoothness: float | None = None
    modality: str = "mri"
    device: str = "auto"
    seed: int | None = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"Unknown method '{self.method}'; use one of {', '.join(METHODS)}.")
        if self.modality not in MODALITIES:
            raise InputError(f"Unknown intensity normalisation '{self.modality}'; use one of {', '.join(MODALITIES)}.")
        if self.device not in DEVICES:
            raise InputError(f"Unknown device '{self.device}'; use one of {', '.join(DEVICES)}.")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"The number of iterations must be at least 1 (got {self.iterations}).")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise InputError(f"The learning rate must be positive (got {self.learning_rate}).")
        if self.smoothness is not None and self.smoothness < 0:
            raise InputError(f"The smoothness weight cannot be negative (got {self.smoothness}).")

    def arguments(self) -> list[str]:
        args = ["--method", self.method, "--modality", self.modality, "--device", self.device]
        if self.iterations is not None:
            args += ["--iterations", str(int(self.iterations))]
        if self.learning_rate is not None:
            args += ["--lr", f"{float(self.learning_rate):.10g}"]
        if self.smoothness is not None:
            args += ["--smoothness", f"{float(self.smoothness):.10g}"]
        if self.seed is not None:
            args += ["--seed", str(int(self.seed))]
        return args


@dataclasses.dataclass
class RegistrationInputs:
    fixed: object
    moving: object
    initial_transform: object = None
    fixed_segmentation: object = None
    moving_segmentation: object = None


@dataclasses.dataclass
class RegistrationOutputs:
    transform: object = None
    warped: object = None
    jacobian: object = None
    warped_segmentation: object = None
    metrics_table: object = None
    loss_chart: object = None
    loss_table: object = None
    folder_item: int = 0
    report: dict = dataclasses.field(default_factory=dict)

    @property
    def nodes(self) -> list:
        return [n for n in (self.transform, self.warped, self.jacobian, self.warped_segmentation,
                            self.metrics_table, self.loss_chart, self.loss_table) if n is not None]


# ---------------------------------------------------------------------------------------- inputs
def initial_transform_node(inputs: RegistrationInputs):
    """The transform that aligns the moving volume when it is the moving volume's parent (or None)."""
    parent = inputs.moving.GetParentTransformNode()
    selected = inputs.initial_transform
    if selected is not None and parent is not None and parent.GetID() != selected.GetID():
        raise InputError(
            f"The moving volume '{_name(inputs.moving)}' is under the transform '{_name(parent)}' but "
            f"'{_name(selected)}' is selected as the initial transform; clear the initial transform to start "
            f"from '{_name(parent)}', or remove '{_name(parent)}' from the moving volume."
        )
    return selected if selected is not None else parent


def validate_inputs(inputs: RegistrationInputs) -> None:
    """Raise :class:`InputError` with one sentence for the first problem found."""
    volumes_lib.check_volume_node(inputs.fixed, "fixed volume", allow_labelmap=False)
    volumes_lib.check_volume_node(inputs.moving, "moving volume", allow_labelmap=False)
    if inputs.fixed.GetID() == inputs.moving.GetID():
        raise InputError(f"The fixed and moving volumes are the same node '{_name(inputs.fixed)}'; select two different volumes.")
    volumes_lib.ijk_to_ras_of(inputs.fixed, world=True)  # rejects a non-linear parent transform
    for node, role in ((inputs.fixed_segmentation, "fixed segmentation"), (inputs.moving_segmentation, "moving segmentation")):
        if node is not None and not (node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLLabelMapVolumeNode")):
            raise InputError(f"The {role} '{_name(node)}' is a {node.GetClassName()}; select a segmentation or a label map volume.")
    if (inputs.fixed_segmentation is None) != (inputs.moving_segmentation is None):
        missing = "moving" if inputs.moving_segmentation is None else "fixed"
        raise InputError(f"Only one segmentation is selected; select a {missing} segmentation too, or clear both.")
    initial_transform_node(inputs)


def write_initial_transform(transform_node, fixed_grid, folder: Path) -> Path:
    """Write the resampling transform (fixed world -> moving local) for ``--init``:
    ITK ``.tfm`` (LPS) when linear, else an LPS-mm displacement field on ``fixed_grid``."""
    general = transforms_lib.resampling_transform(transform_node)
    linear = vtk.vtkTransform()
    if slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(general, linear):
        ras = slicer.util.arrayFromVTKMatrix(linear.GetMatrix())
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        lps = flip @ ras @ flip
        affine = sitk.AffineTransform(3)
        affine.SetMatrix(tuple(lps[:3, :3].ravel()))
        affine.SetTranslation(tuple(lps[:3, 3]))
        path = folder / "init.tfm"
        sitk.WriteTransform(affine, str(path))
        return path
    path = folder / "init.nrrd"
    transforms_lib.write_transform_as_field(transform_node, fixed_grid, path)
    return path


def prepare_inputs(inputs: RegistrationInputs, folder: Path, scene=None) -> tuple[list[str], dict]:
    """Write the inputs into ``folder``; returns the engine arguments (without options) and context
    (``label_names``).  Raises :class:`InputError`; the scene is left unchanged either way."""
    validate_inputs(inputs)
    scene = get_scene(scene, inputs.fixed)
    fixed = volumes_lib.volume_from_node(inputs.fixed, "fixed volume", world=True)
    moving = volumes_lib.volume_from_node(inputs.moving, "moving volume", world=False)
    fixed.validate(f"fixed volume '{_name(inputs.fixed)}'")
    moving.validate(f"moving volume '{_name(inputs.moving)}'")
    fixed_path = fixed.write(folder / "fixed.nrrd", compress=False)
    moving_path = moving.write(folder / "moving.nrrd", compress=False)
    args = ["register", str(fixed_path), str(moving_path), "-o", str(folder / "output")]
    context: dict = {"label_names": None}
    init = initial_transform_node(inputs)
    if init is not None:
        args += ["--init", str(write_initial_transform(init, fixed, folder))]
    if inputs.fixed_segmentation is not None:
        fixed_labels, moving_labels, names = labels_lib.matched_label_volumes(
            inputs.fixed_segmentation, inputs.moving_segmentation, inputs.fixed, inputs.moving, fixed, moving, scene)
        args += ["--fixed-labels", str(fixed_labels.write(folder / "fixed_labels.nrrd", compress=False)),
                 "--moving-labels", str(moving_labels.write(folder / "moving_labels.nrrd", compress=False))]
        context["label_names"] = names
    return args, context


# ---------------------------------------------------------------------------------------- outputs
def _output_path(result: RunResult, output_dir: Path, key: str) -> Path | None:
    value = result.outputs.get(key) if key != "report" else (result.report or result.outputs.get("report"))
    path = Path(value) if value else output_dir / OUTPUT_FILES[key]
    return path if path.is_file() else None


def import_outputs(inputs: RegistrationInputs, result: RunResult, output_dir: Path, label_names=None,
                   scene=None, base_name: str | None = None) -> RegistrationOutputs:
    """Create the result nodes from a successful run; on any failure nothing is left in the scene."""
    scene = get_scene(scene, inputs.fixed)
    moving_name, fixed_name = _name(inputs.moving), _name(inputs.fixed)
    base = base_name or moving_name
    displacement = _output_path(result, output_dir, "displacement")
    warped = _output_path(result, output_dir, "warped")
    if displacement is None or warped is None:
        raise RuntimeError(f"The engine reported success but '{output_dir}' lacks the displacement field or the warped volume.")
    report_path = _output_path(result, output_dir, "report")
    report = json.loads(report_path.read_text()) if report_path else {}

    before = node_ids(scene)
    outputs = RegistrationOutputs(report=report)
    try:
        field = volumes_lib.read_volume_file(displacement)
        outputs.transform = transforms_lib.add_grid_transform_node(
            field, f"{base} refined transform", scene, moving_node=inputs.moving, fixed_node=inputs.fixed)
        outputs.warped = volumes_lib.add_volume_node(volumes_lib.read_volume_file(warped), f"{base} refined", scene)
        jacobian = _output_path(result, output_dir, "jacobian")
        if jacobian is not None:
            outputs.jacobian = volumes_lib.add_volume_node(volumes_lib.read_volume_file(jacobian), f"{base} Jacobian", scene)
        warped_labels = _output_path(result, output_dir, "warped_labels")
        if warped_labels is not None and label_names:
            outputs.warped_segmentation = labels_lib.add_segmentation_from_labels(
                volumes_lib.read_volume_file(warped_labels), label_names,
                f"{_name(inputs.moving_segmentation) if inputs.moving_segmentation is not None else base} refined", scene)
        if report.get("metrics"):
            outputs.metrics_table = results_lib.add_metrics_table(report["metrics"], f"{base} metrics", scene, label_names)
        if report.get("loss_curve"):
            outputs.loss_chart, outputs.loss_table, series = results_lib.add_loss_plot(report["loss_curve"], f"{base} loss", scene)
        else:
            series = None
        outputs.folder_item = create_output_folder(scene, inputs.moving, f"RefineRegistration {moving_name} to {fixed_name}")
        for node in outputs.nodes + ([series] if series is not None else []):
            place_in_folder(scene, node, outputs.folder_item)
    except BaseException:
        remove_nodes_added_since(scene, before)
        if outputs.folder_item:
            subject_hierarchy(scene).RemoveItem(outputs.folder_item)
        raise
    return outputs


# ---------------------------------------------------------------------------------------- job
class RegistrationJob:
    """One RefineRegistration run: ``start()`` then ``poll()`` (GUI timer) or ``run_blocking()``.

    Callbacks (called from the thread calling :meth:`poll`): ``on_progress(fraction, text)``,
    ``on_log(text)``, ``on_finished(job)``; after finishing, ``job.outputs`` is set on success and
    ``job.error`` (an exception) otherwise; ``job.cancelled`` tells a cancelled run.
    """

    def __init__(self, inputs: RegistrationInputs, settings: RegistrationSettings | None = None, *, scene=None,
                 temp_root: str | None = None, on_progress: Callable | None = None, on_log: Callable | None = None,
                 on_finished: Callable | None = None, process_factory: Callable | None = None,
                 kill_tree: Callable | None = None, python: str | None = None, base_name: str | None = None):
        self.inputs = inputs
        self.settings = settings or RegistrationSettings()
        self.scene = get_scene(scene, inputs.fixed)
        self.temp_root = temp_root
        self.on_progress, self.on_log, self.on_finished = on_progress, on_log, on_finished
        self._runner_options = dict(process_factory=process_factory, kill_tree=kill_tree, python=python)
        self.base_name = base_name
        self.temp_dir: Path | None = None
        self.runner: EngineRunner | None = None
        self.outputs: RegistrationOutputs | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.finished = False
        self._label_names = None
        self._t0 = 0.0

    @property
    def running(self) -> bool:
        return self.runner is not None and not self.finished

    def start(self) -> "RegistrationJob":
        """Validate and export inputs, then launch the engine.  Raises :class:`InputError` (temp removed)."""
        if self.runner is not None:
            raise RuntimeError("This job was already started.")
        self.settings.validate()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="TTTMedical-", dir=self.temp_root))
        try:
            self._log(f"Writing inputs to {self.temp_dir}")
            args, context = prepare_inputs(self.inputs, self.temp_dir, self.scene)
            self._label_names = context["label_names"]
            args += self.settings.arguments() + ["--progress", "json"]
            self.runner = EngineRunner(args, on_progress=self._progress, on_log=self._log, on_finished=self._finish,
                                       **self._runner_options)
            self._log("Running: " + " ".join(self.runner.command[1:]))
            self._t0 = time.monotonic()
            self.runner.start()
        except BaseException:
            self._cleanup()
            self.runner = None
            raise
        return self

    def poll(self) -> bool:
        """Dispatch engine events; returns True while running."""
        if self.runner is None or self.finished:
            return False
        return self.runner.poll()

    def cancel(self) -> None:
        """Kill the engine; the job then finishes with ``cancelled`` and no new nodes."""
        if self.runner is not None and not self.finished:
            self._log("Cancelling...")
            self.runner.cancel()
            self.runner.poll_until_finished()

    def run_blocking(self, timeout: float | None = None) -> RegistrationOutputs:
        """Run to completion in the calling thread (batch scripts, self-tests); raises on failure."""
        if self.runner is None:
            self.start()
        try:
            self.runner.wait(timeout)
        except TimeoutError as exc:
            self.error = exc
            raise
        if self.error is not None:
            raise self.error
        return self.outputs

    # -------------------------------------------------------------- internals
    def _progress(self, event: dict) -> None:
        if self.on_progress:
            text = event.get("stage", "")
            if event.get("message"):
                text = f"{text}: {event['message']}" if text else event["message"]
            if "loss" in event:
                text += f" (loss {float(event['loss']):.4f})"
            self.on_progress(float(event.get("fraction", 0.0)), text)

    def _log(self, text: str) -> None:
        if self.on_log:
            self.on_log(text)

    def _finish(self, result: RunResult) -> None:
        try:
            if result.cancelled:
                self.cancelled = True
                self.error = CancelledError("The registration was cancelled; the scene is unchanged.")
            elif not result.success:
                try:
                    result.raise_for_status()
                except Exception as exc:  # InputError or EngineError with the engine's sentence
                    self.error = exc
            else:
                self.outputs = import_outputs(self.inputs, result, self.temp_dir / "output", self._label_names,
                                              self.scene, self.base_name)
                device = self.outputs.report.get("device")
                if device:
                    self._log(f"Device used: {device}")
                self._log(f"Finished in {time.monotonic() - self._t0:.1f} s.")
        except Exception as exc:
            self.error = exc
        finally:
            self._cleanup()
            self.finished = True
            if self.error is not None and not self.cancelled:
                self._log(f"Error: {self.error}")
            if self.on_finished:
                self.on_finished(self)

    def _cleanup(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
