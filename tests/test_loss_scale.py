# SPDX-License-Identifier: Apache-2.0
"""Loss scaling as a transform (RELIABILITY.md C6; loss-scale rows of C1, C2, C4, C7).

Scale values and counters are compared exactly; params against a control run at
atol 1e-7 (torch GradScaler's control-run pattern).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

INT32_MAX = np.iinfo(np.int32).max
F32_MAX = float(np.finfo(np.float32).max)
FLOAT_DTYPES = pytest.mark.parametrize(
    "dtype", [jnp.float16, jnp.bfloat16, jnp.float32], ids=["f16", "bf16", "f32"]
)


def _params():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    enc = {"w": jax.random.normal(k1, (4, 3)), "b": 0.1 * jax.random.normal(k2, (3,))}
    return {"enc": enc, "head": {"v": jax.random.normal(k3, (3, 2))}}


def _batches(n):
    kx, ky = jax.random.split(jax.random.key(1))
    xs, ys = jax.random.normal(kx, (n, 8, 4)), jax.random.normal(ky, (n, 8, 2))
    return list(zip(xs, ys, strict=True))


def _loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["enc"]["w"] + params["enc"]["b"][None])
    return jnp.mean((h @ params["head"]["v"] - y) ** 2)


def _grads(value=1.0):
    return jax.tree.map(lambda p: jnp.full_like(p, value), _params())


def _poison(tree, value=jnp.inf):
    """Sets one element of one leaf to `value` (a single overflow in the whole tree)."""
    leaves, treedef = jax.tree.flatten(tree)
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(value)
    return jax.tree.unflatten(treedef, leaves)


def _bits(x):
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}")


def _assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(_bits(x), _bits(y))


def _two_groups(tx_enc, tx_head):
    """A minimal partition: `tx_enc` on params["enc"], `tx_head` on params["head"]."""
    groups = {"enc": tx_enc, "head": tx_head}

    def init(params):
        return {k: t.init(params[k]) for k, t in groups.items()}

    def update(updates, state, params=None, **extra_args):
        out, new = {}, {}
        for k, t in groups.items():
            p = None if params is None else params[k]
            out[k], new[k] = t.update(updates[k], state[k], p)
        return out, new

    return gradtx.GradientTransformation(init, update)


# --- growth and backoff -----------------------------------------------------------


def test_loss_scale_grows_exactly_after_growth_interval_finite_steps(jit):
    tx = gradtx.with_loss_scaling(gradtx.sgd(0.1), init_scale=1024.0, growth_interval=4)
    update = jit(tx.update)
    state = tx.init(_params())
    for expected_count in (1, 2, 3):
        _, state = update(_grads(), state)
        assert state.growth_count == expected_count
        assert state.scale == 1024.0
    _, state = update(_grads(), state)
    assert (state.scale, state.growth_count) == (2048.0, 0)
    # An overflow resets the streak: growth needs 4 *consecutive* finite steps again.
    for g in (_grads(), _grads(), _poison(_grads()), _grads(), _grads(), _grads()):
        _, state = update(g, state)
    assert (state.scale, state.growth_count) == (1024.0, 3)
    _, state = update(_grads(), state)
    assert (state.scale, state.growth_count, state.skipped_total) == (2048.0, 0, 1)
    assert state.scale.dtype == jnp.float32


@pytest.mark.parametrize(
    "bad", [jnp.inf, -jnp.inf, jnp.nan], ids=["inf", "-inf", "nan"]
)
def test_loss_scale_overflow_backs_off_zeroes_updates_and_freezes_inner_state(jit, bad):
    tx = gradtx.with_loss_scaling(
        gradtx.adamw(1e-2, weight_decay=0.1), init_scale=4096.0, growth_interval=100
    )
    update = jit(tx.update)
    params = _params()
    state = tx.init(params)
    for _ in range(3):
        _, state = update(_grads(4096.0), state, params)
    updates, new_state = update(_poison(_grads(4096.0), bad), state, params)

    _assert_bitwise(updates, jax.tree.map(jnp.zeros_like, params))
    _assert_bitwise(new_state.inner_state, state.inner_state)  # the inner count too
    _assert_bitwise(gradtx.apply_updates(params, updates), params)
    assert new_state.scale == 2048.0  # exact: backoff 0.5 of a power of 2
    assert (new_state.growth_count, new_state.skipped_total) == (0, 1)
    chex.assert_tree_all_finite(new_state)  # no NaN leaked from the skipped step


@pytest.mark.parametrize(
    ("backoff", "min_scale", "rtol"),
    [(0.5, 1.0, 0), (0.5, 2.0**-100, 0), (0.3, 1e-30, 1e-5)],
    ids=["floor-1", "no-floor-exact", "floor-1e-30"],
)
def test_loss_scale_hundred_overflows_stop_at_min_scale(jit, backoff, min_scale, rtol):
    tx = gradtx.with_loss_scaling(
        gradtx.sgd(0.1), backoff_factor=backoff, min_scale=min_scale
    )
    bad = _poison(_grads())

    def run(state):
        step = lambda s, _: (tx.update(bad, s)[1], None)
        return jax.lax.scan(step, state, None, length=100)[0]

    state = jit(run)(tx.init(_params()))
    expected = max(np.float32(min_scale), np.float32(2.0**16 * backoff**100))
    np.testing.assert_allclose(state.scale, expected, rtol=rtol, atol=0)
    assert (state.skipped_total, state.growth_count) == (100, 0)
    assert state.scale > 0


@pytest.mark.parametrize("init", [2.0**127, F32_MAX / 1.5], ids=["2^127", "max/1.5"])
def test_loss_scale_growth_never_reaches_inf(jit, init):
    tx = gradtx.with_loss_scaling(gradtx.sgd(0.1), init_scale=init, growth_interval=1)
    update = jit(tx.update)
    state = tx.init(_params())
    for _ in range(3):
        _, state = update(_grads(), state)
        assert state.scale == np.float32(init)
        assert state.growth_count == 0


def test_loss_scale_unscales_in_float32_beyond_the_float16_range(jit):
    # 2**20 does not fit in float16 (max 65504): a float16 division would give 0.
    tx = gradtx.with_loss_scaling(gradtx.scale(1.0), init_scale=2.0**20)
    g = {"w": jnp.array([1000.0, 3.0], jnp.float16)}
    updates, state = jit(tx.update)(g, tx.init(g))
    expected = (g["w"].astype(jnp.float32) / 2.0**20).astype(jnp.float16)
    _assert_bitwise(updates["w"], expected)
    assert updates["w"][0] > 0
    assert state.skipped_total == 0


def test_loss_scale_checks_the_unscaled_grads_for_overflow(jit):
    # A scale below 1 can overflow float16 while unscaling: that step is skipped too.
    tx = gradtx.with_loss_scaling(gradtx.scale(1.0), init_scale=0.5, min_scale=0.25)
    g = {"w": jnp.array([40000.0, 1.0], jnp.float16)}
    updates, state = jit(tx.update)(g, tx.init(g))
    _assert_bitwise(updates["w"], jnp.zeros(2, jnp.float16))
    assert (state.scale, state.skipped_total) == (0.25, 1)


# --- the control run: scaled with an overflow at step k == unscaled skipping step k --


def _control_cases():
    return {
        "adamw": lambda: gradtx.adamw(1e-2, weight_decay=0.1),
        "clip-momentum": lambda: gradtx.chain(
            gradtx.clip_by_global_norm(0.05), gradtx.sgd(0.1, momentum=0.9)
        ),
        "two-groups": lambda: _two_groups(
            gradtx.sgd(0.1, momentum=0.9), gradtx.adam(1e-2)
        ),
    }


@pytest.mark.parametrize("case", list(_control_cases()), ids=str)
def test_loss_scale_run_with_overflow_equals_control_run_skipping_it(jit, case):
    n, bad_steps, interval, init = 8, (3, 6), 2, 2.0**16
    inner = _control_cases()[case]()
    tx = gradtx.with_loss_scaling(inner, init_scale=init, growth_interval=interval)
    batches = _batches(n)

    params, state = _params(), tx.init(_params())
    grad_fn = jit(jax.grad(lambda p, s, b: gradtx.scale_loss(_loss(p, b), s)))
    update = jit(tx.update)
    for i, b in enumerate(batches):
        g = grad_fn(params, state, b)
        if i in bad_steps:
            g = _poison(g)
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)

    ctrl, ctrl_state = _params(), inner.init(_params())
    ctrl_grad, ctrl_update = jit(jax.grad(_loss)), jit(inner.update)
    for i, b in enumerate(batches):
        if i not in bad_steps:
            u, ctrl_state = ctrl_update(ctrl_grad(ctrl, b), ctrl_state, ctrl)
            ctrl = gradtx.apply_updates(ctrl, u)

    chex.assert_trees_all_close(params, ctrl, atol=1e-7, rtol=0)
    chex.assert_trees_all_close(state.inner_state, ctrl_state, atol=1e-7, rtol=0)
    runs = np.diff([-1, *bad_steps, n]) - 1  # lengths of the finite streaks
    n_growths = int(sum(r // interval for r in runs))
    assert n_growths == 2  # streaks 0-2 and 4-5 grow once each, 7 does not
    assert state.scale == np.float32(init * 2.0**n_growths * 0.5 ** len(bad_steps))
    assert state.skipped_total == len(bad_steps)


def test_loss_scale_disabled_equals_plain_optimizer_bitwise(jit):
    inner = gradtx.adamw(1e-2, weight_decay=0.1)
    tx = gradtx.with_loss_scaling(
        inner, init_scale=1.0, growth_interval=2, dynamic=False
    )
    batches = _batches(6)
    params, state = _params(), tx.init(_params())
    plain, plain_state = _params(), inner.init(_params())
    grad_scaled = jit(jax.grad(lambda p, s, b: gradtx.scale_loss(_loss(p, b), s)))
    grad_plain = jit(jax.grad(_loss))
    update, update_plain = jit(tx.update), jit(inner.update)
    for b in batches:
        u, state = update(grad_scaled(params, state, b), state, params)
        params = gradtx.apply_updates(params, u)
        u, plain_state = update_plain(grad_plain(plain, b), plain_state, plain)
        plain = gradtx.apply_updates(plain, u)
    _assert_bitwise(params, plain)
    _assert_bitwise(state.inner_state, plain_state)
    assert (state.scale, state.skipped_total) == (1.0, 0)


def test_loss_scale_fixed_scale_still_skips_nonfinite_steps(jit):
    tx = gradtx.with_loss_scaling(
        gradtx.adam(1e-2), init_scale=128.0, growth_interval=1, dynamic=False
    )
    update = jit(tx.update)
    state = tx.init(_params())
    _, state = update(_grads(), state)
    before = state
    updates, state = update(_poison(_grads()), state)
    _assert_bitwise(updates, jax.tree.map(jnp.zeros_like, _params()))
    _assert_bitwise(state.inner_state, before.inner_state)
    assert (state.scale, state.skipped_total) == (128.0, 1)


# --- state round trip (B23): every setting survives jit, tree_map, flatten, npz -----

# Non-default settings: a floor of 2 (not 1), growth x4 every 2 steps, backoff 1/4.
SETTINGS = {
    "init_scale": 8.0,
    "growth_factor": 4.0,
    "backoff_factor": 0.25,
    "growth_interval": 2,
    "min_scale": 2.0,
}
SEQUENCE = "bbgggbgg"  # b: an overflow, g: a finite step
EXPECTED_SCALES = [2.0, 2.0, 2.0, 8.0, 8.0, 2.0, 2.0, 8.0]  # the floor holds at 2


def _npz_round_trip(state, template, tmp_path):
    path = tmp_path / "state.npz"
    np.savez(path, *[np.asarray(x) for x in jax.tree.leaves(state)])
    with np.load(path) as data:
        leaves = [jnp.asarray(data[f"arr_{i}"]) for i in range(len(data.files))]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


ROUND_TRIPS = {
    "jit": lambda s, t, d: jax.jit(lambda x: x)(s),
    "tree_map": lambda s, t, d: jax.tree.map(lambda x: jnp.array(x, copy=True), s),
    "flatten": lambda s, t, d: jax.tree.unflatten(*reversed(jax.tree.flatten(s))),
    "npz": _npz_round_trip,
}


@pytest.mark.parametrize("trip", list(ROUND_TRIPS), ids=str)
def test_loss_scale_state_round_trip_keeps_every_field_and_behaviour(
    jit, trip, tmp_path
):
    tx = gradtx.with_loss_scaling(gradtx.adam(1e-2), **SETTINGS)
    update = jit(tx.update)
    template = tx.init(_params())
    state = template
    for _ in range(3):  # scale 8 -> 32 after 2 steps, then count 1
        _, state = update(_grads(), state)
    restored = ROUND_TRIPS[trip](state, template, tmp_path)
    assert type(restored) is gradtx.LossScaleState
    _assert_bitwise(restored, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(restored, template)

    state = tx.init(_params())  # now from scratch, so the floor is reached
    state = ROUND_TRIPS[trip](state, template, tmp_path)
    ref = tx.init(_params())
    for step, expected in zip(SEQUENCE, EXPECTED_SCALES, strict=True):
        g = _poison(_grads()) if step == "b" else _grads()
        u, state = update(g, state)
        state = ROUND_TRIPS[trip](state, template, tmp_path)
        u_ref, ref = update(g, ref)
        _assert_bitwise(u, u_ref)
        _assert_bitwise(state, ref)
        assert state.scale == expected
    assert state.skipped_total == SEQUENCE.count("b")


def test_loss_scale_under_scan_matches_a_python_loop(jit):
    tx = gradtx.with_loss_scaling(gradtx.adam(1e-2), **SETTINGS)
    grads = [_poison(_grads()) if c == "b" else _grads() for c in SEQUENCE]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)

    def scanned(state):
        def step(s, g):
            s = tx.update(g, s)[1]
            return s, s.scale

        return jax.lax.scan(step, state, stacked)

    state, scales = jit(scanned)(tx.init(_params()))
    np.testing.assert_array_equal(scales, np.float32(EXPECTED_SCALES))
    loop = tx.init(_params())
    for g in grads:
        _, loop = tx.update(g, loop)
    _assert_bitwise(state, loop)


# --- dtypes ---------------------------------------------------------------------


@FLOAT_DTYPES
def test_loss_scale_scale_is_float32_and_updates_keep_their_dtype(jit, dtype):
    tx = gradtx.with_loss_scaling(gradtx.adam(1e-2), growth_interval=1)
    params = jax.tree.map(lambda p: p.astype(dtype), _params())
    state = tx.init(params)
    assert state.scale.dtype == jnp.float32
    assert state.growth_count.dtype == state.skipped_total.dtype == jnp.int32
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    updates, new = jit(tx.update)(grads, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
    assert new.scale == 2.0**17


def test_loss_scale_scale_stays_float32_under_x64(x64):
    tx = gradtx.with_loss_scaling(gradtx.adam(1e-2))
    g = {"w": jnp.ones(3, jnp.float64)}
    updates, state = jax.jit(tx.update)(g, tx.init(g))
    assert state.scale.dtype == jnp.float32
    assert updates["w"].dtype == jnp.float64


def test_loss_scale_recovers_float16_gradients_that_underflow_without_it(jit):
    # Each of the 4096 per-sample cotangents is 1e-4 / 4096 = 2.4e-8, below half the
    # smallest float16 subnormal (6e-8): unscaled, every gradient flushes to zero.
    x = jax.random.uniform(jax.random.key(0), (4096, 4), minval=0.5, maxval=1.0)
    x16, w = x.astype(jnp.float16), jnp.ones(4, jnp.float16)
    loss = lambda w: 1e-4 * jnp.mean((x16 @ w).astype(jnp.float32))
    exact = 1e-4 * jnp.mean(x, axis=0)

    assert not jnp.any(jit(jax.grad(loss))(w))
    tx = gradtx.with_loss_scaling(gradtx.scale(1.0), init_scale=2.0**15)
    state = tx.init(w)
    grads = jit(jax.grad(lambda w, s: gradtx.scale_loss(loss(w), s)))(w, state)
    unscaled, state = jit(tx.update)(grads, state)
    assert unscaled.dtype == jnp.float16
    assert state.skipped_total == 0
    np.testing.assert_allclose(unscaled.astype(jnp.float32), exact, rtol=1e-2)


@FLOAT_DTYPES
def test_scale_loss_returns_at_least_float32(dtype):
    tx = gradtx.with_loss_scaling(gradtx.sgd(0.1))
    scaled = gradtx.scale_loss(jnp.asarray(3.0, dtype), tx.init(_params()))
    assert scaled.dtype == jnp.float32
    assert scaled == 3.0 * 2.0**16  # finite although 196608 > float16 max


# --- counters (C4) ----------------------------------------------------------------


def test_loss_scale_counters_stay_bounded_and_saturate(jit):
    interval = 7
    tx = gradtx.with_loss_scaling(
        gradtx.sgd(0.1), growth_interval=interval, min_scale=2.0**-20
    )
    bad = np.random.default_rng(0).random(1000) < 0.1
    good_g, bad_g = _grads(), _poison(_grads())

    def step(s, is_bad):
        g = jax.tree.map(lambda b, o: jnp.where(is_bad, b, o), bad_g, good_g)
        s = tx.update(g, s)[1]
        return s, (s.growth_count, s.scale)

    run = jit(lambda s: jax.lax.scan(step, s, bad))
    state, (counts, scales) = run(tx.init(_params()))
    assert counts.min() == 0
    assert counts.max() == interval - 1
    assert np.all(np.isfinite(scales))
    assert np.all(scales > 0)
    assert state.skipped_total == bad.sum()

    full = state._replace(skipped_total=jnp.int32(INT32_MAX))
    _, full = jit(tx.update)(bad_g, full)
    assert full.skipped_total == INT32_MAX  # saturates, never wraps negative


# --- finding the state: scale_loss and loss_scale -------------------------------


def test_scale_loss_finds_the_state_at_any_depth():
    wrapped = gradtx.with_loss_scaling(gradtx.adam(1e-3), init_scale=64.0)
    tx = gradtx.named_chain(("clip", gradtx.clip(1.0)), ("opt", wrapped))
    state = {"outer": [tx.init(_params())]}
    assert gradtx.loss_scale(state) == 64.0
    assert gradtx.scale_loss(jnp.float32(0.5), state) == 32.0
    jitted = jax.jit(lambda s: jax.grad(lambda x: gradtx.scale_loss(x**2, s))(3.0))
    assert jitted(state) == 6.0 * 64.0


def test_scale_loss_raises_for_no_or_several_loss_scale_states():
    inner = gradtx.with_loss_scaling(gradtx.sgd(0.1))
    none = gradtx.adam(1e-3).init(_params())
    two = gradtx.chain(inner, inner).init(_params())
    nested = gradtx.with_loss_scaling(inner).init(_params())
    with pytest.raises(gradtx.TreeMismatchError, match=r"gradtx\.scale_loss.*no Loss"):
        gradtx.scale_loss(1.0, none)
    with pytest.raises(gradtx.TreeMismatchError, match=r"gradtx\.loss_scale.*\[0\]"):
        gradtx.loss_scale(two)
    with pytest.raises(gradtx.TreeMismatchError, match=r"2 .*\.inner_state"):
        gradtx.scale_loss(1.0, nested)


def test_loss_scale_forwards_params_and_ignores_unknown_extra_args(jit):
    inner = gradtx.add_decayed_weights(0.5)  # needs params
    tx = gradtx.with_loss_scaling(inner, init_scale=4.0)
    params = {"w": jnp.array([2.0])}
    updates, _ = jit(tx.update)({"w": jnp.array([4.0])}, tx.init(params), params, foo=1)
    _assert_bitwise(updates["w"], jnp.array([2.0]))
    with pytest.raises(gradtx.MissingParamsError, match="add_decayed_weights"):
        tx.update({"w": jnp.array([4.0])}, tx.init(params))


# --- validation (C1) ---------------------------------------------------------------


NAN, INF = float("nan"), float("inf")
BAD_SETTINGS = {
    "init_scale": [0.0, -1.0, INF, NAN, 1e39],  # 1e39 is inf in float32
    "growth_factor": [1.0, 0.5, INF],
    "backoff_factor": [0.0, 1.0, -0.5],
    "growth_interval": [0, 2.0, True, 2**31],
    "min_scale": [0.0, -1.0, NAN, 2.0**17],  # 2**17 > init_scale
    "dynamic": ["yes"],
}


@pytest.mark.parametrize(
    ("name", "value"),
    [(n, v) for n, vs in BAD_SETTINGS.items() for v in vs],
    ids=lambda v: str(v),
)
def test_loss_scale_rejects_bad_settings(name, value):
    with pytest.raises(gradtx.HyperparameterError) as info:
        gradtx.with_loss_scaling(gradtx.sgd(0.1), **{name: value})
    message = str(info.value)
    assert message.startswith("gradtx.with_loss_scaling: ")
    assert name in message
    assert repr(value) in message


def test_loss_scale_accepts_edge_settings():
    tx = gradtx.with_loss_scaling(
        gradtx.sgd(0.1),
        init_scale=1.0,
        min_scale=1.0,
        growth_interval=np.int64(1),
        backoff_factor=jnp.asarray(0.5),
        growth_factor=np.float32(1.5),
    )
    _, state = tx.update(_grads(), tx.init(_params()))
    assert state.scale == 1.5
