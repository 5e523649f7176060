"""The benchmark's deformation families: the true displacement brings moving back onto fixed,
the deformations do not fold, and one family is held out."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from tttmedical.core import metrics as M
from tttmedical.core.volume import Volume
from tttmedical.core.warp import jacobian_determinant, mm_to_voxels
from tttmedical.data.deformations import FAMILIES, HELD_OUT
from tttmedical.data.samples import SAMPLES, write_sample
from tttmedical.registration.pipeline import apply_field


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: write_sample(name, root / name, seed=0, log=None, small=True) for name in FAMILIES}


def _dice(fixed_labels, labels):
    return M.label_metrics(fixed_labels.array, labels.array, fixed_labels.spacing)["dice"]


def test_families_are_registered_samples_and_exactly_one_is_held_out(families):
    assert set(FAMILIES) <= set(SAMPLES) and HELD_OUT in FAMILIES
    held = {name for name, paths in families.items()
            if json.loads(paths["metadata"].read_text())["deformation"]["held_out"]}
    assert held == {HELD_OUT}


@pytest.mark.parametrize("name", [n for n in FAMILIES if n.startswith("mni-")])
def test_true_displacement_maps_moving_labels_back_onto_fixed(families, name):
    paths = families[name]
    fixed_labels = Volume.read(paths["fixed_labels"])
    moving_labels = Volume.read(paths["moving_labels"])
    true = Volume.from_sitk(sitk.ReadImage(str(paths["true_displacement"])))
    before = _dice(fixed_labels, moving_labels)
    after = _dice(fixed_labels, apply_field(moving_labels, true, "nearest"))
    # a real deformation, undone by the true field (inter-subject: both label maps were resampled
    # with nearest neighbour on the 4 mm test grid, which costs Dice by itself)
    gain, floor = {"mni-swirl": (0.06, 0.97), "mni-atrophy": (0.015, 0.97), "mni-intersubject": (0.15, 0.7)}[name]
    assert after > before + gain and after > floor, (before, after)
    jac = jacobian_determinant(mm_to_voxels(true.array, fixed_labels))
    assert M.folding_percent(jac) == 0.0
    meta = json.loads(paths["metadata"].read_text())["deformation"]
    assert meta["inverse_residual_max_mm"] < 0.5 * fixed_labels.spacing[0]


def test_sliding_moves_organs_along_the_body_axis_and_keeps_the_wall(families):
    paths = families["phantom-sliding"]
    fixed = Volume.read(paths["fixed_labels"]).array
    moving = Volume.read(paths["moving_labels"]).array
    heart_f = np.argwhere(np.isin(fixed, (2, 3)))[:, 0].mean()  # mean k of the heart (myocardium + blood)
    heart_m = np.argwhere(np.isin(moving, (2, 3)))[:, 0].mean()
    assert heart_m < heart_f - 1.0  # moving(q) = frame(q + w), w along +k: the heart appears >= 8 mm towards -k
    meta = json.loads(paths["metadata"].read_text())["deformation"]
    assert meta["jacobian_min"] > 0.2 and meta["slide_peak_mm"] > 10.0
    image = sitk.ReadImage(str(paths["moving"]))
    assert np.isfinite(sitk.GetArrayViewFromImage(image)).all()
