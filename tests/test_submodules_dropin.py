# SPDX-License-Identifier: Apache-2.0
"""gradtx.second_order, perturbations, assignment, microbatching and nnls.

Each is checked against a float64 NumPy reference from its definition (eager and under
`jax.jit`) and against optax 0.2.8 on the same inputs.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import assignment, perturbations, second_order
from gradtx import microbatching as mb
from tests import _reference_submodules as R

AT = mb.AccumulationType
RTOL = 1e-5


def _quiet(fn, *args):
    # optax 0.2.8 deprecates optax.second_order and warns on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args)


# ---------------------------------------------------------------- second_order

X = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
Y = jnp.array([0.5, -0.5, 1.0])
PARAMS = {"w": jnp.array([0.3, -0.2]), "b": jnp.array(0.1)}
loss_jnp = lambda p, x, y: R.regression_loss(p, x, y, jnp)


def test_second_order_matches_float64_hessian(jit):
    grad, hess = R.regression_grad_hessian(PARAMS["w"], PARAMS["b"], X, Y)
    v = jnp.array([1.0, -2.0, 0.5])
    hv = jit(lambda v: second_order.hvp(loss_jnp, v, PARAMS, X, Y))(v)
    flat_hv = np.concatenate([[hv["b"]], hv["w"]])
    np.testing.assert_allclose(flat_hv, hess @ np.asarray(v), rtol=RTOL)
    diag = jit(lambda p: second_order.hessian_diag(loss_jnp, p, X, Y))(PARAMS)
    np.testing.assert_allclose(diag, np.diag(hess), rtol=RTOL)
    fisher = jit(lambda p: second_order.fisher_diag(loss_jnp, p, X, Y))(PARAMS)
    np.testing.assert_allclose(fisher, grad**2, rtol=RTOL)


def test_second_order_matches_optax(standard_promotion):
    v = jnp.array([1.0, -2.0, 0.5])

    def all_three(module):
        return (
            module.hvp(loss_jnp, v, PARAMS, X, Y),
            module.hessian_diag(loss_jnp, PARAMS, X, Y),
            module.fisher_diag(loss_jnp, PARAMS, X, Y),
        )

    theirs = _quiet(jax.jit(lambda: all_three(optax.second_order)))
    chex.assert_trees_all_close(all_three(second_order), theirs, rtol=1e-6)


def test_second_order_hvp_rejects_a_vector_of_the_wrong_size():
    with pytest.raises(gradtx.HyperparameterError, match=r"hvp: v must have shape"):
        second_order.hvp(loss_jnp, jnp.ones(2), PARAMS, X, Y)


# ---------------------------------------------------------------- perturbations

NOISES = {
    "gumbel": (perturbations.Gumbel, jax.random.gumbel, lambda z: -1 + np.exp(-z)),
    "normal": (perturbations.Normal, jax.random.normal, lambda z: -z),
}
step_fn = lambda x: jnp.sum(jnp.where(x > 0.2, 1.0, 0.0) * jnp.arange(1.0, 4.0))


@pytest.mark.parametrize(
    ("noise", "baseline"),
    [("gumbel", True), ("normal", False)],
    ids=["gumbel-baseline", "normal-plain"],
)
def test_perturbed_fun_matches_float64_score_estimator(noise, baseline, jit):
    cls, sampler, log_prob_grad = NOISES[noise]
    key, x, n, sigma = jax.random.key(3), jnp.array([0.1, 0.3, -0.2]), 64, 0.5
    # The documented draws: one key per sample, then one key per leaf.
    draw = lambda k: sampler(jax.random.split(k, 1)[0], (3,))
    z = np.asarray(jax.vmap(draw)(jax.random.split(key, n)))
    f64 = lambda v: float(np.sum((v > 0.2) * np.arange(1.0, 4.0)))
    ref_val, ref_grad = R.perturbed_value_and_grad(
        f64, x, sigma, z, log_prob_grad, baseline
    )
    fun = perturbations.make_perturbed_fun(step_fn, n, sigma, cls(), baseline)
    val, grad = jit(jax.value_and_grad(fun, argnums=1))(key, x)
    np.testing.assert_allclose(val, ref_val, rtol=RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


def test_perturbed_fun_matches_optax_on_a_pytree(standard_promotion):
    x = {"a": jnp.array([0.1, -0.3, 0.5]), "b": jnp.array(0.2)}
    f = lambda t: {"s": jnp.sum(jnp.maximum(t["a"], 0.0)), "r": jnp.round(t["b"])}
    key = jax.random.key(0)

    def value_and_grad(module):
        fn = module.make_perturbed_fun(f, 50, 0.3)  # default noise: Gumbel
        grad = jax.grad(lambda t: fn(key, t)["s"])
        return jax.jit(lambda t: (fn(key, t), grad(t)))(x)

    ours, theirs = value_and_grad(perturbations), value_and_grad(optax.perturbations)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_perturbed_fun_validates_its_arguments():
    with pytest.raises(gradtx.HyperparameterError, match="num_samples"):
        perturbations.make_perturbed_fun(step_fn, 0)
    with pytest.raises(gradtx.HyperparameterError, match="sigma"):
        perturbations.make_perturbed_fun(step_fn, 10, 0.0)


# ---------------------------------------------------------------- assignment


# Which of optax's functions each shape is compared with: both pair orders of
# `hungarian_algorithm` (square, wide, tall) and the transposed case of the base one.
ASSIGNMENT_CASES = {
    (4, 4): ("hungarian_algorithm",),
    (2, 4): ("hungarian_algorithm",),
    (4, 2): ("hungarian_algorithm", "base_hungarian_algorithm"),
}


@pytest.mark.parametrize("shape", list(ASSIGNMENT_CASES), ids=str)
def test_assignment_is_optimal_and_matches_optax(shape, standard_promotion):
    costs = np.random.default_rng(sum(shape)).normal(size=(10, *shape))
    costs = jnp.asarray(costs, jnp.float32)
    for name in ("hungarian_algorithm", "base_hungarian_algorithm"):
        rows, cols = jax.vmap(getattr(assignment, name))(costs)
        assert rows.shape == cols.shape == (10, min(shape))
        assert rows.dtype == cols.dtype == jnp.int32
        for c, i, j in zip(*map(np.asarray, (costs, rows, cols)), strict=True):
            assert len(set(i)) == len(set(j)) == min(shape)  # one-to-one
            ref = R.brute_force_assignment_cost(c)
            np.testing.assert_allclose(c[i, j].sum(), ref, rtol=RTOL, atol=1e-6)
        if name in ASSIGNMENT_CASES[shape]:
            # Random costs have one optimum: the same pairs, in optax's order.
            theirs = jax.jit(jax.vmap(getattr(optax.assignment, name)))(costs)
            chex.assert_trees_all_equal((rows, cols), theirs)


def test_assignment_under_jit_equals_eager():
    cost = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5)), jnp.float32)
    for fn in (assignment.hungarian_algorithm, assignment.base_hungarian_algorithm):
        chex.assert_trees_all_equal(jax.jit(fn)(cost), fn(cost))


def test_assignment_matches_scipy_on_integer_costs():
    sp = pytest.importorskip("scipy.optimize")
    cost = np.random.default_rng(1).integers(0, 5, size=(5, 7))  # many ties
    i, j = assignment.base_hungarian_algorithm(cost)
    r, c = sp.linear_sum_assignment(cost)
    np.testing.assert_array_equal(i, r)  # rows ascending, like scipy
    assert cost[np.asarray(i), np.asarray(j)].sum() == cost[r, c].sum()


def test_assignment_handles_empty_and_infinite_costs():
    for shape in [(0, 3), (3, 0)]:
        i, j = assignment.hungarian_algorithm(jnp.zeros(shape))
        assert i.shape == j.shape == (0,)
    # Forbidden pairs (inf) are avoided when a finite assignment exists.
    cost = jnp.array([[jnp.inf, 1.0, 5.0], [2.0, jnp.inf, 1.0], [1.0, 3.0, jnp.inf]])
    i, j = assignment.base_hungarian_algorithm(cost)
    assert float(cost[i, j].sum()) == 3.0
    # A row of infinities or NaNs still terminates with a one-to-one assignment.
    for bad in (jnp.inf, jnp.nan):
        cost = jnp.array([[bad, bad, bad], [1.0, 2.0, bad], [3.0, 1.0, 2.0]])
        i, j = assignment.hungarian_algorithm(cost)
        assert sorted(np.asarray(i).tolist()) == [0, 1, 2]
        assert sorted(np.asarray(j).tolist()) == [0, 1, 2]


def test_assignment_rejects_a_non_matrix():
    with pytest.raises(gradtx.HyperparameterError, match="cost_matrix must be"):
        assignment.hungarian_algorithm(jnp.zeros(3))


# ---------------------------------------------------------------- microbatching

BATCH = jnp.asarray(np.random.default_rng(0).normal(size=(12, 2)), jnp.float32)


def per_row(x, w):
    """Outputs of one (micro)batch: per-row values, a batch sum, a batch mean."""
    return x * w, jnp.sum(x**2), jnp.mean(x, axis=0)


def test_reshape_batch_axis_splits_column_major():
    x = np.arange(2 * 12 * 3).reshape(2, 12, 3)
    got = mb.reshape_batch_axis(jnp.asarray(x), 4, axis=1)
    np.testing.assert_array_equal(got, x.reshape(2, 3, 4, 3, order="F"))
    np.testing.assert_array_equal(mb.reshape_batch_axis(jnp.asarray(x), 4, -2), got)
    with pytest.raises(gradtx.HyperparameterError, match="must divide"):
        mb.reshape_batch_axis(jnp.asarray(x), 5, axis=1)


@pytest.mark.parametrize("size", [1, 3, 12], ids=lambda s: f"size{s}")
def test_microbatch_accumulators_match_the_full_batch(size, jit):
    x64 = np.asarray(BATCH, np.float64)
    n = 12 // size
    acc = (AT.CONCAT, AT.SUM, AT.MEAN)
    rows, total, mean = jit(gradtx.microbatch(per_row, 0, size, acc))(BATCH, 2.0)
    np.testing.assert_allclose(rows, 2 * x64, rtol=RTOL)  # original row order
    np.testing.assert_allclose(total, np.sum(x64**2), rtol=RTOL)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=RTOL, atol=1e-6)
    # SUM of per-microbatch means is n times the mean.
    s = jit(gradtx.microbatch(lambda x: jnp.mean(x, 0), 0, size))(BATCH)
    np.testing.assert_allclose(s, n * x64.mean(0), rtol=RTOL, atol=1e-6)


def test_microbatch_running_mean_uses_only_the_real_microbatches(jit):
    fn = gradtx.microbatch(
        lambda x: jnp.mean(x, 0), 0, 3, AT.RUNNING_MEAN, num_real_microbatches=2
    )
    # Microbatch k holds rows k, k + 4, k + 8 (4 microbatches of 3 rows).
    rows = [b for b in range(12) if b % 4 < 2]
    ref = np.asarray(BATCH, np.float64)[rows].mean(0)
    np.testing.assert_allclose(jit(fn)(BATCH), ref, rtol=RTOL, atol=1e-6)


def test_microbatch_keyword_batch_axes_and_custom_accumulator(jit):
    running_max = mb.Accumulator(
        init=lambda s: jnp.full(s.shape, -jnp.inf, s.dtype),
        update=lambda c, v, _: jnp.maximum(c, v),
        finalize=lambda c: c,
        aggregate=lambda v: jnp.max(v, axis=0),
    )
    fn = lambda scale, *, x: scale * jnp.max(x, axis=1)  # batch on axis 1 of x
    xt = BATCH.T
    got = jit(gradtx.microbatch(fn, (), 4, running_max, argnames="x", in_axes=1))(
        2.0, x=xt
    )
    np.testing.assert_allclose(got, 2 * np.asarray(xt).max(1), rtol=RTOL)
    assert gradtx.microbatch(fn, 0, None) is fn


def test_microbatch_reports_bad_arguments():
    fn = lambda a, b: a + b
    with pytest.raises(gradtx.HyperparameterError, match="equal batch sizes"):
        gradtx.microbatch(fn, (0, 1), 2)(jnp.ones(4), jnp.ones(6))
    with pytest.raises(gradtx.HyperparameterError, match="must divide"):
        gradtx.microbatch(fn, 0, 3)(jnp.ones(4), 1.0)
    with pytest.raises(gradtx.HyperparameterError, match="microbatch_size"):
        gradtx.microbatch(fn, 0, 0)
    with pytest.raises(gradtx.HyperparameterError, match="floating outputs"):
        gradtx.microbatch(lambda a: a, 0, 2, AT.MEAN)(jnp.arange(4))
    with pytest.raises(NotImplementedError, match="out_axes"):
        mb.micro_vmap(fn, out_axes=1)


@pytest.mark.parametrize("size", [None, 2], ids=["whole", "size2"])
def test_micro_vmap_equals_vmap_and_reduces(size, jit):
    f = lambda x, w, *, y: jnp.sum(x * w) + y
    y = jnp.arange(12.0)
    vm = jax.vmap(f, in_axes=(0, None))(BATCH, 3.0, y=y)
    for acc, ref in [(AT.CONCAT, vm), (AT.SUM, vm.sum()), (AT.MEAN, vm.mean())]:
        fn = mb.micro_vmap(f, (0, None), microbatch_size=size, accumulator=acc)
        np.testing.assert_allclose(jit(fn)(BATCH, 3.0, y=y), ref, rtol=RTOL)


def test_micro_grad_sums_transformed_per_example_gradients(jit):
    x = np.asarray(BATCH, np.float64)
    t = np.linspace(-1.0, 1.0, 12)
    w = np.array([0.5, -0.25])
    loss = lambda w, xb, tb: 0.5 * jnp.mean((xb @ w - tb) ** 2)
    clip = lambda g: g / jnp.maximum(1.0, jnp.linalg.norm(g))
    fn = mb.micro_grad(
        loss,
        batch_argnums=(1, 2),
        microbatch_size=4,
        transform_fn=clip,
        metrics_fn=jnp.linalg.norm,
    )
    args = (jnp.asarray(w, jnp.float32), BATCH, jnp.asarray(t, jnp.float32))
    grad, aux = jit(fn)(*args)
    per_ex = (x @ w - t)[:, None] * x  # gradient of each example's loss
    norms = np.linalg.norm(per_ex, axis=1)
    ref = (per_ex / np.maximum(1.0, norms)[:, None]).sum(0)
    np.testing.assert_allclose(grad, ref, rtol=RTOL)
    np.testing.assert_allclose(aux.values, 0.5 * (x @ w - t) ** 2, rtol=RTOL)
    np.testing.assert_allclose(aux.metrics, norms, rtol=RTOL)
    assert type(aux).__name__ == "Aux"
    assert aux.aux is None


def test_microbatching_matches_optax(standard_promotion):
    loss = lambda w, xb, tb: (0.5 * jnp.mean((xb @ w - tb) ** 2), xb[:, 0])
    args = (jnp.array([0.5, -0.25]), BATCH, jnp.linspace(-1.0, 1.0, 12))

    def grads(module):
        fn = module.micro_grad(
            loss,
            True,
            batch_argnums=(1, 2),
            microbatch_size=3,
            accumulator=module.AccumulationType.MEAN,
            transform_fn=lambda g: (g, g**2),
        )
        combined, aux = jax.jit(fn)(*args)
        return combined, tuple(aux)  # two different Aux classes

    chex.assert_trees_all_close(grads(mb), grads(optax.microbatching), rtol=1e-6)
    names = ("CONCAT", "SUM", "RUNNING_MEAN")
    chex.assert_trees_all_close(
        *(
            m.microbatch(
                per_row,
                0,
                4,
                tuple(getattr(m.microbatching.AccumulationType, n) for n in names),
                num_real_microbatches=2,
            )(BATCH, 2.0)
            for m in (gradtx, optax)
        ),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- nnls

A_MAT = jnp.asarray(np.random.default_rng(5).normal(size=(6, 4)), jnp.float32)
B_VEC = jnp.asarray(np.random.default_rng(6).normal(size=6), jnp.float32)
B_MAT = jnp.asarray(np.random.default_rng(7).normal(size=(6, 3)), jnp.float32)


@pytest.mark.parametrize("b", [B_VEC, B_MAT], ids=["vector", "matrix"])
@pytest.mark.parametrize("lipschitz", [None, 40.0], ids=["bound", "given"])
def test_nnls_matches_float64_iteration(b, lipschitz, jit):
    got = jit(lambda a, b: gradtx.nnls(a, b, 30, L=lipschitz))(A_MAT, b)
    np.testing.assert_allclose(
        got, R.nnls_fista(A_MAT, b, 30, lipschitz), rtol=1e-4, atol=1e-6
    )


def test_nnls_converges_to_the_kkt_point():
    x = np.asarray(gradtx.nnls(A_MAT, B_VEC, 3000), np.float64)
    a, b = np.asarray(A_MAT, np.float64), np.asarray(B_VEC, np.float64)
    grad = a.T @ (a @ x - b)
    assert (x >= 0).all()
    np.testing.assert_allclose(grad[x > 0], 0.0, atol=1e-4)
    assert (grad[x == 0] >= -1e-4).all()
    sp = pytest.importorskip("scipy.optimize")
    np.testing.assert_allclose(x, sp.nnls(a, b)[0], atol=1e-4)


def test_nnls_matches_optax(standard_promotion):
    for iters in (0, 2, 25):
        for b, lip in [(B_VEC, None), (B_MAT, 40.0)]:
            chex.assert_trees_all_close(
                gradtx.nnls(A_MAT, b, iters, L=lip),
                optax.nnls(A_MAT, b, iters, L=lip),
                rtol=1e-6,
            )


def test_nnls_rejects_bad_arguments():
    with pytest.raises(gradtx.HyperparameterError, match="nnls: b must have shape"):
        gradtx.nnls(A_MAT, jnp.ones(5), 10)
    with pytest.raises(gradtx.HyperparameterError, match="nnls: iters"):
        gradtx.nnls(A_MAT, B_VEC, -1)
    with pytest.raises(gradtx.HyperparameterError, match="nnls: L"):
        gradtx.nnls(A_MAT, B_VEC, 10, L=-1.0)
