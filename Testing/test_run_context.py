"""Run context and output sets: the folder holds exactly one run's files, or is left as it was."""
import io
import json
import os
import time

import pytest
import torch

from tttmedical.core.errors import InputError
from tttmedical.core.outputs import check_output_dir, write_output_set
from tttmedical.core.progress import Progress
from tttmedical.core.run import RunContext


def _writer(files: dict):
    def write(tmp, final):
        for name, text in files.items():
            (tmp / name).write_text(text)
        return {name.split(".")[0]: name for name in files}
    return write


def _result(outdir, files: dict):
    ctx = RunContext("test", outdir, Progress("none"), device="cpu")
    return ctx.finish(_writer(files), ctx.report())


def test_second_run_replaces_the_whole_set(tmp_path):
    out = tmp_path / "out"
    _result(out, {"a.txt": "1", "figure.png": "x"})
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "figure.png", "report.json"]
    _result(out, {"a.txt": "2"})
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "report.json"]  # no figure.png of the first run
    assert (out / "a.txt").read_text() == "2"
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"] == {"a": str(out / "a.txt"), "report": str(out / "report.json")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failure_while_writing_leaves_the_previous_set(tmp_path):
    out = tmp_path / "out"
    _result(out, {"a.txt": "1"})

    def broken(tmp, final):
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_output_set(out, broken)
    assert (out / "a.txt").read_text() == "1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stale_partials_of_a_killed_run_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out-partial-999999999-abc"
    live = tmp_path / f".out-partial-{os.getpid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "warped.nii.gz").write_text("partial")
    check_output_dir(out)
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("case", ["file", "foreign", "under_file"])
def test_output_path_problems_are_one_sentence(tmp_path, case):
    target = tmp_path / "out"
    if case == "file":
        target.write_text("mine")
    elif case == "foreign":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    else:
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "out"
    with pytest.raises(InputError, match="output folder"):
        check_output_dir(target)
    if case == "foreign":
        assert (target / "notes.txt").read_text() == "mine"


def test_cuda_out_of_memory_falls_back_to_cpu_through_the_progress_channel():
    stream = io.StringIO()
    ctx = RunContext("test", None, Progress("json", stream=stream), device="cpu", stages={"work": 1.0})
    ctx.device = torch.device("cuda")  # simulate a CUDA run that runs out of memory
    attempts = []

    def work(dev):
        attempts.append(dev.type)
        with ctx.timer("work"):
            ctx.stage("work", 0.8 if dev.type == "cuda" else 0.1, "working")
            if dev.type == "cuda":
                torch.randn(10)  # the failed attempt consumed random numbers
                time.sleep(0.3)
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        ctx.stage("work", 1.0, "done")
        return torch.randn(()).item()

    torch.manual_seed(0)
    expected = torch.randn(()).item()
    value = ctx.on_device(work)
    assert attempts == ["cuda", "cpu"] and ctx.used_device.type == "cpu"
    assert value == expected  # the CPU attempt starts from the same seed
    assert ctx.timings["work_s"] < 0.2  # the failed attempt's 0.3 s are not added
    events = [json.loads(line) for line in stream.getvalue().splitlines()]  # stdout-style stream: JSON only
    assert any(e["event"] == "log" and "CPU" in e["message"] for e in events)
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions)  # the retry does not move the bar backwards
    assert ctx.report()["device"].startswith("cpu")


def test_result_folder_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        _result(tmp_path / "out", {"a.txt": "1"})
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
