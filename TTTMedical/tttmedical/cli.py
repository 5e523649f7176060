"""The ``tttmedical`` command line: every engine feature a Slicer module uses, without Slicer.

Exit status: 0 success, 2 bad input (one sentence on stderr, and an ``error`` event with
``--progress json``), 1 unexpected failure, 130/143 interrupted.  Outputs appear only on success.
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

from .core.errors import InputError
from .core.progress import Progress


TASKS = ("registration", "interpolation", "recon", "view")
"""Task packages; each has a ``command`` module with ``NAME``, ``add_parser``/``run`` and, when it
trains a bundled model, ``add_train_parser``/``run_train``."""


def _task_commands():
    import importlib

    return [importlib.import_module(f".{task}.command", __package__) for task in TASKS]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser and ``{(command, task): run}`` for every sub-command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tttmedical",
        description="Test-time training for medical images: refine a registration, interpolate 4D sequences "
                    "and reconstruct undersampled MRI, adapting the model to the scan at hand; view results in "
                    "Slicer's views in a browser.",
        epilog="Run 'tttmedical COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"tttmedical {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict = {}
    tasks = _task_commands()
    for task in tasks:
        task.add_parser(sub)
        handlers[(task.NAME, None)] = task.run

    sd = sub.add_parser("sample-data", help="write bundled/offline sample data (phantoms, brain pairs) to files",
                        description="Write sample data generated offline from packaged sources.")
    sd.add_argument("name", nargs="?", help="sample name (omit with --list)")
    sd.add_argument("-o", "--output", help="output folder")
    sd.add_argument("--list", action="store_true", help="list the sample names and exit")
    sd.add_argument("--seed", type=int, default=0, help="random seed of synthetic deformations (default 0)")
    handlers[("sample-data", None)] = _cmd_sample_data

    tr = sub.add_parser("train", help="train the small bundled models on the sample data")
    tr_sub = tr.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in tasks:
        if hasattr(task, "add_train_parser"):
            task.add_train_parser(tr_sub)
            handlers[("train", task.NAME)] = task.run_train
    return parser, handlers


def _cmd_sample_data(args, progress: Progress) -> int:
    from .data.samples import SAMPLES, write_sample

    if args.list or not args.name:
        for name, text in SAMPLES.items():
            print(f"{name:14s} {text}")
        return 0
    if args.name not in SAMPLES:
        raise InputError(f"Unknown sample '{args.name}'; run 'tttmedical sample-data --list' to see the names.")
    if not args.output:
        raise InputError("sample-data needs an output folder; pass -o DIR.")
    paths = write_sample(args.name, Path(args.output), seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    progress = Progress(getattr(args, "progress", "bar"))
    signal.signal(signal.SIGTERM, _terminate)  # run cleanup (temporary folders) when cancelled
    if args.command != "sample-data":  # a first line at once: loading torch and the inputs takes seconds
        progress.update(0.0, "Loading the engine")
    if hasattr(args, "threads"):  # every command that runs torch has --threads (COMMON)
        import torch

        from .core.threads import auto_threads

        # without --threads: as many torch threads as there are idle cores now (core.threads)
        torch.set_num_threads(args.threads or auto_threads())
    try:
        return handlers[(args.command, getattr(args, "task", None))](args, progress)
    except InputError as exc:
        if progress.mode == "json":
            progress.error(str(exc))
        progress.end_line()
        print(f"tttmedical: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.end_line()
        print("tttmedical: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: keep the traceback for the bug report
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        if progress.mode == "json":
            progress.error(message)
        progress.end_line()
        print(f"tttmedical: failed: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
