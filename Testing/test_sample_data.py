"""Sample data (tttmedical.data: registry, phantom, MNI): contents, the displacement convention, atomic writing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from tttmedical.core.errors import InputError
from tttmedical.core.sequence import read_sequence
from tttmedical.core.volume import Volume
from tttmedical.core.warp import jacobian_determinant, mm_to_voxels
from tttmedical.data import samples
from tttmedical.data.samples import SAMPLES, write_sample

pytest.importorskip("mrphantom")
pytest.importorskip("nilearn")


def _dice(a: np.ndarray, b: np.ndarray, labels) -> dict[int, float]:
    return {int(l): 2.0 * np.sum((a == l) & (b == l)) / max(np.sum(a == l) + np.sum(b == l), 1) for l in labels}


def _quiet(_message: str) -> None:
    pass


def test_catalogue():
    assert set(SAMPLES) == {"phantom-4d", "phantom-pair", "mni-smooth", "mni-bspline", "recon-brain",
                            "mni-swirl", "mni-atrophy", "phantom-sliding", "mni-intersubject"}
    assert all(isinstance(v, str) and v for v in SAMPLES.values())
    with pytest.raises(InputError, match="Unknown sample"):
        write_sample("nope", "/tmp/never-written")


@pytest.mark.parametrize("small", [True, False])
def test_phantom_4d(tmp_path, small):
    paths = write_sample("phantom-4d", tmp_path / "p4d", seed=3, log=_quiet, small=small)
    assert set(paths) == {"sequence", "labels", "metadata"}
    image, labels = read_sequence(paths["sequence"]), read_sequence(paths["labels"])
    meta = json.loads(paths["metadata"].read_text())
    n = 8 if small else 16
    assert len(image) == len(labels) == n
    assert image.index_name == "time" and image.index_unit == "s"
    assert image.index_values == pytest.approx(meta["index_values"])
    assert image.index_values == pytest.approx(list(np.arange(n) * 4.0 / n))
    assert labels.is_labelmap and not image.is_labelmap
    assert image.grid.same_grid(labels.grid)
    assert image.array.dtype == np.float32 and labels.array.dtype == np.uint8
    if not small:
        assert image.grid.shape == (64, 80, 96) and image.grid.spacing == pytest.approx((3.0, 3.0, 4.0), abs=1e-12)
        assert not np.allclose(image.grid.direction, np.eye(3))
    assert meta["label_names"] == {"0": "air", "1": "fat", "2": "myocardium", "3": "blood", "4": "liver"}
    lab = labels.array
    for t in range(n):
        assert set(np.unique(lab[t])) == {0, 1, 2, 3, 4}
    # Intensities follow the tissues (bSSFP: blood and fat bright, myocardium dark, air ~ noise).
    img = image.array
    mean = {l: float(img[lab == l].mean()) for l in range(5)}
    assert mean[3] > mean[4] > mean[2] > mean[0] and mean[1] > mean[4]
    # Breathing moves the body: end-inspiration and end-expiration differ, neighbouring frames less so.
    ins, exp = meta["end_inspiration_frame"], meta["end_expiration_frame"]
    assert meta["respiratory_ampRes"][ins] > 0.04 > -0.05 > meta["respiratory_ampRes"][exp]
    far = np.mean(list(_dice(lab[ins], lab[exp], range(1, 5)).values()))
    assert 0.3 < far < 0.95
    body = lambda t: (lab[t] > 0).astype(np.uint8)
    body_far = _dice(body(ins), body(exp), [1])[1]
    body_near = _dice(body(exp), body((exp + 1) % n), [1])[1]
    assert body_far < 0.97 and body_near > body_far
    body = (lab > 0).sum(axis=(1, 2, 3))
    assert body.max() > 1.05 * body.min()


def test_phantom_pair(tmp_path):
    paths = write_sample("phantom-pair", tmp_path / "pair", seed=0, log=_quiet)
    assert set(paths) == {"fixed", "moving", "fixed_labels", "moving_labels", "metadata"}
    fixed, moving = Volume.read(paths["fixed"]), Volume.read(paths["moving"])
    fl, ml = Volume.read(paths["fixed_labels"]).array, Volume.read(paths["moving_labels"]).array
    meta = json.loads(paths["metadata"].read_text())
    assert fixed.same_grid(moving) and fixed.shape == (64, 80, 96)
    assert meta["label_names"]["2"] == "myocardium" and meta["spacing_mm_ijk"] == [3.0, 3.0, 4.0]
    assert meta["frames"]["fixed"]["ampRes"] > 0.09 and meta["frames"]["moving"]["ampRes"] < -0.09
    assert set(np.unique(fl)) == set(np.unique(ml)) == {0, 1, 2, 3, 4}
    dice = _dice(fl, ml, range(1, 5))
    assert 0.3 < np.mean(list(dice.values())) < 0.95
    # End-inspiration: the body is taller along j (anterior-posterior) and narrower along i.
    extent_j = lambda lab: np.ptp(np.nonzero((lab > 0).any(axis=(0, 2)))[0])
    extent_i = lambda lab: np.ptp(np.nonzero((lab > 0).any(axis=(0, 1)))[0])
    assert extent_j(fl) > extent_j(ml) + 10 and extent_i(fl) < extent_i(ml) - 5


def _check_mni(paths, small: bool) -> dict:
    assert set(paths) == {"fixed", "moving", "fixed_labels", "moving_labels", "true_displacement", "metadata"}
    meta = json.loads(paths["metadata"].read_text())
    fixed = Volume.read(paths["fixed"])
    moving = Volume.read(paths["moving"])
    fl = sitk.ReadImage(str(paths["fixed_labels"]))
    ml = sitk.ReadImage(str(paths["moving_labels"]))
    assert fixed.same_grid(moving) and fixed.spacing == ((4.0,) * 3 if small else (2.0,) * 3)
    assert meta["label_names"] == {"0": "background", "1": "CSF/other brain", "2": "grey matter", "3": "white matter"}
    F, M = sitk.GetArrayFromImage(fl), sitk.GetArrayFromImage(ml)
    assert set(np.unique(F)) == set(np.unique(M)) == {0, 1, 2, 3}
    # Labels match the anatomy: WM brightest, then GM, then CSF in the T1 template.
    mean = {l: float(fixed.array[F == l].mean()) for l in range(4)}
    assert mean[3] > mean[2] > mean[1] > mean[0]

    field_image = sitk.ReadImage(str(paths["true_displacement"]))
    assert field_image.GetNumberOfComponentsPerPixel() == 3
    field = sitk.GetArrayFromImage(field_image)
    magnitude = np.linalg.norm(field, axis=-1)
    assert 4.0 < magnitude[F > 0].max() < 16.0
    assert 5.5 < meta["deformation"]["local_max_displacement_mm"] < 8.5
    field_volume = fixed.with_array(field.astype(np.float64))
    assert jacobian_determinant(mm_to_voxels(field, field_volume)).min() > 0.0
    assert meta["deformation"]["inverse_residual_max_in_brain_mm"] < 0.01
    assert "phi(p) - p" in meta["displacement_convention"]

    # The documented convention: moving(phi(p)) == fixed(p), so resampling the moving image/labels
    # through DisplacementFieldTransform(true field) lands them on the fixed ones.
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field_image, sitk.sitkVectorFloat64))
    back_labels = sitk.GetArrayFromImage(sitk.Resample(ml, fl, transform, sitk.sitkNearestNeighbor, 0))
    before = _dice(F, M, (1, 2, 3))
    after = _dice(F, back_labels, (1, 2, 3))
    assert 0.3 < np.mean(list(before.values())) < 0.95
    assert np.mean(list(after.values())) > 0.9 and all(after[l] > before[l] for l in (1, 2, 3))
    back = sitk.GetArrayFromImage(sitk.Resample(moving.to_sitk(), fixed.to_sitk(), transform, sitk.sitkLinear, 0.0))
    brain = F > 0
    corr_after = np.corrcoef(back[brain], fixed.array[brain])[0, 1]
    corr_before = np.corrcoef(moving.array[brain], fixed.array[brain])[0, 1]
    assert corr_after > (0.85 if small else 0.93) and corr_after > corr_before + 0.1
    # The opposite convention (negated field) does not bring the labels back.
    negated = sitk.GetImageFromArray(-field, isVector=True)
    negated.CopyInformation(field_image)
    wrong = sitk.GetArrayFromImage(sitk.Resample(ml, fl, sitk.DisplacementFieldTransform(negated), sitk.sitkNearestNeighbor, 0))
    assert np.mean(list(_dice(F, wrong, (1, 2, 3)).values())) < np.mean(list(after.values())) - 0.2
    return meta


@pytest.mark.parametrize("name", ["mni-smooth", "mni-bspline"])
def test_mni_small(tmp_path, name):
    meta = _check_mni(write_sample(name, tmp_path / name, seed=1, log=_quiet, small=True), small=True)
    assert meta["deformation"]["family"] == name.split("-")[1]


def test_mni_default_size(tmp_path):
    meta = _check_mni(write_sample("mni-bspline", tmp_path / "mb", seed=0, log=_quiet), small=False)
    assert meta["shape_kji"] == [86, 98, 81]


def test_reproducible_and_seeded(tmp_path):
    a = write_sample("phantom-pair", tmp_path / "a", seed=5, log=_quiet, small=True)
    b = write_sample("phantom-pair", tmp_path / "b", seed=5, log=_quiet, small=True)
    c = write_sample("phantom-pair", tmp_path / "c", seed=6, log=_quiet, small=True)
    arr = lambda p: Volume.read(p).array
    np.testing.assert_array_equal(arr(a["moving"]), arr(b["moving"]))
    assert not np.array_equal(arr(a["moving"]), arr(c["moving"]))


def test_atomic_output(tmp_path, monkeypatch):
    out = tmp_path / "sample"
    messages = []
    first = write_sample("phantom-pair", out, seed=0, log=messages.append, small=True)
    assert any("written to" in m for m in messages)
    # Re-writing the same sample replaces the previous copy.
    second = write_sample("phantom-pair", out, seed=1, log=_quiet, small=True)
    assert first == second and all(p.is_file() for p in second.values())
    assert json.loads(second["metadata"].read_text())["generation"]["seed"] == 1
    # An existing empty folder is filled.
    (tmp_path / "empty").mkdir()
    assert write_sample("phantom-pair", tmp_path / "empty", log=_quiet, small=True)["fixed"].is_file()
    # A folder holding other files is refused and left untouched.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a TTTMedical result"):
        write_sample("phantom-pair", foreign, log=_quiet, small=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # An existing file is refused before any work.
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="existing file"):
        write_sample("phantom-pair", tmp_path / "file", log=_quiet, small=True)
    (tmp_path / "file").unlink()
    # A failure half-way leaves neither the output folder nor a temporary folder behind.
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(samples, "_write_json", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_sample("phantom-pair", tmp_path / "broken", log=_quiet, small=True)
    assert not (tmp_path / "broken").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "foreign", "sample"]


def test_rerun_replaces_the_whole_folder(tmp_path):
    """Another sample written into the same folder leaves no file of the first (one manifest: sample.json)."""
    out = tmp_path / "s"
    first = write_sample("mni-smooth", out, seed=0, log=_quiet, small=True)
    assert first["metadata"].name == "sample.json" and first["true_displacement"].is_file()
    second = write_sample("phantom-4d", out, seed=0, log=_quiet, small=True)
    meta = json.loads(second["metadata"].read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([*meta["files"].values(), "sample.json"])
    assert meta["sample"] == "phantom-4d" and "versions" in meta["generation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no partial folder left


def test_coil_maps_are_public_and_reproducible():
    from tttmedical.data.phantom import coil_maps

    state = np.random.get_state()[1].copy()
    maps = coil_maps((6, 8, 10), 8, seed=4)
    assert maps.shape == (8, 6, 8, 10) and np.iscomplexobj(maps)
    assert np.all(np.isfinite(maps)) and np.abs(maps).max() > 0
    np.testing.assert_array_equal(maps, coil_maps((6, 8, 10), 8, seed=4))
    assert not np.allclose(maps, coil_maps((6, 8, 10), 8, seed=5))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # numpy's global generator restored


def test_slicer_loads_label_sequence(tmp_path):
    slicer = pytest.importorskip("slicer")
    paths = write_sample("phantom-4d", tmp_path / "p", log=_quiet, small=True)
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSequenceNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(paths["labels"]))
    assert storage.ReadData(node) == 1
    assert node.GetNumberOfDataNodes() == 8 and node.GetIndexName() == "time"
    assert node.GetNthDataNode(0).GetClassName() == "vtkMRMLLabelMapVolumeNode"


def test_recon_brain(tmp_path):
    from tttmedical.recon.kspace import read_kspace_file
    from tttmedical.recon.physics import ifft2c, rss
    import torch

    paths = write_sample("recon-brain", tmp_path / "rb", seed=0, log=_quiet, small=True)
    brain = Volume.read(paths["image"])
    assert brain.shape == (2, 64, 64) and brain.array.max() == pytest.approx(1000.0, rel=1e-3)
    raw = read_kspace_file(paths["kspace"])
    assert raw.data.shape == (2, 8, 64, 64) and raw.data.dtype == np.complex64 and raw.mask is None
    # the reference is the fastMRI-style RSS of the fully sampled coil images, up to the added noise
    noisy_rss = rss(ifft2c(torch.from_numpy(raw.data))).numpy()
    nmse = float(((noisy_rss - raw.reference) ** 2).sum() / (raw.reference ** 2).sum())
    assert nmse < 1e-3
