"""Result folders of real engine runs loaded into a scene (``rendering.result_scene``) and shown by the
viewer's views (``TTTMedicalLib.rendering.viewer.ResultViewer``, no web server), asserted on values and pixels;
``tttmedical view`` refuses a folder that is not a result with one sentence (exit 2).

The engine runs are small (few steps) and real; nothing skips when the engine is broken.
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.progress import Progress  # noqa: E402
from tttmedical.core.sequence import Sequence  # noqa: E402
from tttmedical.core.volume import Volume  # noqa: E402
from TTTMedicalLib.rendering.result_scene import load_result  # noqa: E402
from TTTMedicalLib.volumes import read_volume_file  # noqa: E402

def _quiet():
    return Progress("none")


def pixels_of(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/jpeg;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L"), dtype=np.float64)


@pytest.fixture
def viewer_of(scene):
    from TTTMedicalLib.rendering.viewer import ResultViewer

    made = []

    def make(folder):
        made.append(ResultViewer(folder, size=(128, 128)))
        return made[-1]

    yield make
    for viewer in made:
        viewer.views.close()


def blob(shift_i: float, shape=(12, 16, 20)) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return (100 * np.exp(-((k - 6) ** 2 / 8 + (j - 8) ** 2 / 8 + (i - 6 - shift_i) ** 2 / 6))).astype(np.float32)


def test_registration_result_folder_in_the_viewer(mni_small, tmp_path, viewer_of):
    from tttmedical.registration.pipeline import RegisterOptions, read_inputs, register

    inputs = read_inputs(mni_small["fixed"], mni_small["moving"], mni_small["fixed_labels"], mni_small["moving_labels"])
    report = register(inputs, tmp_path / "reg", RegisterOptions(iterations=8, device="cpu"), _quiet())
    viewer = viewer_of(tmp_path / "reg")
    result = viewer.result
    assert result.task == "registration"
    assert list(result.volumes) == ["fixed", "moving", "refined", "Jacobian", "displacement (mm)"]
    assert result.segmentation is not None and result.segmentation.GetSegmentation().GetNumberOfSegments() == 3
    table = dict(zip(result.table["metric"], zip(result.table["initial"], result.table["refined"])))
    assert table["dice"] == pytest.approx((report["metrics"]["initial_dice"], report["metrics"]["dice"]))
    headers, rows = viewer.table_rows()
    assert [h["title"] for h in headers] == ["metric", "initial", "refined"] and len(rows) == len(table)
    # the displacement magnitude volume is |u| of the written field
    field = read_volume_file(tmp_path / "reg" / "displacement.nii.gz").array
    shown = slicer.util.arrayFromVolume(result.volumes["displacement (mm)"])
    assert np.allclose(shown, np.linalg.norm(field, axis=-1), atol=1e-4)
    # pixels: the refined volume overlays the fixed one better than the moving one did
    seen = {}
    for name in ("fixed", "moving", "refined"):
        viewer.background, viewer.foreground = name, "(none)"
        viewer.show_layers()
        seen[name] = {view: pixels_of(url) for view, url in viewer.render().items()}
    for view in ("Red", "Yellow", "Green"):
        assert seen["fixed"][view].std() > 10
        before = np.abs(seen["moving"][view] - seen["fixed"][view]).mean()
        after = np.abs(seen["refined"][view] - seen["fixed"][view]).mean()
        assert after < before, (view, before, after)
    assert viewer.frames() == []


def test_interpolation_result_folder_moves_with_the_frame(tmp_path, viewer_of):
    from tttmedical.interpolation.pipeline import InterpolateOptions, interpolate

    grid = Volume(blob(0.0), (1.5, 1.5, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    seq = Sequence([grid.with_array(blob(2.0 * t)) for t in range(5)], "time", "s", [0.1 * t for t in range(5)])
    interpolate(seq, tmp_path / "interp", InterpolateOptions(evaluate=True, epochs=1, ttt_task="rotation",
                                                             scheme="online", device="cpu"), _quiet())
    viewer = viewer_of(tmp_path / "interp")
    assert viewer.result.task == "interpolation"
    assert viewer.frames() == ["0 s", "0.1 s", "0.2 s", "0.3 s", "0.4 s"]
    assert list(viewer.result.table["method"]) == ["linear blend", "no TTT", "rotation/online"]
    centres = []
    for frame in (0, 4):
        viewer.set_frame(frame)
        red = pixels_of(viewer.render()["Red"])
        rows, cols = np.nonzero(red > 0.5 * red.max())
        centres.append(np.array([rows.mean(), cols.mean()]))
    moved = centres[1] - centres[0]
    assert abs(moved[1]) > 10 and abs(moved[0]) < 2      # 8 voxels x 1.5 mm along i: left-right on the axial view


def test_recon_result_folder_error_maps(tmp_path, viewer_of):
    from tttmedical.recon.pipeline import ReconOptions, read_input, reconstruct

    rng = np.random.default_rng(0)
    image = np.zeros((2, 32, 32), np.float32)
    image[:, 8:24, 6:26] = 1.0 + 0.2 * rng.random((2, 16, 20))
    coils = np.exp(1j * rng.uniform(0, 2 * np.pi, (1, 4, 1, 1))) * np.linspace(0.5, 1, 32)[None, None, :, None]
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image[:, None] * coils, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["kspace"] = kspace.astype(np.complex64)
    options = ReconOptions(compare="zero,pretrained", acceleration=3.0, center_fraction=0.12, device="cpu")
    report = reconstruct(read_input(tmp_path / "scan.h5", options), tmp_path / "recon", options, _quiet())
    viewer = viewer_of(tmp_path / "recon")
    result = viewer.result
    assert list(result.volumes) == ["reference", "zero-filled", "pretrained", "error pretrained"]
    assert list(result.table["method"])[:2] == ["zero-filled", "pretrained"]
    reference = slicer.util.arrayFromVolume(result.volumes["reference"])
    pretrained = slicer.util.arrayFromVolume(result.volumes["pretrained"])
    assert np.allclose(slicer.util.arrayFromVolume(result.volumes["error pretrained"]), np.abs(reference - pretrained), atol=1e-5)
    psnr = {r["label"]: r["metrics"]["psnr"] for r in report["compare"]}
    # pixels: the pretrained reconstruction is closer to the reference than the zero-filled one, as its PSNR says
    seen = {}
    for name in ("reference", "zero-filled", "pretrained"):
        viewer.background, viewer.foreground = name, "(none)"
        viewer.show_layers()
        seen[name] = pixels_of(viewer.render()["Red"])
    closer = np.abs(seen["pretrained"] - seen["reference"]).mean() < np.abs(seen["zero-filled"] - seen["reference"]).mean()
    assert closer == (psnr["pretrained"] > psnr["zero"])


def test_not_a_result_folder_is_one_sentence(tmp_path, scene):
    with pytest.raises(InputError, match=r"^The result folder '.*missing' does not exist; pass the -o folder"):
        load_result(tmp_path / "missing", scene)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.json").write_text(json.dumps({"command": "train"}))
    with pytest.raises(InputError, match=r"is from 'train', not register, interpolate or recon"):
        load_result(tmp_path / "other", scene)
    done = subprocess.run([sys.executable, "-m", "tttmedical", "view", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.rstrip().endswith(f"tttmedical: error: The folder '{tmp_path}' has no report.json; "
                                         f"pass the -o folder of a tttmedical run.")
    assert not list(tmp_path.glob("*.png"))
