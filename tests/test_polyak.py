# SPDX-License-Identifier: Apache-2.0
"""`scale_by_polyak` and `polyak_sgd`: float64 reference, optax parity, edge cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_linesearch import polyak_sgd, problem

import gradtx

RTOL = 1e-5
STEPS = 30

CONFIGS = {
    "sps": {},
    "sps-capped-fmin": {"max_learning_rate": 0.05, "f_min": -0.5},
    "sps+-fmin-above": {"variant": "sps+", "f_min": 0.3, "eps": 1e-3},
    "sps-eps-scaling": {"eps": 0.1, "scaling": 0.5},
    "sps-schedule": {"scaling": lambda c: 0.9 ** c.astype(np.float32)},
}


def _run(lib, tx, f, w, use_jit):
    def step(w, state):
        v, g = jax.value_and_grad(f)(w)
        u, state = tx.update(g, state, w, value=v)
        return lib.apply_updates(w, u), state, u, v

    step = jax.jit(step) if use_jit else step
    state, out = tx.init(w), []
    for _ in range(STEPS):
        w, state, u, v = step(w, state)
        out.append((w, u, v))
    return out


# every problem under jit; eagerly (op-by-op dispatch, slow on a shared CPU) one
MODES = [
    ("quadratic", True),
    ("rosenbrock", True),
    ("logistic", True),
    ("logistic", False),
]
MODE_IDS = [f"{n}-{'jit' if j else 'eager'}" for n, j in MODES]


@pytest.mark.parametrize(("name", "use_jit"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_polyak_sgd_matches_float64_reference(name, use_jit, config):
    f, w = problem(name, jnp, jnp.float32)
    tx = gradtx.polyak_sgd(**CONFIGS[config])
    ref = polyak_sgd(**CONFIGS[config])
    step = lambda g, s, w, v: tx.update(g, s, w, value=v)
    step = jax.jit(step) if use_jit else step
    state, rstate = tx.init(w), ref.init(w)
    for _ in range(15):
        v, g = jax.value_and_grad(f)(w)
        u, state = step(g, state, w, v)
        rg = jax.tree.map(lambda x: np.asarray(x, np.float64), g)
        ru, rstate = ref.update(rg, rstate, None, value=float(v))
        for k in u:
            assert u[k].dtype == jnp.float32
            np.testing.assert_allclose(u[k], ru[k], rtol=RTOL, atol=1e-7)
        w = gradtx.apply_updates(w, u)


@pytest.mark.parametrize(("name", "use_jit"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_polyak_sgd_matches_optax_over_30_steps(
    name, config, use_jit, standard_promotion
):
    f, w = problem(name, jnp, jnp.float32)
    ours = _run(gradtx, gradtx.polyak_sgd(**CONFIGS[config]), f, w, use_jit)
    theirs = _run(optax, optax.polyak_sgd(**CONFIGS[config]), f, w, use_jit)
    for (a, ua, va), (b, ub, vb) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(va, vb, rtol=RTOL)
        for k in a:
            np.testing.assert_allclose(ua[k], ub[k], rtol=RTOL, atol=1e-7)
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=RTOL)


def test_scale_by_polyak_zero_gradient_gives_zero_step():
    tx = gradtx.scale_by_polyak()
    u, _ = tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)), value=1.0)
    np.testing.assert_array_equal(u, jnp.zeros(3))


def test_scale_by_polyak_sps_plus_never_ascends_below_f_min():
    g = jnp.array([1.0, 2.0])
    sps, plus = (
        gradtx.scale_by_polyak(f_min=1.0),
        gradtx.scale_by_polyak(f_min=1.0, variant="sps+"),
    )
    # value below f_min: sps gives a negative step (ascent), sps+ gives none
    assert float(sps.update(g, sps.init(g), value=0.5)[0][0]) < 0.0
    np.testing.assert_array_equal(plus.update(g, plus.init(g), value=0.5)[0], 0.0)


def test_scale_by_polyak_float16_gradients_keep_dtype_and_stay_finite():
    # ||g||^2 of these underflows float16 (1e-4**2); gradtx sums in float32
    g = jnp.full((4,), 1e-4, jnp.float16)
    tx = gradtx.scale_by_polyak(max_learning_rate=100.0)
    u, _ = tx.update(g, tx.init(g), value=jnp.float16(1e-6))
    assert u.dtype == jnp.float16
    gi, vi = float(np.float16(1e-4)), float(np.float16(1e-6))
    expected = vi / (4 * gi * gi) * gi  # about 25 * 1e-4
    np.testing.assert_allclose(np.asarray(u, np.float32), expected, rtol=1e-3)


def test_scale_by_polyak_needs_value():
    tx = gradtx.scale_by_polyak()
    with pytest.raises(
        gradtx.MissingValueError, match=r"gradtx\.scale_by_polyak: .*value="
    ):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
