"""The package root: every exported name resolves, and the version is the one pip installed."""

import importlib.metadata

import pytest

import lstm_jax


def test_every_exported_name_resolves():
    missing = [name for name in lstm_jax.__all__ if not hasattr(lstm_jax, name)]
    assert not missing, missing
    assert len(set(lstm_jax.__all__)) == len(lstm_jax.__all__)


def test_installed_version_matches_the_package():
    try:
        installed = importlib.metadata.version("lstm_jax")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("lstm_jax is imported from the source tree, not installed")
    assert installed == lstm_jax.__version__
