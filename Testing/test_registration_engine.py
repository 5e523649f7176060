"""Reg-TTR and SSMSR on real sample pairs: values must improve, the convention must hold."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from tttmedical.core import metrics as M
from tttmedical.core.volume import Volume, normalize
from tttmedical.core.warp import compose, folded_voxels, jacobian_determinant, resize_field, warp
from tttmedical.registration import regttr, ssmsr
from tttmedical.registration.pipeline import read_inputs


def _pair_tensors(paths):
    inputs = read_inputs(paths["fixed"], paths["moving"], paths["fixed_labels"], paths["moving_labels"])
    t = lambda v: torch.from_numpy(normalize(v.array))[None, None]
    return inputs, t(inputs.fixed), t(inputs.moving)


def _dice(inputs, field):
    labels = torch.from_numpy(inputs.moving_labels.array.astype(np.float32))[None, None]
    warped = warp(labels, field, mode="nearest")[0, 0].numpy()
    return M.label_metrics(inputs.fixed_labels.array, warped, inputs.fixed.spacing)["dice"]


def test_known_translation_is_recovered():
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((32, 32, 32)), 2.5).astype(np.float32)
    img = (img - img.min()) / (img.max() - img.min())
    shift = torch.tensor([1.5, -2.0, 1.0]).view(1, 3, 1, 1, 1)
    fixed = torch.from_numpy(img)[None, None]
    moving = warp(fixed, -shift.expand(1, 3, 32, 32, 32))  # moving(x) = fixed(x - s), so u = +s
    result = regttr.refine(fixed, moving, None, regttr.RegTTRConfig(iterations=80))
    inner = result.field[:, :, 8:-8, 8:-8, 8:-8].mean(dim=(2, 3, 4)).flatten()
    np.testing.assert_allclose(inner.numpy(), shift.flatten().numpy(), atol=0.25)


@pytest.mark.parametrize("sample", ["mni_small", "phantom_small"])
def test_regttr_from_identity_improves_ncc_and_dice(sample, request):
    inputs, f, m = _pair_tensors(request.getfixturevalue(sample))
    result = regttr.refine(f, m, None, regttr.RegTTRConfig(iterations=40))
    before, after = _dice(inputs, torch.zeros_like(result.field)), _dice(inputs, result.field)
    assert after > before + 0.03, (before, after)
    ncc_before = M.ncc_local(f[0, 0].numpy(), m[0, 0].numpy())
    ncc_after = M.ncc_local(f[0, 0].numpy(), warp(m, result.field)[0, 0].numpy())
    assert ncc_after > ncc_before + 0.02
    best = min(c["loss"] for c in result.loss_curve if c["level"] == max(c["level"] for c in result.loss_curve))
    assert result.best_loss == pytest.approx(best)  # the best iterate is returned, not the last
    # the per-level summary accounts for every evaluation of the curve, and says why each level ended
    assert [lv["evaluations"] for lv in result.levels] == [sum(c["level"] == lv["level"] for c in result.loss_curve)
                                                          for lv in result.levels]
    assert all((lv["stopped"] == "max_steps") == (lv["evaluations"] == lv["max_evaluations"]) for lv in result.levels)


def test_regttr_refinement_improves_a_rough_initial_field(mni_small):
    inputs, f, m = _pair_tensors(mni_small)
    coarse = regttr.refine(f, m, None, regttr.RegTTRConfig(iterations=30, finest_level=1, levels=2))
    start = resize_field(coarse.field, tuple(f.shape[2:]))
    refined = regttr.refine(f, m, start, regttr.RegTTRConfig.refinement())
    assert refined.iterations == len(refined.loss_curve) and {c["level"] for c in refined.loss_curve} == {1}
    assert refined.best_loss < refined.loss_curve[0]["loss"]  # the start is not what is kept
    assert _dice(inputs, refined.field) > _dice(inputs, start) + 0.03
    best = min(refined.loss_curve, key=lambda c: c["loss"])
    assert best["ncc"] > refined.loss_curve[0]["ncc"]
    # a diffeomorphic increment composed with the start: no folding is added
    assert M.folding_percent(jacobian_determinant(refined.field)) <= M.folding_percent(jacobian_determinant(start))


def _waves(amplitude: float, shape=(24, 24, 24), period: float = 12.0, phase: float = 0.0) -> torch.Tensor:
    """A displacement along axis 0 only, ``amplitude * sin(2 pi (k - phase) / period)`` (voxels)."""
    k = torch.arange(shape[0], dtype=torch.float32).view(-1, 1, 1).expand(shape)
    u = torch.zeros((1, 3) + shape)
    u[0, 0] = amplitude * torch.sin(2 * np.pi * (k - phase) / period)
    return u


def test_refining_a_folded_field_never_adds_folded_voxels():
    outer = _waves(3.0)   # det J = 1 + 1.57 cos(.): folded slabs around k = 6, 18
    allowed = folded_voxels(outer)
    assert allowed > 0
    # an increment contracting towards the folded slabs carries more voxels into them: it is cut back
    contract = _waves(-1.5, phase=6.0)
    assert folded_voxels(compose(contract, outer)) > allowed
    u, kept = regttr._compose_without_new_folds(lambda t: t * contract, outer)
    assert 0.0 < kept < 1.0 and folded_voxels(u) <= allowed   # part of it is kept
    # an expanding one empties them: kept whole
    u, kept = regttr._compose_without_new_folds(lambda t: -t * contract, outer)
    assert kept == 1.0 and folded_voxels(u) < allowed


def test_fold_penalty_removes_most_folds_of_a_directly_refined_field(phantom_small):
    from tttmedical.registration.predictor import Predictor

    inputs, f, m = _pair_tensors(phantom_small)
    start = Predictor.load(None, None, torch.device("cpu")).predict(f, m)   # folds on this pair
    without = regttr.refine(f, m, start, regttr.RegTTRConfig(fold_weight=0.0)).field
    default = regttr.refine(f, m, start, regttr.RegTTRConfig()).field
    assert regttr.RegTTRConfig().fold_weight > 0
    assert folded_voxels(default) < folded_voxels(without) / 2, (folded_voxels(default), folded_voxels(without))
    assert _dice(inputs, default) > _dice(inputs, start) + 0.03


def test_ssmsr_improves_over_its_coarsest_scale(mni_small):
    inputs, f, m = _pair_tensors(mni_small)
    with torch.random.fork_rng(devices=[]):   # the untrained networks' initialisation, whatever ran before
        torch.manual_seed(0)   # seeds 0-5 all pass
        result = ssmsr.register(f, m, None, ssmsr.SSMSRConfig(steps=40, levels=2, features=(8, 16, 16), pretrained=False))
    assert len(result.scale_fields) == 2
    coarsest = resize_field(result.scale_fields[0], tuple(f.shape[2:]))
    identity = torch.zeros_like(coarsest)
    d0, d1, d2 = _dice(inputs, identity), _dice(inputs, coarsest), _dice(inputs, result.field)
    assert d1 > d0 and d2 > d1, (d0, d1, d2)
    assert torch.isfinite(result.field).all()
