"""`register` end to end on a small sample pair: every method and initial transform, figure, output sets."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from tttmedical.core.volume import Volume
from tttmedical.registration.pipeline import RegisterOptions, read_inputs, register


@pytest.fixture(scope="module")
def inputs(mni_small):
    return read_inputs(mni_small["fixed"], mni_small["moving"], mni_small["fixed_labels"], mni_small["moving_labels"])


def _run(inputs, out, **kw):
    return register(inputs, out, RegisterOptions(device="cpu", **kw))


def test_predict_and_init_predictor_improve_dice_and_name_the_weights(inputs, tmp_path):
    predicted = _run(inputs, tmp_path / "p", method="predict")
    m = predicted["metrics"]
    assert m["dice"] > m["initial_dice"] + 0.02 and predicted["loss_curve"] == []
    assert predicted["weights"]["sha256"] and predicted["weights"]["weights"].endswith(".pt")
    refined = _run(inputs, tmp_path / "r", method="regttr", init="predictor", iterations=5)
    assert refined["initial_transform"] == "predictor"
    assert refined["metrics"]["initial_dice"] == pytest.approx(m["dice"], abs=1e-6)  # starts from the prediction
    start = refined["predictor_start"]  # kept because it raises the local NCC over identity
    assert start["start"] == "predictor" and start["ncc_predictor"] > start["ncc_identity"]
    assert refined["metrics"]["ncc"] > refined["metrics"]["initial_ncc"]


def test_displacement_image_init_is_the_starting_field(inputs, tmp_path):
    first = _run(inputs, tmp_path / "a", method="regttr", iterations=10)
    field = tmp_path / "a" / "displacement.nii.gz"
    again = _run(inputs, tmp_path / "b", method="regttr", init=str(field), iterations=3)
    assert again["metrics"]["initial_dice"] == pytest.approx(first["metrics"]["dice"], abs=0.01)
    assert again["metrics"]["dice"] >= again["metrics"]["initial_dice"] - 0.005


def test_ssmsr_end_to_end_uses_the_weights_it_reports(inputs, tmp_path):
    report = _run(inputs, tmp_path / "s", method="ssmsr", iterations=8, levels=2)
    assert report["metrics"]["dice"] > report["metrics"]["initial_dice"] + 0.02
    assert report["weights"]["sha256"] and len(report["scale_losses"]) >= 1
    assert Volume.read(tmp_path / "s" / "warped.nii.gz").same_grid(inputs.fixed)


def test_figure_then_a_run_without_labels_or_figure_leaves_no_file_of_the_first(inputs, mni_small, tmp_path):
    out = tmp_path / "out"
    _run(inputs, out, iterations=2, figure=True)
    first = sorted(p.name for p in out.iterdir())
    assert first == ["displacement.nii.gz", "figure.png", "jacobian.nii.gz", "report.json", "warped.nii.gz",
                     "warped_labels.nii.gz"]
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a real picture, not an empty canvas
    plain = read_inputs(mni_small["fixed"], mni_small["moving"])
    report = _run(plain, out, iterations=2)
    assert sorted(p.name for p in out.iterdir()) == ["displacement.nii.gz", "jacobian.nii.gz", "report.json",
                                                     "warped.nii.gz"]
    assert json.loads((out / "report.json").read_text())["outputs"] == report["outputs"]


def test_labels_above_int16_keep_their_values(mni_small, tmp_path):
    fl, ml = Volume.read(mni_small["fixed_labels"]), Volume.read(mni_small["moving_labels"])
    big = lambda v: v.with_array(np.where(v.array > 0, v.array.astype(np.int32) + 40000, 0).astype(np.int32))  # noqa: E731
    paths = big(fl).write(tmp_path / "fl.nrrd"), big(ml).write(tmp_path / "ml.nrrd")
    inputs = read_inputs(mni_small["fixed"], mni_small["moving"], *paths)
    _run(inputs, tmp_path / "out", iterations=2)
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "warped_labels.nii.gz")))
    assert set(np.unique(warped)) - {0} <= {int(v) for v in np.unique(big(ml).array)} and warped.max() > 40000
