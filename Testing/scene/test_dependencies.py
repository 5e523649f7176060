"""Dependency installation policy inside Slicer (torch via the PyTorch extension, others via pip).

Slicer's installers are replaced by recorders; nothing is installed.
"""
from __future__ import annotations

import sys
import types

import pytest

from TTTMedicalLib import dependencies


@pytest.fixture
def missing(monkeypatch):
    """Pretend the given distributions are not installed."""
    absent: set[str] = set()
    real = dependencies.importlib.metadata.version

    def version(name):
        if name.lower() in absent:
            raise dependencies.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(dependencies.importlib.metadata, "version", version)
    return absent


@pytest.fixture
def fake_slicer(monkeypatch):
    calls = {"pip_ensure": [], "pip_install": [], "confirm": []}
    answers = [True]

    def confirm(text, windowTitle=None, **kwargs):
        calls["confirm"].append(text)
        return answers[-1]

    fake = types.SimpleNamespace(
        packaging=types.SimpleNamespace(pip_ensure=lambda reqs, requester=None: calls["pip_ensure"].append((list(reqs), requester))),
        util=types.SimpleNamespace(pip_install=lambda reqs: calls["pip_install"].append(list(reqs)),
                                   confirmOkCancelDisplay=confirm),
        answers=answers,
    )
    monkeypatch.setitem(sys.modules, "slicer", fake)
    return fake, calls


def test_requirements_are_checked_by_version(missing):
    assert dependencies.is_satisfied("numpy>=1.0") and not dependencies.is_satisfied("numpy>=999")
    missing.add("scipy")
    assert dependencies.missing_requirements(["numpy>=1.0", "scipy>=1.10"]) == ["scipy>=1.10"]


def test_missing_pytorch_extension_gives_one_clear_sentence(missing, monkeypatch):
    missing.add("torch")
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails
    with pytest.raises(dependencies.DependencyError) as info:
        dependencies.ensure_torch(log=lambda s: None, testing=False)
    assert str(info.value) == dependencies.EXTENSION_MISSING
    assert "Extensions Manager" in str(info.value)


def test_torch_is_installed_through_pytorchutils_but_never_in_testing(missing, monkeypatch):
    missing.add("torch")
    requests = []

    class Logic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
            requests.append((askConfirmation, torchVersionRequirement))
            return types.SimpleNamespace(__version__="2.5.0+cpu")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    with pytest.raises(dependencies.DependencyError, match="testing mode"):
        dependencies.ensure_torch(log=lambda s: None, testing=True)
    assert requests == []
    log = []
    dependencies.ensure_torch(log=log.append, testing=False)
    assert requests == [(True, ">=2.2")] and log[-1] == "PyTorch 2.5.0+cpu installed."


def test_other_packages_use_pip_ensure_then_fallback_and_never_simpleitk(missing, fake_slicer, monkeypatch):
    fake, calls = fake_slicer
    missing.update({"nibabel", "simpleitk"})
    monkeypatch.setattr(dependencies, "ENGINE_REQUIREMENTS", ["nibabel>=5.0", "SimpleITK>=2.3"])
    with pytest.raises(dependencies.DependencyError, match=r"Missing Python packages \(nibabel>=5.0\).*testing mode"):
        dependencies.ensure_packages(log=lambda s: None, testing=True)
    assert calls == {"pip_ensure": [], "pip_install": [], "confirm": []}

    # Slicer >= 5.12: pip_ensure (which asks the user itself).
    with pytest.raises(dependencies.DependencyError, match="could not be installed"):  # the recorder installs nothing
        dependencies.ensure_packages(log=lambda s: None, testing=False)
    assert calls["pip_ensure"] == [(["nibabel>=5.0"], "TTTMedical")] and calls["pip_install"] == [] and calls["confirm"] == []


def test_pip_ensure_declined_is_a_dependency_error(missing, fake_slicer, monkeypatch):
    fake, calls = fake_slicer
    missing.add("nibabel")
    monkeypatch.setattr(dependencies, "ENGINE_REQUIREMENTS", ["nibabel>=5.0"])

    def decline(reqs, requester=None):
        raise RuntimeError("User declined installation")

    fake.packaging.pip_ensure = decline
    with pytest.raises(dependencies.DependencyError, match=r"^TTTMedical needs nibabel>=5.0; the installation was declined"):
        dependencies.ensure_packages(log=lambda s: None, testing=False)


def test_before_5_12_the_user_is_asked_before_pip_install(missing, fake_slicer, monkeypatch):
    fake, calls = fake_slicer
    missing.add("nibabel")
    monkeypatch.setattr(dependencies, "ENGINE_REQUIREMENTS", ["nibabel>=5.0"])
    del fake.packaging  # Slicer 5.10: no slicer.packaging
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)

    fake.answers.append(False)  # the user clicks Cancel: nothing is installed
    with pytest.raises(dependencies.DependencyError, match=r"^TTTMedical needs nibabel>=5.0; the installation was declined\.$"):
        dependencies.ensure_packages(log=lambda s: None, testing=False)
    assert len(calls["confirm"]) == 1 and "nibabel>=5.0" in calls["confirm"][0] and calls["pip_install"] == []

    fake.answers.append(True)  # OK: pip_install runs (the recorder installs nothing, so it is still missing)
    with pytest.raises(dependencies.DependencyError, match="could not be installed"):
        dependencies.ensure_packages(log=lambda s: None, testing=False)
    assert len(calls["confirm"]) == 2 and calls["pip_install"] == [["nibabel>=5.0"]]
