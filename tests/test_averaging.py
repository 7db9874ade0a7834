import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx._numerics import INT32_MAX

SHAPES = {"w": (4, 3), "b": (5,), "s": ()}
STEPS = 20


def _params(dtype):
    rng = np.random.default_rng(0)
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in SHAPES.items()}


def _grads(dtype):
    rng = np.random.default_rng(1)
    return [
        {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in SHAPES.items()}
        for _ in range(STEPS)
    ]


def _run(averager, dtype, jit):
    """Trains with sgd + `averager`; returns the param trajectory, state, updates."""
    tx = gradtx.chain(gradtx.sgd(0.1, momentum=0.9), averager)
    plain = gradtx.sgd(0.1, momentum=0.9)
    params = _params(dtype)
    state, plain_state = tx.init(params), plain.init(params)
    update, plain_update = jit(tx.update), jit(plain.update)
    trajectory = [params]
    for g in _grads(dtype):
        updates, state = update(g, state, params)
        expected, plain_state = plain_update(g, plain_state, params)
        chex.assert_trees_all_equal(updates, expected)  # passed through unchanged
        params = gradtx.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


def _f64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _reference(trajectory, kind, *, decay=0.0, start=0, every=1, debias=False):
    """torch.optim.swa_utils.AveragedModel in float64 NumPy, written from its source."""
    avg = _f64(trajectory[0])  # AveragedModel deep-copies the model
    n, biased = 0, jax.tree.map(np.zeros_like, avg)
    for t, p in enumerate(_f64(trajectory[1:])):
        if t < start or (t - start) % every:
            continue
        k = n + 1  # the number of averaged params, this one included
        if debias:  # zero-initialized EMA divided by 1 - decay**k (Adam-style)
            biased = jax.tree.map(lambda m, x: decay * m + (1 - decay) * x, biased, p)
            avg = jax.tree.map(lambda m, c=1 - decay**k: m / c, biased)
        elif n == 0:
            avg = p
        elif kind == "swa":  # default avg_fn
            avg = jax.tree.map(lambda a, x, k=k: a + (x - a) / k, avg, p)
        else:  # get_ema_multi_avg_fn: lerp(ema, p, 1 - decay)
            avg = jax.tree.map(lambda a, x: a + (1 - decay) * (x - a), avg, p)
        n += 1
    return avg, n


CASES = {
    "ema": (lambda: gradtx.ema_params(0.8), {"kind": "ema", "decay": 0.8}),
    "ema_debias_start": (
        lambda: gradtx.ema_params(0.9, debias=True, start=3),
        {"kind": "ema", "decay": 0.9, "debias": True, "start": 3},
    ),
    "swa": (lambda: gradtx.swa_params(), {"kind": "swa"}),
    "swa_start_every": (
        lambda: gradtx.swa_params(start=5, every=3),
        {"kind": "swa", "start": 5, "every": 3},
    ),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_averaging_matches_float64_torch_reference(case, dtype, jit):
    make, ref = CASES[case]
    trajectory, state = _run(make(), dtype, jit)
    avg_state = state[-1]
    expected, n = _reference(trajectory, **ref)
    assert int(avg_state.n_averaged) == n
    assert int(avg_state.count) == STEPS
    # the average is kept in float32 whatever the params' dtype
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(avg_state.average))
    chex.assert_trees_all_close(_f64(avg_state.average), expected, rtol=1e-6, atol=1e-7)
    out = gradtx.averaged_params(state)
    chex.assert_trees_all_equal_dtypes(out, trajectory[0])
    rounded = jax.tree.map(lambda a, p: a.astype(p.dtype), avg_state.average, out)
    chex.assert_trees_all_equal(out, rounded)


def test_averaging_before_start_is_the_initial_params():
    params = _params(jnp.bfloat16)
    tx = gradtx.swa_params(start=2)
    state = tx.init(params)
    grads = _grads(jnp.bfloat16)[0]
    _, state = tx.update(grads, state, params)
    assert int(state.n_averaged) == 0
    chex.assert_trees_all_equal(gradtx.averaged_params(state), params)


def test_averaging_average_dtype_is_honoured():
    tx = gradtx.ema_params(0.5, average_dtype=jnp.bfloat16)
    params = _params(jnp.float32)
    _, state = tx.update(_grads(jnp.float32)[0], tx.init(params), params)
    assert {x.dtype for x in jax.tree.leaves(state.average)} == {jnp.dtype("bfloat16")}
    chex.assert_trees_all_equal_dtypes(gradtx.averaged_params(state), params)


@pytest.mark.parametrize(
    "make", [lambda: gradtx.ema_params(0.9), gradtx.swa_params], ids=["ema", "swa"]
)
def test_averaging_update_without_params_raises(make):
    tx = make()
    params = _params(jnp.float32)
    with pytest.raises(gradtx.MissingParamsError, match=r"gradtx\.(ema|swa)_params"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: gradtx.ema_params(1.0), "decay"),
        (lambda: gradtx.ema_params(-0.1), "decay"),
        (lambda: gradtx.ema_params(0.9, start=-1), "start"),
        (lambda: gradtx.swa_params(start=1.5), "start"),
        (lambda: gradtx.swa_params(every=0), "every"),
        (lambda: gradtx.swa_schedule(1.0, 0.1, anneal_steps=-1), "anneal_steps"),
        (lambda: gradtx.swa_schedule(1.0, 0.1, anneal_strategy="exp"), "strategy"),
        (lambda: gradtx.swa_schedule(1.0, math.nan), "swa_lr"),
    ],
    ids=[
        "decay1",
        "decay_neg",
        "start_neg",
        "start_float",
        "every0",
        "anneal_neg",
        "strategy",
        "swa_lr_nan",
    ],
)
def test_averaging_bad_hyperparameters_raise(make, match):
    with pytest.raises(gradtx.HyperparameterError, match=match):
        make()


def test_averaging_bad_average_dtype_raises_type_error():
    with pytest.raises(TypeError, match="average_dtype"):
        gradtx.swa_params(average_dtype=jnp.int32)


def test_averaged_params_finds_the_state_anywhere_and_refuses_ambiguity():
    params = _params(jnp.float32)
    tx = gradtx.apply_if_finite(
        gradtx.chain(gradtx.adam(1e-3), gradtx.ema_params(0.9)), 3
    )
    nested = {"opt": tx.init(params)}
    chex.assert_trees_all_equal(gradtx.averaged_params(nested), params)
    with pytest.raises(gradtx.TreeMismatchError, match="got 0"):
        gradtx.averaged_params(gradtx.adam(1e-3).init(params))
    two = gradtx.chain(gradtx.ema_params(0.9), gradtx.swa_params()).init(params)
    with pytest.raises(gradtx.TreeMismatchError, match="got 2"):
        gradtx.averaged_params(two)
    chex.assert_trees_all_equal(gradtx.averaged_params(two[1]), params)


def test_averaging_traced_decay_and_scan_do_not_retrace():
    params = _params(jnp.float32)
    grads = jax.tree.map(lambda *g: jnp.stack(g), *_grads(jnp.float32))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(decay, params, grads):
        tx = gradtx.chain(gradtx.sgd(0.1), gradtx.ema_params(decay))

        def body(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            return (gradtx.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, tx.init(params)), grads)[0][1]

    a = run(jnp.float32(0.5), params, grads)
    b = run(jnp.float32(0.9), params, grads)
    assert not np.allclose(a[-1].average["w"], b[-1].average["w"])


def test_averaging_counters_saturate_at_int32_max():
    params = _params(jnp.float32)
    tx = gradtx.swa_params()
    state = tx.init(params)._replace(
        count=jnp.int32(INT32_MAX), n_averaged=jnp.int32(INT32_MAX)
    )
    _, state = jax.jit(tx.update)(_grads(jnp.float32)[0], state, params)
    assert int(state.count) == INT32_MAX
    assert int(state.n_averaged) == INT32_MAX
    chex.assert_tree_all_finite(state.average)


def _torch_swalr(lr0, swa_lr, anneal_epochs, strategy, steps):
    """torch.optim.swa_utils.SWALR.get_lr, transliterated (recursive form)."""
    if strategy == "cos":
        f = lambda t: (1 - math.cos(math.pi * t)) / 2
    else:
        f = lambda t: t
    lr, out = lr0, []
    for step_count in range(1, steps + 1):  # the constructor already steps once
        step = step_count - 1
        if anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = f(max(0, min(1, (step - 1) / max(1, anneal_epochs))))
        prev = (
            swa_lr if prev_alpha == 1 else (lr - prev_alpha * swa_lr) / (1 - prev_alpha)
        )
        alpha = f(max(0, min(1, step / max(1, anneal_epochs))))
        lr = swa_lr * alpha + prev * (1 - alpha)
        out.append(lr)
    return np.asarray(out)


@pytest.mark.parametrize("anneal_steps", [0, 1, 7], ids=["a0", "a1", "a7"])
@pytest.mark.parametrize("strategy", ["cos", "linear"], ids=["cos", "linear"])
def test_swa_schedule_matches_torch_swalr(strategy, anneal_steps, jit):
    sched = jit(gradtx.swa_schedule(0.3, 0.02, anneal_steps, strategy))
    got = np.asarray([sched(jnp.int32(t)) for t in range(12)], np.float64)
    want = _torch_swalr(0.3, 0.02, anneal_steps, strategy, 12)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert sched(jnp.int32(INT32_MAX)) == jnp.float32(0.02)
