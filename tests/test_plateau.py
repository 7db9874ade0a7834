"""reduce_on_plateau: optax parity, mode="max", validation, dtypes, counters, scan."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

INT32_MAX = np.iinfo(np.int32).max
PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones(3), "s": jnp.ones(())}
# Falls, plateaus, falls a little, plateaus again: several reductions and cooldowns.
LOSSES = [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 2.9, 2.9, 2.9, 2.9, 2.9, 1.0, 1.0, 1.0] * 2
CONFIGS = {
    "defaults": {},
    "patience2": {"patience": 2, "factor": 0.5},
    "cooldown": {"patience": 2, "cooldown": 2, "factor": 0.5, "min_scale": 0.2},
    "window": {"patience": 1, "accumulation_size": 3, "rtol": 0.0, "atol": 0.05},
}


def _losses(jit):
    # Eager dispatches op by op (slow); it runs the same code, so a prefix covers it.
    return LOSSES if jit is jax.jit else LOSSES[:7]


def _run(tx, losses, jit, params=PARAMS):
    step = jit(lambda s, v: tx.update(params, s, value=v))
    state, out = tx.init(params), []
    for v in losses:
        updates, state = step(state, jnp.float32(v))
        out.append((updates, state))
    return out


@pytest.mark.parametrize("kwargs", list(CONFIGS.values()), ids=list(CONFIGS))
def test_reduce_on_plateau_matches_optax(kwargs, jit, standard_promotion):
    with jax.numpy_dtype_promotion("strict"):
        ours = _run(gradtx.reduce_on_plateau(**kwargs), _losses(jit), jit)
    theirs = _run(optax.contrib.reduce_on_plateau(**kwargs), _losses(jit), jit)
    for (u, s), (ou, os_) in zip(ours, theirs, strict=True):
        chex.assert_trees_all_close(u, ou, rtol=1e-6)
        chex.assert_trees_all_close(tuple(s), tuple(os_), rtol=1e-6)
    if jit is jax.jit:  # the losses really trigger reductions
        assert float(ours[-1][1].scale) < 1.0


@pytest.mark.parametrize("kwargs", list(CONFIGS.values()), ids=list(CONFIGS))
def test_reduce_on_plateau_max_mirrors_min_on_negated_metric(kwargs, jit):
    losses = _losses(jit)
    lo = _run(gradtx.reduce_on_plateau(**kwargs), losses, jit)
    hi = _run(gradtx.reduce_on_plateau(**kwargs, mode="max"), [-v for v in losses], jit)
    for (u, s), (hu, hs) in zip(lo, hi, strict=True):
        chex.assert_trees_all_equal(u, hu)
        chex.assert_trees_all_equal(
            (s.scale, s.plateau_count, s.cooldown_count, s.count),
            (hs.scale, hs.plateau_count, hs.cooldown_count, hs.count),
        )
        chex.assert_trees_all_equal(
            (s.best_value, s.avg_value), (-hs.best_value, -hs.avg_value)
        )


def test_reduce_on_plateau_max_mode_rising_accuracy_keeps_scale():
    out = _run(
        gradtx.reduce_on_plateau(patience=1, mode="max"), [0.5, 0.6, 0.7], jax.jit
    )
    assert float(out[-1][1].scale) == 1.0
    assert float(out[-1][1].best_value) == pytest.approx(0.7)


def test_reduce_on_plateau_negative_loss_needs_a_real_improvement():
    # optax's (1 - rtol) * best would count -9.5 as better than -10.
    tx = gradtx.reduce_on_plateau(patience=1, rtol=0.1, factor=0.5)
    out = _run(tx, [-10.0, -9.5], jax.jit)
    assert float(out[-1][1].best_value) == -10.0
    assert float(out[-1][1].scale) == 0.5


def test_reduce_on_plateau_state_structure_and_dtypes_are_stable(jit):
    tx = gradtx.reduce_on_plateau(patience=2, cooldown=1)
    state = tx.init(PARAMS)
    for _, new in _run(tx, LOSSES[:8], jit):
        chex.assert_trees_all_equal_shapes_and_dtypes(state, new)
    assert state.plateau_count.dtype == jnp.int32


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
def test_reduce_on_plateau_low_precision_params_keep_dtype(dtype, jit):
    params = {"w": jnp.ones(3, dtype)}
    (u, s), *_ = _run(gradtx.reduce_on_plateau(), [1.0], jit, params)
    assert u["w"].dtype == dtype
    assert s.scale.dtype == jnp.float32
    assert s.best_value.dtype == jnp.float32


def test_reduce_on_plateau_float64_params_use_float64_state(x64):
    state = gradtx.reduce_on_plateau().init({"w": jnp.ones(2, jnp.float64)})
    assert state.best_value.dtype == jnp.float64


def test_reduce_on_plateau_counters_saturate(jit):
    tx = gradtx.reduce_on_plateau(patience=2**40, accumulation_size=2**40, factor=0.5)
    state = tx.init(PARAMS)._replace(
        plateau_count=jnp.int32(INT32_MAX - 1),
        count=jnp.int32(INT32_MAX),
        best_value=jnp.float32(1.0),
        avg_value=jnp.float32(2.0),
    )
    _, state = jit(lambda s: tx.update(PARAMS, s, value=2.0))(state)
    assert int(state.count) == 0
    assert int(state.plateau_count) == 0
    assert float(state.scale) == 0.5


def test_reduce_on_plateau_lax_scan_equals_python_loop():
    tx = gradtx.reduce_on_plateau(patience=2, cooldown=1, factor=0.5)

    def body(s, v):
        u, s = tx.update(PARAMS, s, value=v)
        return s, u["s"]

    state, scanned = jax.lax.scan(body, tx.init(PARAMS), jnp.asarray(LOSSES))
    loop = _run(tx, LOSSES, jax.jit)
    chex.assert_trees_all_equal(state, loop[-1][1])
    chex.assert_trees_all_equal(scanned, jnp.stack([u["s"] for u, _ in loop]))


def test_reduce_on_plateau_traced_hyperparameters_do_not_retrace():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(factor, state):
        tx = gradtx.reduce_on_plateau(factor=factor, patience=1)
        return tx.update(PARAMS, state, value=1.0)

    state = gradtx.reduce_on_plateau().init(PARAMS)
    for f in (0.5, 0.25):
        step(jnp.float32(f), state)


def test_reduce_on_plateau_update_without_value_raises():
    tx = gradtx.reduce_on_plateau()
    with pytest.raises(gradtx.MissingValueError, match=r"gradtx\.reduce_on_plateau"):
        tx.update(PARAMS, tx.init(PARAMS))
    with pytest.raises(gradtx.MissingValueError, match="scalar"):
        tx.update(PARAMS, tx.init(PARAMS), value=jnp.ones(2))


def test_reduce_on_plateau_is_the_contrib_name():
    assert gradtx.contrib.reduce_on_plateau is gradtx.reduce_on_plateau
    assert gradtx.contrib.ReduceLROnPlateauState is gradtx.ReduceLROnPlateauState
    assert (
        gradtx.ReduceLROnPlateauState._fields
        == optax.contrib.ReduceLROnPlateauState._fields
    )


BAD = {
    "factor0": ("factor", 0.0),
    "factor_gt1": ("factor", 1.5),
    "factor_nan": ("factor", float("nan")),
    "patience0": ("patience", 0),
    "patience_float": ("patience", 2.5),
    "patience_bool": ("patience", True),
    "rtol_neg": ("rtol", -1e-3),
    "rtol_gt1": ("rtol", 2.0),
    "atol_neg": ("atol", -1.0),
    "cooldown_neg": ("cooldown", -1),
    "accumulation0": ("accumulation_size", 0),
    "min_scale_neg": ("min_scale", -0.1),
    "mode": ("mode", "maximum"),
}


@pytest.mark.parametrize(("name", "value"), list(BAD.values()), ids=list(BAD))
def test_reduce_on_plateau_bad_hyperparameters_raise(name, value):
    with pytest.raises(gradtx.HyperparameterError, match=f"reduce_on_plateau: {name}"):
        gradtx.reduce_on_plateau(**{name: value})


def test_reduce_on_plateau_accepts_factor_one_and_integer_arrays():
    tx = gradtx.reduce_on_plateau(
        factor=1.0, patience=jnp.asarray(3), cooldown=np.int64(1)
    )
    assert float(_run(tx, [1.0] * 8, jax.jit)[-1][1].scale) == 1.0
