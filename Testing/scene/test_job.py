"""The engine-job base every module's scene job subclasses (TTTMedicalLib.job).

A minimal task (not registration) shows the hooks are enough: prepare writes nothing task-specific
into the base, import_outputs adds nodes and a subject-hierarchy folder, and a failure half-way
through the import removes all of them.  The engine is the stand-in ``fake_engine.py``.
"""
from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.options import Option, OptionSet  # noqa: E402
from TTTMedicalLib import fake_engine, results, samples, volumes  # noqa: E402
from TTTMedicalLib.job import EngineJob, progress_text, settings_class  # noqa: E402
from TTTMedicalLib.scene import create_output_folder, node_ids, place_in_folder, subject_hierarchy, subject_hierarchy_items  # noqa: E402

OPTIONS = OptionSet(Option("method", str, "regttr", choices=("regttr", "ssmsr")),
                    Option("iterations", int, None, minimum=1, maximum=50, label="number of iterations"))
Settings = settings_class("Settings", OPTIONS, "A toy task's settings.")


class WarpOnly(EngineJob):
    """Imports only the warped volume and a metrics table, then optionally fails."""

    task = "The toy run"

    def __init__(self, fixed, moving, fail_after_import=False, **options):
        super().__init__(**options)
        self.fixed, self.moving, self.fail_after_import = fixed, moving, fail_after_import
        self.settings = Settings(iterations=2)

    def prepare(self, folder):
        self.settings.validate()
        paths = [volumes.write_volume_node(node, folder / f"{role}.nrrd") for role, node in (("fixed", self.fixed), ("moving", self.moving))]
        return ["register", *map(str, paths), "-o", str(self.output_dir()), *self.settings.arguments()], {"base": "toy"}

    def import_outputs(self, result, output_dir, context):
        warped = volumes.add_volume_node(volumes.read_volume_file(output_dir / "warped.nii.gz"), f"{context['base']} warped", self.scene)
        table = results.add_metrics_table({"initial_ncc": 0.5, "ncc": 0.75}, "toy metrics", self.scene,
                                          column_titles=("quantity", "before", "after"))
        folder = create_output_folder(self.scene, None, "Toy results")
        for node in (warped, table):
            place_in_folder(self.scene, node, folder)
        if self.fail_after_import:
            raise RuntimeError("import failed half-way")
        return {"warped": warped, "table": table}


@pytest.fixture
def pair(scene):
    subject_hierarchy(scene)
    return samples.add_registration_pair(size=10)


def test_settings_come_from_the_declarations():
    settings = Settings()
    assert (settings.method, settings.iterations) == ("regttr", None)
    assert Settings(method="ssmsr", iterations=7).arguments() == ["--method", "ssmsr", "--iterations", "7"]
    with pytest.raises(InputError, match=r"^The number of iterations \(--iterations\) must be at most 50 \(got 99\)"):
        Settings(iterations=99).validate()
    with pytest.raises(TypeError):
        Settings(learning_rate=0.1)  # only declared names exist


def test_hooks_run_a_task_and_tables_use_the_given_titles(scene, pair, tmp_path):
    fixed, moving = pair
    log = []
    job = WarpOnly(fixed, moving, scene=scene, temp_root=str(tmp_path), on_log=log.append,
                   process_factory=fake_engine.process_factory("success"))
    outputs = job.run_blocking(timeout=60)
    assert outputs["warped"].GetName() == "toy warped" and job.error is None and not job.cancelled
    table = outputs["table"].GetTable()
    assert [table.GetColumnName(i) for i in range(3)] == ["quantity", "before", "after"]
    assert log[1].startswith("Running: tttmedical register ") and "--iterations 2 --progress json" in log[1]
    assert log[-1].startswith("Finished in ") and list(tmp_path.iterdir()) == []


def test_failed_import_rolls_back_nodes_and_folders(scene, pair, tmp_path):
    fixed, moving = pair
    before, items_before = node_ids(scene), subject_hierarchy_items(scene)
    finished = []
    job = WarpOnly(fixed, moving, fail_after_import=True, scene=scene, temp_root=str(tmp_path),
                   on_finished=finished.append, process_factory=fake_engine.process_factory("success"))
    with pytest.raises(RuntimeError, match="import failed half-way"):
        job.run_blocking(timeout=60)
    assert node_ids(scene) == before and subject_hierarchy_items(scene) == items_before
    assert job.outputs is None and finished == [job] and list(tmp_path.iterdir()) == []


def test_cancel_message_names_the_task(scene, pair, tmp_path):
    fixed, moving = pair
    progress = []
    job = WarpOnly(fixed, moving, scene=scene, temp_root=str(tmp_path), on_progress=lambda f, t: progress.append(t),
                   process_factory=fake_engine.process_factory("slow"))
    job.start()
    while not progress and job.poll():
        pass
    job.cancel()
    assert str(job.error) == "The toy run was cancelled; the scene is unchanged."
    assert progress[0] == "level 1/3 (loss 0.9000)"


def test_progress_text():
    assert progress_text({"stage": "level 2/3", "message": "iteration 4", "loss": 0.12345}) == "level 2/3: iteration 4 (loss 0.1235)"
    assert progress_text({"message": "loading"}) == "loading"
