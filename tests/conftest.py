# SPDX-License-Identifier: Apache-2.0
"""Test configuration: strict dtype and rank promotion, restored after each session."""

import jax
import pytest

# Strict promotion catches any implicit dtype mixing inside gradtx (DESIGN.md §4).
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["eager", "jit"])
def jit(request):
    """Runs a test once eagerly and once under `jax.jit`; yields a function wrapper."""
    if request.param == "jit":
        return jax.jit
    return lambda f, **_: f


@pytest.fixture
def standard_promotion():
    """Temporarily allows standard dtype promotion (optax needs it)."""
    old = jax.config.jax_numpy_dtype_promotion
    jax.config.update("jax_numpy_dtype_promotion", "standard")
    yield
    jax.config.update("jax_numpy_dtype_promotion", old)


@pytest.fixture
def x64():
    """Enables float64 for one test and restores the previous setting."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)
