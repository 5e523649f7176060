"""AdaptRecon part of `make demo`: reconstruct the ``recon-brain`` sample.

``OUT/recon/brain/`` compares zero-filled, pretrained, SSDU and D2SA (SSDU loss, stages 1 and 2) on
brain slices simulated at 4x (the backbone was trained on phantom body slices at 2x: an anatomy and
acceleration shift); ``OUT/recon/kspace/`` compares pretrained, SSDU, DIP-TTT and the D2SA stages on
the fastMRI-style k-space file (phantom T2-weighted slices, retrospectively undersampled 4x, coil
maps estimated from the calibration region: where the unanchored stage 1 used to wipe the image,
24.2 dB against 31.2 for the pretrained U-Net).  Each folder holds recon*.nii.gz, zero_filled.nii.gz,
reference.nii.gz, report.json and figure.png.
"""
from __future__ import annotations

from pathlib import Path

from demo_table import markdown_section
from tttmedical.core.progress import Progress
from tttmedical.recon.pipeline import ReconOptions, read_input, reconstruct

SAMPLES = ("recon-brain",)
RUNS = {
    "brain": ("brain.nii.gz", dict(simulate=True, compare="pretrained,ssdu,ssdu+inr+sst", acceleration=4.0, slices="1:3")),
    "kspace": ("kspace.h5", dict(compare="pretrained,ssdu,dip,ssdu+inr,ssdu+inr+sst", acceleration=4.0)),
}


def run(out: Path, data: Path, device: str) -> tuple[str, list[dict]]:
    """Reconstruct both inputs of the sample; return a Markdown section and its rows."""
    rows = []
    for name, (file, kwargs) in RUNS.items():
        print(f"== recon {name}: {kwargs}")
        options = ReconOptions(device=device, figure=True, **kwargs)
        report = reconstruct(read_input(data / "recon-brain" / file, options), out / "recon" / name, options, Progress("bar"))
        runs = report.get("compare") or [{"label": report["method_label"], "metrics": report["metrics"],
                                          "seconds_per_slice": report["timings"]["seconds_per_slice"]}]
        for r in runs:
            rows.append(dict(input=name, method=r["label"], psnr_zero=report["baseline_zero"]["psnr"],
                             psnr_pretrained=report["baseline_pretrained"]["psnr"], psnr=r["metrics"]["psnr"],
                             ssim=r["metrics"]["ssim"], seconds_per_slice=r["seconds_per_slice"],
                             total_s=report["timings"]["total_s"], device=report["device"]))
    return markdown_section("AdaptRecon", [
        ("input", "input", ""), ("method", "method", ""), ("PSNR zero-filled", "psnr_zero", ".2f"),
        ("PSNR pretrained", "psnr_pretrained", ".2f"), ("PSNR", "psnr", ".2f"), ("SSIM", "ssim", ".3f"),
        ("s / slice", "seconds_per_slice", ".1f"), ("total (s)", "total_s", ".1f")], rows), rows
