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


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto picks CUDA when present (default), else CPU; CUDA out-of-memory falls back to CPU")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--progress", default="bar", choices=["bar", "json", "none"],
                   help="bar: text bar on stderr; json: one JSON event per stdout line (for Slicer); none: quiet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tttmedical",
        description="Test-time training for medical images: refine a registration, (soon) interpolate 4D "
                    "sequences and reconstruct undersampled MRI, adapting the model to the scan at hand.",
        epilog="Run 'tttmedical COMMAND --help' for the options of a command.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tttmedical {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    reg = sub.add_parser(
        "register", help="refine a deformable registration of MOVING onto FIXED (Reg-TTR, SSMSR or the predictor)",
        description="Register MOVING onto FIXED. The result is a displacement field in LPS millimetres on the "
                    "fixed grid (ITK convention: fixed point p maps to p + d(p) in the moving image), usable by "
                    "ITK, SimpleITK, ANTs and Slicer as a displacement-field transform.",
        epilog="Outputs in OUTDIR: displacement.nii.gz, warped.nii.gz, jacobian.nii.gz, warped_labels.nii.gz (with "
               "labels), report.json (metrics before/after, timings, loss curve), figure.png (with --figure).")
    reg.add_argument("fixed", help="fixed image (NRRD, NIfTI, MHA, ...)")
    reg.add_argument("moving", help="moving image")
    reg.add_argument("-o", "--output", required=True, help="output folder (created; existing result files are replaced)")
    reg.add_argument("--method", default="regttr", choices=["regttr", "ssmsr", "predict"],
                     help="regttr: optimise the field itself (default); ssmsr: multi-scale test-time training of a "
                          "U-Net per scale; predict: the built-in predictor only")
    reg.add_argument("--init", default=None, metavar="FILE|predictor",
                     help="initial transform: an ITK/Slicer transform file (.tfm, .h5, .txt), a displacement-field "
                          "image, or 'predictor' for the built-in network (default: identity)")
    reg.add_argument("--fixed-labels", default=None, help="label map on the fixed grid (enables Dice and HD95)")
    reg.add_argument("--moving-labels", default=None, help="label map on the moving grid")
    reg.add_argument("--iterations", type=int, default=None,
                     help="Reg-TTR: max iterations at full resolution, each coarser pyramid level may use twice as "
                          "many (default 12 from identity, 10 when refining an initial field); SSMSR: max training "
                          "steps per scale (default 150)")
    reg.add_argument("--lr", type=float, default=None, help="learning rate (Reg-TTR: voxels per step; default 0.25, 0.1 when refining)")
    reg.add_argument("--smoothness", type=float, default=None, help="weight of the diffusion regulariser (default 1.0)")
    reg.add_argument("--levels", type=int, default=None, help="pyramid levels (default: automatic; 1 = full resolution only)")
    reg.add_argument("--modality", default="mri", choices=["mri", "ct", "none"],
                     help="intensity normalisation: mri = 0.5-99.5 percentiles, ct = soft-tissue window, none")
    reg.add_argument("--weights", default=None, help="predictor weights (.pt) instead of the bundled ones")
    reg.add_argument("--weights-sha256", default=None, help="expected sha256 of --weights (default: the one in its model card <name>.json beside it)")
    reg.add_argument("--figure", action="store_true", help="also write figure.png (slices before/after, Jacobian)")
    _add_common(reg)

    sd = sub.add_parser("sample-data", help="write bundled/offline sample data (phantoms, brain pairs) to files",
                        description="Write sample data generated offline from packaged sources.")
    sd.add_argument("name", nargs="?", help="sample name (omit with --list)")
    sd.add_argument("-o", "--output", help="output folder")
    sd.add_argument("--list", action="store_true", help="list the sample names and exit")
    sd.add_argument("--seed", type=int, default=0, help="random seed of synthetic deformations (default 0)")

    tr = sub.add_parser("train", help="train the small bundled models on the sample data")
    tr_sub = tr.add_subparsers(dest="task", metavar="TASK", required=True)
    trr = tr_sub.add_parser("register", help="train the registration predictor (VoxelMorph-style U-Net)")
    trr.add_argument("-o", "--output", required=True, help="folder for weights, model card and training report")
    trr.add_argument("--steps", type=int, default=4500, help="training steps (default 4500, as the bundled weights)")
    _add_common(trr)
    return parser


def _cmd_register(args, progress: Progress) -> int:
    from .registration.pipeline import RegisterOptions, read_inputs, register

    inputs = read_inputs(args.fixed, args.moving, args.fixed_labels, args.moving_labels)
    options = RegisterOptions(method=args.method, init=args.init, iterations=args.iterations, lr=args.lr,
                              smoothness=args.smoothness, levels=args.levels, modality=args.modality,
                              device=args.device, seed=args.seed, weights=args.weights,
                              weights_sha256=args.weights_sha256, figure=args.figure)
    report = register(inputs, args.output, options, progress)
    if progress.mode != "json":
        m = report["metrics"]
        line = f"NCC {m['initial_ncc']:.3f} -> {m['ncc']:.3f}, folding {m['folding_percent']:.3f}%"
        if "dice" in m:
            line += f", Dice {m['initial_dice']:.3f} -> {m['dice']:.3f}, HD95 {m['initial_hd95_mm']:.2f} -> {m['hd95_mm']:.2f} mm"
        print(f"{line}; {report['timings']['total_s']:.1f} s on {report['device']}; results in {args.output}")
    return 0


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


def _cmd_train(args, progress: Progress) -> int:
    from .registration.predictor import train_predictor

    report = train_predictor(Path(args.output), steps=args.steps, seed=args.seed, device=args.device, progress=progress)
    if progress.mode != "json":
        print(f"weights: {report.get('weights')}  sha256: {report.get('sha256')}")
    return 0


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress(getattr(args, "progress", "bar"))
    signal.signal(signal.SIGTERM, _terminate)  # run cleanup (temporary folders) when cancelled
    handlers = {"register": _cmd_register, "sample-data": _cmd_sample_data, "train": _cmd_train}
    try:
        return handlers[args.command](args, progress)
    except InputError as exc:
        if progress.mode == "json":
            progress.error(str(exc))
        print(f"tttmedical: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tttmedical: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: keep the traceback for the bug report
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        if progress.mode == "json":
            progress.error(message)
        print(f"tttmedical: failed: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
