"""RefineRegistration scene logic: inputs -> files -> engine process -> result nodes.

The engine is replaced by ``TTTMedicalLib/fake_engine.py`` (known constant displacement) through the
runner's process factory, except in the end-to-end tests, which run the real ``tttmedical register``
and never skip: a broken engine fails them.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.volume import Volume  # noqa: E402
from TTTMedicalLib import labels, samples, transforms, volumes  # noqa: E402
from TTTMedicalLib.registration import (RegistrationInputs, RegistrationJob, RegistrationSettings,  # noqa: E402
                                        prepare_inputs, validate_inputs)
from TTTMedicalLib.results import table_as_dict  # noqa: E402
from TTTMedicalLib.runner import EngineError  # noqa: E402
from TTTMedicalLib.scene import node_ids, subject_hierarchy  # noqa: E402

FAKE_SHIFT_LPS = np.array([1.5, -2.0, 0.75])  # what fake_engine.py writes as the displacement


def ras_corners(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    i, j, k = (n - 1 for n in node.GetImageData().GetDimensions())
    return np.array([m.MultiplyPoint([a, b, c, 1])[:3] for a in (0, i) for b in (0, j) for c in (0, k)])


@pytest.fixture
def pair(scene):
    subject_hierarchy(scene)  # exists in every Slicer scene; create it before counting nodes
    fixed, moving, fixed_labels, moving_labels = samples.add_registration_pair(size=12, with_labels=True)
    return fixed, moving, fixed_labels, moving_labels


def sh_items(scene):
    sh = subject_hierarchy(scene)
    import vtk

    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
    return {ids.GetId(i) for i in range(ids.GetNumberOfIds())}


def run_job(scene, inputs, tmp_path, factory, settings=None, **kwargs):
    events = {"progress": [], "log": [], "finished": []}
    job = RegistrationJob(inputs, settings or RegistrationSettings(iterations=3), scene=scene, temp_root=str(tmp_path),
                          process_factory=factory, on_progress=lambda f, t: events["progress"].append((f, t)),
                          on_log=events["log"].append, on_finished=events["finished"].append, **kwargs)
    return job, events


# ---------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_one_sentence_errors(scene, pair):
    fixed, moving, fixed_labels, _ = pair
    flat = slicer.util.addVolumeFromArray(np.ones((1, 8, 8), np.float32), name="flat")
    grid = transforms.add_grid_transform_node(Volume(np.ones((3, 3, 3, 3))), "warp", scene)
    rigid = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rigid")
    other = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "other")
    cases = [
        (RegistrationInputs(None, moving), r"^No fixed volume is selected; select a 3D volume\.$"),
        (RegistrationInputs(flat, moving), r"^The fixed volume 'flat' is 2D \(8x8x1 voxels\); select a 3D volume"),
        (RegistrationInputs(fixed, fixed), r"^The fixed and moving volumes are the same node 'TTT fixed'; select two different volumes\.$"),
        (RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels),
         r"^Only one segmentation is selected; select a moving segmentation too, or clear both\.$"),
        (RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=rigid),
         r"^The moving segmentation 'rigid' is a vtkMRMLLinearTransformNode; select a segmentation or a label map volume\.$"),
    ]
    for inputs, message in cases:
        with pytest.raises(InputError, match=message):
            validate_inputs(inputs)
    fixed.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match=r"^The volume 'TTT fixed' is under the non-linear transform 'warp'; harden"):
        validate_inputs(RegistrationInputs(fixed, moving))
    fixed.SetAndObserveTransformNodeID(None)
    moving.SetAndObserveTransformNodeID(rigid.GetID())
    with pytest.raises(InputError, match=r"^The moving volume 'TTT moving' is under the transform 'rigid' but 'other' is "
                                         r"selected as the initial transform; clear the initial transform"):
        validate_inputs(RegistrationInputs(fixed, moving, initial_transform=other))


def test_start_with_bad_input_leaves_no_trace(scene, pair, tmp_path, fake_engine_factory):
    fixed, moving, *_ = pair
    flat = slicer.util.addVolumeFromArray(np.ones((1, 8, 8), np.float32), name="flat")
    before = node_ids(scene)
    job, _ = run_job(scene, RegistrationInputs(fixed, flat), tmp_path, fake_engine_factory())
    with pytest.raises(InputError, match="'flat' is 2D"):
        job.start()
    assert node_ids(scene) == before and list(tmp_path.iterdir()) == [] and not job.running


# ---------------------------------------------------------------------------------------- inputs
def test_linear_initial_transform_is_written_as_itk_resampling_transform(scene, pair, tmp_path):
    fixed, moving, *_ = pair
    rigid = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rigid")
    to_parent = np.array([[0.96, -0.28, 0.0, 4.0], [0.28, 0.96, 0.0, -2.0], [0.0, 0.0, 1.0, 3.0], [0, 0, 0, 1]])
    rigid.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(to_parent))
    moving.SetAndObserveTransformNodeID(rigid.GetID())  # no initial transform selected: the parent is used
    args, _ = prepare_inputs(RegistrationInputs(fixed, moving), tmp_path, scene)
    init = args[args.index("--init") + 1]
    assert init.endswith("init.tfm")
    itk = sitk.ReadTransform(init)
    for p_ras in ras_corners(fixed):
        q_lps = np.array(itk.TransformPoint(tuple(p_ras * [-1, -1, 1])))
        expected_ras = (np.linalg.inv(to_parent) @ np.r_[p_ras, 1])[:3]  # fixed world -> moving local
        assert np.allclose(q_lps * [-1, -1, 1], expected_ras, atol=1e-6)
    # The moving volume is written in its own coordinates, the fixed one in world coordinates.
    written = sitk.ReadImage(args[2])
    assert np.allclose(np.array(written.GetOrigin()) * [-1, -1, 1], ras_corners(moving)[0], atol=1e-6)
    assert moving.GetParentTransformNode().GetID() == rigid.GetID()  # input untouched


def test_nonlinear_initial_transform_is_written_as_field_on_fixed_grid(scene, pair, tmp_path):
    fixed, moving, *_ = pair
    fixed_grid = volumes.volume_from_node(fixed)
    field = fixed_grid.with_array(np.random.default_rng(2).normal(size=(*fixed_grid.shape, 3)))
    grid = transforms.add_grid_transform_node(field, "elastix", scene)
    args, _ = prepare_inputs(RegistrationInputs(fixed, moving, initial_transform=grid), tmp_path, scene)
    written = sitk.ReadImage(args[args.index("--init") + 1])
    assert written.GetNumberOfComponentsPerPixel() == 3
    assert np.abs(sitk.GetArrayFromImage(written) - field.array).max() < 1e-6
    assert Volume.from_sitk(sitk.VectorIndexSelectionCast(written, 0)).same_grid(fixed_grid, tol=1e-6)


# ---------------------------------------------------------------------------------------- runs
def test_successful_run_adds_outputs_in_a_folder_and_leaves_inputs(scene, pair, tmp_path, fake_engine_factory):
    fixed, moving, fixed_labels, moving_labels = pair
    moving_before = slicer.util.arrayFromVolume(moving).copy()
    sh = subject_hierarchy(scene)
    folder = sh.CreateFolderItem(sh.GetSceneItemID(), "Study")
    # In Slicer every node gets an item automatically; slicer-core has no plugin logic doing that.
    moving_item = sh.GetItemByDataNode(moving) or sh.CreateItem(sh.GetSceneItemID(), moving)
    sh.SetItemParent(moving_item, folder)
    inputs = RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=moving_labels)
    job, events = run_job(scene, inputs, tmp_path, fake_engine_factory("success"))
    outputs = job.run_blocking(timeout=60)

    assert events["finished"] == [job] and job.error is None
    assert [round(f, 2) for f, _ in events["progress"]] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert "Device used: cpu (fake)" in events["log"]
    assert list(tmp_path.iterdir()) == []  # temporary folder removed

    # Transform: the engine's constant LPS shift, as a resampling transform in RAS.
    assert outputs.transform.IsA("vtkMRMLGridTransformNode") and outputs.transform.GetName() == "TTT moving refined transform"
    points = ras_corners(fixed)
    moved = transforms.transform_points_ras(outputs.transform.GetTransformFromParent(), points)
    assert np.abs(moved - (points + FAKE_SHIFT_LPS * [-1, -1, 1])).max() < 1e-6
    assert outputs.transform.GetNodeReference(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole()).GetID() == moving.GetID()

    assert outputs.warped.GetImageData().GetDimensions() == fixed.GetImageData().GetDimensions()
    assert np.allclose(ras_corners(outputs.warped), ras_corners(fixed), atol=1e-6)
    assert np.all(slicer.util.arrayFromVolume(outputs.jacobian) == 1.0)
    assert labels.segment_names(outputs.warped_segmentation) == ["Label_1", "Label_2"]

    table = table_as_dict(outputs.metrics_table)
    assert table["ncc"] == (0.5, 0.75) and table["dice[Label_1]"] == (0.6, 0.8) and table["hd95_mm"] == (4.0, 2.0)
    assert outputs.loss_chart.GetNumberOfPlotSeriesNodes() == 1
    assert np.allclose(slicer.util.arrayFromTableColumn(outputs.loss_table, "loss"), [1.0 / (i + 1) for i in range(5)])

    assert sh.GetItemParent(outputs.folder_item) == folder  # next to the moving volume
    assert all(sh.GetItemParent(sh.GetItemByDataNode(n)) == outputs.folder_item for n in outputs.nodes)
    assert np.array_equal(slicer.util.arrayFromVolume(moving), moving_before) and moving.GetParentTransformNode() is None


@pytest.mark.parametrize("behaviour, error, message", [
    ("input_error", InputError, r"^The fixed image file '.*fixed\.nrrd' is 2D; pass a single 3D volume\.$"),
    ("crash", EngineError, r"exit status 1: RuntimeError: boom"),
])
def test_failed_run_adds_nothing(scene, pair, tmp_path, fake_engine_factory, behaviour, error, message):
    fixed, moving, *_ = pair
    before, items_before = node_ids(scene), sh_items(scene)
    job, events = run_job(scene, RegistrationInputs(fixed, moving), tmp_path, fake_engine_factory(behaviour))
    with pytest.raises(error, match=message):
        job.run_blocking(timeout=60)
    assert node_ids(scene) == before and sh_items(scene) == items_before
    assert list(tmp_path.iterdir()) == [] and events["finished"] == [job] and job.outputs is None


def test_cancel_leaves_exactly_the_nodes_the_scene_had(scene, pair, tmp_path, fake_engine_factory):
    fixed, moving, fixed_labels, moving_labels = pair
    before, items_before = node_ids(scene), sh_items(scene)
    count_before = scene.GetNumberOfNodes()
    inputs = RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=moving_labels)
    job, events = run_job(scene, inputs, tmp_path, fake_engine_factory("slow"))
    job.start()
    deadline = time.monotonic() + 30
    while not events["progress"] and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    assert events["progress"] and job.running
    job.cancel()
    assert job.cancelled and not job.running and events["finished"] == [job] and job.outputs is None
    assert scene.GetNumberOfNodes() == count_before and node_ids(scene) == before and sh_items(scene) == items_before
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- real engine
def test_end_to_end_with_the_real_engine(scene, tmp_path):
    fixed, moving, fixed_labels, moving_labels = samples.add_registration_pair(size=16, with_labels=True)
    before = node_ids(scene)
    log = []
    job = RegistrationJob(RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=moving_labels),
                          RegistrationSettings(method="regttr", iterations=3, device="cpu"), scene=scene,
                          temp_root=str(tmp_path), on_log=log.append)
    outputs = job.run_blocking(timeout=300)
    assert list(tmp_path.iterdir()) == []
    assert any(line.startswith("Device used: cpu") for line in log)
    added = node_ids(scene) - before
    for node in (outputs.transform, outputs.warped, outputs.jacobian, outputs.metrics_table, outputs.loss_chart,
                 outputs.warped_segmentation):
        assert node is not None and node.GetID() in added
    metrics = table_as_dict(outputs.metrics_table)
    for name in ("ncc", "ssim", "sdlogj", "folding_percent"):
        assert name in metrics and np.isfinite(metrics[name][1])
    assert any(key.startswith("dice") for key in metrics)
    assert slicer.util.arrayFromTableColumn(outputs.loss_table, "loss").size >= 1

    # The warped volume equals the moving volume resampled through the new transform node (interior voxels).
    fixed_grid = volumes.volume_from_node(fixed)
    points = transforms.voxel_centres_ras(fixed_grid)
    moved = transforms.transform_points_ras(outputs.transform.GetTransformFromParent(), points.reshape(-1, 3))
    moving_grid = volumes.volume_from_node(moving, world=False)
    ijk = (np.linalg.inv(moving_grid.ijk_to_ras()) @ np.c_[moved, np.ones(len(moved))].T).T[:, :3]
    inside = np.all((ijk > 1) & (ijk < np.array(moving_grid.size_ijk) - 2), axis=1)
    expected = np.array([_trilinear(moving_grid.array, p) for p in ijk[inside]])
    warped = slicer.util.arrayFromVolume(outputs.warped).reshape(-1)[inside]
    assert inside.sum() > 100
    assert np.abs(warped - expected).max() < 1e-3 * (np.abs(moving_grid.array).max() + 1)


def test_cancelling_the_real_engine_leaves_the_scene_as_it_was(scene, tmp_path):
    subject_hierarchy(scene)
    fixed, moving = samples.add_registration_pair(size=16)
    before, items_before = node_ids(scene), sh_items(scene)
    progress = []
    job = RegistrationJob(RegistrationInputs(fixed, moving), RegistrationSettings(iterations=5000, device="cpu"),
                          scene=scene, temp_root=str(tmp_path), on_progress=lambda f, t: progress.append(f))
    job.start()
    deadline = time.monotonic() + 120
    while not progress and job.poll() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress and job.running
    job.cancel()
    assert job.cancelled and job.outputs is None
    assert node_ids(scene) == before and sh_items(scene) == items_before
    assert list(tmp_path.iterdir()) == []


def _trilinear(array_kji, ijk):
    i, j, k = ijk
    i0, j0, k0 = int(np.floor(i)), int(np.floor(j)), int(np.floor(k))
    di, dj, dk = i - i0, j - j0, k - k0
    value = 0.0
    for a, wa in ((0, 1 - dk), (1, dk)):
        for b, wb in ((0, 1 - dj), (1, dj)):
            for c, wc in ((0, 1 - di), (1, di)):
                value += wa * wb * wc * float(array_kji[k0 + a, j0 + b, i0 + c])
    return value
