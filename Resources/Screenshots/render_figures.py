"""Render the extension icon, the module icon and the documentation figure (no Slicer needed).

    python Resources/Screenshots/render_figures.py

Writes ``Resources/TTTMedical.png`` (128x128 extension icon), ``TTTMedical/Resources/Icons/
RefineRegistration.png`` (128x128 module icon) and ``Resources/Screenshots/RefineRegistration.png``:
a schematic of the module panel drawn from ``RefineRegistration.ui`` (labels and widget kinds as the
.ui file defines them; not a screenshot of the running application) next to the data flow between
the scene layer and the engine process.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BLUE, ORANGE, GREY, DARK = "#1f5fa8", "#f28e2b", "#e9edf2", "#2b2b2b"


def _warped_grid(ax, amplitude, color, lw):
    t = np.linspace(0, 1, 200)
    for c in np.linspace(0.12, 0.88, 6):
        ax.plot(c + amplitude * np.sin(2 * np.pi * t) * np.sin(np.pi * c), t, color=color, lw=lw, solid_capstyle="round")
        ax.plot(t, c + amplitude * np.sin(2 * np.pi * t) * np.sin(np.pi * c), color=color, lw=lw, solid_capstyle="round")


def icon(path: Path, accent: str, letters: str | None) -> None:
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.04, 0.04), 0.92, 0.92, boxstyle="round,pad=0,rounding_size=0.16", fc=BLUE, ec="none"))
    _warped_grid(ax, 0.045, "white", 1.6)
    ax.add_patch(FancyArrowPatch((0.22, 0.22), (0.8, 0.8), arrowstyle="-|>", mutation_scale=16, lw=3.2, color=accent))
    if letters:
        ax.text(0.5, 0.5, letters, ha="center", va="center", fontsize=20, fontweight="bold", color="white",
                bbox=dict(boxstyle="round,pad=0.15", fc=BLUE, ec="none", alpha=0.85))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


def _ui_rows(ui_path: Path):
    """(section, [(label, widget class, widget name)]) in .ui order, plus the widgets below the sections."""
    root = ET.parse(ui_path).getroot()
    sections, tail = [], []
    top_layout = root.find("widget/layout")
    for item in top_layout.findall("item"):
        widget = item.find("widget")
        if widget is None:
            continue
        if widget.get("class") == "ctkCollapsibleButton":
            title = widget.findtext("property[@name='text']/string")
            rows, label = [], None
            for sub in widget.find("layout").findall("item"):
                w = sub.find("widget")
                if w.get("class") == "QLabel":
                    label = w.findtext("property[@name='text']/string")
                    continue
                text = w.findtext("property[@name='text']/string")
                rows.append((label if sub.get("column") == "1" else (text or ""), w.get("class"), w.get("name")))
                label = None
            sections.append((title, rows))
        else:
            tail.append((widget.findtext("property[@name='text']/string") or "", widget.get("class"), widget.get("name")))
    return sections, tail


EXAMPLE = {
    "fixedVolumeSelector": "CT abdomen (fixed)", "movingVolumeSelector": "CT abdomen follow-up",
    "initialTransformSelector": "Elastix B-spline", "fixedSegmentationSelector": "organs (fixed)",
    "movingSegmentationSelector": "organs (follow-up)", "methodComboBox": "Reg-TTR (refine the field)",
    "iterationsSpinBox": "12", "lrSpinBox": "0.2500", "levelsSpinBox": "3", "smoothnessSpinBox": "1.000", "modalityComboBox": "ct", "deviceComboBox": "auto",
}


def panel(ax, ui_path: Path) -> None:
    ax.set_xlim(0, 10)
    ax.set_ylim(-1.2, 16)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.1, 0.1), 9.8, 15.8, boxstyle="round,pad=0,rounding_size=0.2", fc="#fbfbfb", ec="#b8c0cc"))
    ax.text(0.4, 15.35, "Refine Registration", fontsize=12, fontweight="bold", color=DARK, va="center")
    y = 14.6
    sections, tail = _ui_rows(ui_path)
    for title, rows in sections:
        if title == "Log":
            continue
        ax.add_patch(FancyBboxPatch((0.3, y - 0.45), 9.4, 0.55, boxstyle="round,pad=0,rounding_size=0.08", fc=GREY, ec="#c9d1db"))
        ax.text(0.5, y - 0.17, "▾ " + title, fontsize=9, fontweight="bold", color=DARK, va="center")
        y -= 0.95
        for label, cls, name in rows:
            if cls == "QCheckBox":
                ax.add_patch(FancyBboxPatch((0.6, y - 0.22), 0.3, 0.3, boxstyle="square,pad=0", fc="white", ec="#7b8794"))
                ax.text(1.05, y - 0.07, label, fontsize=8, va="center", color=DARK)
            else:
                ax.text(0.6, y - 0.07, label, fontsize=8, va="center", color=DARK)
                ax.add_patch(FancyBboxPatch((4.1, y - 0.3), 5.4, 0.46, boxstyle="round,pad=0,rounding_size=0.06", fc="white", ec="#9aa5b1"))
                suffix = "  ▾" if cls in ("qMRMLNodeComboBox", "QComboBox") else ""
                disabled = name in ("iterationsSpinBox", "lrSpinBox", "levelsSpinBox", "smoothnessSpinBox")  # until "Override" is ticked
                ax.text(4.25, y - 0.07, EXAMPLE.get(name, "") + suffix, fontsize=7.5, va="center",
                        color="#a0a7b0" if disabled else "#333333")
            y -= 0.7
        y -= 0.25
    for text, cls, name in tail:
        if cls == "QPushButton":
            ax.add_patch(FancyBboxPatch((0.3, y - 0.5), 9.4, 0.62, boxstyle="round,pad=0,rounding_size=0.08", fc=BLUE, ec="none"))
            ax.text(5, y - 0.19, "Cancel", fontsize=9, ha="center", va="center", color="white", fontweight="bold")
            ax.text(9.6, y - 0.19, "(Apply while idle)", fontsize=7, ha="right", va="center", color="#dce6f2")
            y -= 0.9
        elif cls == "QProgressBar":
            ax.add_patch(FancyBboxPatch((0.3, y - 0.3), 9.4, 0.35, boxstyle="round,pad=0,rounding_size=0.06", fc="white", ec="#9aa5b1"))
            ax.add_patch(FancyBboxPatch((0.3, y - 0.3), 9.4 * 0.42, 0.35, boxstyle="round,pad=0,rounding_size=0.06", fc=ORANGE, ec="none"))
            y -= 0.65
        elif cls == "QLabel":
            ax.text(0.4, y - 0.1, "Reg-TTR level 2/3 (loss 0.2731)", fontsize=8, color=DARK, va="center")
            y -= 0.6
    for title, rows in sections:
        if title == "Log":
            ax.add_patch(FancyBboxPatch((0.3, y - 0.45), 9.4, 0.55, boxstyle="round,pad=0,rounding_size=0.08", fc=GREY, ec="#c9d1db"))
            ax.text(0.5, y - 0.17, "▾ Log", fontsize=9, fontweight="bold", color=DARK, va="center")
            y -= 0.75
            log = ["Writing inputs to /tmp/TTTMedical-…", "Running: -m tttmedical register fixed.nrrd moving.nrrd …",
                   "Device: cpu (16 threads)"]
            ax.add_patch(FancyBboxPatch((0.3, y - 1.35), 9.4, 1.45, boxstyle="square,pad=0", fc="white", ec="#9aa5b1"))
            for line in log:
                ax.text(0.45, y - 0.15, line, fontsize=7, family="monospace", color="#333333", va="center")
                y -= 0.42


def box(ax, xy, w, h, title, lines, color):
    ax.add_patch(FancyBboxPatch(xy, w, h, boxstyle="round,pad=0,rounding_size=0.15", fc="white", ec=color, lw=1.8))
    ax.text(xy[0] + 0.2, xy[1] + h - 0.35, title, fontsize=9.5, fontweight="bold", color=color, va="center")
    for n, line in enumerate(lines):
        ax.text(xy[0] + 0.25, xy[1] + h - 0.85 - 0.42 * n, line, fontsize=7.6, color=DARK, va="center")


def arrow(ax, a, b, text, color=DARK):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, lw=1.4, color=color))
    ax.text((a[0] + b[0]) / 2 + 0.15, (a[1] + b[1]) / 2, text, fontsize=7.2, color=color, va="center")


def flow(ax) -> None:
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 16)
    ax.axis("off")
    box(ax, (0.3, 11.2), 9.4, 4.3, "Slicer scene (RAS)", [
        "fixed / moving volume nodes, optional segmentations",
        "initial transform: selected node or the moving volume's parent",
        "RefineRegistration panel: parameter node <-> .ui widgets",
        "results (new nodes, one subject hierarchy folder):",
        "  grid transform (from parent), warped volume, Jacobian,",
        "  warped segmentation, metrics table, loss plot",
    ], BLUE)
    box(ax, (0.3, 5.9), 9.4, 4.2, "TTTMedicalLib (scene layer, no qt)", [
        "volumes: IJK-to-RAS <-> LPS files (NRRD)",
        "transforms: linear -> .tfm, others -> LPS-mm field",
        "labels: label maps by value, segments by name -> files",
        "runner: PythonSlicer, bundled engine first, --progress json",
        "  reader threads -> queue -> poll() -> callbacks",
        "  cancel: kill the process tree; temp folder removed",
    ], DARK)
    box(ax, (0.3, 0.5), 9.4, 4.3, "tttmedical engine (separate process)", [
        "tttmedical register FIXED MOVING -o OUT --init FILE",
        "  --method regttr|ssmsr|predict --device auto|cpu|cuda",
        "torch from the PyTorch extension (PyTorchUtils)",
        "OUT: displacement.nii.gz (LPS mm, ITK convention),",
        "  warped, jacobian, warped_labels, report.json",
    ], ORANGE)
    arrow(ax, (3.0, 11.2), (3.0, 10.1), "export (temporary folder)")
    arrow(ax, (7.3, 10.1), (7.3, 11.2), "import after success only")
    arrow(ax, (3.0, 5.9), (3.0, 4.8), "launch process")
    arrow(ax, (7.3, 4.8), (7.3, 5.9), "JSON progress lines", ORANGE)


def figure(path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 8.2), dpi=110)
    panel(left, ROOT / "TTTMedical" / "Resources" / "UI" / "RefineRegistration.ui")
    flow(right)
    left.set_title("RefineRegistration panel (schematic drawn from RefineRegistration.ui)", fontsize=9, color="#555555")
    right.set_title("What happens on Apply", fontsize=9, color="#555555")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    icon(ROOT / "Resources" / "TTTMedical.png", ORANGE, "TTT")
    icon(ROOT / "TTTMedical" / "Resources" / "Icons" / "RefineRegistration.png", ORANGE, None)
    figure(ROOT / "Resources" / "Screenshots" / "RefineRegistration.png")
    print("figures written")
