"""Losses and metrics against independent reference computations."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from tttmedical.core import metrics as M
from tttmedical.core.losses import LocalSimilarity, box_sum, local_ncc_map, smoothness
from tttmedical.core.warp import warp


def _smooth_image(shape=(16, 18, 20), seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)


def test_box_sum_matches_scipy_and_has_exact_gradient():
    x = np.random.default_rng(0).random((7, 8, 9))
    ref = ndimage.uniform_filter(x, 5, mode="constant") * 125
    np.testing.assert_allclose(box_sum(torch.from_numpy(x)[None, None], 5)[0, 0].numpy(), ref, atol=1e-9)
    t = torch.rand(1, 2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: box_sum(a, 3), (t,))


def test_local_ncc_matches_a_direct_computation():
    a, b = _smooth_image(seed=1), _smooth_image(seed=2)
    w = 5
    mean = lambda x: ndimage.uniform_filter(x.astype(np.float64), w, mode="constant")
    cov = mean(a * b) - mean(a) * mean(b)
    ref = cov / np.sqrt((mean(a * a) - mean(a) ** 2) * (mean(b * b) - mean(b) ** 2) + 1e-5)
    out = local_ncc_map(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], w)[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=2e-4)


def test_similarity_is_maximal_for_identical_images_and_gradient_points_downhill():
    f = torch.from_numpy(_smooth_image())[None, None]
    sim = LocalSimilarity(f, (5, 9), 5)
    same = sim(f)
    assert same["ssim"].item() == pytest.approx(1.0, abs=1e-4)
    u = torch.zeros(1, 3, *f.shape[2:])
    u[:, 2] = 1.5
    moving = warp(f, -u)  # f shifted: moving(x) = f(x - 1.5)
    v = torch.zeros_like(u, requires_grad=True)
    loss = lambda field: (1 - sim(warp(moving, field))["ncc"]) + 2 * (1 - sim(warp(moving, field))["ssim"])
    value = loss(v)
    value.backward()
    step = v.detach() - 0.5 * v.grad / v.grad.abs().max()
    assert loss(step).item() < value.item()
    assert v.grad[:, 2].mean() < 0  # the minimiser moves towards +1.5 along i
    assert loss(u).item() < value.item()


def test_smoothness_penalises_roughness_only():
    const = torch.ones(1, 3, 6, 6, 6) * 3.0
    assert smoothness(const).item() == 0.0
    rough = const + torch.randn_like(const)
    assert smoothness(rough, "l2").item() > 0.5 and smoothness(rough, "l1").item() > 0.5
    rough.requires_grad_(True)
    smoothness(rough).backward()
    assert torch.isfinite(rough.grad).all()


def test_dice_and_hd95_on_shifted_cubes():
    a = np.zeros((20, 20, 20), np.int16); a[5:15, 5:15, 5:15] = 1
    b = np.zeros_like(a); b[5:15, 5:15, 8:18] = 1  # shifted by 3 voxels along i
    assert M.dice_per_label(a, b)[1] == pytest.approx(2 * 700 / 2000)
    assert M.hd95_per_label(a, b, spacing=(2.0, 1.0, 1.0))[1] == pytest.approx(6.0)  # 3 voxels of 2 mm along i
    assert M.hd95_per_label(a, a)[1] == 0.0
    out = M.label_metrics(a, b, (2.0, 1.0, 1.0))
    assert out["dice"] == pytest.approx(0.7) and out["hd95_mm"] == pytest.approx(6.0)


def test_jacobian_statistics():
    j = np.ones((10, 10, 10)); j[0, 0, :5] = -0.5
    assert M.folding_percent(j) == pytest.approx(0.5)
    s = M.sdlogj(np.exp(np.random.default_rng(0).normal(0, 0.2, 10000)))
    assert s["sdlogj"] == pytest.approx(0.2, abs=0.01) and s["sdlogj_plus3"] < s["sdlogj"]


def test_intensity_metrics():
    a = _smooth_image()
    assert M.psnr(a, a) == float("inf") and M.ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    noisy = a + np.random.default_rng(0).normal(0, 0.01, a.shape).astype(np.float32)
    rng = a.max() - a.min()
    assert M.psnr(a, noisy) == pytest.approx(20 * np.log10(rng / 0.01), abs=0.2)
    assert M.nmse(a, noisy) == pytest.approx(M.mse(a, noisy) / np.mean(a.astype(np.float64) ** 2), rel=1e-6)
    assert M.ncc_global(a, 2 * a + 1) == pytest.approx(1.0) and M.ncc_local(a, a) > 0.99
    assert M.ssim(a, noisy) < M.ssim(a, a)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_label_values_above_int16_are_kept(dtype):
    a = np.zeros((20, 20, 20), dtype); a[5:15, 5:15, 5:15] = 40000; a[0:3, 0:3, 0:3] = 7
    b = np.zeros_like(a); b[5:15, 5:15, 8:18] = 40000; b[0:3, 0:3, 0:3] = 7
    out = M.label_metrics(a, b, (2.0, 1.0, 1.0))
    assert set(out["dice_per_label"]) == {7, 40000}  # -25536 would be the int16 wrap of 40000
    assert out["dice_per_label"][40000] == pytest.approx(0.7) and out["dice_per_label"][7] == 1.0
    assert out["hd95_mm_per_label"][40000] == pytest.approx(6.0) and out["labels_missing"] == []
    # Mixed dtypes (uint16 fixed, int64 warped) compare by value.
    assert M.dice_per_label(a.astype(np.uint16), b.astype(np.int64))[40000] == pytest.approx(0.7)


def test_a_vanished_label_counts_in_the_hd95_mean_at_the_grid_diagonal():
    shape, spacing = (20, 30, 40), (1.0, 2.0, 3.0)  # spacing (i, j, k) for a [k, j, i] array
    a = np.zeros(shape, np.int32); a[2:8, 2:8, 2:8] = 1; a[10:16, 10:16, 10:16] = 2
    b = np.zeros_like(a); b[2:8, 2:8, 2:8] = 1  # label 2 vanished from the warped map
    diagonal = np.sqrt((39 * 1.0) ** 2 + (29 * 2.0) ** 2 + (19 * 3.0) ** 2)
    assert M.grid_diagonal_mm(shape, spacing) == pytest.approx(diagonal)
    assert np.isnan(M.hd95_per_label(a, b, spacing)[2])  # the raw per-label value is undefined
    out = M.label_metrics(a, b, spacing)
    assert out["labels_missing"] == [2] and out["hd95_missing_mm"] == pytest.approx(diagonal)
    assert out["hd95_mm_per_label"] == {1: 0.0, 2: pytest.approx(diagonal)}
    assert out["hd95_mm"] == pytest.approx(diagonal / 2)  # not 0.0, the mean over label 1 alone
    assert out["hd95_mm_present"] == 0.0 and out["dice"] == pytest.approx(0.5)
    # A label that appears only in the warped map is penalised the same way.
    swapped = M.label_metrics(b, a, spacing)
    assert swapped["labels_missing"] == [2] and swapped["hd95_mm"] == pytest.approx(diagonal / 2)
    # Every label gone: the mean is the diagonal, and no label is left to give hd95_mm_present.
    gone = M.label_metrics(a, np.zeros_like(a), spacing)
    assert gone["hd95_mm"] == pytest.approx(diagonal) and np.isnan(gone["hd95_mm_present"]) and gone["dice"] == 0.0


def test_label_maps_must_hold_whole_numbers():
    a = np.zeros((6, 6, 6), np.float32); a[1:4, 1:4, 1:4] = 1.0
    assert M.label_metrics(a, a, (1.0, 1.0, 1.0))["dice"] == 1.0
    with pytest.raises(ValueError, match="whole numbers"):
        M.dice_per_label(a * 0.5, a)


def test_hd95_on_the_union_box_equals_hd95_on_the_whole_grid():
    """hd95_per_label measures inside the labels' bounding box: pinned against the whole-grid
    computation for a label touching the grid border and one well inside, anisotropic spacing."""
    rng = np.random.default_rng(3)
    a = np.zeros((20, 24, 28), np.uint8)
    b = np.zeros_like(a)
    a[0:6, 3:12, 5:15] = 1
    b[0:5, 4:13, 7:16] = 1          # touches the k = 0 border like a
    a[10:17, 12:20, 14:25] = 2
    b[11:18, 13:21, 12:24] = 2
    b[12:14, 14:16, 20:22] = 0      # a hole: an inner surface
    a[rng.random(a.shape) < 0.01] = 0
    spacing = (0.8, 1.0, 2.5)
    sampling = tuple(reversed(spacing))
    for lab in (1, 2):
        x, y = a == lab, b == lab
        whole = np.percentile(np.concatenate([M._surface_distances(x, y, sampling), M._surface_distances(y, x, sampling)]), 95)
        assert M.hd95_per_label(a, b, spacing)[lab] == pytest.approx(float(whole), abs=1e-12)
