"""Interpolate4D engine: model conventions, TTT tasks and schemes, metrics, pipeline results and 4D I/O."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tttmedical.cli import main
from tttmedical.core.sequence import Sequence, read_sequence, write_sequence
from tttmedical.core.warp import warp
from tttmedical.interpolation.losses import mae_loss, rotation_loss, uvi_loss
from tttmedical.interpolation.metrics import _gaussian_filter, frame_metrics
from tttmedical.interpolation.model import InterpolationModel, pad_frames
from tttmedical.interpolation.pipeline import load_model
from tttmedical.interpolation.ttt import TTTSettings, run_scheme, ssl_loss


@pytest.fixture(scope="module")
def phantom4d(tmp_path_factory):
    """The small ``phantom-4d`` sample (8 frames, 32 x 40 x 48)."""
    from tttmedical.data.samples import write_sample

    return write_sample("phantom-4d", tmp_path_factory.mktemp("i4d") / "phantom-4d", seed=3, log=None, small=True)


@pytest.fixture(scope="module")
def bundled():
    return load_model(None, None, torch.device("cpu"))[0]


def _frames(seq_path) -> torch.Tensor:
    from tttmedical.core.volume import IntensityMapping

    array = read_sequence(seq_path).array
    return torch.from_numpy(IntensityMapping.of(array).apply(array))[:, None]


def _blob(shape=(16, 32, 32), centre=(8.0, 16.0, 12.0), sigma=3.0) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return torch.exp(-r2 / (2 * sigma ** 2))[None, None]


# ---------------------------------------------------------------------- model conventions
def test_endpoints_reproduced_by_trained_model(phantom4d, bundled):
    frames, _ = pad_frames(_frames(phantom4d["sequence"]))
    i0, i1 = frames[0][2:3], frames[0][4:5]
    out0, out1 = bundled.interpolate(i0, i1, [0.0, 1.0])
    psnr = lambda a, b: 10 * np.log10(1.0 / float(((a - b) ** 2).mean()))  # noqa: E731
    apart = psnr(i0, i1)
    for out, ref in ((out0, i0), (out1, i1)):
        # only the refinement residual separates the output from the endpoint (31.8-32.6 dB here),
        # far closer than the other frame is (16.7 dB)
        assert psnr(out, ref) > 30.0 and psnr(out, ref) > apart + 5.0, (psnr(out, ref), apart)


def test_flows_scale_linearly_with_t():
    """With the residual switched off, the frame at t is I0 moved by t * flow01 blended with I1 moved by (1 - t) * flow10."""
    model = InterpolationModel(fast=False)
    torch.nn.init.zeros_(model.refine.out.weight)
    i0, i1 = _blob(centre=(8.0, 16.0, 12.0)), _blob(centre=(8.0, 16.0, 20.0))  # I1 = I0 moved +8 voxels along i
    flow01 = torch.zeros(1, 3, 16, 32, 32)
    flow01[:, 2] = -8.0   # I1(x) = I0(x - 8 e_i)
    flow10 = -flow01
    feats = model.features(i0), model.features(i1)
    for t in (0.25, 0.5, 0.75):
        frame, residual = model.synthesize(i0, i1, t, (flow01, flow10), *feats)
        expected = _blob(centre=(8.0, 16.0, 12.0 + 8.0 * t))
        assert float(residual.detach().abs().max()) == 0.0
        assert float((frame.detach() - expected).abs().max()) < 0.02, t
        peak = int(frame[0, 0, 8, 16].argmax())
        assert peak == round(12 + 8 * t)


# ---------------------------------------------------------------------- TTT: losses go down, the shared encoder moves
@pytest.mark.parametrize("task", ["rotation", "mae", "cycle"])
def test_ttt_lowers_its_loss_and_changes_the_right_networks(task, phantom4d, bundled):
    import copy

    model = copy.deepcopy(bundled)
    frames, _ = pad_frames(_frames(phantom4d["sequence"]))
    pair = (frames[0][0:1, :, :16, 8:40, 8:40], frames[0][2:3, :, :16, 8:40, 8:40])  # a 16 x 32 x 32 window
    before = {name: [p.detach().clone() for p in getattr(model, name).parameters()] for name in ("encoder", "flow", "refine")}
    with torch.no_grad():
        interp_before = model.interpolate(*pair, [0.5])[0]

    def loss_now():
        with torch.no_grad():
            return float(ssl_loss(model, task, *pair, torch.Generator().manual_seed(7))[0])

    start = loss_now()
    lr = 1e-4 if task == "cycle" else 1e-3  # flow and refinement networks overshoot at 1e-3
    result = run_scheme(model, [pair], TTTSettings(task, "minibatch", epochs=4, lr=lr), lambda m, k: None)
    assert len(result["curve"]) == 5 and result["steps"] == 4
    assert loss_now() < start
    moved = {name: any(not torch.equal(a, b) for a, b in zip(before[name], getattr(model, name).parameters()))
             for name in before}
    assert moved == {"encoder": task in ("rotation", "mae"), "flow": task == "cycle", "refine": task == "cycle"}
    with torch.no_grad():
        interp_after = model.interpolate(*pair, [0.5])[0]
    assert float((interp_after - interp_before).abs().max()) > 1e-4  # MAE included: the interpolation changes


# ---------------------------------------------------------------------- schemes
def _fingerprints(model_factory, scheme: str, pairs, epochs=2):
    model = model_factory()
    seen = []

    def predict(m, k):
        seen.append(k)
        return torch.cat([p.detach().flatten() for p in m.encoder.parameters()]).clone()

    result = run_scheme(model, pairs, TTTSettings("rotation", scheme, epochs=epochs, lr=1e-3), predict)
    assert seen == list(range(len(pairs)))
    final = torch.cat([p.detach().flatten() for p in model.encoder.parameters()])
    return result, final


@pytest.mark.slow  # ~20 s on the shared 2-core machine
def test_scheme_semantics():
    torch.manual_seed(0)
    state = InterpolationModel(fast=False).state_dict()

    def factory():
        m = InterpolationModel(fast=False)
        m.load_state_dict(state)
        return m

    theta0 = torch.cat([p.flatten() for p in factory().encoder.parameters()])
    g = torch.Generator().manual_seed(1)
    pairs = [(torch.rand(1, 1, 16, 16, 16, generator=g), torch.rand(1, 1, 16, 16, 16, generator=g)) for _ in range(3)]

    naive, naive_final = _fingerprints(factory, "naive", pairs)
    online, online_final = _fingerprints(factory, "online", pairs)
    mini, mini_final = _fingerprints(factory, "minibatch", pairs)
    # naive: E epochs over all pairs (one step per pair), then every pair predicted with the same final weights
    assert naive["steps"] == 6 and [c["pair"] for c in naive["curve"][:-1]] == [0, 1, 2, 0, 1, 2]
    assert all(torch.equal(p, naive_final) for p in naive["predictions"])
    # online: each pair adapts from theta0 alone; the weights are discarded afterwards
    assert torch.equal(online_final, theta0)
    for k in range(3):
        alone, _ = _fingerprints(factory, "online", [pairs[k]])
        assert torch.allclose(online["predictions"][k], alone["predictions"][0])
    assert not torch.equal(online["predictions"][0], online["predictions"][1])
    # minibatch: carried in time order, predicted right after each pair's update
    assert torch.allclose(mini["predictions"][0], online["predictions"][0])      # pair 0: same start, same steps
    assert not torch.allclose(mini["predictions"][1], online["predictions"][1])  # pair 1 starts from pair 0's weights
    assert torch.equal(mini["predictions"][2], mini_final)
    carried, _ = _fingerprints(factory, "minibatch", pairs[:2])
    assert torch.allclose(carried["predictions"][1], mini["predictions"][1])
    assert [c["pair"] for c in mini["curve"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


# ---------------------------------------------------------------------- metrics as UVI-Net computes them
def test_metrics_match_the_reference_definitions():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(12, 14, 16, generator=g).numpy()
    pred = np.clip(truth + 0.05 * torch.randn(12, 14, 16, generator=g).numpy(), 0, 1)
    m = frame_metrics(truth, pred)
    mse = np.mean((truth.astype(np.float64) - pred) ** 2)
    assert m["psnr"] == pytest.approx(20 * np.log10(1 / np.sqrt(mse)), rel=1e-6)
    assert m["nmse"] == pytest.approx(mse / np.mean(truth.astype(np.float64) ** 2) * 100, rel=1e-5)
    # dense reference: 9^3 sums with zero padding (NCC) and an 11^3 Gaussian conv3d (SSIM)
    a, b = torch.from_numpy(truth)[None, None].double(), torch.from_numpy(pred)[None, None].double()
    ones = torch.ones(1, 1, 9, 9, 9, dtype=torch.float64)
    s = lambda x: F.conv3d(x, ones, padding=4)  # noqa: E731
    ua, ub = s(a) / 729, s(b) / 729
    cross = s(a * b) - ub * s(a) - ua * s(b) + ua * ub * 729
    va, vb = s(a * a) - 2 * ua * s(a) + ua * ua * 729, s(b * b) - 2 * ub * s(b) + ub * ub * 729
    assert m["ncc"] == pytest.approx(float((cross * cross / (va * vb + 1e-5)).mean()), rel=1e-3)
    x = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    w = (x[:, None, None] * x[None, :, None] * x[None, None, :])
    w = (w / w.sum())[None, None]
    c = lambda y: F.conv3d(y, w, padding=5)  # noqa: E731
    ma, mb = c(a), c(b)
    ssim = ((2 * ma * mb + 1e-4) * (2 * (c(a * b) - ma * mb) + 9e-4)) / (
        (ma ** 2 + mb ** 2 + 1e-4) * (c(a * a) - ma ** 2 + c(b * b) - mb ** 2 + 9e-4))
    assert m["ssim"] == pytest.approx(float(ssim.mean()), rel=1e-4)
    assert frame_metrics(truth, truth)["ssim"] == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------- the command on a sample sequence
def _run(args, capsys=None) -> int:
    return main(["interpolate", *map(str, args), "--progress", "none"])


@pytest.mark.slow  # ~20 s on the shared 2-core machine
def test_interpolation_beats_linear_blending_and_keeps_geometry(phantom4d, tmp_path):
    out = tmp_path / "out"
    assert _run([phantom4d["sequence"], "-o", out, "--evaluate", "--task", "rotation", "--epochs", "2", "--figure"]) == 0
    report = json.loads((out / "report.json").read_text())
    seq_in = read_sequence(phantom4d["sequence"])
    seq_out = read_sequence(out / "interpolated.seq.nrrd")
    m, lin, none = report["metrics"], report["baseline_linear"], report["baseline_none"]
    assert m["psnr"] > lin["psnr"] + 1.0 and m["ssim"] > lin["ssim"]
    assert abs(m["psnr"] - none["psnr"]) < 1.0  # two rotation steps barely move the model
    assert [f["frame"] for f in m["per_frame"]] == [1, 3, 5]
    assert report["timings"]["adapt_s"] > 0 and report["timings"]["total_s"] >= report["timings"]["adapt_s"]
    assert len(seq_out) == 8 and seq_out.index_values == pytest.approx(seq_in.index_values)
    assert (seq_out.index_name, seq_out.index_unit) == (seq_in.index_name, seq_in.index_unit)
    assert seq_out.grid.same_grid(seq_in.grid, tol=1e-6)
    # kept frames are the input frames, in input units
    assert np.allclose(seq_out[2].array, seq_in[2].array)
    predicted = seq_out[3].array
    assert abs(float(predicted.mean()) - float(seq_in[3].array.mean())) < 0.1 * float(seq_in[3].array.mean())
    assert (out / "figure.png").stat().st_size > 1000


def test_frames_and_num_and_nifti_and_folder_inputs(phantom4d, tmp_path):
    seq = read_sequence(phantom4d["sequence"])
    nifti = write_sequence(seq, tmp_path / "seq.nii.gz")
    out = tmp_path / "a"
    assert _run([nifti, "-o", out, "--frames", "1", "4", "--num", "3", "--task", "none"]) == 0
    res = read_sequence(out / "interpolated.seq.nrrd")
    v = seq.index_values
    assert res.index_values == pytest.approx([v[1], v[1] + 0.25 * (v[4] - v[1]), (v[1] + v[4]) / 2,
                                              v[1] + 0.75 * (v[4] - v[1]), v[4]])
    assert res.grid.same_grid(seq.grid, tol=1e-4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(3):
        seq[n].write(folder / f"f{n:02d}.nii.gz")
    out2 = tmp_path / "b"
    assert _run([folder, "-o", out2, "--factor", "3", "--task", "none"]) == 0
    res2 = read_sequence(out2 / "interpolated.seq.nrrd")
    assert res2.index_values == pytest.approx([0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    report = json.loads((out2 / "report.json").read_text())
    assert report["frames_created"] == 4 and "metrics" not in report


# ---------------------------------------------------------------------- bad input: exit 2, one sentence, nothing written
BAD_OPTIONS = {"a_ge_b": ["--frames", "4", "2"], "out_of_range": ["--frames", "0", "8"], "task": ["--task", "jigsaw"],
               "scheme": ["--scheme", "batch"], "num_without_frames": ["--num", "3"],
               "evaluate_adjacent": ["--frames", "2", "3", "--evaluate"]}
"""Cases that are only bad options on the phantom sequence: case -> its arguments."""
BAD = ["single_frame", "grids", "three_d", "nan", *BAD_OPTIONS]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exit_2(case, phantom4d, tmp_path, capsys):
    from engine_helpers import is_one_sentence

    seq = read_sequence(phantom4d["sequence"])
    src, extra = phantom4d["sequence"], BAD_OPTIONS.get(case, [])
    if case == "single_frame":
        src = write_sequence(Sequence(seq.frames[:1]), tmp_path / "one.seq.nrrd")
    elif case == "grids":
        src = tmp_path / "frames"
        src.mkdir()
        seq[0].write(src / "a.nii.gz")
        moved = seq[1]
        type(moved)(moved.array[:, :, :-2].copy(), moved.spacing, moved.origin, moved.direction).write(src / "b.nii.gz")
    elif case == "three_d":
        src = seq[0].write(tmp_path / "frame.nii.gz")
    elif case == "nan":
        arr = seq.array.astype(np.float32)
        arr[3, 5, 5, 5] = np.nan
        src = write_sequence(Sequence.from_array(arr, seq.grid.spacing, seq.grid.origin, seq.grid.direction),
                             tmp_path / "nan.seq.nrrd")
    out = tmp_path / "out"
    if case in ("task", "scheme"):  # argparse refuses unknown choices itself (exit 2, usage + one line)
        with pytest.raises(SystemExit) as exc:
            main(["interpolate", str(src), "-o", str(out), *extra])
        assert exc.value.code == 2
    else:
        assert _run([src, "-o", out, *extra]) == 2
        message = capsys.readouterr().err.strip().removeprefix("tttmedical: error: ")
        assert is_one_sentence(message), message
    assert not out.exists()


# ---------------------------------------------------------------------- shifted benchmark domains
def test_shifted_sequences_differ_from_the_source_as_named():
    import dataclasses

    from tttmedical.data.phantom_sequences import SHIFTS, render_sequence

    def render(name, **kw):
        return render_sequence(dataclasses.replace(SHIFTS[name], frames=4, **kw))

    source, t1w = render("source"), render("t1w")
    labels = source["labels"][0]
    mean = lambda r, lab: float(r["array"][0][labels == lab].mean())  # noqa: E731
    blood, fat = 3, 1
    assert mean(source, blood) > mean(source, fat)          # bSSFP: blood brighter than fat
    t1_labels = t1w["labels"][0]
    assert float(t1w["array"][0][t1_labels == fat].mean()) > float(t1w["array"][0][t1_labels == blood].mean())  # T1w: fat bright
    still, moving = render("source", noise=0.0), render("motion", noise=0.0)
    step = lambda r: float(np.abs(np.diff(r["array"].astype(np.float64), axis=0)).mean())  # noqa: E731
    assert step(moving) > 1.3 * step(still)
    noisy = render("noise")
    air = labels == 0
    assert float(np.median(noisy["array"][0][air])) > 3 * float(np.median(source["array"][0][air]))  # Rayleigh level in air
    assert render("fov")["array"].shape[1:] != source["array"].shape[1:]
