"""Strict numerics for every test: no silent rank or dtype promotion.

float64 is never switched on globally; tests that need it use ``with jax.enable_x64(True):``.
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)
