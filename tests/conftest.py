# SPDX-License-Identifier: Apache-2.0
"""Test configuration: strict dtype and rank promotion, restored after each session."""

import os

import jax
import pytest

# Modules of tests/ that are not test modules but that `--doctest-modules` would import:
# the torch trajectory generator needs torch; the 8-device checks run in their own
# process, started by tests/test_sharding.py with XLA_FLAGS set before JAX is imported;
# the multi-process worker is started (and imported) by tests/test_multiprocess.py.
collect_ignore = ["make_torch_trajectories.py"]
collect_ignore_glob = ["multiprocess/*"]
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore_glob.append("multidevice/*")

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
