"""AdaptRecon scene logic: volume node or k-space file -> engine process -> volumes, error maps, table, plot.

A stand-in engine (written below, parsing the real ``tttmedical recon`` options) replaces the process
in most tests; the end-to-end tests run the real engine on tiny inputs and never skip.
"""
from __future__ import annotations

import textwrap

import h5py
import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402
from TTTMedicalLib import results, volumes  # noqa: E402
from TTTMedicalLib.recon import ReconInputs, ReconJob, ReconSettings  # noqa: E402
from TTTMedicalLib.scene import node_ids, subject_hierarchy  # noqa: E402

FAKE = textwrap.dedent('''
    """Stand-in for 'tttmedical recon': reconstruction = 0.9 x input, zero-filled = 0.5 x input."""
    import argparse, json, sys
    from pathlib import Path
    from tttmedical.core.progress import Progress
    from tttmedical.core.volume import Volume
    from tttmedical.recon.command import add_parser

    parser = argparse.ArgumentParser(prog="tttmedical")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(sys.argv[1:])
    assert args.simulate
    progress = Progress("json")
    image = Volume.read(args.input)
    progress.update(0.5, "adapting", loss=0.5)
    out = Path(args.output); out.mkdir(parents=True)
    labels = args.compare.split(",") if args.compare else [args.method]
    metric = lambda p: {"psnr": p, "ssim": 0.9, "nmse": 0.01, "per_slice": {}}
    runs = []
    for n, label in enumerate(labels):
        name = f"recon_{label.replace('+', '_')}.nii.gz" if args.compare else "recon.nii.gz"
        image.with_array(image.array * 0.9).write(out / name)
        runs.append({"label": label, "file": name, "metrics": metric(30.0 + n), "seconds_per_slice": 1.5 + n,
                     "self_validation": {"backbone": [{"curve": [{"step": 0, "loss": 0.5, "val": 0.5, "train": 0.4},
                                                                 {"step": 1, "loss": 0.4, "val": 0.4, "train": 0.3}]}]}})
    image.with_array(image.array * 0.5).write(out / "zero_filled.nii.gz")
    report = {"method": args.method, "method_label": ",".join(labels), "metrics": runs[0]["metrics"],
              "baseline_zero": metric(20.0), "baseline_pretrained": metric(25.0), "self_validation": runs[0]["self_validation"],
              "timings": {"total_s": 1.0, "adapt_s": 0.5, "seconds_per_slice": 1.5}, "device": "fake"}
    if args.compare:
        report["compare"] = runs
    (out / "report.json").write_text(json.dumps(report))
    progress.done({"recon": out / "recon.nii.gz", "report": out / "report.json"}, str(out / "report.json"))
''')


@pytest.fixture
def fake(script_engine):
    return script_engine(FAKE)


def add_input(scene, shape=(3, 32, 32)):
    """An oblique, anisotropic volume node holding a smooth blob phantom (arrays [k, j, i])."""
    subject_hierarchy(scene)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    image = 100 * (((j - 16) ** 2 / 120 + (i - 15) ** 2 / 90) < 1) * (1 + 0.3 * np.sin(j / 3)) + \
        60 * (((j - 12) ** 2 + (i - 18) ** 2) < 12)
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    from tttmedical.core.volume import Volume

    return volumes.add_volume_node(Volume(image.astype(np.float32), (1.5, 1.2, 4.0), (10.0, -5.0, 3.0), direction),
                                   "phantom", scene)


def test_compare_adds_volumes_error_maps_table_and_plot(scene, fake, tmp_path):
    node = add_input(scene)
    before = slicer.util.arrayFromVolume(node).copy()
    job = ReconJob(ReconInputs(volume=node), ReconSettings(iterations=3), compare=["pretrained", "ssdu+inr+sst"],
                   scene=scene, temp_root=str(tmp_path), process_factory=fake)
    out = job.run_blocking(timeout=120)
    assert list(out.reconstructions) == ["pretrained", "ssdu+inr+sst"]
    for label, recon in out.reconstructions.items():
        assert recon.GetName() == f"phantom {label}"
        assert np.allclose(slicer.util.arrayFromVolume(recon), 0.9 * before, atol=1e-4)
        assert np.allclose(volumes.ijk_to_ras_of(recon), volumes.ijk_to_ras_of(node), atol=1e-5)  # the reference's grid
        assert np.allclose(slicer.util.arrayFromVolume(out.error_maps[label]), 0.1 * before, atol=1e-3)
    rows = results.table_columns(out.metrics_table)
    assert rows["method"] == ["zero-filled", "pretrained", "ssdu+inr+sst"]  # 'pretrained' entry is the baseline row
    assert rows["PSNR (dB)"] == pytest.approx([20.0, 25.0, 31.0])
    assert rows["seconds per slice"][-1] == pytest.approx(2.5)
    assert out.loss_table.GetTable().GetNumberOfRows() == 2
    assert np.array_equal(slicer.util.arrayFromVolume(node), before)   # input untouched
    assert not list(tmp_path.glob("TTTMedical-*"))


def test_both_inputs_refused_nothing_added(scene, fake, tmp_path):
    node = add_input(scene)
    ids = node_ids(scene)
    job = ReconJob(ReconInputs(volume=node, kspace_file=str(tmp_path / "x.h5")), scene=scene, temp_root=str(tmp_path),
                   process_factory=fake)
    with pytest.raises(InputError, match="either a volume"):
        job.start()
    assert node_ids(scene) == ids and not list(tmp_path.glob("TTTMedical-*"))


def test_real_engine_compare_end_to_end(scene, tmp_path):
    node = add_input(scene)
    settings = ReconSettings(iterations=3, coils=4, acceleration=2.0, center_fraction=0.16, device="cpu")
    job = ReconJob(ReconInputs(volume=node), settings, compare=["zero", "fine+inr+sst"], scene=scene, temp_root=str(tmp_path))
    out = job.run_blocking(timeout=300)
    report = out.report
    assert report["simulated"] is True
    assert set(out.reconstructions) == {"zero", "fine+inr+sst"}
    for recon in out.reconstructions.values():
        assert np.allclose(volumes.ijk_to_ras_of(recon), volumes.ijk_to_ras_of(node), atol=1e-5)
        assert recon.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    rows = results.table_columns(out.metrics_table)
    assert rows["method"] == ["zero-filled", "pretrained", "fine+inr+sst"]
    zero_psnr = [r for r in report["compare"] if r["label"] == "zero"][0]["metrics"]["psnr"]
    assert zero_psnr == pytest.approx(report["baseline_zero"]["psnr"])
    assert out.loss_table is not None and out.loss_table.GetTable().GetNumberOfRows() >= 2


def test_real_engine_slice_selection_error_maps_match_the_reconstructed_slices(scene, tmp_path):
    node = add_input(scene)
    settings = ReconSettings(method="zero", coils=4, acceleration=2.0, center_fraction=0.16, slices="1:3", device="cpu")
    out = ReconJob(ReconInputs(volume=node), settings, scene=scene, temp_root=str(tmp_path)).run_blocking(timeout=300)
    recon, error = out.reconstructions["zero"], out.error_maps["zero"]
    assert recon.GetImageData().GetDimensions() == error.GetImageData().GetDimensions() == (32, 32, 2)
    assert np.allclose(volumes.ijk_to_ras_of(error), volumes.ijk_to_ras_of(recon), atol=1e-5)
    recon_array, error_array = slicer.util.arrayFromVolume(recon), slicer.util.arrayFromVolume(error)
    assert 0 < error_array.mean() < 0.5 * recon_array.mean()     # |reference - recon| of the same two slices


def test_real_engine_kspace_file(scene, tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((2, 32, 32), np.float32)
    image[:, 8:24, 6:26] = 1.0 + 0.2 * rng.random((2, 16, 20))   # texture: no exactly-zero k-space column
    coils = np.exp(1j * rng.uniform(0, 2 * np.pi, (1, 4, 1, 1))) * np.linspace(0.5, 1, 32)[None, None, :, None]
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image[:, None] * coils, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = kspace.astype(np.complex64)
    job = ReconJob(ReconInputs(kspace_file=str(path)), ReconSettings(method="pretrained", acceleration=2.0,
                                                                     center_fraction=0.16, device="cpu"),
                   scene=scene, temp_root=str(tmp_path))
    out = job.run_blocking(timeout=300)
    recon = out.reconstructions["pretrained"]
    assert recon.GetImageData().GetDimensions() == (32, 32, 2)
    assert np.allclose(recon.GetSpacing(), (1.0, 1.0, 1.0))
    assert out.reference is not None and out.metrics_table is not None
    assert out.report["input"]["mask"]["origin"].startswith("retrospective")
