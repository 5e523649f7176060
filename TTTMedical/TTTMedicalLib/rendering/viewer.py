"""``tttmedical view OUTDIR``: a result folder in Slicer's views, served as a web page (trame) on this machine.

For a user who ran the engine where no desktop is (a headless GPU server): the folder is loaded into
an MRML scene as the module would show it (:mod:`.result_scene`), Slicer's own Red / Yellow
/ Green slice views render it offscreen (:mod:`.views`) and the page shows their frames,
with a background and a foreground (opacity) selector, a slice slider per view, the sequence
(time) slider of an interpolation result and the metrics table.  Every control change re-renders
the views on the server (explicit rendering; one JPEG per view).

Needs the optional ``view`` extra (``trame``, ``trame-vuetify``) and ``slicer`` (slicer-core).
"""
from __future__ import annotations

import base64
import io
import math

from . import panels
from .result_scene import ResultScene, load_result
from .views import SceneViews

VIEWS = ("Red", "Yellow", "Green")
NONE = "(none)"


def _data_url(pixels) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ResultViewer:
    """The scene, the views and the page state of one result folder (no web server: testable alone)."""

    def __init__(self, folder, size: tuple[int, int] = (360, 360)):
        import slicer

        self.scene = slicer.vtkMRMLScene()
        slicer.mrmlScene = self.scene          # the scene layer's default scene, as in the application
        self.views = SceneViews(self.scene, size)   # colour tables first: the loaders use them
        self.result: ResultScene = load_result(folder, self.scene)
        self._style()
        names = list(self.result.volumes)
        self.background = self.result.reference or names[0]
        self.foreground = next((n for n in ("refined",) if n in names and n != self.background), NONE)
        self.opacity = 0.5
        self.frame = 0
        for view in VIEWS:
            self.views.slice_view(view)
        self.show_layers()

    # ------------------------------------------------------------------ scene
    def _style(self) -> None:
        result = self.result
        anatomy = [n for c, n in result.volumes.items() if c not in result.maps]
        if anatomy:
            window, level = panels.intensity_window(result.volumes[result.reference] if result.reference not in result.maps
                                                    else anatomy[0])
            for node in anatomy:
                panels.display(node, "Grey", window, level)
        for caption, (colormap, window, level) in result.maps.items():
            panels.display(result.volumes[caption], colormap, window, level)
        if result.segmentation is not None:
            panels.outline(result.segmentation)

    def volume_names(self) -> list[str]:
        return list(self.result.volumes)

    def show_layers(self) -> None:
        background = self.result.volumes[self.background]
        foreground = self.result.volumes.get(self.foreground)
        for name in VIEWS:
            self.views.slice_view(name).show(background, foreground, self.opacity, fit=True)
            self.views.slice_view(name).jump_to(panels.centre_ras(background))

    def frames(self) -> list[str]:
        """The sequence's index values with unit (empty without a sequence)."""
        if self.result.browser is None:
            return []
        from ..sequences import index_values

        sequence = self.result.sequences[0]
        return [f"{float(v):g} {sequence.GetIndexUnit()}".strip() for v in index_values(sequence)]

    def set_frame(self, index: int) -> None:
        if self.result.browser is not None:
            self.frame = int(index)
            panels.select_frame(self.result.browser, self.frame)

    def slice_range(self, view: str) -> tuple[float, float, float]:
        return self.views.slice_view(view).offset_range()

    def set_offset(self, view: str, offset: float) -> None:
        self.views.slice_view(view).offset = offset

    def render(self) -> dict[str, str]:
        """Every slice view as a JPEG data URL."""
        return {view: _data_url(self.views.slice_view(view).render()) for view in VIEWS}

    def table_rows(self) -> tuple[list[dict], list[dict]]:
        """Headers and rows for the page's metrics table (numbers to 4 significant digits)."""
        table = self.result.table
        if not table:
            return [], []
        titles = list(table)
        headers = [{"title": t, "key": f"c{n}"} for n, t in enumerate(titles)]
        count = len(table[titles[0]])
        fmt = lambda v: v if isinstance(v, str) else ("–" if math.isnan(v) else f"{v:.4g}")  # noqa: E731
        rows = [{f"c{n}": fmt(table[t][r]) for n, t in enumerate(titles)} for r in range(count)]
        return headers, rows

    def close(self) -> None:
        self.views.close()
        self.scene.Clear(1)


def build_server(viewer: ResultViewer, server=None):
    """The trame server (vue3 + vuetify3) showing ``viewer``."""
    from trame.app import get_server
    from trame.ui.vuetify3 import SinglePageLayout
    from trame.widgets import html
    from trame.widgets import vuetify3 as v3

    server = server or get_server("tttmedical-view", client_type="vue3")
    state, ctrl = server.state, server.controller
    result = viewer.result
    names = viewer.volume_names()
    frames = viewer.frames()
    headers, rows = viewer.table_rows()
    state.update(dict(background=viewer.background, foreground=viewer.foreground, opacity=viewer.opacity,
                      frame=0, frame_label=frames[0] if frames else "", headers=headers, rows=rows, renders=0))
    for view in VIEWS:
        low, high, step = viewer.slice_range(view)
        state[f"offset_{view}"] = viewer.views.slice_view(view).offset
        state[f"range_{view}"] = [low, high, step]

    def refresh() -> None:
        images = viewer.render()
        state.update({f"image_{view}": url for view, url in images.items()})
        for view in VIEWS:
            state[f"offset_{view}"] = viewer.views.slice_view(view).offset
        state.renders += 1

    @state.change("background", "foreground", "opacity")
    def _layers(background, foreground, opacity, **_):
        viewer.background, viewer.foreground, viewer.opacity = background, foreground, float(opacity)
        viewer.show_layers()
        for view in VIEWS:
            state[f"range_{view}"] = list(viewer.slice_range(view))
        refresh()

    @state.change("frame")
    def _frame(frame, **_):
        viewer.set_frame(int(frame))
        state.frame_label = frames[int(frame)] if frames else ""
        refresh()

    def offset_changed(view):
        def changed(**kwargs):
            value = float(kwargs[f"offset_{view}"])
            if abs(value - viewer.views.slice_view(view).offset) > 1e-6:
                viewer.set_offset(view, value)
                refresh()
        return changed

    for view in VIEWS:
        state.change(f"offset_{view}")(offset_changed(view))

    with SinglePageLayout(server) as layout:
        layout.title.set_text(f"TTTMedical · {result.task} · {result.folder.name}")
        with layout.toolbar:
            v3.VSpacer()
            v3.VSelect(v_model=("background",), items=("volumes", names), label="background", density="compact",
                       hide_details=True, style="max-width: 220px", classes="mx-2")
            v3.VSelect(v_model=("foreground",), items=("foregrounds", [NONE, *names]), label="foreground",
                       density="compact", hide_details=True, style="max-width: 220px", classes="mx-2")
            v3.VSlider(v_model=("opacity",), min=0, max=1, step=0.05, label="opacity", density="compact",
                       hide_details=True, style="max-width: 220px", classes="mx-2")
        with layout.content:
            with v3.VContainer(fluid=True):
                if frames:
                    with v3.VRow(classes="align-center"):
                        v3.VSlider(v_model=("frame",), min=0, max=len(frames) - 1, step=1, label="time",
                                   hide_details=True, classes="mx-4 frame-slider")
                        html.Div("{{ frame_label }}", id="frame-label", style="min-width: 80px")
                with v3.VRow():
                    for view in VIEWS:
                        with v3.VCol(cols=4):
                            html.Div(view, style="font-weight: bold")
                            html.Img(src=(f"image_{view}",), id=f"view-{view}", style="width: 100%; background: black")
                            v3.VSlider(v_model=(f"offset_{view}",), min=(f"range_{view}[0]",), max=(f"range_{view}[1]",),
                                       step=(f"range_{view}[2]",), hide_details=True, density="compact")
                if headers:
                    with v3.VRow():
                        with v3.VCol(cols=12):
                            html.Div("Metrics", style="font-weight: bold")
                            v3.VDataTable(headers=("headers",), items=("rows",), density="compact",
                                          items_per_page=-1, id="metrics")
                html.Div("{{ renders }}", id="render-count", style="display: none")
    state.volumes, state.foregrounds = names, [NONE, *names]
    ctrl.on_server_ready.add(lambda **_: refresh())
    return server


def serve(folder, host: str = "127.0.0.1", port: int = 8080, size: tuple[int, int] = (360, 360), log=print) -> None:
    """Load ``folder`` and serve the viewer on ``http://host:port`` until interrupted."""
    viewer = ResultViewer(folder, size)
    server = build_server(viewer)
    log(f"Serving {viewer.result.task} result '{folder}' on http://{host}:{port}/ (Ctrl+C stops)")
    try:
        server.start(host=host, port=port, open_browser=False, show_connection_info=False)
    finally:
        viewer.close()
