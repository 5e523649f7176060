"""Round trips and error handling of tttmedical.core.sequence (Slicer .seq.nrrd and 4D NIfTI)."""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from engine_helpers import rotation

from tttmedical.core.errors import InputError
from tttmedical.core.sequence import LABELMAP_NODE_CLASS, Sequence, read_sequence, write_sequence
from tttmedical.core.volume import Volume

SPACING = (0.7, 1.3, 2.9)
ORIGIN = (-12.51234567891, 33.25, 7.125)
INDEX = [0.0, 0.25, 0.5, 0.75, 1.1]


def _direction() -> np.ndarray:
    """An oblique, axis-permuting, right-handed direction matrix (columns = i, j, k in LPS)."""
    rot = rotation(0.0, 0.0, math.radians(20.0))
    perm = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return rot @ perm


def _sequence(dtype=np.float32, seed=0) -> Sequence:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        array = rng.normal(size=(5, 6, 7, 8)).astype(dtype)
    else:
        array = rng.integers(0, 5, size=(5, 6, 7, 8)).astype(dtype)
    return Sequence.from_array(array, SPACING, ORIGIN, _direction(), "time", "s", INDEX)


def _assert_same(a: Sequence, b: Sequence, tol: float = 1e-12) -> None:
    assert len(a) == len(b)
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.grid.spacing, b.grid.spacing, rtol=0, atol=tol)
    np.testing.assert_allclose(a.grid.origin, b.grid.origin, rtol=0, atol=tol)
    np.testing.assert_allclose(a.grid.direction, b.grid.direction, rtol=0, atol=tol)
    assert a.index_values == b.index_values
    assert (a.index_name, a.index_unit) == (b.index_name, b.index_unit)


# ---------------------------------------------------------------------- NRRD
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int16])
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("frame_axis", ["first", "last"])
def test_nrrd_round_trip(tmp_path, dtype, compress, frame_axis):
    seq = _sequence(dtype)
    path = write_sequence(seq, tmp_path / "s.seq.nrrd", compress=compress, frame_axis=frame_axis)
    back = read_sequence(path)
    _assert_same(seq, back)
    assert back.attributes["DataNodeClassName"] == "vtkMRMLScalarVolumeNode"
    header = path.read_bytes().split(b"\n\n")[0].decode()
    assert ("kinds: list domain domain domain" if frame_axis == "first" else "kinds: domain domain domain list") in header
    axis = 0 if frame_axis == "first" else 3
    assert f"axis {axis} index values:=0.0 0.25 0.5 0.75 1.1" in header
    assert f"axis {axis} index type:=numeric" in header
    assert ("space directions: none (" in header) == (frame_axis == "first")
    assert not list(tmp_path.glob(".*partial*"))


def test_nrrd_geometry_matches_itk(tmp_path):
    """ITK's own NRRD reader (frames become vector components) sees the same LPS geometry and voxels."""
    seq = _sequence()
    for space in ("LPS", "RAS"):
        path = write_sequence(seq, tmp_path / f"{space}.seq.nrrd", space=space)
        image = sitk.ReadImage(str(path))
        assert image.GetNumberOfComponentsPerPixel() == len(seq)
        np.testing.assert_allclose(image.GetSpacing(), seq.grid.spacing, atol=1e-9)
        np.testing.assert_allclose(image.GetOrigin(), seq.grid.origin, atol=1e-9)
        np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), seq.grid.direction, atol=1e-9)
        voxels = sitk.GetArrayFromImage(image)  # (K, J, I, T)
        np.testing.assert_array_equal(np.moveaxis(voxels, -1, 0), seq.array)


def test_ras_header_reads_as_lps(tmp_path):
    """A header written in RAS (as Slicer <= 5.8 writes) gives the LPS geometry computed by hand."""
    seq = _sequence()
    ras_path = write_sequence(seq, tmp_path / "ras.seq.nrrd", space="RAS", compress=False)
    header = ras_path.read_bytes().split(b"\n\n")[0].decode()
    assert "space: right-anterior-superior" in header
    _assert_same(seq, read_sequence(ras_path))
    assert np.allclose(read_sequence(ras_path).grid.ijk_to_ras(), seq.grid.ijk_to_ras(), atol=1e-12)

    # Hand-written RAS header: i along R with 2 mm, j along A with 3 mm, k along S with 4 mm.
    data = np.arange(2 * 2 * 3 * 4, dtype=np.int16).reshape(2, 2, 3, 4)  # (T, K, J, I): frame axis last = slowest
    text = (
        "NRRD0004\n# hand written\ntype: short\ndimension: 4\nspace: right-anterior-superior\n"
        "sizes: 4 3 2 2\nspace directions: (2,0,0) (0,3,0) (0,0,4) none\nkinds: domain domain domain list\n"
        'labels: "" "" "" "time"\nunits: "" "" "" "ms"\nendian: little\nencoding: raw\n'
        "space origin: (10,20,30)\naxis 3 index values:=0 40\n\n"
    )
    hand = tmp_path / "hand.nrrd"
    hand.write_bytes(text.encode() + data.astype("<i2").tobytes())
    back = read_sequence(hand)
    assert len(back) == 2 and back.index_values == [0.0, 40.0] and back.index_unit == "ms"
    np.testing.assert_allclose(back.grid.spacing, (2.0, 3.0, 4.0))
    np.testing.assert_allclose(back.grid.origin, (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(back.grid.direction, np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(back.array, data)
    # ITK agrees about the first frame's geometry
    image = sitk.ReadImage(str(hand))
    np.testing.assert_allclose(image.GetOrigin()[:3], back.grid.origin)


def test_left_anterior_superior_and_gzip_detached(tmp_path):
    data = np.arange(3 * 2 * 2 * 2, dtype=np.float32).reshape(3, 2, 2, 2)  # (T, K, J, I)
    (tmp_path / "d.raw.gz").write_bytes(gzip.compress(data.astype("<f4").tobytes()))
    (tmp_path / "d.seq.nhdr").write_text(
        "NRRD0005\ntype: float\ndimension: 4\nspace: LAS\nsizes: 2 2 2 3\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1) none\nkinds: domain domain domain list\n"
        "endian: little\nencoding: gzip\nspace origin: (1,2,3)\ndata file: d.raw.gz\n"
    )
    back = read_sequence(tmp_path / "d.seq.nhdr")
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.grid.origin, (1.0, -2.0, 3.0))
    np.testing.assert_allclose(back.grid.direction, np.diag([1.0, -1.0, 1.0]))
    assert back.index_name == "frame" and back.index_values == [0.0, 1.0, 2.0]


def test_labelmap_attribute_and_single_frame(tmp_path):
    seq = _sequence(np.uint8)
    path = write_sequence(seq, tmp_path / "labels.seq.nrrd", labelmap=True)
    back = read_sequence(path)
    assert back.is_labelmap and back.attributes["DataNodeClassName"] == LABELMAP_NODE_CLASS
    one = Sequence([seq[0]], "time", "s", [3.5])
    back_one = read_sequence(write_sequence(one, tmp_path / "one.seq.nrrd"))
    assert len(back_one) == 1 and back_one.index_values == [3.5]
    np.testing.assert_array_equal(back_one[0].array, seq[0].array)


def test_plain_3d_nrrd_is_one_frame(tmp_path):
    volume = _sequence()[2]
    path = volume.write(tmp_path / "vol.nrrd", compress=True)  # written by ITK
    back = read_sequence(path)
    assert len(back) == 1 and back.index_name == "frame"
    np.testing.assert_array_equal(back[0].array, volume.array)
    assert back.grid.same_grid(volume, tol=1e-9)


# ---------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_nifti_round_trip(tmp_path, dtype):
    seq = _sequence(dtype)
    path = write_sequence(seq, tmp_path / "s.nii.gz", labelmap=(dtype == np.uint8))
    sidecar = tmp_path / "s.json"
    assert sidecar.is_file()
    meta = json.loads(sidecar.read_text())
    assert meta["index_values"] == INDEX and meta["index_name"] == "time" and meta["index_unit"] == "s"
    back = read_sequence(path)
    _assert_same(seq, back)
    assert back.is_labelmap == (dtype == np.uint8)
    # The NIfTI header alone (float32 geometry) agrees with ITK's reading and with the sequence.
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 4 and image.GetSize()[3] == len(seq)
    np.testing.assert_allclose(image.GetOrigin()[:3], seq.grid.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing()[:3], seq.grid.spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (4, 4))[:3, :3], seq.grid.direction, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(sitk.GetArrayFromImage(image)), seq.array)
    # Without the sidecar the time axis comes from pixdim[4] and the geometry from the header.
    sidecar.unlink()
    bare = read_sequence(path)
    np.testing.assert_array_equal(bare.array, seq.array)
    assert bare.grid.same_grid(seq.grid, tol=1e-4)
    assert bare.index_unit == "s" and bare.index_values == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


# ---------------------------------------------------------------------- Slicer itself
def _slicer_read(path):
    slicer = pytest.importorskip("slicer")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSequenceNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    frames, matrices = [], []
    for t in range(node.GetNumberOfDataNodes()):
        volume = node.GetNthDataNode(t)
        image = volume.GetImageData()
        frames.append(vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1]))
        m = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(m)
        matrices.append(np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)]))
    index = [float(node.GetNthIndexValue(t)) for t in range(node.GetNumberOfDataNodes())]
    return scene, node, storage, np.stack(frames), matrices, index


@pytest.mark.parametrize("space,frame_axis", [("LPS", "first"), ("RAS", "first"), ("LPS", "last")])
def test_slicer_reads_our_files(tmp_path, space, frame_axis):
    seq = _sequence()
    path = write_sequence(seq, tmp_path / "s.seq.nrrd", space=space, frame_axis=frame_axis)
    _, node, _, frames, matrices, index = _slicer_read(path)
    np.testing.assert_array_equal(frames, seq.array)
    for m in matrices:
        np.testing.assert_allclose(m, seq.grid.ijk_to_ras(), atol=1e-9)
    assert index == INDEX and node.GetIndexName() == "time" and node.GetIndexUnit() == "s"
    assert node.GetNthDataNode(0).GetClassName() == "vtkMRMLScalarVolumeNode"
    labels = write_sequence(_sequence(np.uint8), tmp_path / "l.seq.nrrd", labelmap=True, space=space, frame_axis=frame_axis)
    _, label_node, _, _, _, _ = _slicer_read(labels)
    assert label_node.GetNthDataNode(0).GetClassName() == "vtkMRMLLabelMapVolumeNode"


def test_we_read_slicer_written_files(tmp_path):
    seq = _sequence()
    scene, node, _, _, _, _ = _slicer_read(write_sequence(seq, tmp_path / "ours.seq.nrrd"))
    import slicer

    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "slicer.seq.nrrd"))
    assert storage.WriteData(node) == 1
    back = read_sequence(tmp_path / "slicer.seq.nrrd")
    _assert_same(seq, back, tol=1e-9)


# ---------------------------------------------------------------------- bad input
def _raises(path, match=None):
    with pytest.raises(InputError) as info:
        read_sequence(path)
    message = str(info.value)
    assert str(path) in message or path.name in message
    if match:
        assert match in message
    return message


def test_bad_files_raise_input_error(tmp_path):
    good = write_sequence(_sequence(), tmp_path / "good.seq.nrrd", compress=False)
    raw = good.read_bytes()
    header, _, data = raw.partition(b"\n\n")

    _raises(tmp_path / "missing.seq.nrrd", "does not exist")
    (tmp_path / "x.txt").write_text("hello")
    _raises(tmp_path / "x.txt", "extension")
    (tmp_path / "notnrrd.nrrd").write_bytes(b"P5 not a nrrd\n")
    _raises(tmp_path / "notnrrd.nrrd", "not a NRRD")
    (tmp_path / "trunc.seq.nrrd").write_bytes(header + b"\n\n" + data[: len(data) // 2])
    _raises(tmp_path / "trunc.seq.nrrd", "truncated")
    (tmp_path / "nosizes.nrrd").write_bytes(header.replace(b"sizes:", b"sizzles:") + b"\n\n" + data)
    _raises(tmp_path / "nosizes.nrrd", "sizes")
    (tmp_path / "count.nrrd").write_bytes(header.replace(b"index values:=0.0 ", b"index values:=") + b"\n\n" + data)
    _raises(tmp_path / "count.nrrd", "index values")
    (tmp_path / "enc.nrrd").write_bytes(header.replace(b"encoding: raw", b"encoding: hex") + b"\n\n" + data)
    _raises(tmp_path / "enc.nrrd", "encoding")
    (tmp_path / "space.nrrd").write_bytes(header.replace(b"left-posterior-superior", b"scanner-xyz") + b"\n\n" + data)
    _raises(tmp_path / "space.nrrd", "space")
    (tmp_path / "gz.nrrd").write_bytes(header.replace(b"encoding: raw", b"encoding: gzip") + b"\n\n" + b"\x1f\x8bjunk" * 10)
    _raises(tmp_path / "gz.nrrd")
    (tmp_path / "dim.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 2\nsizes: 3 3\nencoding: raw\nendian: little\n\n" + bytes(36))
    _raises(tmp_path / "dim.nrrd", "dimension")
    (tmp_path / "bad.nii.gz").write_bytes(b"definitely not nifti")
    _raises(tmp_path / "bad.nii.gz", "NIfTI")

    nii = write_sequence(_sequence(), tmp_path / "n.nii.gz")
    (tmp_path / "n.json").write_text(json.dumps({"index_values": [0, 1]}))
    with pytest.raises(InputError, match="index values"):
        read_sequence(nii)
    (tmp_path / "n.json").write_text("{broken")
    with pytest.raises(InputError, match="n.json"):
        read_sequence(nii)


def test_sequence_validation():
    a = Volume(np.zeros((2, 3, 4), np.float32), SPACING, ORIGIN, _direction())
    b = Volume(np.zeros((2, 3, 4), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="geometry"):
        Sequence([a, b])
    with pytest.raises(InputError, match="index values"):
        Sequence([a, a], index_values=[0.0])
    with pytest.raises(InputError, match="at least one"):
        Sequence([])
    with pytest.raises(InputError, match="shape"):
        Sequence([a, a.with_array(np.zeros((3, 3, 4), np.float32))])
    with pytest.raises(InputError):
        write_sequence(Sequence([a]), "/tmp/out.mha")


@pytest.mark.parametrize("name", ["s.seq.nrrd", "s.nii.gz"])
def test_non_finite_frames_are_refused_in_both_formats(tmp_path, name):
    seq = _sequence()
    seq.frames[2].array[1, 2, 3] = np.nan
    path = write_sequence(seq, tmp_path / name)
    with pytest.raises(InputError, match=r"^Frame 2 of the cine file .* contains NaN or infinite voxels; .*\.$"):
        read_sequence(path, "cine")


def test_nrrd_module_gives_sequence_fields(tmp_path):
    from tttmedical.core.nrrd import read_nrrd

    path = write_sequence(_sequence(), tmp_path / "s.seq.nrrd")
    fields = read_nrrd(path, "cine")
    assert Sequence(**fields).index_values == INDEX and fields["index_name"] == "time"
    assert fields["attributes"] == {"DataNodeClassName": "vtkMRMLScalarVolumeNode"}
