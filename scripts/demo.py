"""`make demo`: write the sample data, run the main job of every module on it, leave results a person can look at.

Each module has its own part, ``scripts/demo_<task>.py`` with ``SAMPLES`` (the sample data it
reads) and ``run(out, data, device) -> (markdown, rows)``; its outputs go under ``OUT/<task>/``.
``OUT/summary.md`` and ``OUT/summary.json`` gather every part.  Everything runs offline on the CPU
(or CUDA).
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch

from tttmedical.core.threads import auto_threads
from tttmedical.data.samples import write_sample

PARTS = ("registration", "interpolation", "recon", "pictures")
"""The modules' demo parts, in the order they run."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo-output")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    t0 = time.perf_counter()
    sections, everything = [], {}
    for name in args.only or PARTS:
        part = importlib.import_module(f"demo_{name}")
        for sample in part.SAMPLES:
            target = data / sample
            if not (target / "sample.json").exists():
                print(f"== writing sample data '{sample}' -> {target}")
                write_sample(sample, target)
        torch.set_num_threads(auto_threads())   # the command line's policy: the cores idle now (core.threads)
        started = time.perf_counter()
        markdown, rows = part.run(out, data, args.device)
        sections.append(markdown + f"\n{name}: {time.perf_counter() - started:.0f} s.\n")
        everything[name] = rows
    summary = "\n".join(sections) + f"\nTotal demo time {time.perf_counter() - t0:.0f} s.\n"
    (out / "summary.md").write_text(summary)
    (out / "summary.json").write_text(json.dumps(everything, indent=2))
    print("\n" + summary)
    print(f"Figures: {', '.join(str(p) for p in sorted(out.rglob('figure*.png')))}")


if __name__ == "__main__":
    main()
