"""Built-in registration predictor: checked loading, working-grid convention, shipped weights, training.

The checkpoint format itself (tampering, unsafe pickles, wrong formats) is tested in test_checkpoints.py.
"""
from __future__ import annotations

import io
import json

import pytest
import torch

from tttmedical.core import checkpoints as C
from tttmedical.core.errors import InputError
from tttmedical.core.progress import Progress
from tttmedical.core.warp import warp
from tttmedical.registration import predictor as P
from tttmedical.registration import training as T
from tttmedical.registration.augment import random_field
from tttmedical.registration.model_card import evaluate_pair
from tttmedical.registration.networks import UNet3D


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is ~8x faster than two on a busy 2-core machine (OpenMP waits)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny_model(**kw) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(features=(4, 8), final_features=(4,), **kw)


def _weights_bytes(model: UNet3D, fmt: str = P.FORMAT) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": fmt, "config": model.config(), "working_size": 32, "state_dict": model.state_dict()}, buffer)
    return buffer.getvalue()


def test_checksum_mismatch_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    model = _tiny_model()
    path.write_bytes(_weights_bytes(model))
    digest = C.sha256_of(path)
    with pytest.raises(InputError, match=r"w\.pt.*sha256") as err:
        P.Predictor.load(path, "0" * 64, "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="No checksum"):
        P.Predictor.load(path, None, "cpu")  # no card beside it and none passed
    C.card_path(path).write_text(json.dumps({"sha256": digest}))
    assert P.Predictor.load(path, None, "cpu").sha256 == digest  # the card's checksum
    path.write_bytes(path.read_bytes() + b"x")  # tampered after the card was written
    with pytest.raises(InputError, match="corrupt"):
        P.Predictor.load(path, None, "cpu")
    with pytest.raises(InputError, match="does not exist"):
        P.Predictor.load(tmp_path / "missing.pt", digest, "cpu")


def test_weights_not_matching_their_config_are_refused(tmp_path):
    model = _tiny_model()
    raw = io.BytesIO()
    config = {**model.config(), "features": [4, 16]}
    torch.save({"format": P.FORMAT, "config": config, "working_size": 32, "state_dict": model.state_dict()}, raw)
    path = tmp_path / "w.pt"
    path.write_bytes(raw.getvalue())
    with pytest.raises(InputError, match="do not match the network"):
        P.Predictor.load(path, C.sha256_of(path), "cpu")


def test_predict_on_working_grid_scales_vectors():
    model = _tiny_model(fast=False)
    with torch.no_grad():
        model.flow.weight.zero_()
        model.flow.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    pred = P.Predictor(model, working_size=16, device="cpu")
    shape = (31, 21, 11)
    wshape = P.working_shape(shape, 16)
    assert wshape == (16, 11, 6)
    u = pred.predict(torch.rand(1, 1, *shape), torch.rand(1, 1, *shape))
    assert u.shape == (1, 3, *shape) and u.dtype == torch.float32
    expected = [1.0 * 30 / 15, -2.0 * 20 / 10, 0.5 * 10 / 5]
    for c in range(3):
        assert torch.allclose(u[0, c], torch.full(shape, expected[c]), atol=1e-4)
    with pytest.raises(InputError, match="same grid"):
        pred.predict(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 9))


def test_random_field_is_smooth_and_bounded():
    from tttmedical.core.warp import jacobian_determinant

    g = torch.Generator().manual_seed(0)
    for family in ("gaussian", "coarse"):
        u = random_field((24, 20, 28), 3.0, g, family, affine=False)
        assert u.shape == (1, 3, 24, 20, 28)
        assert abs(float(u.norm(dim=1).max()) - 3.0) < 1e-4
        assert jacobian_determinant(u).min() > 0


def test_structured_field_swirls_preserve_volume_and_bumps_change_it():
    from tttmedical.core.warp import jacobian_determinant
    from tttmedical.registration.augment import structured_field

    image = _blob_images(1, (32, 32, 32))[0]
    g = torch.Generator().manual_seed(3)
    assert structured_field(image, g, 0.0, 0.0) is None
    swirl = structured_field(image, g, 1.0, 0.0)
    bumps = structured_field(image, g, 0.0, 1.0)
    for u in (swirl, bumps):
        assert u.shape == (1, 3, 32, 32, 32) and float(u.norm(dim=1).max()) > 0.5
        assert jacobian_determinant(u).min() > 0.2
    # swirls rotate spheres about their centre rigidly (volume kept); bumps expand or shrink locally
    swirl_logj, bump_logj = (abs(torch.from_numpy(jacobian_determinant(u)).log()).max() for u in (swirl, bumps))
    assert swirl_logj < 0.5 * bump_logj, (swirl_logj, bump_logj)
    assert torch.equal(structured_field(image, torch.Generator().manual_seed(7), 1.0, 1.0),
                                         structured_field(image, torch.Generator().manual_seed(7), 1.0, 1.0))


def test_predictor_start_keeps_a_field_only_if_it_raises_local_ncc():
    from tttmedical.registration.pipeline import predictor_start

    fixed = _blob_images(1, (20, 20, 20), seed=2)[0]
    shift = torch.zeros(1, 3, 20, 20, 20)
    shift[:, 0] = 2.0
    moving = warp(fixed, shift)  # moving(x) = fixed(x + 2 e0): aligned by u = -2 e0
    good, bad = predictor_start(fixed, moving, -shift), predictor_start(fixed, moving, shift)
    assert good["start"] == "predictor" and good["ncc_predictor"] > good["ncc_identity"] + 0.05
    assert bad["start"] == "identity" and bad["ncc_predictor"] < bad["ncc_identity"]


def test_shipped_weights_improve_dice(mni_small, phantom_small):
    pred = P.Predictor.load(device="cpu")  # default file, checked against its model card
    card = json.loads(C.card_path(P.default_weights_path()).read_text())
    assert card["sha256"] == pred.sha256
    assert P.default_weights_path().stat().st_size < 2_000_000
    for paths in (mni_small, phantom_small):
        result = evaluate_pair(pred, paths["fixed"].parent, repeats=1)
        assert result["dice_predictor"] > result["dice_identity"] + 0.03, result
        assert result["folding_percent"] < 2.0


def _blob_images(n: int, shape=(16, 16, 16), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, s) for s in shape]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    out = []
    for _ in range(n):
        img = torch.zeros(shape)
        for _ in range(4):
            c = torch.rand(3, generator=g) * 1.2 - 0.6
            r = 0.2 + 0.2 * float(torch.rand((), generator=g))
            img += torch.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * r * r))
        out.append((img / img.max())[None, None])
    return out


def test_tiny_training_decreases_loss():
    images = _blob_images(1)
    g = torch.Generator().manual_seed(123)
    fixed = images[0]
    moving = warp(fixed, random_field((16, 16, 16), 2.5, g, "coarse"))
    sets = [T.ImageSet("pair", [fixed, moving], fixed_warp=(0.0, 0.0), moving_warp=(0.0, 0.0), jitter=0.0)]
    cfg = T.TrainConfig(steps=150, lr=3e-3, lr_final=1e-3, ncc_windows=(5,), ssim_window=5, seed=0, smoothness=0.1)
    torch.manual_seed(0)
    model = UNet3D(features=(8, 16), final_features=(8,))
    with torch.no_grad():
        before = float(T.pair_loss(model, fixed, moving, cfg)[0])
    result = T.train(model, sets, cfg, torch.device("cpu"))
    with torch.no_grad():
        after = float(T.pair_loss(model, fixed, moving, cfg)[0])
    assert result["steps_done"] == 150 and len(result["curve"]) == 150 and result["skipped_steps"] == 0
    assert after < before - 0.05, (before, after)


def test_train_predictor_writes_card_and_loadable_weights(tmp_path, monkeypatch):
    images = _blob_images(3, (12, 14, 10))

    def fake_sets(data_dir, working_size, seed=0, small=False, log=None):
        return [T.ImageSet("blobs", images)], {"blobs": "three synthetic blob volumes (test)"}

    monkeypatch.setattr(T, "load_training_sets", fake_sets)
    events = []
    report = T.train_predictor(tmp_path / "out", steps=3, seed=1, device="cpu",
                               progress=Progress("none", callback=events.append),
                               working_size=16, features=(4, 8), final_features=(4,), command="test")
    weights = tmp_path / "out" / "register_unet.pt"
    card = json.loads((tmp_path / "out" / "register_unet.json").read_text())
    assert card["sha256"] == C.sha256_of(weights) == report["sha256"]
    assert card["training"]["steps"] == 3 and card["training"]["command"] == "test"
    assert (tmp_path / "out" / "register_unet.md").read_text().count(card["sha256"]) == 1
    assert events[-1]["fraction"] == 1.0 and any("loss" in e for e in events)
    pred = P.Predictor.load(weights, None, "cpu")
    assert pred.predict(torch.rand(1, 1, 9, 13, 7), torch.rand(1, 1, 9, 13, 7)).shape == (1, 3, 9, 13, 7)
    with pytest.raises(InputError, match="at least 1"):
        T.train_predictor(tmp_path / "x", steps=0)
