"""Run the ``tttmedical`` engine in a separate process and follow its JSON progress lines.

Pure Python (no ``slicer``, no ``qt``), so it runs in Slicer, in PythonSlicer and in tests.

* The command is ``[python, "-c", BOOTSTRAP, <engine folder>, *args]`` where ``python`` is
  Slicer's ``PythonSlicer`` when running inside Slicer (it shares Slicer's site-packages, where the
  PyTorch extension installs torch), else ``sys.executable``.  The bootstrap puts the folder
  holding the bundled ``tttmedical`` package at ``sys.path[0]`` and runs it as ``python -m
  tttmedical`` would.  ``PYTHONPATH`` alone is not enough: the PythonSlicer launcher puts its own
  paths (site-packages included) before ``PYTHONPATH``, so a ``tttmedical`` installed there would
  shadow the extension's engine.  :func:`engine_arguments` recovers ``args`` from a command.
* Two reader threads put stdout/stderr lines on a queue; :meth:`EngineRunner.poll` (called from the
  GUI thread by a timer, or in a loop by :meth:`EngineRunner.wait`) drains the queue and calls the
  callbacks, so callbacks never run on a reader thread.
* stdout lines are the engine's events (:mod:`tttmedical.core.progress`):
  ``progress`` (``fraction`` in [0, 1], ``stage``, optional ``message``/``loss``), ``log``
  (``message``), ``done`` (``outputs``, ``report``), ``error`` (``message``).  Non-JSON stdout and
  all stderr lines are passed to the log callback.
* Exit status: 0 success, 2 bad input (:class:`~tttmedical.core.errors.InputError`, message from the
  ``error`` event or the last stderr line), anything else :class:`EngineError`.
* :meth:`EngineRunner.cancel` kills the whole process tree: the child is started in its own session
  (POSIX, then ``os.killpg``) or process group (Windows, then ``taskkill /T /F``).
* The process factory and the tree killer are injectable so tests can drive the runner.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tttmedical.core.errors import CancelledError, InputError

ENGINE_MODULE = "tttmedical"
_suppress = contextlib.suppress
PIPE_GRACE_S = 2.0  # how long to keep reading output after the engine process has exited
_CREATE_NO_WINDOW = 0x08000000


class EngineError(RuntimeError):
    """The engine process failed for a reason other than bad input (exit status 1, crash, kill)."""


@dataclasses.dataclass
class RunResult:
    """What a finished engine run left behind."""

    returncode: int | None = None
    cancelled: bool = False
    outputs: dict = dataclasses.field(default_factory=dict)
    report: str | None = None
    error: str | None = None
    stderr_tail: list = dataclasses.field(default_factory=list)
    done: bool = False

    @property
    def success(self) -> bool:
        return self.returncode == 0 and not self.cancelled and self.done

    def message(self) -> str:
        """One line describing a failure (empty on success)."""
        if self.success:
            return ""
        if self.cancelled:
            return "The run was cancelled."
        if self.error:
            return self.error
        if self.returncode == 0 and not self.done:
            return "The engine exited without reporting its outputs."
        tail = [line.strip() for line in self.stderr_tail if line.strip()]
        detail = tail[-1] if tail else "no message"
        if self.returncode == 2:  # bad input: the engine's own sentence ("tttmedical: error: <sentence>" on stderr)
            return re.sub(r"^(tttmedical: )?error: ", "", detail)
        return f"The engine failed with exit status {self.returncode}: {detail}"

    def raise_for_status(self) -> None:
        """Raise :class:`CancelledError`, :class:`InputError` (exit 2) or :class:`EngineError` unless successful."""
        if self.success:
            return
        if self.cancelled:
            raise CancelledError(self.message())
        if self.returncode == 2:
            raise InputError(self.message())
        raise EngineError(self.message())


# ---------------------------------------------------------------------------------------- locating
def python_executable() -> str:
    """Slicer's ``PythonSlicer`` inside Slicer, else the current interpreter."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    try:
        import slicer

        in_slicer_app = hasattr(slicer, "app")
    except ImportError:
        in_slicer_app = False
    if in_slicer_app:
        candidate = Path(sys.executable).with_name("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def engine_package_parent() -> str:
    """Folder that contains the ``tttmedical`` package (the extension's module folder)."""
    sibling = Path(__file__).resolve().parents[1]
    if (sibling / ENGINE_MODULE / "__init__.py").is_file():
        return str(sibling)
    import importlib.util

    spec = importlib.util.find_spec(ENGINE_MODULE)
    if spec is None or spec.origin is None:
        raise EngineError("The tttmedical engine package cannot be found; reinstall the TTTMedical extension.")
    return str(Path(spec.origin).resolve().parents[1])


BOOTSTRAP = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    f"runpy.run_module({ENGINE_MODULE!r}, run_name='__main__', alter_sys=True)"
)
"""``python -c BOOTSTRAP <folder> ARGS``: ``python -m tttmedical ARGS`` with ``<folder>`` first on sys.path."""


def engine_command(args: list[str], python: str | None = None) -> list[str]:
    """Command line running the bundled ``tttmedical *args`` with ``python``."""
    return [python or python_executable(), "-c", BOOTSTRAP, engine_package_parent(), *[str(a) for a in args]]


def engine_arguments(command: list[str]) -> list[str]:
    """The ``tttmedical`` arguments of a command made by :func:`engine_command`."""
    return list(command[4:])


def engine_environment(base: dict | None = None) -> dict:
    """Environment for the child: engine folder first on ``PYTHONPATH``, unbuffered UTF-8 output."""
    env = dict(os.environ if base is None else base)
    parts = [engine_package_parent()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# ---------------------------------------------------------------------------------------- processes
def default_process_factory(command: list[str], env: dict, cwd: str | None = None) -> subprocess.Popen:
    """Start ``command`` in its own session/process group with text pipes (no console window on Windows)."""
    kwargs: dict = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        encoding="utf-8", errors="replace", bufsize=1, env=env, cwd=cwd)
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | _CREATE_NO_WINDOW
    else:
        kwargs["start_new_session"] = True
    return subprocess.Popen(command, **kwargs)


def kill_process_tree(process, timeout: float = 5.0) -> None:
    """Kill ``process`` and every process it started; returns once the process has exited."""
    if process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True,
                       creationflags=_CREATE_NO_WINDOW, check=False)
    else:
        try:
            group = os.getpgid(process.pid)
        except ProcessLookupError:
            group = None
        # Only signal a group the child leads (started with start_new_session); never our own group.
        if group is not None and group == process.pid and group != os.getpgid(0):
            with _suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            with _suppress(subprocess.TimeoutExpired):
                process.wait(timeout=min(2.0, timeout))
            # Whatever is left in the group: grandchildren, or a leader that ignored SIGTERM.
            with _suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        else:
            process.kill()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------- runner
class EngineRunner:
    """One engine run: ``start()``, then ``poll()`` until it returns False (or ``wait()``).

    Callbacks (all called from the thread that calls :meth:`poll`):

    * ``on_progress(event)`` with the ``progress`` event dict,
    * ``on_log(text)`` for ``log`` events, stray stdout lines and stderr lines,
    * ``on_done(event)`` / ``on_error(message)`` for the ``done`` / ``error`` events,
    * ``on_finished(result)`` once, with the :class:`RunResult`, after the process has exited.
    """

    def __init__(self, args: list[str], *, on_progress: Callable | None = None, on_log: Callable | None = None,
                 on_done: Callable | None = None, on_error: Callable | None = None,
                 on_finished: Callable | None = None, process_factory: Callable | None = None,
                 kill_tree: Callable | None = None, python: str | None = None, env: dict | None = None,
                 cwd: str | None = None):
        self.command = engine_command(list(args), python)
        self.engine_args = engine_arguments(self.command)
        self.env = engine_environment(env)
        self.cwd = cwd
        self.on_progress, self.on_log, self.on_done, self.on_error, self.on_finished = (
            on_progress, on_log, on_done, on_error, on_finished)
        self._factory = process_factory or default_process_factory
        self._kill_tree = kill_tree or kill_process_tree
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.process = None
        self.result: RunResult | None = None
        self._cancelled = False
        self._done_event: dict | None = None
        self._error_message: str | None = None
        self._stderr_tail: collections.deque = collections.deque(maxlen=50)
        self._exited_at: float | None = None

    # -------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self.process is not None and self.result is None

    def start(self) -> "EngineRunner":
        if self.process is not None:
            raise RuntimeError("This runner was already started; create a new one for another run.")
        self.process = self._factory(self.command, self.env, self.cwd)
        for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            thread = threading.Thread(target=self._read, args=(name, stream), name=f"tttmedical-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def cancel(self) -> None:
        """Kill the process tree; :meth:`poll` then finishes with ``result.cancelled``."""
        if self.process is None or self.result is not None:
            return
        self._cancelled = True
        self._kill_tree(self.process)

    def poll(self) -> bool:
        """Dispatch pending events; returns True while the run is still going."""
        if self.process is None:
            return False
        if self.result is not None:
            return False
        self._drain()
        if self.process.poll() is None:
            return True
        if any(t.is_alive() for t in self._threads):
            # The engine has exited; its pipes close once the readers reach the end.  A leftover
            # grandchild could hold a pipe open forever, so stop waiting after a grace period.
            if self._exited_at is None:
                self._exited_at = time.monotonic()
            if time.monotonic() - self._exited_at < PIPE_GRACE_S:
                return True
        for thread in self._threads:
            thread.join(timeout=0.1)
        self._drain()
        self.result = RunResult(
            returncode=self.process.poll(),
            cancelled=self._cancelled,
            outputs=dict((self._done_event or {}).get("outputs") or {}),
            report=(self._done_event or {}).get("report"),
            error=self._error_message,
            stderr_tail=list(self._stderr_tail),
            done=self._done_event is not None,
        )
        for thread, stream in zip(self._threads, (self.process.stdout, self.process.stderr)):
            close = getattr(stream, "close", None)
            if close is not None and not thread.is_alive():
                close()
        if self.on_finished:
            self.on_finished(self.result)
        return False

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> RunResult:
        """Block until the run finishes (polling); cancels and raises TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                self.poll_until_finished()
                raise TimeoutError(f"The engine did not finish within {timeout:g} s and was cancelled.")
            time.sleep(interval)
        return self.result

    def poll_until_finished(self, interval: float = 0.02) -> RunResult:
        while self.poll():
            time.sleep(interval)
        return self.result

    def run_blocking(self, timeout: float | None = None) -> RunResult:
        """Start (if needed), wait, and raise unless the run succeeded (for batch scripts)."""
        if self.process is None:
            self.start()
        result = self.wait(timeout)
        result.raise_for_status()
        return result

    # -------------------------------------------------------------- internals
    def _read(self, name: str, stream) -> None:
        try:
            for line in stream:
                self._queue.put((name, line.rstrip("\r\n")))
        except (ValueError, OSError):  # stream closed under us (process killed)
            pass

    def _drain(self) -> None:
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return
            if name == "stderr":
                self._stderr_tail.append(line)
                if line.strip():
                    self._emit_log(line)
            else:
                self._handle_stdout(line)

    def _handle_stdout(self, line: str) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self._emit_log(line)
            return
        kind = event["event"]
        if kind == "progress":
            if self.on_progress:
                self.on_progress(event)
        elif kind == "log":
            self._emit_log(str(event.get("message", "")))
        elif kind == "done":
            self._done_event = event
            if self.on_done:
                self.on_done(event)
        elif kind == "error":
            self._error_message = str(event.get("message", "")) or None
            if self.on_error:
                self.on_error(self._error_message or "")
        else:
            self._emit_log(line)

    def _emit_log(self, text: str) -> None:
        if self.on_log:
            self.on_log(text)
