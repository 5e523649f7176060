"""AdaptRecon in the scene: a k-space file or a volume node -> ``tttmedical recon`` -> new nodes.

* Input: a k-space file (fastMRI-style HDF5 or ``.npy``; reconstructed on a 1 mm grid) or a scalar
  volume node, exported in world coordinates, from which the engine simulates an undersampled
  multi-coil acquisition (``--simulate``; the node is the reference).  The outputs keep the
  reference's geometry: they lie exactly on the volume node's grid.
* Compare mode (``compare=["pretrained", "ssdu", "ssdu+inr+sst", ...]``): one engine run
  reconstructs every entry from the same data (``--compare``), one output volume per entry.
* Outputs (new nodes in a subject hierarchy folder; inputs never modified): one volume per method,
  the zero-filled volume, the reference (k-space input with a reference only), an error map
  ``|reference - reconstruction|`` per method, one metrics table (a row per method: PSNR, SSIM,
  NMSE, seconds per slice) and the self-validation plot of the first adapted method.

Settings use the engine's option names and declarations (``tttmedical.recon.options``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from tttmedical.core.errors import InputError
from tttmedical.core.options import OptionSet
from tttmedical.recon.options import SETTINGS, SIMULATION

from . import results as results_lib
from . import volumes as volumes_lib
from .job import EngineJob, SceneOutputs, scene_settings_class
from .runner import RunResult
from .scene import create_output_folder, get_scene, node_name, place_in_folder

ReconSettings = scene_settings_class("ReconSettings", SETTINGS + OptionSet(SIMULATION["coils"], SIMULATION["noise"]),
                                     "Reconstruction")
"""``--simulate`` follows from the input (a volume node); coils and noise are its settings."""
METRIC_COLUMNS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("nmse", "NMSE"))
LOSS_PLOT = dict(title="Self-validation error", x_title="step", y_title="relative error on held-out samples")


@dataclasses.dataclass
class ReconInputs:
    volume: object = None            # a scalar volume node to simulate from
    kspace_file: str | None = None   # or a k-space file


@dataclasses.dataclass
class ReconOutputs(SceneOutputs):
    reconstructions: dict = dataclasses.field(default_factory=dict)   # label -> volume node
    error_maps: dict = dataclasses.field(default_factory=dict)        # label -> volume node
    zero_filled: object = None
    reference: object = None
    report: dict = dataclasses.field(default_factory=dict)

    def task_nodes(self) -> list:
        return [*self.reconstructions.values(), *self.error_maps.values(), self.zero_filled, self.reference]


def validate_inputs(inputs: ReconInputs) -> None:
    """One :class:`InputError` sentence for the first problem."""
    if (inputs.volume is None) == (not inputs.kspace_file):
        raise InputError("Select either a volume to simulate an acquisition from or a k-space file, not both or neither.")
    if inputs.volume is not None:
        volumes_lib.check_volume_node(inputs.volume, "volume to simulate from", allow_labelmap=False)
    elif not Path(inputs.kspace_file).is_file():
        raise InputError(f"The k-space file '{inputs.kspace_file}' does not exist; select an HDF5 (.h5) or .npy file.")


def metrics_rows(report: dict) -> list[tuple[str, dict, float]]:
    """``(method, metrics, seconds per slice)`` rows: zero-filled, pretrained, then every reconstruction."""
    if not report.get("metrics"):
        return []
    rows = [("zero-filled", report["baseline_zero"], 0.0), ("pretrained", report["baseline_pretrained"], 0.0)]
    runs = report.get("compare") or [{"label": report.get("method_label", report.get("method", "")),
                                      "metrics": report["metrics"],
                                      "seconds_per_slice": report.get("timings", {}).get("seconds_per_slice", 0.0)}]
    rows += [(r["label"], r["metrics"], float(r.get("seconds_per_slice", math.nan))) for r in runs
             if r["label"] not in ("zero", "pretrained")]
    return rows


def add_method_table(report: dict, name: str, scene=None):
    """Table node: one row per method, columns PSNR, SSIM, NMSE and seconds per slice."""
    rows = metrics_rows(report)
    return results_lib.add_methods_table(rows, METRIC_COLUMNS, "seconds per slice", name, scene)


def validation_curve(report: dict) -> list[dict]:
    """The self-validation curve of the first adapted reconstruction (stage 1, else stage 2 or the
    whole-backbone adaptation of the first slice): ``{"loss": validation error, "train": ...}``."""
    runs = report.get("compare") or [{"self_validation": report.get("self_validation")}]
    for run in runs:
        record = run.get("self_validation") or {}
        for curve in (record.get("inr", {}).get("curve"), *(s.get("curve") for s in record.get("sst", {}).get("slices", [])[:1]),
                      *(s.get("curve") for s in record.get("backbone", [])[:1])):
            if curve:
                return [{"loss": c["val"], "train": c.get("train")} for c in curve]
    return []


class ReconJob(EngineJob):
    """One AdaptRecon run (see :class:`~.job.EngineJob`); ``outputs`` is a :class:`ReconOutputs`.
    ``compare``: a list of ``METHOD[+inr][+sst]`` entries run on the same data (else the settings' method)."""

    task = "The reconstruction"

    def __init__(self, inputs: ReconInputs, settings=None, *, compare: list[str] | None = None, scene=None,
                 base_name: str | None = None, **job_options):
        super().__init__(scene=get_scene(scene, inputs.volume), **job_options)
        self.inputs = inputs
        self.settings = settings or ReconSettings()
        if compare:
            self.settings = dataclasses.replace(self.settings, compare=",".join(compare))
        self.base_name = base_name

    def prepare(self, folder: Path) -> tuple[list[str], dict]:
        self.settings.validate()
        validate_inputs(self.inputs)
        if self.inputs.volume is not None:
            volume = volumes_lib.volume_from_node(self.inputs.volume, "volume to simulate from", world=True)
            volume.validate(f"volume '{node_name(self.inputs.volume)}'")
            path = volume.write(folder / "input.nrrd", compress=False)
            args = ["recon", str(path), "-o", str(self.output_dir()), "--simulate"]
        else:
            args = ["recon", str(Path(self.inputs.kspace_file).resolve()), "-o", str(self.output_dir())]
        return args + self.settings.arguments(), {}

    def import_outputs(self, result: RunResult, output_dir: Path, context: dict) -> ReconOutputs:
        scene = self.scene
        report_path = Path(result.report or result.outputs.get("report") or output_dir / "report.json")
        if not report_path.is_file():
            raise RuntimeError(f"The engine reported success but '{output_dir}' lacks report.json.")
        report = json.loads(report_path.read_text())
        outputs = ReconOutputs(report=report)
        source = self.inputs.volume
        base = self.base_name or (node_name(source) if source is not None else Path(self.inputs.kspace_file).stem)
        runs = report.get("compare") or [{"label": report.get("method_label", "recon"), "file": "recon.nii.gz"}]
        # the engine's reference covers the reconstructed slices only (--slices); the source node all of them
        reference = None
        if (output_dir / "reference.nii.gz").is_file():
            reference = volumes_lib.read_volume_file(output_dir / "reference.nii.gz")
            if source is None:
                outputs.reference = volumes_lib.add_volume_node(reference, f"{base} reference", scene)
        elif source is not None:
            reference = volumes_lib.volume_from_node(source, "reference", world=True)
        for run in runs:
            path = output_dir / run["file"]
            if not path.is_file():
                raise RuntimeError(f"The engine reported success but '{output_dir}' lacks {run['file']}.")
            recon = volumes_lib.read_volume_file(path)
            outputs.reconstructions[run["label"]] = volumes_lib.add_volume_node(recon, f"{base} {run['label']}", scene)
            if reference is not None:
                error = np.abs(np.asarray(reference.array, np.float32) - recon.array.astype(np.float32))
                outputs.error_maps[run["label"]] = volumes_lib.add_volume_node(
                    recon.with_array(error.astype(np.float32)), f"{base} {run['label']} error", scene)
        zero = output_dir / "zero_filled.nii.gz"
        if zero.is_file():
            outputs.zero_filled = volumes_lib.add_volume_node(volumes_lib.read_volume_file(zero), f"{base} zero-filled", scene)
        if report.get("metrics"):
            outputs.metrics_table = add_method_table(report, f"{base} reconstruction metrics", scene)
        curve = validation_curve(report)
        series = None
        if curve:
            outputs.loss_chart, outputs.loss_table, series = results_lib.add_loss_plot(curve, f"{base} self-validation",
                                                                                       scene, **LOSS_PLOT)
        outputs.folder_item = create_output_folder(scene, source, f"AdaptRecon {base}")
        for node in outputs.nodes + ([series] if series is not None else []):
            place_in_folder(scene, node, outputs.folder_item)
        if report.get("device"):
            self._log(f"Device used: {report['device']}")
        return outputs

