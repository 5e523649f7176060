"""``tttmedical view OUTDIR``: serve a result folder (register / interpolate / recon ``-o`` folder) in
Slicer's own slice views as a web page on this machine, for results computed where no desktop is.

Needs the optional ``view`` extra (``pip install tttmedical[view]``: trame, trame-vuetify) and
``slicer-core``; runs from a checkout of the extension (the scene layer ``TTTMedicalLib`` sits next
to the engine package).  Open ``http://HOST:PORT/`` (through an SSH tunnel from a headless server).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..core.errors import InputError
from ..core.progress import Progress

NAME = "view"
MODULE_DIR = Path(__file__).resolve().parents[2]   # TTTMedical/: holds TTTMedicalLib and tttmedical


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(NAME, help="show a result folder in Slicer's views in a web browser (optional 'view' extra)",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the -o folder of a register, interpolate or recon run (holds report.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--size", type=int, default=360, help="pixels per slice view (default 360)")
    return parser


def _require(*modules: tuple[str, str]) -> None:
    """InputError naming the first missing ``(module, package)``."""
    for module, package in modules:
        if importlib.util.find_spec(module) is None:
            raise InputError(f"tttmedical view needs the package '{package}'; install the optional extra: "
                             f"pip install -e '.[view]'.")


def run(args: argparse.Namespace, progress: Progress) -> int:
    """Check the folder and the requirements, then serve until interrupted (exit 0)."""
    if not (MODULE_DIR / "TTTMedicalLib" / "rendering" / "viewer.py").is_file():
        raise InputError("tttmedical view needs the extension's scene layer (TTTMedicalLib), which this installation "
                         "lacks; run it from a checkout of TTTMedical (pip install -e '.[view]').")
    _require(("slicer", "slicer-core"))
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    from TTTMedicalLib.rendering.result_scene import read_report

    read_report(args.folder)   # InputError (exit 2) before loading anything
    if not 0 < args.port < 65536 or args.size < 64:
        raise InputError("Pass a port between 1 and 65535 and a view size of at least 64 pixels.")
    _require(("trame", "trame"), ("trame_vuetify", "trame-vuetify"))
    from TTTMedicalLib.rendering.viewer import serve

    serve(Path(args.folder), args.host, args.port, (args.size, args.size), log=progress.log)
    return 0
