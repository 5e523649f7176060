"""Report contents -> table and plot nodes.

* :func:`add_metrics_table`: one row per metric, columns ``metric``, ``initial``, ``refined``
  (the report's ``initial_<name>`` and ``<name>``); nested values such as per-label Dice become
  ``dice[liver]`` rows.  Units are those of the engine (``hd95_mm`` in millimetres, ``folding_percent``
  in percent, others unitless).
* :func:`add_loss_plot`: a table with ``step``, ``iteration``, ``level``, ``loss`` columns, a line
  series (x = step, the running index over all pyramid levels) and a chart node.
"""
from __future__ import annotations

import math

import numpy as np
import vtk

import slicer

from .scene import get_scene, unique_name


def _flatten(metrics: dict, label_names: list[str] | None = None) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{key}[{_label(sub, label_names)}]"] = _number(sub_value)
        elif isinstance(value, (list, tuple)):
            for index, sub_value in enumerate(value):
                flat[f"{key}[{index}]"] = _number(sub_value)
        else:
            flat[key] = _number(value)
    return flat


def _label(key, label_names) -> str:
    try:
        value = int(key)
    except (TypeError, ValueError):
        return str(key)
    if label_names and 1 <= value <= len(label_names):
        return label_names[value - 1]
    return str(value)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def metrics_rows(metrics: dict, label_names: list[str] | None = None) -> list[tuple[str, float, float]]:
    """``(name, initial, refined)`` rows in the report's order; a missing value is NaN."""
    flat = _flatten(metrics, label_names)
    names: list[str] = []
    for key in flat:
        base = key[len("initial_"):] if key.startswith("initial_") else key
        if base not in names:
            names.append(base)
    return [(name, flat.get(f"initial_{name}", math.nan), flat.get(name, math.nan)) for name in names]


def add_metrics_table(metrics: dict, name: str, scene=None, label_names: list[str] | None = None):
    """New table node: ``metric`` (string), ``initial`` and ``refined`` (double) columns."""
    scene = get_scene(scene)
    rows = metrics_rows(metrics, label_names)
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", unique_name(scene, name))
    table = table_node.GetTable()
    columns = [vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray()]
    for column, title in zip(columns, ("metric", "initial", "refined")):
        column.SetName(title)
        table.AddColumn(column)
    table.SetNumberOfRows(len(rows))
    for row, (metric, initial, refined) in enumerate(rows):
        table.SetValue(row, 0, vtk.vtkVariant(metric))
        table.SetValue(row, 1, vtk.vtkVariant(initial))
        table.SetValue(row, 2, vtk.vtkVariant(refined))
    table.Modified()
    table_node.SetUseColumnTitleAsColumnHeader(True)
    return table_node


def table_as_dict(table_node) -> dict[str, tuple]:
    """``{metric: (initial, refined)}`` read back from a metrics table node."""
    table = table_node.GetTable()
    return {
        table.GetValue(row, 0).ToString(): (table.GetValue(row, 1).ToDouble(), table.GetValue(row, 2).ToDouble())
        for row in range(table.GetNumberOfRows())
    }


def add_loss_plot(loss_curve: list[dict], name: str, scene=None):
    """Table + line series + chart for ``loss_curve`` entries ``{"iteration": int, "level": int, "loss": float}``.

    The x axis is ``step``, the running index over all pyramid levels (``iteration`` restarts at each
    level; both are kept in the table with ``level``).  Returns ``(chart, table, series)``.
    """
    scene = get_scene(scene)
    iterations = np.array([float(e.get("iteration", i)) for i, e in enumerate(loss_curve)], dtype=np.float64)
    levels = np.array([float(e.get("level", 0)) for e in loss_curve], dtype=np.float64)
    losses = np.array([_number(e.get("loss")) for e in loss_curve], dtype=np.float64)
    steps = np.arange(len(loss_curve), dtype=np.float64)

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", unique_name(scene, f"{name} table"))
    slicer.util.updateTableFromArray(table, [steps, iterations, levels, losses], ["step", "iteration", "level", "loss"])

    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", unique_name(scene, f"{name} series"))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("step")
    series.SetYColumnName("loss")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)

    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", unique_name(scene, name))
    chart.SetTitle("Refinement loss")
    chart.SetXAxisTitle("step (all pyramid levels)")
    chart.SetYAxisTitle("loss")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart, table, series
