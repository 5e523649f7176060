"""Progress reporting shared by every engine command.

With ``--progress json`` each event is one JSON object on its own stdout line (this is what the
Slicer scene layer parses); nothing else is written to stdout in that mode.  Events:

* ``{"event": "progress", "fraction": 0.42, "stage": "Reg-TTR level 2/3", "message": "...", "loss": 0.12}``
  (``fraction`` in [0, 1] over the whole run; ``loss`` optional)
* ``{"event": "log", "message": "..."}``
* ``{"event": "done", "outputs": {"displacement": "/abs/path", ...}, "report": "/abs/path/report.json"}``
* ``{"event": "error", "message": "one sentence"}``

Otherwise (``bar``) a single-line text bar goes to stderr; ``none`` is silent.
A :class:`Progress` can also forward events to a Python callback (in-process use, tests).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable


class Progress:
    def __init__(self, mode: str = "bar", callback: Callable[[dict], None] | None = None, stream=None):
        if mode not in ("json", "bar", "none"):
            raise ValueError(f"progress mode must be json, bar or none, not {mode!r}")
        self.mode = mode
        self.callback = callback
        self.stream = stream
        self._last_bar = 0.0
        self._bar_open = False   # a bar line was drawn and not ended yet

    def emit(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)
        if self.mode == "json":
            out = self.stream or sys.stdout
            out.write(json.dumps(event, default=float) + "\n")
            out.flush()
        elif self.mode == "bar":
            self._bar(event)

    def update(self, fraction: float, stage: str = "", message: str = "", **extra) -> None:
        event = {"event": "progress", "fraction": round(min(max(float(fraction), 0.0), 1.0), 4), "stage": stage}
        if message:
            event["message"] = message
        event.update({k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in extra.items()})
        self.emit(event)

    def log(self, message: str) -> None:
        self.emit({"event": "log", "message": message})

    def done(self, outputs: dict, report: str | None = None) -> None:
        self.emit({"event": "done", "outputs": {k: str(v) for k, v in outputs.items()}, "report": report})

    def error(self, message: str) -> None:
        self.emit({"event": "error", "message": message})

    def _bar(self, event: dict) -> None:
        out = self.stream or sys.stderr
        kind = event["event"]
        if kind == "progress":
            now = time.monotonic()
            if now - self._last_bar < 0.2 and event["fraction"] < 1.0:
                return
            self._last_bar = now
            width = 30
            filled = int(round(event["fraction"] * width))
            loss = f" loss {event['loss']:.4f}" if "loss" in event else ""
            out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {event['fraction'] * 100:5.1f}% {event['stage']}{loss}   ")
            self._bar_open = event["fraction"] < 1.0
            if not self._bar_open:
                out.write("\n")
        elif kind in ("log", "error"):
            out.write(f"\n{'error: ' if kind == 'error' else ''}{event['message']}\n")
            self._bar_open = False
        out.flush()

    def end_line(self) -> None:
        """End a drawn progress bar's line, so that what is printed next stands on its own line."""
        if self._bar_open:
            (self.stream or sys.stderr).write("\n")
            self._bar_open = False


class Stages:
    """Split the [0, 1] progress range into weighted consecutive stages.

    The reported fraction never goes backwards: a stage re-run (e.g. on the CPU after CUDA ran out
    of memory) holds the bar where it was until the new attempt passes it.
    """

    def __init__(self, progress: Progress, weights: dict[str, float]):
        self.progress = progress
        self.fraction = 0.0
        total = float(sum(weights.values())) or 1.0
        self.spans = {}
        start = 0.0
        for name, w in weights.items():
            self.spans[name] = (start, start + w / total)
            start += w / total

    def update(self, name: str, local_fraction: float, stage: str | None = None, **extra) -> None:
        a, b = self.spans[name]
        self.fraction = max(self.fraction, a + (b - a) * min(max(local_fraction, 0.0), 1.0))
        self.progress.update(self.fraction, stage or name, **extra)

    def complete(self, stage: str = "Done") -> None:
        """Report the whole run as done (fraction 1)."""
        self.fraction = 1.0
        self.progress.update(1.0, stage)
