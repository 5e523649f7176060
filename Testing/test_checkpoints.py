"""Checkpoints (tttmedical.core.checkpoints): verified safe loading, atomic weights + card, package data."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

import tttmedical
from tttmedical.core import checkpoints as C
from tttmedical.core.errors import InputError

FMT = "tttmedical.test_model/1"
RAN = []


def _ran(value):
    RAN.append(value)
    return value


class _Payload:
    """Runs ``_ran`` when unpickled by a full (unsafe) pickle load."""

    def __reduce__(self):
        return (_ran, ("code ran",))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def _markdown(card: dict) -> str:
    return f"# {card['name']}\n\nsha256 `{card['sha256']}`, trained {card['training']['steps']} steps\n"


def _save(path: Path, steps: int = 5) -> dict:
    return C.save_checkpoint(path, FMT, _model(), {"in_features": 3, "out_features": 2},
                             {"training": {"steps": steps}}, _markdown, extra_value=7)


def test_save_writes_weights_and_card_together(tmp_path):
    card = _save(tmp_path / "m.pt")
    assert list(card)[:5] == ["name", "file", "sha256", "size_bytes", "format"]
    assert card["name"] == "m" and card["file"] == "m.pt" and card["format"] == FMT
    assert card["sha256"] == C.sha256_of(tmp_path / "m.pt") and card["size_bytes"] == (tmp_path / "m.pt").stat().st_size
    assert C.read_card(tmp_path / "m.pt") == json.loads(json.dumps(card))  # card round trip
    assert (tmp_path / "m.md").read_text() == _markdown(card)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.md", "m.pt"]  # no partial left
    ckpt = C.load_checkpoint(tmp_path / "m.pt", FMT)  # checksum from the card
    assert ckpt.sha256 == card["sha256"] and ckpt.config == {"in_features": 3, "out_features": 2}
    assert ckpt.data["extra_value"] == 7
    model = torch.nn.Linear(**ckpt.config)
    model.load_state_dict(ckpt.state_dict)
    assert torch.equal(model.weight, _model().weight)
    # Rewriting the card (e.g. an evaluation added) keeps the weights and their checksum.
    card["evaluation"] = {"dice": 0.9}
    C.write_card(tmp_path / "m.pt", card, _markdown)
    assert C.read_card(tmp_path / "m.pt")["evaluation"] == {"dice": 0.9}
    assert C.load_checkpoint(tmp_path / "m.pt", FMT).sha256 == card["sha256"]


def test_failed_save_leaves_the_previous_set(tmp_path):
    first = _save(tmp_path / "m.pt", steps=5)

    def broken(card):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        C.save_checkpoint(tmp_path / "m.pt", FMT, torch.nn.Linear(3, 2), {}, {"training": {"steps": 9}}, broken)
    assert C.read_card(tmp_path / "m.pt")["training"]["steps"] == 5
    assert C.sha256_of(tmp_path / "m.pt") == first["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.md", "m.pt"]


def test_tampered_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"format": FMT, "config": {}, "state_dict": {}, "payload": _Payload()}, path)
    digest = C.sha256_of(path)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(C.torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    path.write_bytes(path.read_bytes() + b"\0")  # tampered after its checksum was recorded
    with pytest.raises(InputError, match=r"evil\.pt.*sha256.*corrupt") as err:
        C.load_checkpoint(path, FMT, digest)
    assert loads == [] and "\n" not in str(err.value)
    # With the right checksum the file is read once and unpickled from those bytes, weights only.
    reads = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real_read(self))
    with pytest.raises(InputError, match="safe torch weights"):
        C.load_checkpoint(path, FMT, C.sha256_of(path))
    assert RAN == [] and reads == [path] and isinstance(loads[0][0], io.BytesIO)


@pytest.mark.parametrize("content", ["other-format", "tensor", "no-config"])
def test_wrong_format_is_refused(tmp_path, content):
    path = tmp_path / "w.pt"
    data = {"other-format": {"format": "someone.else/1", "config": {}, "state_dict": {}},
            "tensor": torch.zeros(3),
            "no-config": {"format": FMT, "state_dict": {}}}[content]
    torch.save(data, path)
    with pytest.raises(InputError, match=f"not model weights of format {FMT}"):
        C.load_checkpoint(path, FMT, C.sha256_of(path))


def test_missing_or_unknown_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        C.load_checkpoint(tmp_path / "missing.pt", FMT, "0" * 64)
    with pytest.raises(InputError, match="is a folder"):
        C.load_checkpoint(tmp_path, FMT, "0" * 64)
    path = tmp_path / "w.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="No checksum is known"):
        C.load_checkpoint(path, FMT)  # no card and no checksum given
    with pytest.raises(InputError, match="safe torch weights"):
        C.load_checkpoint(path, FMT, C.sha256_of(path))


def test_bundled_weights_are_package_data():
    path = C.bundled_weights("register_unet")
    assert path.is_file() and path.parent == Path(tttmedical.__file__).parent / "models"
    card = C.read_card(path)
    assert card["sha256"] == C.sha256_of(path) == C.expected_sha256(path)
    assert card["file"] == path.name and C.markdown_path(path).is_file()
    assert "tttmedical.registration.training import train_predictor" in card["training"]["command"]
