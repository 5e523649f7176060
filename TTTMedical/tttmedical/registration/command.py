"""``tttmedical register`` and ``tttmedical train register``: parsers and runs.

Options come from :mod:`tttmedical.registration.options` (declared once); every check happens
before any heavy work: options, output folder, input files (then the pipeline checks overlap,
initial transform and weights before optimising).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..core.commands import add_options_parser, print_run_summary, run_training, run_values
from ..core.options import training_options
from ..core.progress import Progress
from .options import REGISTER

NAME = "register"
TRAIN = training_options(4500, "training steps (default 4500, as the bundled weights)")


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_options_parser(
        commands, NAME, REGISTER, help="refine a deformable registration of MOVING onto FIXED (Reg-TTR, SSMSR or the predictor)",
        description="Register MOVING onto FIXED. The result is a displacement field in LPS millimetres on the "
                    "fixed grid (ITK convention: fixed point p maps to p + d(p) in the moving image), usable by "
                    "ITK, SimpleITK, ANTs and Slicer as a displacement-field transform.",
        epilog="Outputs in OUTDIR: displacement.nii.gz, warped.nii.gz, jacobian.nii.gz, warped_labels.nii.gz (with "
               "labels), report.json (metrics before/after, timings, loss curve), figure.png (with --figure). "
               "A previous result in OUTDIR is replaced as a whole; a folder holding other files is refused.")


def run(args: argparse.Namespace, progress: Progress) -> int:
    from .pipeline import RegisterOptions, read_inputs, register

    values = run_values(REGISTER, args)
    inputs = read_inputs(values["fixed"], values["moving"], values["fixed_labels"], values["moving_labels"])
    fields = {f.name for f in dataclasses.fields(RegisterOptions)}
    options = RegisterOptions(**{k: v for k, v in values.items() if k in fields})
    report = register(inputs, values["output"], options, progress)
    m = report["metrics"]
    line = f"NCC {m['initial_ncc']:.3f} -> {m['ncc']:.3f}, folding {m['folding_percent']:.3f}%"
    if "dice" in m:
        line += f", Dice {m['initial_dice']:.3f} -> {m['dice']:.3f}, HD95 {m['initial_hd95_mm']:.2f} -> {m['hd95_mm']:.2f} mm"
    print_run_summary(progress, line + "; ", report, values["output"])
    return 0


def add_train_parser(tasks: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_options_parser(tasks, NAME, TRAIN, help="train the registration predictor (VoxelMorph-style U-Net)")


def run_train(args: argparse.Namespace, progress: Progress) -> int:
    from .training import train_predictor

    return run_training(TRAIN, args, progress, lambda values: train_predictor(
        Path(values["output"]), steps=values["steps"], seed=values["seed"], device=values["device"], progress=progress))
