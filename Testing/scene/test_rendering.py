"""Pictures of the modules' results rendered by Slicer's own views (offscreen, slicer-core), asserted on pixels.

The slice views blend and reslice exactly as Slicer does; these tests pin what a user sees after
Apply: not blank, the 50 % foreground is half of each layer, segment outlines are drawn, the refined
volume overlays the fixed one better than the moving one did, a sequence's foreground moves between
time points (and the interpolated frame lands where the true one is), and error maps are darker
where the report says the error is lower.  The jobs run the real engine (small inputs, few steps)
and never skip.
"""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.volume import Volume  # noqa: E402
from TTTMedicalLib import labels, results, samples, sequences, volumes  # noqa: E402
from TTTMedicalLib.rendering import panels  # noqa: E402
from TTTMedicalLib.rendering.compose import compose  # noqa: E402
from TTTMedicalLib.rendering.views import SceneViews  # noqa: E402

SIZE = (160, 160)


@pytest.fixture
def views(scene):
    with SceneViews(scene, SIZE) as scene_views:
        yield scene_views


def grey(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64).mean(axis=2)


def centroid(pixels: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """(row, column) centre of the pixels brighter than ``fraction`` of the brightest."""
    g = grey(pixels)
    rows, cols = np.nonzero(g > fraction * g.max())
    return np.array([rows.mean(), cols.mean()])


def blob_volume(shift_i: float = 0.0, shape=(12, 20, 24)) -> Volume:
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    array = 100 * np.exp(-((k - 6) ** 2 / 8 + (j - 10) ** 2 / 10 + (i - 8 - shift_i) ** 2 / 6))
    return Volume(array.astype(np.float32), (1.5, 1.2, 2.0), (10.0, -5.0, 3.0), np.eye(3))


# ---------------------------------------------------------------------------------------- views
def test_slice_view_shows_the_volume_and_blends_the_foreground_at_half(scene, views):
    a = volumes.add_volume_node(blob_volume(0.0), "a", scene)
    b = volumes.add_volume_node(blob_volume(8.0), "b", scene)
    panels.same_window(a, b)
    only_a = panels.slice_picture(views, "Red", a)
    only_b = panels.slice_picture(views, "Red", b)
    blend = panels.slice_picture(views, "Red", a, b, 0.5)
    assert only_a.shape == (*SIZE[::-1], 3) and only_a.dtype == np.uint8
    assert grey(only_a).std() > 10 and grey(only_a).max() > 200          # not blank: a bright blob on black
    assert np.abs(centroid(only_a) - centroid(only_b)).max() > 10         # the two blobs are apart on screen
    expected = 0.5 * only_a.astype(float) + 0.5 * only_b.astype(float)   # Slicer's foreground blending
    assert np.abs(blend.astype(float) - expected).max() <= 2.0
    # the axial (Red) view looks down on i-j: the 8-voxel shift along i is 8 x 1.5 mm on screen, left-right
    red = views.slice_view("Red")
    mm_per_pixel = red.node.GetFieldOfView()[0] / SIZE[0]
    shift = centroid(only_b) - centroid(only_a)
    assert abs(abs(shift[1]) * mm_per_pixel - 12.0) < 1.5 and abs(shift[0]) * mm_per_pixel < 1.5


def test_segment_outlines_are_drawn_without_fill(scene, views):
    image = blob_volume()
    node = volumes.add_volume_node(image, "image", scene)
    mask = (image.array > 50).astype(np.uint8)
    segmentation = labels.add_segmentation_from_labels(image.with_array(mask), ["blob"], "blob", scene)
    panels.outline(segmentation, colors=[(0.0, 1.0, 0.0)])
    panels.hide(segmentation)
    plain = panels.slice_picture(views, "Red", node)
    panels.show(segmentation)
    outlined = panels.slice_picture(views, "Red", node)
    changed = np.abs(outlined.astype(int) - plain.astype(int)).sum(axis=2) > 30
    green = (outlined[..., 1] > 150) & (outlined[..., 0] < 100) & (outlined[..., 2] < 100)
    assert green.sum() > 20 and changed.sum() <= 1.5 * green.sum()      # an outline, not a filled area
    rows, cols = np.nonzero(green)
    assert grey(outlined)[int(rows.mean()), int(cols.mean())] > 200      # the inside stays the image (no fill)


def test_threed_view_renders_segment_surfaces_on_slicer_background(scene, views):
    image = blob_volume()
    segmentation = labels.add_segmentation_from_labels(image.with_array((image.array > 50).astype(np.uint8)),
                                                       ["blob"], "blob", scene)
    segmentation.CreateClosedSurfaceRepresentation()
    segmentation.GetSegmentation().GetNthSegment(0).SetColor(1.0, 0.0, 0.0)
    view = views.threed_view()
    view.look_from("Anterior")
    pixels = view.render().astype(int)
    reddish = (pixels[..., 0] > pixels[..., 2] + 40) & (pixels[..., 0] > 80)
    bluish_background = pixels[2, 2, 2] > pixels[2, 2, 0]               # Slicer's blue-grey gradient
    assert reddish.sum() > 100 and bluish_background


# ---------------------------------------------------------------------------------------- modules
def test_refined_overlay_differs_less_from_fixed_than_the_initial_one(scene, views, tmp_path):
    from TTTMedicalLib.registration import RegistrationInputs, RegistrationJob, RegistrationSettings

    fixed, moving, fixed_labels, moving_labels = samples.add_registration_pair(size=24, amplitude_voxels=2.5, with_labels=True)
    job = RegistrationJob(RegistrationInputs(fixed, moving, fixed_segmentation=fixed_labels, moving_segmentation=moving_labels),
                          RegistrationSettings(method="regttr", iterations=30, device="cpu"), scene=scene,
                          temp_root=str(tmp_path))
    out = job.run_blocking(timeout=300)
    panels.same_window(fixed, moving, out.warped)
    for view in ("Red", "Yellow", "Green"):
        seen = {name: grey(panels.slice_picture(views, view, node, centre=panels.centre_ras(fixed)))
                for name, node in (("fixed", fixed), ("moving", moving), ("refined", out.warped))}
        before = np.abs(seen["moving"] - seen["fixed"]).mean()
        after = np.abs(seen["refined"] - seen["fixed"]).mean()
        assert after < 0.6 * before, (view, before, after)
    to_segmentation = lambda node, name: labels.add_segmentation_from_labels(  # noqa: E731
        volumes.volume_from_node(node), ["Label_1", "Label_2"], name, scene)
    pictures = panels.registration_panels(views, fixed, moving, out.warped, out.jacobian,
                                          to_segmentation(fixed_labels, "fixed seg"), to_segmentation(moving_labels, "moving seg"),
                                          out.warped_segmentation)
    captions = [caption for caption, _ in pictures]
    assert captions[:5] == ["Red: fixed + moving 50 % (before)", "Red: fixed + refined 50 % (after)",
                            "Red: outlines fixed / moving", "Red: outlines fixed / refined", "Red: Jacobian (0-2)"]
    assert all(grey(p).std() > 5 for _, p in pictures)
    # the refined outline (magenta) lies closer to the fixed one (green) than the moving outline did
    distance = [_outline_distance(dict(pictures)[f"{v}: outlines fixed / {w}"]) for v in ("Red", "Green") for w in ("moving", "refined")]
    assert distance[1] < distance[0] and distance[3] < distance[2]
    assert compose(pictures, 5, "title").shape[0] > 2 * SIZE[1]


def _outline_distance(pixels: np.ndarray) -> float:
    """Mean distance (pixels) from each magenta outline pixel to the nearest green outline pixel."""
    p = pixels.astype(int)
    green = np.argwhere((p[..., 1] > 150) & (p[..., 0] < 120) & (p[..., 2] < 120))
    magenta = np.argwhere((p[..., 0] > 150) & (p[..., 2] > 150) & (p[..., 1] < 120))
    assert len(green) > 10 and len(magenta) > 10
    return float(np.sqrt(((magenta[:, None, :] - green[None, :, :]) ** 2).sum(-1)).min(axis=1).mean())


def test_sequence_foreground_moves_and_the_interpolated_frame_lands_on_the_true_one(scene, views, tmp_path):
    from TTTMedicalLib.interpolation import InterpolationCompareJob, InterpolationSettings

    frames = [blob_volume(2.0 * t, shape=(12, 16, 24)) for t in range(5)]
    truth, _ = sequences.add_sequence_from_volumes(frames, [0.1 * t for t in range(5)], "cine", "time", "s", scene,
                                                   browser=False)
    settings = InterpolationSettings(epochs=1, evaluate=True, device="cpu")
    out = InterpolationCompareJob(truth, settings, [("rotation", "online")], scene=scene,
                                  temp_root=str(tmp_path)).run_blocking(timeout=300)
    pictures = panels.interpolation_panels(views, out, truth)
    by_caption = dict(pictures)
    assert list(by_caption) == [f"{c} @ {t} s" for t in ("0.1", "0.3")
                                for c in ("input", "rotation/online", "difference rotation/online")]
    # the foreground moves between time points (2 voxels x 1.5 mm per 0.1 s along i)
    for name in ("input", "rotation/online"):
        moved = centroid(by_caption[f"{name} @ 0.3 s"]) - centroid(by_caption[f"{name} @ 0.1 s"])
        assert abs(moved[1]) > 8 and abs(moved[0]) < 2, (name, moved)
    # the held-out frame is predicted where the true one is, and the difference map shows the error
    for t in ("0.1", "0.3"):
        assert np.abs(centroid(by_caption[f"rotation/online @ {t} s"]) - centroid(by_caption[f"input @ {t} s"])).max() < 2.0
        assert grey(by_caption[f"difference rotation/online @ {t} s"]).std() > 1.0
    # a kept frame: output == input, so its difference map is the uniform mid-grey of 0 (black outside the volume)
    panels.select_frame(out.browser, 2)
    zero = grey(panels.slice_picture(views, "Red", out.browser.GetProxyNode(out.difference_sequences[0])))
    inside = zero[zero > 0]
    assert inside.size > 1000 and np.abs(inside - 127.5).max() <= 1.5


def test_error_maps_are_darker_after_adaptation(scene, views, tmp_path):
    from TTTMedicalLib.recon import ReconInputs, ReconJob, ReconSettings

    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in (3, 32, 32)], indexing="ij")
    image = 100 * (((j - 16) ** 2 / 120 + (i - 15) ** 2 / 90) < 1) * (1 + 0.3 * np.sin(j / 3)) + \
        60 * (((j - 12) ** 2 + (i - 18) ** 2) < 12)
    node = volumes.add_volume_node(Volume(image.astype(np.float32), (1.5, 1.2, 4.0), (10.0, -5.0, 3.0), np.eye(3)),
                                   "phantom", scene)
    settings = ReconSettings(iterations=3, coils=4, acceleration=3.0, center_fraction=0.12, device="cpu")
    out = ReconJob(ReconInputs(volume=node), settings, compare=["zero", "fine+inr+sst"], scene=scene,
                   temp_root=str(tmp_path)).run_blocking(timeout=300)
    pictures = dict(panels.recon_panels(views, out, reference=node))
    assert list(pictures) == ["reference", "zero-filled", "fine+inr+sst", "error zero-filled", "error fine+inr+sst"]
    brightness = {m: grey(pictures[f"error {c}"]).mean() for m, c in (("zero", "zero-filled"), ("fine+inr+sst", "fine+inr+sst"))}
    nmse = {r["label"]: r["metrics"]["nmse"] for r in out.report["compare"]}
    assert nmse["fine+inr+sst"] < nmse["zero"]
    assert brightness["fine+inr+sst"] < 0.8 * brightness["zero"], brightness
    # the reconstruction panels are images of the phantom, not blank
    assert all(grey(pictures[c]).std() > 10 for c in ("reference", "zero-filled", "fine+inr+sst"))
    rows = results.table_columns(out.metrics_table)
    assert rows["method"][0] == "zero-filled"
