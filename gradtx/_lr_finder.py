# SPDX-License-Identifier: Apache-2.0
"""The learning-rate range test (Smith 2017), a training-loop tool on the protocol.

The optimizer is rebuilt inside the compiled step from a *traced* learning rate, so
the whole sweep compiles once: gradtx never calls `float()` on a hyperparameter. The
loss is tracked by one function in both data paths (scan over stacked batches, or a
jitted step per batch from an iterator), so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import HyperparameterError
from gradtx._update import apply_updates

_FN = "lr_finder"


class LRFinderResult(NamedTuple):
    """What `lr_finder` returns: NumPy arrays over the steps that ran.

    `learning_rates` (float64) is the geometric sweep up to the last step run;
    `losses` the raw loss of each step's batch before its update; `smoothed_losses`
    the debiased moving average; `suggested_lr` the lr at the steepest descent of the
    smoothed loss against log lr (NaN if fewer than two finite points); `diverged`
    whether the sweep stopped because the smoothed loss blew up.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggested_lr: float
    diverged: bool


class _Track(NamedTuple):
    """The loss tracker carried through the sweep (all scalars)."""

    avg: jax.Array
    best: jax.Array
    count: jax.Array
    stopped: jax.Array


def _track_init() -> _Track:
    dtype = _numerics.hparam_dtype()
    return _Track(
        avg=jnp.zeros([], dtype),
        best=jnp.full([], jnp.inf, dtype),
        count=jnp.zeros([], jnp.int32),
        stopped=jnp.zeros([], bool),
    )


def _track_step(track, loss, smoothing, threshold):
    """Smooths `loss` (debiased EMA) and flags divergence; returns (track, smoothed)."""
    beta = _numerics.hparam(smoothing)
    loss = loss.astype(beta.dtype)
    count = _numerics.safe_int32_increment(track.count)
    avg = _numerics.moment(loss, track.avg, beta)
    smoothed = avg / _numerics.bias_correction(beta, count)
    best = jnp.minimum(track.best, smoothed)
    diverged = ~jnp.isfinite(smoothed) | (smoothed > threshold * best)
    return _Track(avg, best, count, track.stopped | diverged), smoothed


def _make_fns(loss_fn, optimizer_factory, smoothing, threshold):
    """Returns the jitted `start(params, lr)` and `step(carry, lr, batch)`."""
    value_and_grad = jax.value_and_grad(loss_fn)

    def start(params, lr):
        tx: GradientTransformation = optimizer_factory(lr)
        return params, tx.init(params), _track_init()

    def step(carry, lr, batch):
        params, opt_state, track = carry
        loss, grads = value_and_grad(params, batch)
        tx = optimizer_factory(lr)
        updates, new_opt_state = tx.update(grads, opt_state, params, value=loss)
        new_track, smoothed = _track_step(track, loss, smoothing, threshold)
        ran = ~track.stopped  # steps after the divergence change nothing
        new = (apply_updates(params, updates), new_opt_state, new_track)
        carry = _tree.select(ran, new, carry)
        return carry, (loss, smoothed, ran)

    return start, step


def _check(start_lr, end_lr, num_steps, smoothing, diverge_threshold) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if _validate.concrete_float(value) is None:
            raise HyperparameterError(
                f"gradtx.{_FN}: {name} must be a concrete number, got {value!r}"
            )
        _validate.check_range(_FN, name, value, 0.0, low_open=True)
    if float(end_lr) <= float(start_lr):
        raise HyperparameterError(
            f"gradtx.{_FN}: end_lr must be > start_lr ({start_lr!r}), got {end_lr!r}"
        )
    _validate.check_positive_int(_FN, "num_steps", num_steps, minimum=2)
    _validate.check_range(_FN, "smoothing", smoothing, 0.0, 1.0, high_open=True)
    _validate.check_range(
        _FN, "diverge_threshold", diverge_threshold, 1.0, low_open=True
    )


def _run_scan(start, step, params, lrs, batches):
    num_steps = lrs.shape[0]
    for path, leaf in jax.tree_util.tree_flatten_with_path(batches)[0]:
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != num_steps:
            raise HyperparameterError(
                f"gradtx.{_FN}: num_steps must equal the leading axis of every "
                f"batches leaf, got {num_steps} and shape {jnp.shape(leaf)} at "
                f"{jax.tree_util.keystr(path)}"
            )

    @jax.jit
    def sweep(params, lrs, batches):
        carry = start(params, lrs[0])
        body = lambda c, xs: step(c, *xs)
        return jax.lax.scan(body, carry, (lrs, batches))

    carry, rec = sweep(params, lrs, batches)
    return bool(carry[2].stopped), jax.device_get(rec)


def _run_iter(start, step, params, lrs, batches):
    start, step = jax.jit(start), jax.jit(step)
    carry = start(params, lrs[0])
    out = []
    for i in range(lrs.shape[0]):
        try:
            batch = next(batches)
        except StopIteration:
            raise HyperparameterError(
                f"gradtx.{_FN}: num_steps must be at most the number of batches, "
                f"got {lrs.shape[0]} and {i} batches"
            ) from None
        carry, rec = step(carry, lrs[i], batch)
        out.append(jax.device_get(rec))
        if bool(carry[2].stopped):
            break
    return bool(carry[2].stopped), tuple(np.stack(x) for x in zip(*out, strict=True))


def _suggest(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """The lr at the steepest negative slope of the smoothed loss against log lr."""
    ok = np.isfinite(smoothed)
    if ok.sum() < 2:
        return float("nan")
    x, y = np.log(lrs[ok]), smoothed[ok].astype(np.float64)
    return float(lrs[ok][np.argmin(np.gradient(y, x))])


def lr_finder(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batches: Any,
    optimizer_factory: Callable[[jax.Array], GradientTransformation],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.95,
    diverge_threshold: float = 4.0,
) -> LRFinderResult:
    """Runs the LR range test: trains briefly while the lr grows geometrically.

    Step `i` trains a copy of `params` on one batch with `optimizer_factory(lr_i)`,
    `lr_i = start_lr * (end_lr / start_lr)**(i / (num_steps - 1))`; the caller's
    params are never modified. The sweep stops once the smoothed loss exceeds
    `diverge_threshold` times its best value or is not finite; that step is the last
    one returned. Pick a learning rate somewhat below the loss minimum;
    `suggested_lr` is the steepest-descent heuristic of fastai and torch-lr-finder.

    Args:
        loss_fn: `loss_fn(params, batch) -> scalar`, positive (divergence is relative).
        params: The initial params (copied, not changed).
        batches: A pytree of arrays with leading axis `num_steps` (run by `lax.scan`,
            no early exit: later steps are masked), or an iterator of batches (a
            jitted step per batch, stopping early). Pass a list as `iter(list)`.
        optimizer_factory: `lr -> GradientTransformation`, called with a traced lr;
            e.g. `gradtx.adam` or `lambda lr: gradtx.sgd(lr, momentum=0.9)`.
        start_lr: First learning rate, > 0.
        end_lr: Last learning rate, > start_lr.
        num_steps: Number of steps (and learning rates), an integer >= 2.
        smoothing: Decay of the debiased moving average of the loss, in [0, 1);
            0 disables smoothing. 0.95 is torch-lr-finder's `smooth_f=0.05`.
        diverge_threshold: Stop when the smoothed loss exceeds this multiple (> 1)
            of the best smoothed loss.

    Returns:
        An `LRFinderResult` over the steps that ran.

    Raises:
        HyperparameterError: For a value outside the ranges above, stacked batches
            whose leading axis is not `num_steps`, or an iterator that runs out.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> loss_fn = lambda p, x: jnp.sum((p - x) ** 2)
        >>> res = gradtx.lr_finder(loss_fn, jnp.zeros(2), jnp.ones((50, 2)),
        ...                        gradtx.sgd, start_lr=1e-4, end_lr=10.0, num_steps=50)
        >>> bool(res.diverged), bool(1e-2 < res.suggested_lr < 1.0)
        (True, True)

    References:
        Smith, 2017: https://arxiv.org/abs/1506.01186
    """
    _check(start_lr, end_lr, num_steps, smoothing, diverge_threshold)
    i = np.arange(num_steps, dtype=np.float64)
    lo, hi = float(start_lr), float(end_lr)
    lrs64 = lo * (hi / lo) ** (i / (num_steps - 1))
    lrs = jnp.asarray(lrs64, _numerics.hparam_dtype())
    start, step = _make_fns(loss_fn, optimizer_factory, smoothing, diverge_threshold)
    run = _run_iter if isinstance(batches, Iterator) else _run_scan
    diverged, (losses, smoothed, ran) = run(start, step, params, lrs, batches)
    n = int(np.sum(ran))
    smoothed = np.asarray(smoothed[:n])
    return LRFinderResult(
        learning_rates=lrs64[:n],
        losses=np.asarray(losses[:n]),
        smoothed_losses=smoothed,
        suggested_lr=_suggest(lrs64[:n], smoothed),
        diverged=diverged,
    )
