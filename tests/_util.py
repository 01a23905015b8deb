"""Test helpers shared by the test modules."""

import importlib.util
import pathlib

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_experiment(name: str):
    """The script ``experiments/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_trees_close(actual, expected, *, rtol=1e-6, atol=0.0):
    """Leaf-by-leaf ``assert_allclose`` after checking the two pytrees have the same structure."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"structures differ: {jax.tree.structure(actual)} vs {jax.tree.structure(expected)}"
    )
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert np.shape(a) == np.shape(e), f"shapes differ: {np.shape(a)} vs {np.shape(e)}"
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)
