"""Pictures part of `make demo`: each module's scene job on the sample data, in a real MRML scene, rendered by Slicer's views.

What a Slicer user sees after Apply, rendered offscreen by Slicer's own slice and 3D views
(``TTTMedicalLib.rendering``, slicer-core) from the nodes the module's job added to the scene:

* ``OUT/pictures/registration.png``: RefineRegistration on ``phantom-pair`` (Reg-TTR): fixed with the
  moving (before) and refined (after) volume at 50 %, segmentation outlines, the Jacobian;
* ``OUT/pictures/interpolation.png``: Interpolate4D compare mode on frames 6-10 of ``phantom-4d``
  (frames 7 and 9 held out): truth and two settings side by side at the held-out times, difference maps;
* ``OUT/pictures/recon.png``: AdaptRecon compare mode on the ``recon-brain`` brain slices simulated at
  4x (all 4 slices: the scene job cannot take ``slices`` yet, its error maps need the whole
  reference): reference, zero-filled, pretrained, adapted, error maps;
* ``OUT/pictures/registration-3d.png``: the 3D view with the refined segmentation's surfaces and the
  Red and Yellow slice planes (fixed + refined at 50 %).

Copies go to ``docs/pictures/`` when ``TTTMEDICAL_DOCS_PICTURES=1`` (how the README's pictures are made).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from demo_table import markdown_section

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "TTTMedical") not in sys.path:
    sys.path.insert(0, str(ROOT / "TTTMedical"))  # TTTMedicalLib, as inside Slicer

SAMPLES = ("phantom-pair", "phantom-4d", "recon-brain")
VIEW_SIZE = (256, 256)
INTERPOLATION_FRAMES = (6, 11)   # the window around end-inspiration (largest motion), as in the interpolation demo
INTERPOLATION_SETTINGS = (("mae", "naive"), ("rotation", "online"))
RECON_COMPARE = ["zero", "pretrained", "ssdu+inr+sst"]


def _labels_as_segmentation(path: Path, names: dict, name: str, scene):
    from TTTMedicalLib import labels, volumes

    volume = volumes.read_volume_file(path)
    ordered = [names[str(n)] for n in range(1, max(int(k) for k in names) + 1)]
    return labels.add_segmentation_from_labels(volume, ordered, name, scene)


def registration(views, scene, data: Path, device: str) -> tuple[list, dict]:
    from TTTMedicalLib import volumes
    from TTTMedicalLib.registration import RegistrationInputs, RegistrationJob, RegistrationSettings
    from TTTMedicalLib.rendering import panels

    folder = data / "phantom-pair"
    names = json.loads((folder / "sample.json").read_text())["label_names"]
    fixed = volumes.load_volume_file(folder / "fixed.nii.gz", "fixed", scene)
    moving = volumes.load_volume_file(folder / "moving.nii.gz", "moving", scene)
    fixed_labels = volumes.load_volume_file(folder / "fixed_labels.nii.gz", "fixed labels", scene, "vtkMRMLLabelMapVolumeNode")
    moving_labels = volumes.load_volume_file(folder / "moving_labels.nii.gz", "moving labels", scene, "vtkMRMLLabelMapVolumeNode")
    started = time.perf_counter()
    out = RegistrationJob(RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=moving_labels),
                          RegistrationSettings(method="regttr", device=device), scene=scene).run_blocking(timeout=600)
    job_s = time.perf_counter() - started
    fixed_seg = _labels_as_segmentation(folder / "fixed_labels.nii.gz", names, "fixed segmentation", scene)
    moving_seg = _labels_as_segmentation(folder / "moving_labels.nii.gz", names, "moving segmentation", scene)
    started = time.perf_counter()
    pictures = panels.registration_panels(views, fixed, moving, out.warped, out.jacobian, fixed_seg, moving_seg,
                                          out.warped_segmentation, view_names=("Red", "Yellow"))
    render_s = time.perf_counter() - started
    # 3D: the refined segmentation's surfaces as Slicer's 3D view shows them; the body wall ('fat') and
    # the remaining tissue ('liver') translucent so that the heart (myocardium, blood) shows inside
    panels.hide(fixed_seg, moving_seg)
    refined = out.warped_segmentation
    panels.outline(refined)   # one colour per segment again
    refined.CreateClosedSurfaceRepresentation()
    content = refined.GetSegmentation()   # segment n - 1 holds label n (the sample's label_names)
    for value, segment_name in names.items():
        if segment_name in ("fat", "liver") and 0 < int(value) <= content.GetNumberOfSegments():
            refined.GetDisplayNode().SetSegmentOpacity3D(content.GetNthSegmentID(int(value) - 1), 0.15)
    for name in ("Red", "Yellow"):   # their planes in 3D, showing fixed + refined at 50 % as the last panels left them
        slice_view = views.slice_view(name)
        slice_view.show(fixed, out.warped, 0.5)
        slice_view.jump_to(panels.centre_ras(fixed))
        slice_view.node.SetSliceVisible(1)
        slice_view.render()
    view = views.threed_view(size=(384, 384))
    view.look_from("Anterior", azimuth=35, elevation=20)
    started = time.perf_counter()
    threed = view.render()
    metrics = out.report["metrics"]
    return pictures, dict(module="RefineRegistration", sample="phantom-pair", panels=len(pictures), job_s=job_s,
                          render_s=render_s, threed_s=time.perf_counter() - started, threed=threed,
                          result=f"Dice {metrics['initial_dice']:.3f} -> {metrics['dice']:.3f}")


def interpolation(views, scene, data: Path, device: str) -> tuple[list, dict]:
    from TTTMedicalLib import sequences
    from TTTMedicalLib.interpolation import InterpolationCompareJob, InterpolationSettings
    from TTTMedicalLib.rendering import panels

    full, _ = sequences.load_sequence(data / "phantom-4d" / "sequence.seq.nrrd", "phantom 4D", scene, browser=False)
    low, high = INTERPOLATION_FRAMES
    values = sequences.index_values(full)[low:high]
    frames = sequences.volumes_from_sequence(full)[low:high]
    window, _ = sequences.add_sequence_from_volumes(frames, [float(v) for v in values], "phantom 4D frames 6-10",
                                                    full.GetIndexName(), full.GetIndexUnit(), scene, browser=False)
    started = time.perf_counter()
    out = InterpolationCompareJob(window, InterpolationSettings(evaluate=True, device=device), INTERPOLATION_SETTINGS,
                                  scene=scene).run_blocking(timeout=600)
    job_s = time.perf_counter() - started
    started = time.perf_counter()
    pictures = panels.interpolation_panels(views, out, window, view="Yellow")
    psnr = {r["ttt"]["task"] + "/" + r["ttt"]["scheme"]: r["metrics"]["psnr"] for r in out.reports} if out.reports else {}
    return pictures, dict(module="Interpolate4D", sample="phantom-4d frames 6-10", panels=len(pictures), job_s=job_s,
                          render_s=time.perf_counter() - started,
                          result=", ".join(f"{k} {v:.2f} dB" for k, v in psnr.items()))


def recon(views, scene, data: Path, device: str) -> tuple[list, dict]:
    from TTTMedicalLib import volumes
    from TTTMedicalLib.recon import ReconInputs, ReconJob, ReconSettings
    from TTTMedicalLib.rendering import panels

    brain = volumes.load_volume_file(data / "recon-brain" / "brain.nii.gz", "brain", scene)
    started = time.perf_counter()
    out = ReconJob(ReconInputs(volume=brain), ReconSettings(acceleration=4.0, device=device),
                   compare=RECON_COMPARE, scene=scene).run_blocking(timeout=600)
    job_s = time.perf_counter() - started
    started = time.perf_counter()
    pictures = panels.recon_panels(views, out, reference=brain)
    psnr = {r["label"]: r["metrics"]["psnr"] for r in out.report["compare"]}
    return pictures, dict(module="AdaptRecon", sample="recon-brain (4x)", panels=len(pictures), job_s=job_s,
                          render_s=time.perf_counter() - started,
                          result=", ".join(f"{k} {v:.2f} dB" for k, v in psnr.items()))


PARTS = {"registration": (registration, 4), "interpolation": (interpolation, 5), "recon": (recon, 4)}
"""Picture name -> (function(views, scene, data, device) -> (panels, row), columns of the picture)."""


def run(out: Path, data: Path, device: str) -> tuple[str, list[dict]]:
    """Run every module's scene job in its own scene, render its pictures; return a Markdown section and rows."""
    import slicer
    from TTTMedicalLib.rendering.compose import save_picture
    from TTTMedicalLib.rendering.views import SceneViews, save_png

    folder = out / "pictures"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (make, columns) in PARTS.items():
        print(f"== pictures: {name}")
        scene = slicer.vtkMRMLScene()
        slicer.mrmlScene = scene
        started = time.perf_counter()
        with SceneViews(scene, VIEW_SIZE) as views:
            views.slice_view("Red").render()   # the first render starts the OpenGL (EGL) context
            start_s = time.perf_counter() - started
            pictures, row = make(views, scene, data, device)
            threed = row.pop("threed", None)
            path = save_picture(pictures, folder / f"{name}.png", columns,
                                f"{row['module']} on {row['sample']}: rendered by Slicer's views from the module's output scene")
            if threed is not None:
                save_png(threed, folder / f"{name}-3d.png")
        scene.Clear(1)
        rows.append(dict(row, picture=str(path), start_s=start_s, per_panel_s=row["render_s"] / row["panels"],
                         total_s=time.perf_counter() - started))
    if os.environ.get("TTTMEDICAL_DOCS_PICTURES") == "1":
        docs = ROOT / "docs" / "pictures"
        docs.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy2(png, docs / png.name)
    return markdown_section("Pictures (Slicer's views, offscreen)", [
        ("module", "module", ""), ("sample", "sample", ""), ("result", "result", ""), ("panels", "panels", "d"),
        ("job (s)", "job_s", ".1f"), ("views start (s)", "start_s", ".2f"), ("render, all panels (s)", "render_s", ".2f"),
        ("per panel (s)", "per_panel_s", ".3f"), ("3D view (s)", lambda r: r.get("threed_s"), ".2f"),
        ("picture", "picture", "")], rows), rows
