"""``tttmedical view`` in a real browser: start the web app on 127.0.0.1, photograph it in headless Chromium
(Playwright driving Debian's ``/usr/bin/chromium``; no browser download), move the time slider, stop it.

Needs the ``view`` packages (trame, trame-vuetify), ``playwright`` (Python package only) and slicer-core.
Without ``/usr/bin/chromium`` (``apt-get install chromium``) the test still starts the app and checks
that it serves the page, then reports the missing browser as a skip with that reason; it never skips
when the app itself fails.  ``TTTMEDICAL_VIEW_FIGURES=DIR`` also copies the screenshots to ``DIR``.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="slicer-core (the 'test' extra) is not installed")
pytest.importorskip("trame", reason="trame (the 'view' extra) is not installed")
pytest.importorskip("trame_vuetify", reason="trame-vuetify (the 'view' extra) is not installed")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")

CHROMIUM = Path("/usr/bin/chromium")
STARTUP_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ViewServer:
    """``tttmedical view FOLDER`` in a child process on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "tttmedical", "view", str(folder), "--port", str(self.port),
                                         "--size", "256"], stdout=subprocess.DEVNULL, stderr=log.open("w"))

    def wait_until_serving(self) -> str:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"tttmedical view exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    return response.read().decode("utf-8", "replace")
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"tttmedical view did not answer on {self.url} within {STARTUP_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def image_of(page, selector: str) -> np.ndarray:
    from PIL import Image

    src = page.get_attribute(selector, "src")
    assert src and src.startswith("data:image/jpeg;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"), dtype=np.float64)


def settled(page, timeout_s: float = 60.0) -> int:
    """Wait for the views' frames, then until no new frame arrives for a second; returns the render count."""
    page.wait_for_function("() => { const i = document.querySelector('#view-Red');"
                           " return i && i.src && i.src.startsWith('data:image'); }", timeout=timeout_s * 1000)
    count, since = page.inner_text("#render-count"), time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() - since < 1.0 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        now = page.inner_text("#render-count")
        if now != count:
            count, since = now, time.monotonic()
    return int(count)


def keep(path: Path) -> None:
    target = os.environ.get("TTTMEDICAL_VIEW_FIGURES")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / path.name)


@pytest.fixture
def results(tmp_path, mni_small):
    """A registration and an interpolation result folder from real (small, few-step) engine runs."""
    from tttmedical.core.progress import Progress
    from tttmedical.core.sequence import Sequence
    from tttmedical.core.volume import Volume
    from tttmedical.interpolation.pipeline import InterpolateOptions, interpolate
    from tttmedical.registration.pipeline import RegisterOptions, read_inputs, register

    inputs = read_inputs(mni_small["fixed"], mni_small["moving"], mni_small["fixed_labels"], mni_small["moving_labels"])
    reg = register(inputs, tmp_path / "registration", RegisterOptions(iterations=8, device="cpu"), Progress("none"))
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in (12, 20, 24)], indexing="ij")
    frames = [Volume((100 * np.exp(-((k - 6) ** 2 / 8 + (j - 10) ** 2 / 8 + (i - 5 - 2.5 * t) ** 2 / 6))).astype(np.float32),
                     (1.5, 1.5, 2.0), (0.0, 0.0, 0.0), np.eye(3)) for t in range(5)]
    interpolate(Sequence(frames, "time", "s", [0.1 * t for t in range(5)]), tmp_path / "interpolation",
                InterpolateOptions(evaluate=True, epochs=1, ttt_task="rotation", scheme="online", device="cpu"),
                Progress("none"))
    return {"registration": tmp_path / "registration", "interpolation": tmp_path / "interpolation", "report": reg}


@pytest.mark.slow
def test_view_app_in_headless_chromium(results, tmp_path):
    servers = {task: ViewServer(results[task], tmp_path / f"{task}.log") for task in ("registration", "interpolation")}
    try:
        for task, server in servers.items():
            html = server.wait_until_serving()
            assert "<html" in html.lower()
        if not CHROMIUM.is_file():
            pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium): both viewers started and served "
                        f"their page, but they were not photographed")
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                # registration: fixed with the refined volume at 50 %, the metrics table
                page.goto(servers["registration"].url)
                settled(page)
                shot = tmp_path / "view-registration.png"
                page.screenshot(path=str(shot), full_page=True)
                keep(shot)
                red = image_of(page, "#view-Red")
                assert red.std() > 10                                            # not blank
                table = page.inner_text("#metrics")
                dice = results["report"]["metrics"]["dice"]
                assert "dice" in table and f"{dice:.4g}" in table
                # interpolation: move the time slider two steps with the keyboard, as a user would
                page.goto(servers["interpolation"].url)
                renders = settled(page)
                assert page.inner_text("#frame-label").strip() == "0 s"
                before = image_of(page, "#view-Red")
                page.focus(".frame-slider .v-slider-thumb")
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                page.wait_for_function("() => document.querySelector('#frame-label').innerText.trim() === '0.2 s'",
                                       timeout=30000)
                assert settled(page) > renders
                after = image_of(page, "#view-Red")
                shot = tmp_path / "view-interpolation-slider.png"
                page.screenshot(path=str(shot), full_page=True)
                keep(shot)
                centres = [np.argwhere(a > 0.5 * a.max()).mean(axis=0) for a in (before, after)]
                assert abs(centres[1][1] - centres[0][1]) > 8 and abs(centres[1][0] - centres[0][0]) < 3
                assert "rotation/online" in page.inner_text("#metrics")
            finally:
                browser.close()
    finally:
        for server in servers.values():
            server.stop()
    assert all(server.process.returncode is not None for server in servers.values())
