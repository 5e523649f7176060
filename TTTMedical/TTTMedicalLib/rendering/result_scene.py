"""An engine result folder (``tttmedical register | interpolate | recon -o OUTDIR``) loaded into a scene as a module would show it.

:func:`load_result` reads ``OUTDIR/report.json`` (its ``command`` tells the task) and adds the same
nodes the module's job adds after Apply, with the job's own table builders:

* ``register``: fixed and moving volumes (the report's input paths, when the files are still there),
  the refined (warped) volume, the Jacobian, the displacement magnitude (mm), the warped labels as a
  segmentation; metrics table initial vs refined;
* ``interpolate``: ``interpolated.seq.nrrd`` as a sequence with a browser; metrics table (linear blend,
  no TTT, the run) when the run was evaluated;
* ``recon``: reference (when written), zero-filled and each reconstruction, each one's error map
  ``|reference - reconstruction|``; the methods table.

Inputs are read, never modified.  Raises :class:`~tttmedical.core.errors.InputError` (one sentence)
when the folder is not a TTTMedical result.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tttmedical.core.errors import InputError

from .. import labels as labels_lib
from .. import results as results_lib
from .. import sequences as sequences_lib
from .. import volumes as volumes_lib
from ..scene import get_scene

TASKS = {"register": "registration", "interpolate": "interpolation", "recon": "recon"}


@dataclasses.dataclass
class ResultScene:
    """What :func:`load_result` added: ``volumes`` (caption -> node, in the order a user compares them),
    ``reference`` (the caption whose window every anatomy volume shares), ``maps`` (captions of maps
    shown with their own colour table), ``segmentation``, ``browser``/``sequences`` (interpolation),
    ``table`` (``{column title: values}``) and ``report``."""

    task: str
    folder: Path
    report: dict
    volumes: dict = dataclasses.field(default_factory=dict)
    reference: str | None = None
    maps: dict = dataclasses.field(default_factory=dict)         # caption -> (colour table, window, level)
    segmentation: object = None
    browser: object = None
    sequences: list = dataclasses.field(default_factory=list)
    table: dict = dataclasses.field(default_factory=dict)


def read_report(folder: str | Path) -> tuple[Path, dict]:
    """``(folder, report)`` of a result folder; :class:`InputError` if it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"The result folder '{folder}' does not exist; pass the -o folder of a tttmedical run.")
    path = folder / "report.json"
    if not path.is_file():
        raise InputError(f"The folder '{folder}' has no report.json; pass the -o folder of a tttmedical run.")
    try:
        report = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"The report '{path}' is not valid JSON; pass the -o folder of a finished tttmedical run.") from None
    if report.get("command") not in TASKS:
        raise InputError(f"The report '{path}' is from '{report.get('command')}', not register, interpolate or recon; "
                         f"pass the -o folder of one of those runs.")
    return folder, report


def load_result(folder: str | Path, scene=None) -> ResultScene:
    """Add the result in ``folder`` to ``scene`` (default ``slicer.mrmlScene``); see the module docstring."""
    folder, report = read_report(folder)
    scene = get_scene(scene)
    result = ResultScene(TASKS[report["command"]], folder, report)
    {"registration": _registration, "interpolation": _interpolation, "recon": _recon}[result.task](result, scene)
    return result


def _input_path(value, folder: Path) -> Path | None:
    """An input path from the report: as written (absolute or relative to the current folder), else
    relative to the result folder's parents."""
    if not value:
        return None
    path = Path(value)
    for candidate in (path, *(parent / path for parent in folder.resolve().parents)):
        if candidate.is_file():
            return candidate
    return None


def _registration(result: ResultScene, scene) -> None:
    folder, report = result.folder, result.report
    for key, caption in (("fixed", "fixed"), ("moving", "moving")):
        path = _input_path(report.get("inputs", {}).get(key), folder)
        if path is not None:
            result.volumes[caption] = volumes_lib.load_volume_file(path, caption, scene)
    result.volumes["refined"] = volumes_lib.load_volume_file(folder / "warped.nii.gz", "refined", scene)
    result.reference = "fixed" if "fixed" in result.volumes else "refined"
    if (folder / "jacobian.nii.gz").is_file():
        result.volumes["Jacobian"] = volumes_lib.load_volume_file(folder / "jacobian.nii.gz", "Jacobian", scene)
        result.maps["Jacobian"] = ("Rainbow", 2.0, 1.0)
    if (folder / "displacement.nii.gz").is_file():
        field = volumes_lib.read_volume_file(folder / "displacement.nii.gz")
        magnitude = np.linalg.norm(np.asarray(field.array, np.float32), axis=-1).astype(np.float32)
        result.volumes["displacement (mm)"] = volumes_lib.add_volume_node(field.with_array(magnitude), "displacement (mm)", scene)
        top = float(np.percentile(magnitude, 99.5)) or 1.0
        result.maps["displacement (mm)"] = ("PET-Heat", top, top / 2)
    if (folder / "warped_labels.nii.gz").is_file():
        warped = volumes_lib.read_volume_file(folder / "warped_labels.nii.gz")
        count = int(np.max(warped.array))
        if count > 0:
            result.segmentation = labels_lib.add_segmentation_from_labels(
                warped, [f"Label_{n}" for n in range(1, count + 1)], "refined labels", scene)
    if report.get("metrics"):
        table = results_lib.add_metrics_table(report["metrics"], "metrics", scene,
                                              column_titles=("metric", "initial", "refined"))
        result.table = results_lib.table_columns(table)


def _interpolation(result: ResultScene, scene) -> None:
    from ..interpolation import add_metrics_rows_table

    path = result.folder / "interpolated.seq.nrrd"
    sequence, browser = sequences_lib.load_sequence(path, "interpolated", scene)
    result.sequences, result.browser = [sequence], browser
    result.volumes["interpolated"] = browser.GetProxyNode(sequence)
    result.reference = "interpolated"
    if result.report.get("metrics"):
        result.table = results_lib.table_columns(add_metrics_rows_table([result.report], "metrics", scene))


def _recon(result: ResultScene, scene) -> None:
    from ..recon import add_method_table

    folder, report = result.folder, result.report
    reference = None
    if (folder / "reference.nii.gz").is_file():
        reference = volumes_lib.read_volume_file(folder / "reference.nii.gz")
        result.volumes["reference"] = volumes_lib.add_volume_node(reference, "reference", scene)
    if (folder / "zero_filled.nii.gz").is_file():
        result.volumes["zero-filled"] = volumes_lib.load_volume_file(folder / "zero_filled.nii.gz", "zero-filled", scene)
    runs = report.get("compare") or [{"label": report.get("method_label", "recon"), "file": "recon.nii.gz"}]
    errors = {}
    for run in runs:
        path = folder / run["file"]
        if run["label"] == "zero" or not path.is_file():
            continue
        image = volumes_lib.read_volume_file(path)
        result.volumes[run["label"]] = volumes_lib.add_volume_node(image, run["label"], scene)
        if reference is not None:
            errors[f"error {run['label']}"] = image.with_array(
                np.abs(np.asarray(reference.array, np.float32) - np.asarray(image.array, np.float32)))
    if errors:
        top = float(np.percentile(np.concatenate([e.array.ravel() for e in errors.values()]), 99.5)) or 1.0
        for caption, error in errors.items():
            result.volumes[caption] = volumes_lib.add_volume_node(error, caption, scene)
            result.maps[caption] = ("PET-Heat", top, top / 2)
    result.reference = next(iter(result.volumes), None)
    if report.get("metrics"):
        result.table = results_lib.table_columns(add_method_table(report, "metrics", scene))
