# SPDX-License-Identifier: Apache-2.0
"""`scale_by_lbfgs` and `lbfgs`: float64 reference, optax parity, convergence, NaNs."""

from __future__ import annotations

import doctest
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_linesearch import PROBLEMS, problem, scale_by_lbfgs, trajectory

import gradtx

RTOL = 1e-5
STEPS = 30


def _quadratic_sequence(n, nan_at=()):
    """Params along a random walk and the gradients of a diagonal quadratic there.

    Real gradients keep <s, y> > 0 (as a line search would), so the recursion is
    well conditioned and float32 can be held to float64 at 1e-5.
    """
    rng = np.random.default_rng(3)
    diag = {"w": rng.uniform(1.0, 4.0, (4, 3)), "b": rng.uniform(1.0, 4.0, (5,))}
    p = {k: rng.standard_normal(v.shape) for k, v in diag.items()}
    out = []
    for i in range(n):
        g = {k: diag[k] * p[k] - 1.0 for k in p}
        if i in nan_at:
            g["b"] = g["b"].copy()
            g["b"][2] = np.nan
        out.append(({k: v.astype(np.float32) for k, v in p.items()},
                    {k: v.astype(np.float32) for k, v in g.items()}))  # fmt: skip
        p = {k: p[k] - 0.3 * rng.uniform(0.2, 1.0) * (diag[k] * p[k] - 1.0) for k in p}
    return out


def _f64(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _check_state(state, ref):
    assert int(state.count) == ref["count"]
    for field in ("params", "updates", "diff_params_memory", "diff_updates_memory"):
        for k, v in getattr(state, field).items():
            np.testing.assert_allclose(v, ref[field][k], rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(state.weights_memory, ref["weights_memory"], rtol=RTOL)


@pytest.mark.parametrize("memory_size", [1, 3], ids=lambda m: f"m{m}")
@pytest.mark.parametrize("scale_init_precond", [True, False], ids=["scaled", "unit"])
def test_scale_by_lbfgs_matches_float64_two_loop_reference(
    memory_size, scale_init_precond, jit
):
    tx = gradtx.scale_by_lbfgs(memory_size, scale_init_precond)
    ref = scale_by_lbfgs(memory_size, scale_init_precond)
    # eager dispatch recompiles the scans at every call: fewer steps (the ring
    # buffer of 3 still wraps around)
    seq = _quadratic_sequence(10 if jit is jax.jit else 4)
    update = jit(tx.update)
    state, rstate = tx.init(seq[0][0]), ref.init(_f64(seq[0][0]))
    for params, grads in seq:
        direction, state = update(grads, state, params)
        rdirection, rstate = ref.update(_f64(grads), rstate, _f64(params))
        for k in direction:
            assert direction[k].dtype == jnp.float32
            np.testing.assert_allclose(
                direction[k], rdirection[k], rtol=RTOL, atol=RTOL
            )
        _check_state(state, rstate)


def test_scale_by_lbfgs_first_step_is_gradient_capped_to_unit_norm():
    tx = gradtx.scale_by_lbfgs()
    small = jnp.array([0.3, 0.4])  # norm 0.5 < 1: unchanged
    np.testing.assert_allclose(tx.update(small, tx.init(small), small)[0], small)
    big = jnp.array([30.0, 40.0])  # norm 50: scaled to norm 1
    np.testing.assert_allclose(tx.update(big, tx.init(big), big)[0], [0.6, 0.8])


def test_scale_by_lbfgs_nan_gradient_does_not_poison_the_memory(jit):
    # gradtx skips a pair containing inf/NaN and keeps the last finite point as the
    # reference; the update for the NaN gradient itself stays NaN (visible).
    tx = gradtx.scale_by_lbfgs(memory_size=4)
    ref = scale_by_lbfgs(memory_size=4)
    seq = _quadratic_sequence(9 if jit is jax.jit else 6, nan_at=(4,))
    update = jit(tx.update)
    state, rstate = tx.init(seq[0][0]), ref.init(_f64(seq[0][0]))
    for i, (params, grads) in enumerate(seq):
        direction, state = update(grads, state, params)
        rdirection, rstate = ref.update(_f64(grads), rstate, _f64(params))
        assert bool(gradtx._tree.all_finite(state)), f"state poisoned at step {i}"
        if i == 4:
            assert not np.isfinite(np.asarray(direction["b"])).all()
            continue
        for k in direction:
            np.testing.assert_allclose(
                direction[k], rdirection[k], rtol=RTOL, atol=RTOL
            )
        _check_state(state, rstate)
    # the skipped pair (slot 3) stays zero until step 8 overwrites it
    zero_slots = int(np.sum(np.asarray(state.weights_memory) == 0.0))
    assert zero_slots == (1 if len(seq) < 8 else 0)


def test_optax_memory_is_poisoned_by_one_nan_gradient(standard_promotion):
    # The behaviour gradtx fixes: optax stores the NaN pair, and every later
    # direction is NaN even after the gradients are finite again.
    tx = optax.scale_by_lbfgs(memory_size=4)
    seq = _quadratic_sequence(8, nan_at=(4,))
    state = tx.init(seq[0][0])
    update = jax.jit(tx.update)
    for params, grads in seq:
        direction, state = update(grads, state, params)
    assert not np.isfinite(np.asarray(direction["w"])).all()
    ours = gradtx.scale_by_lbfgs(memory_size=4)
    state, update = ours.init(seq[0][0]), jax.jit(ours.update)
    for params, grads in seq:
        direction, state = update(grads, state, params)
    assert np.isfinite(np.asarray(direction["w"])).all()


def test_scale_by_lbfgs_first_point_nan_keeps_count_at_zero():
    tx = gradtx.scale_by_lbfgs()
    w = jnp.array([1.0, 2.0])
    _, state = tx.update(jnp.array([jnp.nan, 1.0]), tx.init(w), w)
    assert int(state.count) == 0
    u, state = tx.update(jnp.array([30.0, 40.0]), state, w)
    np.testing.assert_allclose(u, [0.6, 0.8])  # the first-step rule, not a pair
    assert int(state.count) == 1


def _run(lib, tx, name, jit, steps=STEPS):
    out = trajectory(lib, tx, name, jit, steps, reuse=True)
    return [w for w, _ in out], out[-1][1]


OPTIMIZERS = {
    "zoom": lambda lib: lib.lbfgs(),
    "backtracking": lambda lib: lib.lbfgs(
        memory_size=5,
        linesearch=lib.scale_by_backtracking_linesearch(15, store_grad=True),
    ),
}


def _assert_same_run(ours, theirs):
    (ours, s1), (theirs, s2) = ours, theirs
    for a, b in zip(ours, theirs, strict=True):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=RTOL)
    for field in ("learning_rate", "value"):
        np.testing.assert_allclose(
            gradtx.tree.get(s1, field), optax.tree.get(s2, field), rtol=RTOL
        )


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_lbfgs_matches_optax_over_30_jitted_steps(name, which, standard_promotion):
    _assert_same_run(
        _run(gradtx, OPTIMIZERS[which](gradtx), name, True),
        _run(optax, OPTIMIZERS[which](optax), name, True),
    )


# Eager dispatch recompiles the line search's while_loop at every call (in optax
# too: ~2 s a step on a shared CPU), so the default run checks 2 eager steps and
# the slow run all 30 on every problem.
@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("quadratic", 2),
        *[
            pytest.param(n, STEPS, marks=pytest.mark.slow, id=f"{n}-30")
            for n in PROBLEMS
        ],
    ],
)
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_lbfgs_eager_matches_optax(name, steps, which, standard_promotion):
    _assert_same_run(
        _run(gradtx, OPTIMIZERS[which](gradtx), name, False, steps),
        _run(optax, OPTIMIZERS[which](optax), name, False, steps),
    )


def test_lbfgs_is_the_documented_chain():
    f, w = problem("logistic", jnp, jnp.float32)
    alias = gradtx.lbfgs(learning_rate=0.5, memory_size=3, linesearch=None)
    chain = gradtx.chain(
        gradtx.scale_by_lbfgs(3), gradtx.scale_by_learning_rate(0.5), gradtx.identity()
    )
    s1, s2 = alias.init(w), chain.init(w)
    up1, up2 = jax.jit(alias.update), jax.jit(chain.update)
    for _ in range(5):
        g = jax.grad(f)(w)
        u1, s1 = up1(g, s1, w)
        u2, s2 = up2(g, s2, w)
        jax.tree.map(np.testing.assert_array_equal, u1, u2)
        w = gradtx.apply_updates(w, u1)


def test_lbfgs_reaches_the_rosenbrock_minimum():
    f = lambda x: jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    tx, w = gradtx.lbfgs(), jnp.array([-1.2, 1.0])
    vg = gradtx.value_and_grad_from_state(f)

    @jax.jit
    def step(w, state):
        v, g = vg(w, state=state)
        u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f)
        return gradtx.apply_updates(w, u), state

    state, steps = tx.init(w), 0
    while steps < 100 and float(jnp.max(jnp.abs(w - 1.0))) >= 1e-5:
        w, state = step(w, state)
        steps += 1
    assert float(jnp.max(jnp.abs(w - 1.0))) < 1e-5, (steps, w)
    assert steps <= 60, steps  # 36 measured (float32, jit, CPU)


def test_lbfgs_state_keeps_structure_and_dtypes_in_scan():
    f, w = problem("quadratic", jnp, jnp.float32)
    tx = gradtx.lbfgs()
    vg = gradtx.value_and_grad_from_state(f)

    def body(carry, _):
        w, state = carry
        v, g = vg(w, state=state)
        u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f)
        return (gradtx.apply_updates(w, u), state), v

    init = (w, tx.init(w))
    (w, state), values = jax.lax.scan(body, init, length=12)
    assert jax.tree.structure(state) == jax.tree.structure(init[1])
    assert [x.dtype for x in jax.tree.leaves(state)] == [
        x.dtype for x in jax.tree.leaves(init[1])
    ]
    assert bool(jnp.all(jnp.diff(values) < 0))  # Wolfe steps decrease the value
    assert float(values[-1]) < 1e-5 * float(values[0])  # 7e-7 measured


def test_lbfgs_bfloat16_params_keep_dtype_and_float32_scalars():
    f, w = problem("quadratic", jnp, jnp.float32)
    w = jax.tree.map(lambda x: x.astype(jnp.bfloat16), w)
    fb = lambda p: f(jax.tree.map(lambda x: x.astype(jnp.float32), p))
    tx = gradtx.lbfgs()
    state = tx.init(w)
    v, g = jax.value_and_grad(fb)(w)
    u, state = tx.update(g, state, w, value=v, grad=g, value_fn=fb)
    assert {x.dtype for x in jax.tree.leaves(u)} == {jnp.dtype(jnp.bfloat16)}
    assert gradtx.tree.get(state, "learning_rate").dtype == jnp.float32
    assert float(fb(gradtx.apply_updates(w, u))) < float(v)


def test_docs_page_example_runs():
    # docs/api/linesearch.md holds the full lbfgs loop as a doctest
    page = pathlib.Path(__file__).resolve().parents[1] / "docs/api/linesearch.md"
    result = doctest.testfile(str(page), module_relative=False, verbose=False)
    assert result.attempted >= 8
    assert result.failed == 0
