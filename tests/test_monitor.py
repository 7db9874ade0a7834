"""snapshot, monitor, measure_with_ema (optax parity) and record_global_norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

PARAMS = {
    "w": jnp.array([[1.0, -2.0], [0.5, 3.0]]),
    "b": jnp.array([0.1, 0.2]),
    "s": jnp.array(1.5),
}


def _grads(i):
    return jax.tree.map(lambda p: p * (1.0 + i) - 0.3 * i, PARAMS)


def _run(tx, jit, steps=3, **extra):
    step = jit(lambda s, g: tx.update(g, s, PARAMS, **extra))
    state, out = tx.init(PARAMS), []
    for i in range(steps):
        updates, state = step(state, _grads(i))
        out.append((updates, state))
    return out


def _chain(lib, middle):
    return lib.chain(lib.sgd(0.1, momentum=0.9), middle, lib.clip_by_global_norm(0.5))


def test_snapshot_matches_optax(jit, standard_promotion):
    with jax.numpy_dtype_promotion("strict"):
        ours = _run(_chain(gradtx, gradtx.snapshot("n", gradtx.global_norm)), jit)
    theirs = _run(_chain(optax, optax.snapshot("n", optax.tree.norm)), jit)
    for (u, s), (ou, os_) in zip(ours, theirs, strict=True):
        chex.assert_trees_all_close(u, ou, rtol=1e-6)
        chex.assert_trees_all_close(s[1].measurement, os_[1].measurement, rtol=1e-6)


def _measures(lib):
    norm = gradtx.global_norm if lib is gradtx else optax.tree.norm
    return {
        "norm": norm,
        "clipped_ema": lib.measure_with_ema(lambda u: norm(u) > 2.0, decay=0.9),
        "norm_ema": lib.measure_with_ema(norm, decay=0.5, debias=False),
    }


def test_monitor_matches_optax(jit, standard_promotion):
    with jax.numpy_dtype_promotion("strict"):
        ours = _run(_chain(gradtx, gradtx.monitor(_measures(gradtx))), jit)
    theirs = _run(_chain(optax, optax.monitor(_measures(optax))), jit)
    for (u, s), (ou, os_) in zip(ours, theirs, strict=True):
        chex.assert_trees_all_close(u, ou, rtol=1e-6)
        chex.assert_trees_all_close(s[1].measurements, os_[1].measurements, rtol=1e-6)
        chex.assert_trees_all_close(
            jax.tree.leaves(s[1].measure_states),
            jax.tree.leaves(os_[1].measure_states),
            rtol=1e-6,
        )
    assert 0.0 < float(ours[-1][1][1].measurements["clipped_ema"]) < 1.0


def test_measure_with_ema_matches_optax(jit, standard_promotion):
    measure = lambda u: {"n": jnp.sum(u["w"] ** 2), "m": u["b"]}
    with jax.numpy_dtype_promotion("strict"):
        ours = _run(gradtx.measure_with_ema(measure, 0.8), jit)
    theirs = _run(optax.measure_with_ema(measure, 0.8), jit)
    for (u, _), (ou, _) in zip(ours, theirs, strict=True):
        chex.assert_trees_all_close(u, ou, rtol=1e-6)


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.snapshot("n", gradtx.global_norm),
        gradtx.monitor(_measures(gradtx)),
        gradtx.measure_with_ema(lambda u: gradtx.global_norm(u) > 1.0, 0.9),
    ],
    ids=["snapshot", "monitor", "measure_with_ema"],
)
def test_monitoring_state_structure_and_dtypes_are_stable(tx, jit):
    init = tx.init(PARAMS)
    for _, state in _run(tx, jit):
        chex.assert_trees_all_equal_shapes_and_dtypes(init, state)


def test_monitor_works_in_lax_scan():
    tx = _chain(gradtx, gradtx.monitor(_measures(gradtx)))
    body = lambda s, i: (tx.update(_grads(i), s, PARAMS)[1], None)
    state, _ = jax.lax.scan(body, tx.init(PARAMS), jnp.arange(3.0))
    chex.assert_trees_all_close(state, _run(tx, jax.jit)[-1][1], rtol=1e-6)


def test_monitor_passes_extra_args_to_measures_and_updates_through():
    seen = gradtx.stateless(lambda u, p: u)
    record = gradtx.GradientTransformation(
        seen.init, lambda u, s, p=None, *, value, **kw: (value * 2, s)
    )
    tx = gradtx.monitor({"loss2": record, "norm": gradtx.global_norm})
    g = _grads(1)
    init = tx.init(PARAMS)
    assert set(init.measurements) == {"norm"}  # "loss2" needs value=: as optax
    u, state = tx.update(g, init, PARAMS, value=jnp.float32(3.0))
    chex.assert_trees_all_equal(u, g)
    assert float(state.measurements["loss2"]) == 6.0


def test_snapshot_is_readable_with_gradtx_tree_get():
    tx = _chain(gradtx, gradtx.snapshot("norm_before_clip", gradtx.global_norm))
    assert gradtx.tree.get(tx.init(PARAMS), "norm_before_clip") is not None


BAD = {
    "snapshot_name": (lambda: gradtx.snapshot(1, gradtx.global_norm), "snapshot"),
    "snapshot_measure": (lambda: gradtx.snapshot("n", 3), "snapshot"),
    "monitor_not_dict": (lambda: gradtx.monitor([gradtx.global_norm]), "monitor"),
    "monitor_entry": (lambda: gradtx.monitor({"n": 3}), "monitor"),
    "ema_decay": (lambda: gradtx.measure_with_ema(jnp.sum, 1.5), "measure_with_ema"),
    "ema_measure": (lambda: gradtx.measure_with_ema(3, 0.9), "measure_with_ema"),
    "norm_max_norm": (lambda: gradtx.record_global_norm(-1.0), "record_global_norm"),
}


@pytest.mark.parametrize(("make", "fn"), list(BAD.values()), ids=list(BAD))
def test_monitoring_bad_arguments_raise(make, fn):
    with pytest.raises(gradtx.HyperparameterError, match=f"gradtx.{fn}"):
        make()


def _np_norm(tree):
    return np.sqrt(
        sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(tree))
    )


def test_record_global_norm_before_and_after_clip_matches_numpy(jit):
    inner = gradtx.named_chain(
        ("pre", gradtx.record_global_norm(max_norm=1.0)),
        ("clip", gradtx.clip_by_global_norm(1.0)),
    )
    tx = gradtx.chain(gradtx.scale(2.0), inner, gradtx.record_global_norm())
    g = _grads(2)
    u, state = jit(lambda s: tx.update(g, s))(tx.init(PARAMS))
    (p_path, pre), (_, post) = gradtx.tree.get_all_with_path(state, "global_norm")
    expected = _np_norm(g) * 2.0
    np.testing.assert_allclose(pre, expected, rtol=1e-6)
    np.testing.assert_allclose(post, _np_norm(u), rtol=1e-6)
    np.testing.assert_allclose(post, 1.0, rtol=1e-6)
    factor = gradtx.tree.get(
        state, "clip_factor", filtering=lambda p, _: p[:2] == p_path[:2]
    )
    np.testing.assert_allclose(factor, 1.0 / expected, rtol=1e-6)


def test_record_global_norm_is_found_by_name_in_a_nested_chain():
    tx = gradtx.chain(
        gradtx.chain(gradtx.scale(1.0), gradtx.record_global_norm()), gradtx.sgd(0.1)
    )
    _, state = tx.update(_grads(1), tx.init(PARAMS))
    np.testing.assert_allclose(
        gradtx.tree.get(state, "global_norm"), _np_norm(_grads(1)), rtol=1e-6
    )
    assert float(gradtx.tree.get(state, "clip_factor")) == 1.0


@pytest.mark.parametrize(
    ("scale", "factor"),
    [(0.0, 1.0), (1.0, 1.0), (jnp.inf, 0.0)],
    ids=["zero", "small", "inf"],
)
def test_record_global_norm_clip_factor_edges(scale, factor, jit):
    tx = gradtx.record_global_norm(max_norm=0.0 if scale == 0.0 else 1e3)
    g = jax.tree.map(lambda p: p * jnp.float32(scale), PARAMS)
    _, state = jit(lambda s: tx.update(g, s))(tx.init(PARAMS))
    assert float(state.clip_factor) == factor
    chex.assert_trees_all_equal_shapes_and_dtypes(state, tx.init(PARAMS))


def test_record_global_norm_low_precision_is_float32_and_float64_under_x64(x64):
    tx = gradtx.record_global_norm(1.0)
    big = {"h": jnp.full((4,), 6e4, jnp.float16)}
    u, state = tx.update(big, tx.init(big))
    assert state.global_norm.dtype == jnp.float32
    assert u["h"].dtype == jnp.float16
    np.testing.assert_allclose(state.global_norm, 1.2e5, rtol=1e-6)
    assert tx.init({"w": jnp.ones(2, jnp.float64)}).global_norm.dtype == jnp.float64
