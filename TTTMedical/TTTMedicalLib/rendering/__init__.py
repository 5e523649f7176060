"""Slicer's own views rendered offscreen from a real MRML scene: pictures of the modules' results.

* :mod:`.views`   :class:`~.views.SceneViews`: slice views (``vtkMRMLSliceLogic`` + slice displayable
  managers) and 3D views (``vtkMRMLViewLogic`` + 3D displayable managers) -> RGB arrays / PNG
* :mod:`.panels`  what each module shows after Apply (layers, 50 % foreground, outlines, sequence
  browser position, colour maps) as ``(caption, pixels)`` panels
* :mod:`.compose` panels laid out in one captioned picture
* :mod:`.result_scene` an engine result folder (registration, interpolation, recon) loaded as nodes
* :mod:`.viewer`  ``tttmedical view``: the result folder in these views as a trame web page

Not part of the Slicer extension's scripts (the application has its own views): used by ``make
demo``, the pixel tests and ``tttmedical view``.

Needs ``slicer`` (the application or the ``slicer-core`` wheel) and ``vtk``; never ``qt`` or torch.
"""
