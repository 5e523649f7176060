"""Shared fixtures: small registration pairs generated offline (cached per session)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mni_small(tmp_path_factory):
    """The ``mni-smooth`` sample at its small (4 mm) test size."""
    from tttmedical.data.samples import write_sample

    out = tmp_path_factory.mktemp("samples") / "mni-smooth"
    return write_sample("mni-smooth", out, seed=0, log=lambda *_: None, small=True)


@pytest.fixture(scope="session")
def phantom_small(tmp_path_factory):
    from tttmedical.data.samples import write_sample

    out = tmp_path_factory.mktemp("samples") / "phantom-pair"
    return write_sample("phantom-pair", out, seed=0, log=lambda *_: None, small=True)


def rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def is_one_sentence(message: str) -> bool:
    """One line, ends with a full stop, no second sentence starting after it."""
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)
