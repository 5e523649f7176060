"""Volume sequence nodes <-> 4D NRRD keep frame count, index name/unit/values, voxels and geometry."""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from tttmedical.core.errors import InputError  # noqa: E402
from tttmedical.core.volume import Volume  # noqa: E402
from TTTMedicalLib import sequences  # noqa: E402
from TTTMedicalLib.scene import node_ids  # noqa: E402

DIRECTION = np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]])  # oblique, orthonormal
SPACING, ORIGIN = (1.25, 0.8, 2.5), (-30.0, 12.0, 5.5)
INDEX_VALUES = [0.0, 0.125, 0.25, 0.375, 0.5]


def frames(n=5, shape=(4, 5, 6)):
    rng = np.random.default_rng(3)
    return [Volume(rng.random(shape).astype(np.float32) + t, SPACING, ORIGIN, DIRECTION) for t in range(n)]


def test_round_trip_keeps_frames_index_and_geometry(scene, tmp_path):
    original = frames()
    seq, browser = sequences.add_sequence_from_volumes(original, INDEX_VALUES, "cine", "time", "s", scene)
    assert browser.GetProxyNode(seq) is not None

    before = node_ids(scene)
    path = sequences.write_sequence(seq, tmp_path / "cine.seq.nrrd")
    assert node_ids(scene) == before  # writing adds nothing to the scene

    back, _ = sequences.load_sequence(path, "cine back", scene)
    assert back.GetNumberOfDataNodes() == 5
    assert [float(v) for v in sequences.index_values(back)] == INDEX_VALUES
    assert (back.GetIndexName(), back.GetIndexUnit()) == ("time", "s")
    for expected, got in zip(original, sequences.volumes_from_sequence(back)):
        assert np.array_equal(got.array, expected.array)
        assert got.same_grid(expected, tol=1e-9)
        for ijk in ([0, 0, 0], [5, 4, 3], [5, 0, 3]):
            assert np.allclose(got.ijk_to_ras() @ np.r_[ijk, 1], expected.ijk_to_ras() @ np.r_[ijk, 1], atol=1e-9)


def test_engine_reads_what_slicer_writes_and_back(scene, tmp_path):
    from tttmedical.core import sequence as core_sequence  # a broken engine fails this test, never skips it
    seq, _ = sequences.add_sequence_from_volumes(frames(), INDEX_VALUES, "cine", "phase", "ms", scene, browser=False)
    path = sequences.write_sequence(seq, tmp_path / "slicer.seq.nrrd")
    engine = core_sequence.read_sequence(path)
    assert len(engine) == 5 and engine.index_values == INDEX_VALUES
    assert (engine.index_name, engine.index_unit) == ("phase", "ms")
    assert engine.grid.same_grid(frames()[0], tol=1e-9)
    assert np.array_equal(engine.array, np.stack([f.array for f in frames()]))

    for layout in ("first", "last"):
        written = core_sequence.write_sequence(engine, tmp_path / f"engine_{layout}.seq.nrrd", frame_axis=layout)
        loaded, _ = sequences.load_sequence(written, f"from engine {layout}", scene, browser=False)
        assert [float(v) for v in sequences.index_values(loaded)] == INDEX_VALUES
        assert (loaded.GetIndexName(), loaded.GetIndexUnit()) == ("phase", "ms")
        again = sequences.engine_sequence_from_node(loaded)
        assert np.array_equal(again.array, engine.array) and again.grid.same_grid(engine.grid, tol=1e-9)


def test_bad_sequences_are_input_errors(scene, tmp_path):
    with pytest.raises(InputError, match=r"^No sequence is selected"):
        sequences.write_sequence(None, tmp_path / "x.seq.nrrd")
    empty = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "empty")
    with pytest.raises(InputError, match=r"'empty' has no frames"):
        sequences.write_sequence(empty, tmp_path / "x.seq.nrrd")
    mixed, _ = sequences.add_sequence_from_volumes(
        [frames(1)[0], Volume(np.ones((4, 5, 6), np.float32), (1, 1, 1))], [0, 1], "mixed", scene=scene, browser=False)
    with pytest.raises(InputError, match=r"Frame 1 of the sequence 'mixed' is on a different grid than frame 0"):
        sequences.write_sequence(mixed, tmp_path / "x.seq.nrrd")
    (tmp_path / "bad.seq.nrrd").write_text("not a nrrd")
    count = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=r"could not be read as a volume sequence"):
        sequences.load_sequence(tmp_path / "bad.seq.nrrd", "bad", scene)
    assert scene.GetNumberOfNodes() == count
