"""A stand-in for ``tttmedical register`` (no torch) for self-tests and scene tests.

Speaks the engine's contract (JSON progress lines on stdout, outputs in ``-o OUTDIR``, exit status
0/1/2) and parses the real option declarations (``tttmedical.registration.options.REGISTER``), so
a flag the scene layer passes that the engine does not know fails here too.  Run as a script;
:func:`process_factory` gives the runner a process factory that starts it instead of the engine.
``FAKE_ENGINE_BEHAVIOUR`` selects what it does:

* ``success``     writes a constant displacement ``FAKE_SHIFT_LPS`` (mm), the moving image resampled
                  through it, a Jacobian of ones, warped labels (if given) and ``report.json``
* ``slow``        reports progress, starts a grandchild process (its pid goes to
                  ``FAKE_ENGINE_PIDFILE``) and then waits forever (for cancellation tests)
* ``stubborn``    like ``slow`` but ignores SIGTERM (the runner must escalate to SIGKILL)
* ``input_error`` reports a bad input (``error`` event + stderr sentence) and exits 2
* ``crash``       prints a traceback to stderr and exits 1

Imports only the standard library at module level (numpy and SimpleITK when it runs).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FAKE_SHIFT_LPS = (1.5, -2.0, 0.75)
BEHAVIOURS = ("success", "slow", "stubborn", "input_error", "crash")


def process_factory(behaviour: str = "success"):
    """A runner process factory that runs this script (same interpreter and arguments) instead of the engine."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown fake engine behaviour {behaviour!r}")

    def start(command, env, cwd=None):
        from .runner import default_process_factory, engine_arguments

        env = dict(env, FAKE_ENGINE_BEHAVIOUR=behaviour)
        return default_process_factory([command[0], str(Path(__file__).resolve()), *engine_arguments(command)], env, cwd)

    return start


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse(argv):
    from tttmedical.registration.options import REGISTER

    parser = argparse.ArgumentParser(prog="tttmedical")
    parser.add_argument("command", choices=["register"])
    REGISTER.add_arguments(parser)
    return parser.parse_args(argv)


def wait_forever(ignore_term: bool) -> None:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pidfile = os.environ.get("FAKE_ENGINE_PIDFILE")
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
    emit(event="progress", fraction=0.1, stage="level 1/3", loss=0.9)
    emit(event="log", message="waiting")
    while True:
        time.sleep(0.1)


def success(args) -> None:
    import numpy as np
    import SimpleITK as sitk

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    emit(event="log", message=f"Device: cpu (fake); init={'yes' if args.init else 'no'}")
    fixed = sitk.ReadImage(args.fixed, sitk.sitkFloat32)
    moving = sitk.ReadImage(args.moving, sitk.sitkFloat32)
    size = fixed.GetSize()
    field_array = np.broadcast_to(np.array(FAKE_SHIFT_LPS), (size[2], size[1], size[0], 3)).astype(np.float64).copy()
    field = sitk.GetImageFromArray(field_array, isVector=True)
    field.CopyInformation(fixed)
    transform = sitk.DisplacementFieldTransform(sitk.Image(field))
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0)
    jacobian = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) + 1.0
    jacobian.CopyInformation(fixed)
    for i in range(5):
        emit(event="progress", fraction=(i + 1) / 5, stage=f"level 1/1 iteration {i + 1}", loss=1.0 / (i + 1))
    outputs = {}
    for key, image in (("displacement", field), ("warped", warped), ("jacobian", jacobian)):
        path = out / f"{key}.nii.gz"
        sitk.WriteImage(image, str(path))
        outputs[key] = str(path)
    metrics = {"initial_ncc": 0.5, "ncc": 0.75, "initial_ssim": 0.4, "ssim": 0.6, "sdlogj": 0.0, "initial_sdlogj": 0.0,
               "folding_percent": 0.0, "initial_folding_percent": 0.0}
    if args.moving_labels:
        labels = sitk.ReadImage(args.moving_labels)
        warped_labels = sitk.Resample(labels, fixed, transform, sitk.sitkNearestNeighbor, 0)
        path = out / "warped_labels.nii.gz"
        sitk.WriteImage(warped_labels, str(path))
        outputs["warped_labels"] = str(path)
        metrics.update({"initial_dice": {"1": 0.6, "2": 0.5}, "dice": {"1": 0.8, "2": 0.7},
                        "initial_hd95_mm": 4.0, "hd95_mm": 2.0})
    report = {
        "metrics": metrics,
        "timings": {"total_s": 0.1, "init_s": 0.0, "refine_s": 0.1},
        "loss_curve": [{"iteration": i, "level": 0, "loss": 1.0 / (i + 1)} for i in range(5)],
        "device": "cpu (fake)",
        "parameters": vars(args),
    }
    (out / "report.json").write_text(json.dumps(report))
    emit(event="done", outputs=outputs, report=str(out / "report.json"))


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bundled engine's option declarations
    args = parse(sys.argv[1:])
    behaviour = os.environ.get("FAKE_ENGINE_BEHAVIOUR", "success")
    if behaviour in ("slow", "stubborn"):
        wait_forever(ignore_term=behaviour == "stubborn")
    if behaviour == "input_error":
        message = f"The fixed image file '{args.fixed}' is 2D; pass a single 3D volume."
        emit(event="error", message=message)
        sys.stderr.write(f"error: {message}\n")
        return 2
    if behaviour == "crash":
        sys.stderr.write("Traceback (most recent call last):\n  File \"engine.py\", line 1\nRuntimeError: boom\n")
        return 1
    success(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
