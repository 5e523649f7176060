"""Shared fixtures: small registration pairs generated offline (cached per session)."""
from __future__ import annotations

import pytest


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
