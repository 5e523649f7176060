"""What a module's results look like in Slicer's views after Apply, as pictures (``(caption, pixels)`` panels).

Each ``*_panels`` function sets the scene up as a user would (layers, 50 % foreground, colour maps,
segmentation outlines, sequence browser position), renders through :class:`~.views.SceneViews` and
returns a list of :data:`Panel`; :func:`~.compose.compose` lays them out in one picture.  They work
on the nodes a module's job adds (``RegistrationOutputs``, ``InterpolationOutputs``,
``ReconOutputs``) or on the same nodes loaded from a result folder (:mod:`.result_scene`).

Display conventions: anatomy in Slicer's ``Grey`` with the window/level of the reference (fixed,
ground-truth or reference volume) copied to every volume it is compared with, so pixel values are
comparable between panels; signed differences in ``Grey`` centred on 0 (mid-grey = no difference);
error magnitudes in ``PET-Heat`` (black = 0, then red, yellow, white); the Jacobian determinant
in ``Rainbow`` from 0 to 2.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

import slicer

from .views import SceneViews

Panel = tuple  # (caption: str, pixels: uint8 [row, column, 3])

OUTLINE_COLORS = ((0.2, 0.9, 0.2), (1.0, 0.85, 0.1), (0.3, 0.6, 1.0), (1.0, 0.3, 0.3), (0.9, 0.4, 0.9))


# ---------------------------------------------------------------------------------------- display
def display(node, colormap: str = "Grey", window: float | None = None, level: float | None = None):
    """Show ``node`` with the colour table ``colormap`` and a fixed window/level (automatic when ``None``)."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    shown = node.GetDisplayNode()
    shown.SetAndObserveColorNodeID(f"vtkMRMLColorTableNode{colormap}" if node.GetScene().GetNodeByID(
        f"vtkMRMLColorTableNode{colormap}") else f"vtkMRMLPETProceduralColorNode{colormap}")
    if window is None:
        shown.AutoWindowLevelOn()
    else:
        shown.AutoWindowLevelOff()
        shown.SetWindowLevel(float(window), float(level))
    return shown


def intensity_window(*nodes, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """``(window, level)`` spanning the ``low``-``high`` percentiles of the nodes' voxels together."""
    values = np.concatenate([slicer.util.arrayFromVolume(n).ravel() for n in nodes if n is not None]).astype(np.float64)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return float(hi - lo), float((hi + lo) / 2)


def same_window(reference, *others, colormap: str = "Grey") -> None:
    """Display ``reference`` and ``others`` with the reference's intensity window (comparable pixels)."""
    window, level = intensity_window(reference)
    for node in (reference, *others):
        if node is not None:
            display(node, colormap, window, level)


def magnitude_window(*nodes, high: float = 99.5) -> tuple[float, float]:
    """``(window, level)`` from 0 to the ``high`` percentile of the nodes' absolute values together."""
    values = np.concatenate([np.abs(slicer.util.arrayFromVolume(n)).ravel() for n in nodes if n is not None])
    top = float(np.percentile(values, high)) or 1.0
    return top, top / 2


def outline(segmentation, colors: Iterable = OUTLINE_COLORS, thickness: int = 2) -> None:
    """Segment outlines only (no fill) in the slice views, one colour per segment in order."""
    if segmentation.GetDisplayNode() is None:
        segmentation.CreateDefaultDisplayNodes()
    shown = segmentation.GetDisplayNode()
    shown.SetVisibility2DFill(False)
    shown.SetVisibility2DOutline(True)
    shown.SetSliceIntersectionThickness(int(thickness))
    content = segmentation.GetSegmentation()
    for index, color in zip(range(content.GetNumberOfSegments()), colors):
        content.GetNthSegment(index).SetColor(*color)


def hide(*nodes) -> None:
    for node in nodes:
        if node is not None and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(False)


def show(*nodes) -> None:
    for node in nodes:
        if node is not None and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(True)


def centre_ras(node) -> np.ndarray:
    """The RAS centre (mm) of a volume node's voxel grid."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    centre = [(n - 1) / 2 for n in node.GetImageData().GetDimensions()] + [1.0]
    return np.array(matrix.MultiplyPoint(centre)[:3])


def slice_picture(views: SceneViews, view: str, background, foreground=None, opacity: float = 0.5,
                  centre=None) -> np.ndarray:
    """Render the slice view ``view`` showing ``background`` (and ``foreground`` at ``opacity``),
    through ``centre`` (RAS mm; default the background's centre)."""
    slice_view = views.slice_view(view)
    slice_view.show(background, foreground, opacity)
    slice_view.jump_to(centre_ras(background) if centre is None else centre)
    return slice_view.render()


# ---------------------------------------------------------------------------------------- modules
def registration_panels(views: SceneViews, fixed, moving, refined, jacobian=None, fixed_segmentation=None,
                        moving_segmentation=None, refined_segmentation=None, view_names=("Red", "Green")) -> list[Panel]:
    """RefineRegistration after Apply: the fixed volume with the moving one (before) and the refined one
    (after) as a 50 % foreground, segmentation outlines (fixed green, moving / refined magenta) and
    the Jacobian determinant of the refined transform (``Rainbow``, 0 to 2), in each of ``view_names``."""
    same_window(fixed, moving, refined)
    segmentations = [s for s in (fixed_segmentation, moving_segmentation, refined_segmentation) if s is not None]
    for segmentation in segmentations:
        outline(segmentation)
    if fixed_segmentation is not None:
        outline(fixed_segmentation, colors=[(0.2, 0.9, 0.2)] * 8)   # the fixed anatomy in green
    for other in (moving_segmentation, refined_segmentation):
        if other is not None:
            outline(other, colors=[(1.0, 0.3, 0.9)] * 8)            # the registered one in magenta
    centre = centre_ras(fixed)
    panels: list[Panel] = []
    for view in view_names:
        hide(*segmentations)
        panels.append((f"{view}: fixed + moving 50 % (before)", slice_picture(views, view, fixed, moving, 0.5, centre)))
        panels.append((f"{view}: fixed + refined 50 % (after)", slice_picture(views, view, fixed, refined, 0.5, centre)))
        if fixed_segmentation is not None and moving_segmentation is not None:
            show(fixed_segmentation, moving_segmentation)
            panels.append((f"{view}: outlines fixed / moving", slice_picture(views, view, fixed, None, 0.0, centre)))
            hide(moving_segmentation)
        if fixed_segmentation is not None and refined_segmentation is not None:
            show(fixed_segmentation, refined_segmentation)
            panels.append((f"{view}: outlines fixed / refined", slice_picture(views, view, fixed, None, 0.0, centre)))
        hide(*segmentations)
        if jacobian is not None:
            display(jacobian, "Rainbow", 2.0, 1.0)
            panels.append((f"{view}: Jacobian (0-2)", slice_picture(views, view, jacobian, None, 0.0, centre)))
    show(*segmentations)
    return panels


def select_frame(browser, index: int) -> None:
    """Move the sequence browser to item ``index`` and update its proxy nodes (what the slider does)."""
    from ..sequences import sequences_logic

    browser.SetSelectedItemNumber(int(index))
    sequences_logic(browser.GetScene()).UpdateProxyNodesFromSequences(browser)


def sequence_frame_panels(views: SceneViews, browser, columns: list[tuple[str, object]], frames: Iterable[int],
                          view: str = "Red", index_label=None) -> list[Panel]:
    """For each item in ``frames``: one panel per ``(caption, sequence)`` column, the browser moved to that
    item and the sequence's proxy volume rendered in ``view``.  ``index_label(i)`` names the item."""
    panels: list[Panel] = []
    for frame in frames:
        select_frame(browser, frame)
        at = index_label(frame) if index_label else f"item {frame}"
        for caption, sequence in columns:
            proxy = browser.GetProxyNode(sequence)
            panels.append((f"{caption} @ {at}", slice_picture(views, view, proxy, None, 0.0)))
    return panels


def interpolation_panels(views: SceneViews, outputs, truth_sequence=None, frames: Iterable[int] | None = None,
                         view: str = "Red") -> list[Panel]:
    """Interpolate4D compare mode after Apply: at each item of ``frames`` (default: the held-out items,
    where the difference maps are non-zero) the ground truth (``truth_sequence``, added to the
    outputs' browser), every setting's output side by side, then the difference maps."""
    browser = outputs.browser
    from ..sequences import index_values

    columns: list[tuple[str, object]] = []
    if truth_sequence is not None:
        if not browser.IsSynchronizedSequenceNodeID(truth_sequence.GetID()):
            browser.AddSynchronizedSequenceNode(truth_sequence)
        columns.append(("input", truth_sequence))
    names = [s.GetName().split(" ")[-1] for s in outputs.sequences]
    columns += list(zip(names, outputs.sequences))
    columns += [(f"difference {n}", d) for n, d in zip(names, outputs.difference_sequences)]
    values = index_values(outputs.sequences[0])
    if frames is None:
        frames = [n for n in range(len(values)) if outputs.difference_sequences and float(np.abs(
            slicer.util.arrayFromVolume(outputs.difference_sequences[0].GetNthDataNode(n))).max()) > 0] or [0]
    select_frame(browser, 0)
    references = [browser.GetProxyNode(s) for _, s in columns if not _.startswith("difference")]
    differences = [browser.GetProxyNode(s) for s in outputs.difference_sequences]
    window, level = intensity_window(*[s.GetNthDataNode(0) for _, s in columns if not _.startswith("difference")])
    for node in references:
        display(node, "Grey", window, level)
    if differences:
        top, _ = magnitude_window(*[d.GetNthDataNode(n) for d in outputs.difference_sequences for n in frames])
        for node in differences:
            display(node, "Grey", 2 * top, 0.0)
    unit = outputs.sequences[0].GetIndexUnit()
    return sequence_frame_panels(views, browser, columns, frames, view,
                                 index_label=lambda n: f"{float(values[n]):g} {unit}".strip())


def recon_panels(views: SceneViews, outputs, reference=None, methods: Iterable[str] | None = None,
                 view: str = "Red") -> list[Panel]:
    """AdaptRecon after Apply: reference, zero-filled and each method's reconstruction with the
    reference's window, then each method's error map ``|reference - reconstruction|`` with one shared
    ``PET-Heat`` window (darker = closer to the reference)."""
    reference = reference if reference is not None else outputs.reference
    methods = list(methods or outputs.reconstructions)
    images = [("reference", reference), ("zero-filled", outputs.zero_filled)]
    images += [(m, outputs.reconstructions[m]) for m in methods if m != "zero"]
    images = [(c, n) for c, n in images if n is not None]
    same_window(images[0][1], *[n for _, n in images[1:]])
    errors = [(f"error {m if m != 'zero' else 'zero-filled'}", outputs.error_maps[m]) for m in methods if m in outputs.error_maps]
    if errors:  # white at the largest errors of all maps, so the darker map is the closer reconstruction
        top, level = magnitude_window(*[n for _, n in errors], high=99.9)
        for _, node in errors:
            display(node, "PET-Heat", top, level)
    centre = centre_ras(images[0][1])
    return [(caption, slice_picture(views, view, node, None, 0.0, centre)) for caption, node in images + errors]
