"""Background runner: JSON progress parsing, callbacks, exit statuses, process-tree cancel.

Needs no slicer: the runner is pure Python.  Fake processes are injected through the runner's
process factory (in-memory streams) or run ``fake_engine.py`` as a real child process.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tttmedical.core.errors import CancelledError, InputError
from TTTMedicalLib import runner as runner_lib
from TTTMedicalLib.runner import EngineError, EngineRunner

MODULE_DIR = Path(__file__).resolve().parents[2] / "TTTMedical"


class FakeProcess:
    """A finished process whose output streams are in memory."""

    def __init__(self, stdout_lines=(), stderr_lines=(), returncode=0):
        self.stdout = io.StringIO("".join(f"{line}\n" for line in stdout_lines))
        self.stderr = io.StringIO("".join(f"{line}\n" for line in stderr_lines))
        self.returncode = returncode
        self.pid = -1
        self.killed = False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode


def run_fake(process, **callbacks):
    seen = {"progress": [], "log": [], "done": [], "error": [], "finished": []}
    runner = EngineRunner(["register", "f.nrrd", "m.nrrd", "-o", "out"], process_factory=lambda c, e, w=None: process,
                          on_progress=seen["progress"].append, on_log=seen["log"].append, on_done=seen["done"].append,
                          on_error=seen["error"].append, on_finished=seen["finished"].append, **callbacks)
    result = runner.start().wait()
    return runner, result, seen


def ev(**event):
    return json.dumps(event)


def test_events_reach_the_callbacks_in_order():
    process = FakeProcess(
        [ev(event="progress", fraction=0.25, stage="level 1/2", loss=0.5), ev(event="log", message="Device: cpu"),
         "a stray line", ev(event="progress", fraction=1.0, stage="level 2/2"),
         ev(event="done", outputs={"warped": "/o/warped.nii.gz"}, report="/o/report.json")],
        ["UserWarning: something"], 0)
    runner, result, seen = run_fake(process)
    assert [(e["fraction"], e["stage"]) for e in seen["progress"]] == [(0.25, "level 1/2"), (1.0, "level 2/2")]
    assert seen["progress"][0]["loss"] == 0.5
    assert "Device: cpu" in seen["log"] and "a stray line" in seen["log"] and "UserWarning: something" in seen["log"]
    assert seen["done"][0]["outputs"] == {"warped": "/o/warped.nii.gz"}
    assert result.success and result.outputs == {"warped": "/o/warped.nii.gz"} and result.report == "/o/report.json"
    assert seen["finished"] == [result] and not runner.running


def test_exit_2_is_an_input_error_with_the_engines_sentence():
    message = "The fixed image file 'f.nrrd' is 2D; pass a single 3D volume."
    _, result, seen = run_fake(FakeProcess([ev(event="error", message=message)], [f"error: {message}"], 2))
    assert seen["error"] == [message] and not result.success
    with pytest.raises(InputError) as info:
        result.raise_for_status()
    assert str(info.value) == message


def test_exit_2_without_event_uses_the_last_stderr_line():
    _, result, _ = run_fake(FakeProcess([], ["", "tttmedical: error: The moving image is empty; check it."], 2))
    with pytest.raises(InputError, match=r"^The moving image is empty; check it\.$"):
        result.raise_for_status()


def test_other_failures_are_engine_errors():
    _, result, _ = run_fake(FakeProcess([ev(event="progress", fraction=0.1, stage="x")],
                                        ["Traceback (most recent call last):", "RuntimeError: boom"], 1))
    with pytest.raises(EngineError, match=r"exit status 1: RuntimeError: boom"):
        result.raise_for_status()
    _, result, _ = run_fake(FakeProcess([], [], 0))  # exit 0 but no "done" event
    with pytest.raises(EngineError, match=r"without reporting its outputs"):
        result.raise_for_status()


def test_command_and_environment(monkeypatch):
    monkeypatch.setattr(runner_lib.shutil, "which", lambda name: None)
    runner = EngineRunner(["register", "a", "b"], env={"PYTHONPATH": "/elsewhere"})
    assert runner.command == [sys.executable, "-c", runner_lib.BOOTSTRAP, str(MODULE_DIR), "register", "a", "b"]
    assert runner.engine_args == ["register", "a", "b"]
    assert runner.env["PYTHONPATH"].split(os.pathsep) == [str(MODULE_DIR), "/elsewhere"]
    assert runner.env["PYTHONUNBUFFERED"] == "1"
    monkeypatch.setattr(runner_lib.shutil, "which", lambda name: "/opt/Slicer/bin/PythonSlicer" if name == "PythonSlicer" else None)
    assert EngineRunner(["x"]).command[:2] == ["/opt/Slicer/bin/PythonSlicer", "-c"]


def _shadowing_launcher(tmp_path) -> str:
    """An interpreter that behaves like the PythonSlicer launcher: it puts its own paths (here a folder
    holding a different ``tttmedical``, as if installed in Slicer's site-packages) before PYTHONPATH."""
    shadow = tmp_path / "site-packages" / "tttmedical"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text("import sys; print('SHADOWED ENGINE'); sys.exit(3)\n")
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={shadow.parent}:$PYTHONPATH exec {sys.executable} \"$@\"\n")
    launcher.chmod(0o755)
    return str(launcher)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in launcher is a POSIX shell script")
def test_the_bundled_engine_runs_even_when_another_tttmedical_comes_first(tmp_path):
    launcher = _shadowing_launcher(tmp_path)
    env = runner_lib.engine_environment()
    plain = subprocess.run([launcher, "-m", "tttmedical", "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 3 and "SHADOWED ENGINE" in plain.stdout  # what "-m tttmedical" used to run
    log = []
    result = EngineRunner(["--version"], python=launcher, on_log=log.append).start().wait(timeout=120)
    assert result.returncode == 0, log
    from tttmedical import __version__

    assert log == [f"tttmedical {__version__}"]


def test_cancel_uses_the_injected_tree_killer():
    killed = []

    class Running(FakeProcess):
        def poll(self):
            return None if not killed else -9

    process = Running([], [], -9)
    runner = EngineRunner(["x"], process_factory=lambda c, e, w=None: process, kill_tree=killed.append)
    runner.start()
    assert runner.poll() is True
    runner.cancel()
    result = runner.poll_until_finished()
    assert killed == [process] and result.cancelled
    with pytest.raises(CancelledError):
        result.raise_for_status()


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as dead: a container's init may not reap them)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks /proc for the killed processes")
@pytest.mark.parametrize("behaviour", ["slow", "stubborn"])
def test_cancel_kills_the_whole_process_tree(tmp_path, monkeypatch, fake_engine_factory, behaviour):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("FAKE_ENGINE_PIDFILE", str(pidfile))
    progress = []
    runner = EngineRunner(["register", "f", "m", "-o", str(tmp_path)], process_factory=fake_engine_factory(behaviour),
                          on_progress=progress.append)
    runner.start()
    deadline = time.monotonic() + 20
    while not (progress and pidfile.exists()) and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    engine_pid, grandchild_pid = map(int, pidfile.read_text().split())
    assert alive(engine_pid) and alive(grandchild_pid)
    t0 = time.monotonic()
    runner.cancel()
    result = runner.poll_until_finished()
    assert result.cancelled and not result.success
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 5
    while (alive(engine_pid) or alive(grandchild_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(engine_pid) and not alive(grandchild_pid)


def test_a_pipe_held_open_after_exit_does_not_hang_the_run(monkeypatch):
    monkeypatch.setattr(runner_lib, "PIPE_GRACE_S", 0.3)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, (ev(event="done", outputs={}, report=None) + "\n").encode())
    process = FakeProcess([], [], 0)
    process.stdout = os.fdopen(read_fd, "r")  # the write end stays open, as if a grandchild held it
    try:
        t0 = time.monotonic()
        result = EngineRunner(["x"], process_factory=lambda c, e, w=None: process).start().wait(timeout=10)
        assert result.success and 0.25 < time.monotonic() - t0 < 5
    finally:
        os.close(write_fd)
