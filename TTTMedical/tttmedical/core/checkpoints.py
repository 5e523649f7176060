"""Checkpoints of the engine's models: sha256-checked safe loading, atomic saving with a model card.

Conventions:

* A weights file ``<name>.pt`` is a :func:`torch.save` of a plain dict
  ``{"format": TAG, "config": {...}, **extra, "state_dict": {name: float32 CPU tensor}}``.  ``TAG``
  names the model family and its version (e.g. ``"tttmedical.register_unet/1"``); ``config`` holds
  the constructor arguments of the network; ``extra`` holds plain values the task needs (e.g. the
  predictor's ``working_size``).
* The model card sits beside it: ``<name>.json`` (authoritative: ``name``, ``file``, ``sha256``,
  ``size_bytes``, ``format`` first, then the task's fields: architecture, training command, data,
  steps, time, evaluation) and ``<name>.md`` (the same for people).
* :func:`load_checkpoint` reads the file **once**, hashes those bytes, compares the digest with the
  expected one (given, else the card's), and only then unpickles the same bytes with
  ``torch.load(weights_only=True)``: a tampered or unknown file is never unpickled.
* :func:`save_checkpoint` writes weights, card JSON and card Markdown to hidden partial files and
  renames them into place, so a crash never leaves a card that describes other weights.
* Bundled weights are package data in ``tttmedical/models/`` found with :mod:`importlib.resources`
  (:func:`bundled_weights`), so a wheel or ``pip install .`` carries them.

Every problem with a weights file is an :class:`~tttmedical.core.errors.InputError` with one sentence.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from .errors import InputError
from .report import to_jsonable

__all__ = ["Checkpoint", "bundled_weights", "card_path", "markdown_path", "read_card", "expected_sha256",
           "sha256_of", "load_checkpoint", "save_checkpoint", "write_card"]


@dataclasses.dataclass
class Checkpoint:
    """A verified weights file: its contents, where it came from and its sha256."""

    data: dict
    path: Path
    sha256: str

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def state_dict(self) -> dict:
        return self.data["state_dict"]


# ====================================================================== locations
def bundled_weights(name: str) -> Path:
    """The bundled ``<name>.pt`` shipped as package data in ``tttmedical/models/``."""
    ref = resources.files("tttmedical").joinpath("models", f"{name}.pt")
    with resources.as_file(ref) as path:  # a real file for any normal install (wheel, editable, source)
        return Path(path)


def card_path(weights: str | Path) -> Path:
    """The model card JSON beside a weights file: ``name.pt`` -> ``name.json``."""
    return Path(weights).with_suffix(".json")


def markdown_path(weights: str | Path) -> Path:
    """The human-readable model card beside a weights file: ``name.pt`` -> ``name.md``."""
    return Path(weights).with_suffix(".md")


def read_card(weights: str | Path) -> dict | None:
    """The model card JSON beside ``weights`` as a dict (None when missing or unreadable)."""
    try:
        card = json.loads(card_path(weights).read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def expected_sha256(weights: str | Path) -> str | None:
    """The sha256 recorded in the model card beside ``weights`` (None when there is none)."""
    value = (read_card(weights) or {}).get("sha256")
    return str(value).strip().lower() if value else None


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ====================================================================== loading
def load_checkpoint(path: str | Path, fmt: str, sha256: str | None = None, *, what: str = "model weights",
                    producer: str = "tttmedical train") -> Checkpoint:
    """Verify ``path`` against ``sha256`` (or its card's), then load it with ``weights_only=True``.

    ``fmt`` is the format tag the file must carry; ``what`` names the file in messages (e.g.
    ``"predictor weights"``) and ``producer`` the command that writes such files.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"The {what} file '{path}' {state}; train one with '{producer} -o DIR' "
                         f"or pass an existing .pt file with --weights.")
    expected = (sha256 or expected_sha256(path) or "").strip().lower()
    if not expected:
        raise InputError(f"No checksum is known for the {what} '{path}'; pass its expected sha256 "
                         f"(--weights-sha256) or keep its model card '{card_path(path).name}' beside it.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"The {what} file '{path}' could not be read ({exc.strerror}); check its permissions.") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise InputError(f"The {what} '{path}' have sha256 {actual[:12]}... but {expected[:12]}... was expected; "
                         f"the file is corrupt or not the one meant, so restore it or pass its correct checksum.")
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"The {what} '{path}' could not be read as safe torch weights ({reason}); "
                         f"use a file written by '{producer}'.") from None
    if (not isinstance(data, dict) or data.get("format") != fmt or not isinstance(data.get("state_dict"), dict)
            or not isinstance(data.get("config"), dict)):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"The file '{path}' is not {what} of format {fmt} (found {found!r}); "
                         f"use a file written by '{producer}'.")
    return Checkpoint(data, path, actual)


# ====================================================================== saving
def save_checkpoint(path: str | Path, fmt: str, model: torch.nn.Module, config: dict, card: dict,
                    markdown: Callable[[dict], str], **extra) -> dict:
    """Write ``model``'s weights, its card JSON and Markdown beside each other, atomically; return the card.

    The card written is ``{"name", "file", "sha256", "size_bytes", "format"}`` followed by ``card``;
    ``markdown(card)`` renders the ``.md``.  Tensors are stored float32, contiguous, on the CPU.
    """
    path = Path(path)
    state = {k: v.detach().float().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": fmt, "config": dict(config), **extra, "state_dict": state}, buffer)
    raw = buffer.getvalue()
    full = {"name": path.stem, "file": path.name, "sha256": hashlib.sha256(raw).hexdigest(),
            "size_bytes": len(raw), "format": fmt, **card}
    _write_together(path.parent, {path.name: raw, **_card_files(path, full, markdown)})
    return full


def write_card(weights: str | Path, card: dict, markdown: Callable[[dict], str]) -> None:
    """Rewrite the card JSON and Markdown of ``weights`` together (e.g. after adding an evaluation)."""
    weights = Path(weights)
    _write_together(weights.parent, _card_files(weights, card, markdown))


def _card_files(weights: Path, card: dict, markdown: Callable[[dict], str]) -> dict[str, bytes]:
    text = json.dumps(to_jsonable(card), indent=2) + "\n"
    return {card_path(weights).name: text.encode("utf-8"), markdown_path(weights).name: markdown(card).encode("utf-8")}


def _write_together(folder: Path, files: dict[str, bytes]) -> None:
    """Write every file to a hidden partial beside its target, then rename all into place."""
    folder.mkdir(parents=True, exist_ok=True)
    partials = {name: folder / f".{name}.partial-{os.getpid()}" for name in files}
    try:
        for name, data in files.items():
            with open(partials[name], "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for name in reversed(list(files)):  # weights (first) last: a crash leaves a mismatch, never a silent swap
            os.replace(partials[name], folder / name)
    finally:
        for partial in partials.values():
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
