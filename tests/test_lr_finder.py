import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

# Least squares 0.5 * mean((X w - y)**2) with a known Hessian X^T X / n = diag(EIGS).
EIGS = np.array([1.0, 0.7, 0.5, 0.3, 0.25])
L = EIGS.max()
N = 64


def _problem():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(N, EIGS.size)))
    x = q * np.sqrt(EIGS * N)  # columns orthogonal: X^T X / N = diag(EIGS)
    y = x @ rng.normal(size=EIGS.size) + 0.01 * rng.normal(size=N)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def loss_fn(params, batch):
    x, y = batch
    return 0.5 * jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _params():
    return {"w": jnp.zeros(EIGS.size), "b": jnp.zeros([])}


def _stacked(num_steps):
    x, y = _problem()
    return jnp.broadcast_to(x, (num_steps, *x.shape)), jnp.broadcast_to(
        y, (num_steps, *y.shape)
    )


def _iterator(num_steps, consumed=None):
    xs, ys = _stacked(num_steps)
    for i in range(num_steps):
        if consumed is not None:
            consumed.append(i)
        yield xs[i], ys[i]


KW = {"start_lr": 1e-5, "end_lr": 100.0, "num_steps": 60}


def test_lr_finder_suggestion_is_inside_the_stable_range_of_the_curvature():
    # Gradient descent on a quadratic is stable for lr < 2 / L (L = largest Hessian
    # eigenvalue, 1 here; the bias adds a mode of curvature 1 too). Below 0.01 / L
    # a step removes < 2% of any error component, so the loss cannot fall fastest
    # there: the steepest descent must lie in [0.01 / L, 2 / L].
    for smoothing in (0.0, 0.9):
        res = gradtx.lr_finder(
            loss_fn, _params(), _stacked(60), gradtx.sgd, smoothing=smoothing, **KW
        )
        assert 0.01 / L <= res.suggested_lr <= 2 / L, (smoothing, res.suggested_lr)
        assert res.diverged  # end_lr = 100 / L diverges


def test_lr_finder_learning_rates_are_exactly_geometric():
    res = gradtx.lr_finder(
        loss_fn,
        _params(),
        _stacked(20),
        gradtx.sgd,
        start_lr=1e-6,
        end_lr=1e-2,
        num_steps=20,
    )
    assert not res.diverged
    assert res.learning_rates.dtype == np.float64
    assert res.learning_rates.shape == (20,)
    ratio = (1e-2 / 1e-6) ** (1 / 19)
    np.testing.assert_allclose(
        res.learning_rates[1:] / res.learning_rates[:-1], ratio, rtol=1e-13
    )
    np.testing.assert_allclose(res.learning_rates[[0, -1]], [1e-6, 1e-2], rtol=1e-13)


def test_lr_finder_smoothed_loss_is_the_debiased_ema_of_the_raw_loss():
    res = gradtx.lr_finder(
        loss_fn, _params(), _stacked(60), gradtx.sgd, smoothing=0.8, **KW
    )
    raw = res.losses.astype(np.float64)
    m, want = 0.0, []
    for k, loss in enumerate(raw, 1):
        m = 0.8 * m + 0.2 * loss
        want.append(m / (1 - 0.8**k))
    np.testing.assert_allclose(res.smoothed_losses, want, rtol=1e-5)


def test_lr_finder_iterator_stops_at_divergence_and_scan_masks_the_rest():
    consumed = []
    it = gradtx.lr_finder(
        loss_fn, _params(), _iterator(60, consumed), gradtx.sgd, smoothing=0.5, **KW
    )
    n = len(it.losses)
    assert it.diverged
    assert 2 < n < 60
    assert len(consumed) == n  # no batch drawn after the divergent step
    running_best = np.minimum.accumulate(it.smoothed_losses)
    assert it.smoothed_losses[-1] > 4.0 * running_best[-1]
    assert np.all(it.smoothed_losses[:-1] <= 4.0 * running_best[:-1])
    scan = gradtx.lr_finder(
        loss_fn, _params(), _stacked(60), gradtx.sgd, smoothing=0.5, **KW
    )
    assert scan.diverged
    assert len(scan.losses) == n
    np.testing.assert_array_equal(scan.learning_rates, it.learning_rates)
    np.testing.assert_allclose(scan.losses, it.losses, rtol=1e-5)
    np.testing.assert_allclose(scan.smoothed_losses, it.smoothed_losses, rtol=1e-5)
    assert scan.suggested_lr == it.suggested_lr


@pytest.mark.parametrize("path", ["scan", "iterator"], ids=["scan", "iterator"])
def test_lr_finder_traces_the_optimizer_once(path):
    calls = []

    def factory(lr):
        calls.append(lr)
        assert isinstance(lr, jax.core.Tracer)  # never a Python float
        return gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(lr))

    batches = _stacked(30) if path == "scan" else _iterator(30)
    res = gradtx.lr_finder(
        loss_fn, _params(), batches, factory, start_lr=1e-5, end_lr=1e-2, num_steps=30
    )
    assert len(res.losses) == 30
    assert len(calls) == 2  # one trace of init and one of the step, for 30 steps


def test_lr_finder_leaves_the_callers_params_untouched():
    params = {"w": jnp.arange(5.0), "b": jnp.ones([])}
    before = jax.tree.map(np.array, params)
    leaves = jax.tree.leaves(params)
    for batches in (_stacked(10), _iterator(10)):
        gradtx.lr_finder(
            loss_fn,
            params,
            batches,
            gradtx.adam,
            start_lr=1e-3,
            end_lr=1.0,
            num_steps=10,
        )
    assert all(a is b for a, b in zip(leaves, jax.tree.leaves(params), strict=True))
    assert not any(x.is_deleted() for x in leaves)
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, params), before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_lr": 0.0}, "start_lr"),
        ({"start_lr": -1.0}, "start_lr"),
        ({"end_lr": math.inf}, "end_lr"),
        ({"start_lr": 1.0, "end_lr": 1.0}, "end_lr must be > start_lr"),
        ({"num_steps": 1}, "num_steps"),
        ({"num_steps": 2.0}, "num_steps"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"smoothing": -0.1}, "smoothing"),
        ({"diverge_threshold": 1.0}, "diverge_threshold"),
        ({"start_lr": jnp.float32(1e-3)}, None),
    ],
    ids=[
        "start0",
        "start_neg",
        "end_inf",
        "end_eq",
        "steps1",
        "steps_float",
        "smooth1",
        "smooth_neg",
        "thr1",
        "array_ok",
    ],
)
def test_lr_finder_validates_its_arguments(kwargs, match):
    kw = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 4} | kwargs
    run = lambda: gradtx.lr_finder(loss_fn, _params(), _stacked(4), gradtx.sgd, **kw)
    if match is None:
        assert len(run().losses) == 4
        return
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.lr_finder: "):
        run()
    with pytest.raises(gradtx.HyperparameterError, match=match):
        run()


def test_lr_finder_data_that_does_not_fit_num_steps_raises():
    with pytest.raises(gradtx.HyperparameterError, match="leading axis"):
        gradtx.lr_finder(loss_fn, _params(), _stacked(5), gradtx.sgd, num_steps=6)
    with pytest.raises(gradtx.HyperparameterError, match="number of batches"):
        gradtx.lr_finder(
            loss_fn,
            _params(),
            _iterator(5),
            gradtx.sgd,
            start_lr=1e-5,
            end_lr=1e-4,
            num_steps=6,
        )
