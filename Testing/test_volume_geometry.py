"""Geometry survives every file format and the LPS/RAS conversion."""
import numpy as np
import pytest
import SimpleITK as sitk

from engine_helpers import is_one_sentence, rotation
from tttmedical.core.errors import InputError
from tttmedical.core.volume import Volume, normalize, resample_spacing, resample_to


def _volume():
    rng = np.random.default_rng(0)
    return Volume(rng.random((5, 6, 7)).astype(np.float32), (0.7, 1.3, 2.9), (-12.5, 30.25, 7.0), rotation(np.deg2rad(20), 0.0, np.deg2rad(35)))


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    vol = _volume()
    back = Volume.read(vol.write(tmp_path / f"v{suffix}"))
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)


def test_nifti_is_stored_in_ras_but_reads_back_in_lps(tmp_path):
    import nibabel as nib

    vol = _volume()
    path = vol.write(tmp_path / "v.nii.gz")
    affine = nib.load(str(path)).affine  # RAS, columns i, j, k
    np.testing.assert_allclose(affine, vol.ijk_to_ras(), atol=1e-4)


def test_ijk_to_ras_maps_corner_voxels_like_itk():
    vol = _volume()
    image = vol.to_sitk()
    m = vol.ijk_to_ras()
    for ijk in [(0, 0, 0), (6, 5, 4), (6, 0, 4)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = m @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    back = Volume.from_ijk_to_ras(vol.array, m)
    np.testing.assert_allclose(back.spacing, vol.spacing)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-12)
    np.testing.assert_allclose(back.origin, vol.origin)


def test_resample_to_identical_grid_is_identity_and_follows_physical_space():
    vol = _volume()
    np.testing.assert_allclose(resample_to(vol, vol).array, vol.array, atol=1e-6)
    # a grid shifted by exactly one voxel along i reads the neighbouring voxel
    shifted = Volume(vol.array, vol.spacing, tuple(np.array(vol.origin) + vol.direction[:, 0] * vol.spacing[0]), vol.direction)
    out = resample_to(vol, shifted)
    np.testing.assert_allclose(out.array[:, :, :-1], vol.array[:, :, 1:], atol=1e-5)


def test_resample_spacing_keeps_extent():
    vol = _volume()
    out = resample_spacing(vol, (1.4, 2.6, 5.8))
    assert out.size_ijk == (4, 3, 2)  # halved, rounded, at least 2
    np.testing.assert_allclose(out.origin, vol.origin)


def test_normalisation_ranges():
    a = np.linspace(-1000, 1000, 1001, dtype=np.float32).reshape(7, 11, 13)[:, :, :]
    n = normalize(a, "mri")
    assert n.min() == 0.0 and n.max() == 1.0
    ct = normalize(a, "ct")
    assert ct[a <= -160].max() == 0.0 and ct[a >= 240].min() == 1.0


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((4, 4), np.float32), "3D"),
    (np.full((4, 4, 4), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 4), np.float32), "empty"),
])
def test_bad_arrays_are_refused_with_one_sentence(tmp_path, array, fragment):
    image = sitk.GetImageFromArray(array)
    path = tmp_path / "bad.nrrd"
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=fragment) as info:
        Volume.read(path, "fixed image")
    assert "fixed image" in str(info.value) and is_one_sentence(str(info.value))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="could not be read"):
        Volume.read(bad, "moving image")
    with pytest.raises(InputError, match="does not exist"):
        Volume.read(tmp_path / "missing.nrrd", "moving image")
