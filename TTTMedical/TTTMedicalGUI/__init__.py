"""TTTMedicalGUI: Qt pieces shared by the TTTMedical module panels (imports ``qt``; the scene layer
``TTTMedicalLib`` never does).

* :mod:`.panel` -- :class:`~.panel.EngineJobWidgetMixin` (Apply that becomes Cancel, polling, dependency
  check, progress, log, error display, parameter node binding) and :func:`~.panel.panel_range`
  (spin box range of a declared engine option).

A package, not loose files, because Slicer's scripted-module factory treats every ``.py`` file in the
module folder as a module.
"""

__all__ = ["panel"]
