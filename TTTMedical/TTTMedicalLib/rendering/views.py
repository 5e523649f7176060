"""Slicer's own slice and 3D views, rendered offscreen from an MRML scene (``slicer-core``, no application).

:class:`SceneViews` sets up what the Slicer application sets up for its views: the application
logic (colour, slice and view logics), the slice/3D displayable-manager factories bound to it, and
the default slice orientations.  Its :meth:`~SceneViews.slice_view` runs a ``vtkMRMLSliceLogic``
(background, foreground with opacity, label layer) with the slice displayable managers
(segmentation outlines, models, crosshair...); :meth:`~SceneViews.threed_view` runs a
``vtkMRMLViewLogic`` with the 3D ones (segmentation surfaces, volume rendering, slice planes).

Conventions:

* ``render()`` returns the view as on screen: ``uint8`` RGB array ``[row, column, channel]``, row 0
  at the top.  Nothing renders when the scene changes; call ``render()`` (explicit rendering).
* Without a display, VTK renders through EGL (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set
  here unless already set); multisampling is off (8x multisampling hides translucent surfaces on
  Mesa).
* The displayable-manager factories are process-wide singletons: one :class:`SceneViews` at a time
  drives them (close it, or use it as a context manager, before making another).

Imports ``slicer`` and ``vtk`` only (no ``qt``, no torch).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import vtk  # noqa: E402
from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402

import slicer  # noqa: E402

SLICE_MANAGERS = (
    "vtkMRMLCrosshairDisplayableManager", "vtkMRMLVolumeGlyphSliceDisplayableManager",
    "vtkMRMLModelSliceDisplayableManager", "vtkMRMLOrientationMarkerDisplayableManager",
    "vtkMRMLRulerDisplayableManager", "vtkMRMLScalarBarDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLTransformsDisplayableManager2D",
)
THREED_MANAGERS = (
    "vtkMRMLVolumeRenderingDisplayableManager", "vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager", "vtkMRMLThreeDReformatDisplayableManager",
    "vtkMRMLOrientationMarkerDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D",
    "vtkMRMLTransformsDisplayableManager3D",
)
SLICE_COLORS = {"Red": (0.952, 0.290, 0.200), "Yellow": (0.929, 0.835, 0.298), "Green": (0.431, 0.690, 0.294)}
DEFAULT_ORIENTATION = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
SLICER_3D_BACKGROUND = ((0.7568, 0.7647, 0.9098), (0.4549, 0.4705, 0.7450))  # Slicer's default gradient


class _View:
    """A render window with a displayable-manager group (common part of slice and 3D views)."""

    def __init__(self, factory_class: str, managers: tuple[str, ...], app_logic, size: tuple[int, int]):
        self.renderer = vtk.vtkRenderer()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.AddRenderer(self.renderer)
        self.window.SetSize(*size)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        factory = getattr(slicer, factory_class).GetInstance()
        factory.SetMRMLApplicationLogic(app_logic)
        for name in managers:
            if hasattr(slicer, name) and not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

    def _update(self) -> None:
        """Hook: bring the view's pipeline up to date before rendering."""

    def render(self) -> np.ndarray:
        """The view as on screen: ``uint8`` RGB ``[row, column, 3]``, row 0 at the top."""
        self._update()
        self.managers.RequestRender()
        self.window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3]
        return np.ascontiguousarray(pixels)

    def save(self, path: str | Path) -> Path:
        """Render and write a PNG; returns the path."""
        return save_png(self.render(), path)

    logics = ""
    """Name of the application logic's getter of the collection holding this kind of view's logic."""

    def close(self) -> None:
        """Detach from the scene: no displayable node, logic out of the application logic, window freed."""
        self.managers.SetMRMLDisplayableNode(None)
        self.window.Finalize()
        app_logic = self.logic.GetMRMLApplicationLogic()
        if app_logic is not None:
            getattr(app_logic, self.logics)().RemoveItem(self.logic)
        self.logic.SetMRMLScene(None)


class SliceView(_View):
    """One slice viewer (``Red``, ``Yellow``, ``Green``, ...): ``node`` (slice node), ``composite``
    (which volumes are shown), ``logic`` (the ``vtkMRMLSliceLogic`` reslicing and blending them)."""

    logics = "GetSliceLogics"

    def __init__(self, scene, app_logic, name: str, orientation: str, size: tuple[int, int]):
        super().__init__("vtkMRMLSliceViewDisplayableManagerFactory", SLICE_MANAGERS, app_logic, size)
        self.name = name
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(app_logic)
        self.logic.SetMRMLScene(scene)
        app_logic.GetSliceLogics().AddItem(self.logic)
        self.node = self.logic.AddSliceNode(name)
        self.node.SetOrientation(orientation)
        if name in SLICE_COLORS:
            self.node.SetLayoutColor(*SLICE_COLORS[name])
        self.composite = self.logic.GetSliceCompositeNode()
        self.managers.SetMRMLDisplayableNode(self.node)
        self._mapper = vtk.vtkImageMapper()  # the slice image (RGBA 0-255 from the logic) as a 2D actor
        self._mapper.SetColorWindow(255)
        self._mapper.SetColorLevel(127.5)
        self._actor = vtk.vtkActor2D()
        self._actor.SetMapper(self._mapper)
        self._actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self._actor)
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self._fitted = False

    def show(self, background=None, foreground=None, opacity: float = 0.5, label=None, label_opacity: float = 1.0,
             fit: bool = True) -> "SliceView":
        """Show volume nodes in the layers (``None`` clears a layer); ``opacity`` is the foreground's."""
        node_id = lambda n: n.GetID() if n is not None else None  # noqa: E731
        self.composite.SetBackgroundVolumeID(node_id(background))
        self.composite.SetForegroundVolumeID(node_id(foreground))
        self.composite.SetForegroundOpacity(float(opacity))
        self.composite.SetLabelVolumeID(node_id(label))
        self.composite.SetLabelOpacity(float(label_opacity))
        if fit:
            self.fit()
        return self

    def fit(self) -> None:
        """Slice size to the window, field of view to the background volume, offset snapped to its voxels."""
        self.logic.ResizeSliceNode(*self.window.GetSize())
        self.logic.FitSliceToBackground()
        self.logic.SnapSliceOffsetToIJK()
        self._fitted = True

    def set_orientation(self, orientation: str) -> None:
        self.node.SetOrientation(orientation)
        self.fit()

    @property
    def offset(self) -> float:
        """Slice position along the view normal (mm)."""
        return self.logic.GetSliceOffset()

    @offset.setter
    def offset(self, value: float) -> None:
        self.logic.SetSliceOffset(float(value))

    def offset_range(self) -> tuple[float, float, float]:
        """``(low, high, step)`` of the offset over the shown volumes (mm)."""
        bounds, step = [0.0, 0.0], vtk.reference(1.0)
        if not self.logic.GetSliceOffsetRangeResolution(bounds, step):
            return 0.0, 0.0, 1.0
        return float(bounds[0]), float(bounds[1]), float(step)

    def jump_to(self, ras) -> None:
        """Move the slice through the point ``ras`` (mm)."""
        self.node.JumpSliceByCentering(*[float(v) for v in ras])

    def _update(self) -> None:
        if not self._fitted:
            self.fit()
        self._mapper.SetInputConnection(self.logic.GetImageDataConnection())
        self._actor.SetVisibility(self.logic.GetImageDataConnection() is not None)



class ThreeDView(_View):
    """The 3D viewer: Slicer's background gradient and box; ``node`` is its view node."""

    logics = "GetViewLogics"

    def __init__(self, scene, app_logic, name: str, size: tuple[int, int]):
        super().__init__("vtkMRMLThreeDViewDisplayableManagerFactory", THREED_MANAGERS, app_logic, size)
        self.renderer.SetUseDepthPeeling(True)
        self.renderer.SetUseDepthPeelingForVolumes(True)
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(app_logic)
        self.logic.SetMRMLScene(scene)
        app_logic.GetViewLogics().AddItem(self.logic)
        self.node = self.logic.AddViewNode(name)
        self.node.SetBackgroundColor(*SLICER_3D_BACKGROUND[0])
        self.node.SetBackgroundColor2(*SLICER_3D_BACKGROUND[1])
        self.managers.SetMRMLDisplayableNode(self.node)

    def look_from(self, direction: str = "Anterior", azimuth: float = 0.0, elevation: float = 0.0) -> None:
        """Camera on the ``direction`` side (Left, Right, Anterior, Posterior, Superior, Inferior), then
        turned by ``azimuth`` and ``elevation`` (degrees) about the focal point, everything in view."""
        camera = self.managers.GetDisplayableManagerByClassName("vtkMRMLCameraDisplayableManager").GetCameraNode()
        camera.RotateTo(getattr(slicer.vtkMRMLCameraNode, direction))
        self.reset_camera()
        if azimuth or elevation:
            vtk_camera = camera.GetCamera()
            vtk_camera.Azimuth(float(azimuth))
            vtk_camera.Elevation(float(elevation))
            vtk_camera.OrthogonalizeViewUp()
            self.reset_camera()

    def reset_camera(self) -> None:
        self.node.SetBoxVisible(0)  # the box would enlarge the bounds the camera fits
        self.managers.RequestRender()
        self.renderer.ResetCamera()
        self.node.SetBoxVisible(1)
        self.node.InvokeEvent(slicer.vtkMRMLViewNode.ResetFocalPointRequestedEvent)
        self.renderer.ResetCameraClippingRange()



class SceneViews:
    """Slice and 3D views of ``scene`` (default ``slicer.mrmlScene``), each ``size`` pixels (width, height)."""

    def __init__(self, scene=None, size: tuple[int, int] = (320, 320)):
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.size = tuple(size)
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        colors = self.app_logic.GetColorLogic()
        colors.SetMRMLScene(self.scene)
        if self.scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is None:
            colors.AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        if self.scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:
            crosshair = self.scene.AddNewNodeByClass("vtkMRMLCrosshairNode")
            crosshair.SetCrosshairName("default")
        self._volume_rendering = None
        self.views: dict[str, _View] = {}

    def slice_view(self, name: str = "Red", orientation: str | None = None, size: tuple[int, int] | None = None) -> SliceView:
        """The slice view ``name`` (created on first use; ``orientation`` Axial/Sagittal/Coronal)."""
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = SliceView(self.scene, self.app_logic, name,
                                                orientation or DEFAULT_ORIENTATION.get(name, "Axial"), size or self.size)
        elif orientation:
            view.set_orientation(orientation)
        return view

    def threed_view(self, name: str = "1", size: tuple[int, int] | None = None) -> ThreeDView:
        key = f"3D {name}"
        if key not in self.views:
            self.views[key] = ThreeDView(self.scene, self.app_logic, name, size or self.size)
        return self.views[key]

    def volume_rendering(self):
        """Slicer's volume rendering logic for this scene (presets from the wheel, CPU ray casting)."""
        if self._volume_rendering is None:
            logic = slicer.vtkSlicerVolumeRenderingLogic()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic("VolumeRendering", logic)
            self._volume_rendering = logic
        return self._volume_rendering

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        self.views.clear()

    def __enter__(self) -> "SceneViews":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    """Write an RGB ``uint8`` array ``[row, column, 3]`` as a PNG (VTK's writer; no extra package)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = pixels.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    flat = np.ascontiguousarray(pixels[::-1].reshape(-1, pixels.shape[2]))
    from vtkmodules.util.numpy_support import numpy_to_vtk

    scalars = numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return path
