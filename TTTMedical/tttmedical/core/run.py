"""The run context every engine command shares: output folder, seed, device, stages, timers, report.

A command's life with :class:`RunContext`::

    ctx = RunContext("register", outdir, progress, seed=0, device="auto",
                     stages={"prepare": 1, "refine": 12, "write": 1})   # checks outdir first
    ... read and check inputs (InputError -> exit 2, nothing written) ...
    result = ctx.on_device(lambda dev: heavy_work(dev))   # CUDA OOM -> CPU, timings of the
                                                          # failed attempt forgotten
    report = ctx.report(method=..., metrics=...)          # device, seed, versions, timings
    ctx.finish(write_files, report)                       # whole output set, then a 'done' event

Progress never goes backwards (:class:`~tttmedical.core.progress.Stages`); messages go through
the progress channel, never to stdout (which carries JSON events with ``--progress json``).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch

from .device import device_description, run_with_fallback, select_device
from .outputs import check_output_dir, write_output_set
from .progress import Progress, Stages
from .report import seed_everything, write_report

T = TypeVar("T")
REPORT_NAME = "report.json"


class RunContext:
    def __init__(self, command: str, outdir: str | Path | None, progress: Progress | None = None, *,
                 seed: int = 0, device: str = "auto", stages: dict[str, float] | None = None):
        self.command = command
        self.outdir = check_output_dir(outdir) if outdir is not None else None
        self.progress = progress or Progress("none")
        self.seed = int(seed)
        self.device = select_device(device)
        self.used_device = self.device
        self.stages = Stages(self.progress, stages or {"run": 1.0})
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()
        seed_everything(self.seed)

    # ------------------------------------------------------------------ progress and timing
    def stage(self, name: str, fraction: float, text: str | None = None, **extra) -> None:
        """Report ``fraction`` (0-1) of stage ``name``; the overall bar never moves backwards."""
        self.stages.update(name, fraction, text, **extra)

    def log(self, message: str) -> None:
        self.progress.log(message)

    def stage_callback(self, name: str) -> Callable[[float, str, float], None]:
        """``callback(fraction, text, loss)`` for the optimisation loops, bound to stage ``name``."""
        return lambda fraction, text, loss: self.stage(name, fraction, text, loss=loss)

    @contextlib.contextmanager
    def timer(self, name: str):
        """Add the block's wall time to ``timings[name + "_s"]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{name}_s"] = self.timings.get(f"{name}_s", 0.0) + time.perf_counter() - t0

    # ------------------------------------------------------------------ device
    def on_device(self, fn: Callable[[torch.device], T]) -> T:
        """Run ``fn(device)``; on CUDA out-of-memory rerun it on the CPU with the same seed.

        The failed attempt's timings are forgotten, so timings describe the run that produced the
        result; the message goes through the progress channel.
        """
        before = dict(self.timings)

        def reset() -> None:
            self.timings = dict(before)
            seed_everything(self.seed)

        result, self.used_device = run_with_fallback(fn, self.device, self.log, reset)
        return result

    # ------------------------------------------------------------------ report and outputs
    def report(self, **fields) -> dict:
        """The report: ``command``, ``device``, ``seed``, ``timings`` (``total_s`` so far) and ``fields``."""
        timings = {**self.timings, "total_s": time.perf_counter() - self._t0}
        return {"command": self.command, **fields, "device": device_description(self.used_device),
                "seed": self.seed, "timings": timings}

    def finish(self, write: Callable[[Path, Path], dict[str, str]], report: dict) -> dict[str, Path]:
        """Write the whole output set and ``report.json``; emit the ``done`` event.

        ``write(tmp, outdir)`` writes the result files into ``tmp`` and returns ``{key: file name}``;
        ``report["outputs"]`` is set to their final paths before the report is written.
        """
        if self.outdir is None:
            raise RuntimeError(f"{self.command}: no output folder was given")

        def write_all(tmp: Path, outdir: Path) -> dict[str, str]:
            names = dict(write(tmp, outdir))
            names["report"] = REPORT_NAME
            report["outputs"] = {k: str(outdir / v) for k, v in names.items()}
            report["timings"]["total_s"] = time.perf_counter() - self._t0
            write_report(tmp / REPORT_NAME, report)
            return names

        outputs = write_output_set(self.outdir, write_all)
        self.stages.complete()
        self.progress.done(outputs, str(outputs["report"]))
        return outputs
