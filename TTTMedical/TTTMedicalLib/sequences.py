"""Volume sequence nodes <-> 4D NRRD files and lists of engine volumes.

File format: Slicer's own volume-sequence NRRD (``.seq.nrrd``, written and read by
``vtkMRMLVolumeSequenceStorageNode``): 4 axes ``i j k frame`` with kinds ``domain domain domain list``,
LPS ``space directions``/``space origin`` for the 3 spatial axes, the frame axis ``labels``/``units``
holding the sequence's index name/unit, and the key-value pairs ``axis 3 index type:=numeric|text``
and ``axis 3 index values:=v0 v1 ...`` (URL-encoded, space separated).  SimpleITK reads such a file as
a 3D image whose pixels have one component per frame (metadata keys ``axis 3 index values``,
``NRRD_labels[pixel]``, ``NRRD_units[pixel]``), so the engine reads it without Slicer.

All frames of a sequence written here must share one grid (as Slicer's writer requires).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import slicer
from tttmedical.core.errors import InputError
from tttmedical.core.volume import Volume

from .scene import get_scene, module_logic, temporary_nodes, unique_name
from .volumes import update_node_from_volume, volume_from_node


def _name(node) -> str:
    return node.GetName() or node.GetID()


def sequences_logic(scene):
    """The Sequences module logic (registers the sequence browser node class with the scene)."""
    return module_logic(scene, "sequences", "vtkSlicerSequencesLogic")


def check_volume_sequence(sequence_node, role: str = "sequence") -> None:
    """Raise :class:`InputError` unless ``sequence_node`` is a non-empty sequence of same-grid 3D scalar volumes."""
    if sequence_node is None:
        raise InputError(f"No {role} is selected; select a volume sequence.")
    if not sequence_node.IsA("vtkMRMLSequenceNode"):
        raise InputError(f"The {role} '{_name(sequence_node)}' is a {sequence_node.GetClassName()}; select a volume sequence.")
    count = sequence_node.GetNumberOfDataNodes()
    if count < 1:
        raise InputError(f"The {role} '{_name(sequence_node)}' has no frames; select a sequence with at least one volume.")
    first = None
    for index in range(count):
        frame = sequence_node.GetNthDataNode(index)
        if frame is None or not frame.IsA("vtkMRMLScalarVolumeNode"):
            kind = frame.GetClassName() if frame is not None else "nothing"
            raise InputError(f"Frame {index} of the {role} '{_name(sequence_node)}' is {kind}; select a sequence of scalar volumes.")
        volume = volume_from_node(frame, f"frame {index} of the {role} '{_name(sequence_node)}'", world=False)
        if first is None:
            first = volume
        elif not first.same_grid(volume):
            raise InputError(
                f"Frame {index} of the {role} '{_name(sequence_node)}' is on a different grid than frame 0; resample all frames to one grid."
            )


def index_values(sequence_node) -> list[str]:
    """Index values of every frame, as the strings the sequence stores."""
    return [sequence_node.GetNthIndexValue(i) for i in range(sequence_node.GetNumberOfDataNodes())]


def volumes_from_sequence(sequence_node, role: str = "sequence") -> list[Volume]:
    """Every frame as an engine :class:`Volume` (frames' own geometry; sequences carry no parent transform)."""
    check_volume_sequence(sequence_node, role)
    return [volume_from_node(sequence_node.GetNthDataNode(i), role, world=False) for i in range(sequence_node.GetNumberOfDataNodes())]


def write_sequence(sequence_node, path: str | Path, role: str = "sequence", compress: bool = False) -> Path:
    """Write a volume sequence to a 4D NRRD file (``.seq.nrrd``) with index name, unit and values."""
    check_volume_sequence(sequence_node, role)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(bool(compress))
    if not storage.WriteData(sequence_node):
        raise RuntimeError(f"Writing the {role} '{_name(sequence_node)}' to '{path}' failed.")
    return path


def add_sequence_from_volumes(volumes: list[Volume], index_values: list, name: str, index_name: str = "time",
                              index_unit: str = "", scene=None, browser: bool = True,
                              class_name: str = "vtkMRMLScalarVolumeNode"):
    """New volume sequence node (and, if ``browser``, a browser node with a proxy volume) from engine volumes.

    ``index_values`` are stored as strings (numeric index type); frames are deep copies of class
    ``class_name`` (``vtkMRMLLabelMapVolumeNode`` for label sequences).
    Returns ``(sequence_node, browser_node_or_None)``.
    """
    scene = get_scene(scene)
    if len(volumes) != len(index_values):
        raise ValueError(f"{len(volumes)} volumes but {len(index_values)} index values")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", unique_name(scene, name))
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    for frame_index, (volume, value) in enumerate(zip(volumes, index_values)):
        frame = scene.CreateNodeByClass(class_name)
        frame.UnRegister(None)  # CreateNodeByClass returns a new reference; the sequence keeps its own copy
        frame.SetName(f"{name}_{frame_index:04d}")
        update_node_from_volume(frame, volume)
        sequence.SetDataNodeAtValue(frame, _format_index(value))
    return sequence, (add_browser(sequence, scene) if browser else None)


def _format_index(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)


def add_browser(sequence_node, scene=None):
    """A sequence browser node playing ``sequence_node`` (its proxy volume is created in the scene)."""
    scene = get_scene(scene, sequence_node)
    logic = sequences_logic(scene)  # registers the browser node class with the scene
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", unique_name(scene, f"{_name(sequence_node)} browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence_node.GetID())
    logic.UpdateProxyNodesFromSequences(browser)
    return browser


def load_sequence(path: str | Path, name: str, scene=None, browser: bool = True):
    """Read a 4D NRRD file into a new volume sequence node (and browser).  Returns ``(sequence, browser)``."""
    scene = get_scene(scene)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The sequence file '{path}' does not exist; check the path.")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", unique_name(scene, name))
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetScene(scene)  # lets the reader create frame nodes by class; the storage node is not added
    storage.SetFileName(str(path))
    with temporary_nodes(scene):
        ok = storage.ReadData(sequence)
    if not ok or sequence.GetNumberOfDataNodes() == 0:
        scene.RemoveNode(sequence)
        raise InputError(f"The file '{path}' could not be read as a volume sequence; write it as a 4D NRRD (.seq.nrrd).")
    return sequence, (add_browser(sequence, scene) if browser else None)


def engine_sequence_from_node(sequence_node, role: str = "sequence"):
    """The node as an engine :class:`tttmedical.core.sequence.Sequence` (numeric index values)."""
    from tttmedical.core.sequence import Sequence

    frames = volumes_from_sequence(sequence_node, role)
    try:
        values = [float(v) for v in index_values(sequence_node)]
    except ValueError:
        raise InputError(
            f"The {role} '{_name(sequence_node)}' has text index values; use a sequence with a numeric index (e.g. time)."
        ) from None
    return Sequence(frames, sequence_node.GetIndexName(), sequence_node.GetIndexUnit(), values)


def add_sequence_from_engine(sequence, name: str, scene=None, browser: bool = True):
    """New volume sequence node (and browser) from an engine ``Sequence``."""
    class_name = "vtkMRMLLabelMapVolumeNode" if sequence.is_labelmap else "vtkMRMLScalarVolumeNode"
    return add_sequence_from_volumes(list(sequence.frames), list(sequence.index_values), name,
                                     sequence.index_name, sequence.index_unit, scene, browser, class_name)
