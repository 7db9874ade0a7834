# SPDX-License-Identifier: Apache-2.0
"""Zoom line search (strong Wolfe conditions), Nocedal & Wright Algorithms 3.5-3.6."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx.transforms import _linesearch_util as ls

_FN = "scale_by_zoom_linesearch"


class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of the last zoom search.

    `decrease_error > 0` flags a failed search: no stepsize with sufficient decrease
    was found in `max_linesearch_steps` (inf: only inf/NaN values were seen, and the
    step is 0). `curvature_error > 0` alone is milder: the step decreases the
    objective but does not meet the curvature (second Wolfe) condition.
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of `scale_by_zoom_linesearch`.

    The accepted stepsize, and the objective's `value` and `grad` at the new point
    (read by `value_and_grad_from_state`).
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: ZoomLinesearchInfo


class _Zoom(NamedTuple):
    """The search's loop state.

    `low`/`high` bracket a stepsize meeting both tests (value(high) >= value(low),
    not high > low). `safe_*` is the best point with sufficient decrease, returned
    when the curvature test cannot be met.
    """

    count: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: Any


def _cubicmin(a, fa, fpa, b, fb, c, fc):
    """Minimizer of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at a.

    NaN (no real root) makes the caller fall back to a quadratic or a bisection.
    """
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    d1 = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    rhs = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])
    coef_a, coef_b = jnp.dot(d1, rhs, precision=jax.lax.Precision.HIGHEST) / denom
    radical = coef_b * coef_b - 3.0 * coef_a * fpa
    return a + (-coef_b + jnp.sqrt(radical)) / (3.0 * coef_a)


def _quadmin(a, fa, fpa, b, fb):
    """Minimizer of the quadratic through (a, fa), (b, fb) with slope fpa at a."""
    db = b - a
    coef_b = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * coef_b)


def _check(
    max_linesearch_steps,
    max_learning_rate,
    tol,
    increase_factor,
    slope_rtol,
    curv_rtol,
    approx_dec_rtol,
    stepsize_precision,
    initial_guess_strategy,
) -> None:
    ls.check_int(_FN, "max_linesearch_steps", max_linesearch_steps, 1)
    if max_learning_rate is not None:
        _validate.check_range(
            _FN, "max_learning_rate", max_learning_rate, 0.0, low_open=True
        )
    _validate.check_nonnegative(_FN, "tol", tol)
    ls.check_at_least(_FN, "increase_factor", increase_factor, 1.0, open_=True)
    _validate.check_range(_FN, "slope_rtol", slope_rtol, 0.0, 1.0, high_open=True)
    ls.check_at_least(_FN, "curv_rtol", curv_rtol, 0.0, open_=True)
    if approx_dec_rtol is not None:
        _validate.check_nonnegative(_FN, "approx_dec_rtol", approx_dec_rtol)
    _validate.check_nonnegative(_FN, "stepsize_precision", stepsize_precision)
    ls.check_choice(
        _FN, "initial_guess_strategy", initial_guess_strategy, ("one", "keep")
    )


def scale_by_zoom_linesearch(
    max_linesearch_steps: ArrayLike,
    max_learning_rate: ArrayLike | None = None,
    tol: ArrayLike = 0.0,
    increase_factor: ArrayLike = 2.0,
    slope_rtol: ArrayLike = 1e-4,
    curv_rtol: ArrayLike = 0.9,
    approx_dec_rtol: ArrayLike | None = 1e-6,
    stepsize_precision: ArrayLike = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    """Scales the updates by a stepsize meeting the strong Wolfe conditions.

    Grows the stepsize until an interval bracketing a good one is found, then zooms
    in by cubic/quadratic interpolation or bisection. Near a minimum it switches to
    Hager-Zhang's approximate decrease test. `update` needs `params`, `value=`,
    `grad=`, `value_fn=`; the state keeps the value and gradient at the new point.

    Update rule:
        f(w + eta u) <= f(w) + slope_rtol eta <u, grad f(w)> + tol
        |<u, grad f(w + eta u)>| <= curv_rtol |<u, grad f(w)>| + tol

    Args:
        max_linesearch_steps: Integer >= 1: evaluations of `value_fn` per search.
        max_learning_rate: Largest stepsize (> 0), or None for no bound.
        tol: Slack of both criteria, >= 0.
        increase_factor: Growth of the stepsize while bracketing, > 1.
        slope_rtol: Sufficient-decrease constant c1 in [0, 1).
        curv_rtol: Curvature constant c2 > 0 (inf: decrease test only).
        approx_dec_rtol: Relative tolerance switching to the approximate decrease
            test, >= 0; None keeps the Armijo test only.
        stepsize_precision: Bracket length below which a point with sufficient
            decrease is accepted, >= 0.
        initial_guess_strategy: "one" (quasi-Newton) or "keep" (the last stepsize).
        verbose: Print diagnostics when the search fails.

    Returns:
        A transformation with `ScaleByZoomLinesearchState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w**2)
        >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(15))
        >>> w = jnp.array([1.0, 2.0]); v, g = jax.value_and_grad(f)(w)
        >>> u, _ = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
        >>> float(f(w + u))
        0.0

    References:
        Nocedal & Wright, Numerical Optimization, 2006, Algorithms 3.5 and 3.6;
        Hager & Zhang, 2006: https://doi.org/10.1145/1132973.1132979
    """
    _check(
        max_linesearch_steps,
        max_learning_rate,
        tol,
        increase_factor,
        slope_rtol,
        curv_rtol,
        approx_dec_rtol,
        stepsize_precision,
        initial_guess_strategy,
    )

    def init(params):
        dtype = ls.scalar_dtype(params)
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=_tree.zeros_like(params),
            info=ZoomLinesearchInfo(
                num_linesearch_steps=jnp.zeros([], jnp.int32),
                decrease_error=jnp.full([], jnp.inf, dtype),
                curvature_error=jnp.full([], jnp.inf, dtype),
            ),
        )

    def update(
        updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra
    ):
        ls.require(_FN, params=params, value=value, grad=grad, value_fn=value_fn)
        _tree.check_structure(_FN, params, updates)
        dtype = state.learning_rate.dtype
        h = lambda x: jnp.asarray(x).astype(dtype)
        f = functools.partial(value_fn, **ls.fn_kwargs(value_fn, extra))
        value = h(value)
        grad = _tree.cast_like(grad, params)
        slope = h(ls.vdot(updates, grad))
        if initial_guess_strategy == "one":
            guess = jnp.ones([], dtype)
        else:
            guess = state.learning_rate
        hp = _Hyper(
            h,
            max_learning_rate,
            tol,
            increase_factor,
            slope_rtol,
            curv_rtol,
            approx_dec_rtol,
            stepsize_precision,
            max_linesearch_steps,
        )
        problem = _Problem(f, params, updates, guess, value, slope)
        zero, inf = jnp.zeros([], dtype), jnp.full([], jnp.inf, dtype)
        false = jnp.zeros([], bool)
        start = _Zoom(
            jnp.zeros([], jnp.int32),
            zero,
            value,
            grad,
            slope,
            inf,
            inf,
            false,
            false,
            false,
            zero,
            value,
            slope,
            zero,
            value,
            slope,
            zero,
            value,
            zero,
            value,
            grad,
        )
        step = functools.partial(_step, hp=hp, pb=problem, verbose=verbose)
        final = jax.lax.while_loop(lambda s: ~(s.done | s.failed), step, start)
        info = ZoomLinesearchInfo(
            final.count, final.decrease_error, final.curvature_error
        )
        new_state = ScaleByZoomLinesearchState(
            final.stepsize, final.value, final.grad, info
        )
        return ls.scale(final.stepsize, updates), new_state

    return GradientTransformation(init, update)


class _Hyper(NamedTuple):
    h: Any
    max_stepsize: Any
    tol: Any
    increase_factor: Any
    slope_rtol: Any
    curv_rtol: Any
    approx_dec_rtol: Any
    interval_threshold: Any
    max_steps: Any


class _Problem(NamedTuple):
    f: Any
    params: Any
    updates: Any
    guess: jax.Array
    value_init: jax.Array
    slope_init: jax.Array


def _on_line(pb: _Problem, stepsize, h):
    """Value, gradient and slope of the objective at `params + stepsize * updates`."""
    value, grad = jax.value_and_grad(pb.f)(
        ls.add_scale(pb.params, stepsize, pb.updates)
    )
    return h(value), grad, h(ls.vdot(grad, pb.updates))


def _errors(hp: _Hyper, pb: _Problem, stepsize, value, slope):
    """(decrease error, curvature error): 0 when met, inf for NaN."""
    h = hp.h
    dec = value - pb.value_init - h(hp.slope_rtol) * stepsize * pb.slope_init
    if hp.approx_dec_rtol is not None:
        # Hager & Zhang (23), used only once the value is within approx_dec_rtol
        # of the initial one (their (26)-(27) with one iterate).
        approx = slope - (2 * h(hp.slope_rtol) - 1.0) * pb.slope_init
        delta = value - pb.value_init - h(hp.approx_dec_rtol) * jnp.abs(pb.value_init)
        dec = jnp.minimum(jnp.maximum(approx, delta), dec)
    curv = jnp.abs(slope) - h(hp.curv_rtol) * jnp.abs(pb.slope_init)
    return ls.nan_to_inf(dec), ls.nan_to_inf(curv)


def _step(s: _Zoom, hp: _Hyper, pb: _Problem, verbose: bool) -> _Zoom:
    s = jax.lax.cond(
        s.interval_found,
        functools.partial(_zoom, hp=hp, pb=pb),
        functools.partial(_bracket, hp=hp, pb=pb, verbose=verbose),
        s,
    )
    return jax.lax.cond(
        s.failed,
        functools.partial(_safe_step, hp=hp, pb=pb, verbose=verbose),
        lambda x: x,
        s,
    )


def _bracket(s: _Zoom, hp: _Hyper, pb: _Problem, verbose: bool) -> _Zoom:
    """Algorithm 3.5: grow the stepsize until it brackets a good one."""
    h = hp.h
    new = jnp.where(s.count == 0, pb.guess, h(hp.increase_factor) * s.stepsize)
    if hp.max_stepsize is not None:
        at_max = new >= h(hp.max_stepsize)
        new = jnp.minimum(new, h(hp.max_stepsize))
    else:
        at_max = jnp.zeros([], bool)
    value, grad, slope = _on_line(pb, new, h)
    dec, curv = _errors(hp, pb, new, value, slope)
    error = jnp.maximum(dec, curv)
    safe = _tree.select(
        dec <= h(hp.tol),
        (new, value, grad),
        (s.safe_stepsize, s.safe_value, s.safe_grad),
    )
    high_to_new = (dec > 0.0) | ((value >= s.value) & (s.count > 0))
    low_to_new = (slope >= 0.0) & ~high_to_new
    prev, cur = (s.stepsize, s.value, s.slope), (new, value, slope)
    low, high = _tree.select(low_to_new, (cur, prev), (prev, cur))
    found = high_to_new | low_to_new | (error <= h(hp.tol))
    done = (error <= h(hp.tol)) | (at_max & ~found)
    if verbose:
        ls.cond_print(
            at_max & ~found,
            "INFO: gradtx.scale_by_zoom_linesearch: no interval meets the curvature "
            "test below max_learning_rate; taking stepsize {stepsize}",
            stepsize=new,
        )
    return _Zoom(
        _numerics.safe_int32_increment(s.count),
        new,
        value,
        grad,
        slope,
        dec,
        curv,
        found,
        done,
        (s.count + 1 >= hp.max_steps) & ~done,
        *low,
        *high,
        low[0],
        low[1],
        *safe,
    )


def _zoom(s: _Zoom, hp: _Hyper, pb: _Problem) -> _Zoom:
    """Algorithm 3.6: shrink the bracket by interpolation until both tests hold."""
    h = hp.h
    delta = jnp.abs(s.high - s.low)
    left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
    cubic = _cubicmin(
        s.low,
        s.value_low,
        s.slope_low,
        s.high,
        s.value_high,
        s.cubic_ref,
        s.value_cubic_ref,
    )
    use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
    quad = _quadmin(s.low, s.value_low, s.slope_low, s.high, s.value_high)
    use_quad = ~use_cubic & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
    middle = jnp.where(use_cubic, cubic, s.cubic_ref)
    middle = jnp.where(use_quad, quad, middle)
    middle = jnp.where(~use_cubic & ~use_quad, (s.low + s.high) / 2.0, middle)
    value, grad, slope = _on_line(pb, middle, h)
    dec, curv = _errors(hp, pb, middle, value, slope)
    better = (dec <= h(hp.tol)) & (value < s.safe_value)
    safe = _tree.select(
        better, (middle, value, grad), (s.safe_stepsize, s.safe_value, s.safe_grad)
    )
    done = jnp.maximum(dec, curv) <= h(hp.tol)
    high_to_middle = (dec > 0.0) | (value >= s.value_low)
    high_to_low = (slope * (s.high - s.low) >= 0.0) & ~high_to_middle
    mid, low, high = (
        (middle, value, slope),
        (s.low, s.value_low, s.slope_low),
        (s.high, s.value_high, s.slope_high),
    )
    new_high = _tree.select(high_to_low, low, _tree.select(high_to_middle, mid, high))
    new_low = _tree.select(~high_to_middle, mid, low)
    ref = _tree.select(
        high_to_middle | high_to_low, (s.high, s.value_high), (s.low, s.value_low)
    )
    # Give up at the step limit, or once the bracket is below stepsize_precision and
    # a point with sufficient decrease is known (a steep objective may need tiny
    # stepsizes, so without such a point the search goes on).
    too_small = delta <= h(hp.interval_threshold)
    gave_up = ((s.count + 1) >= hp.max_steps) | (too_small & (safe[0] > 0.0))
    return _Zoom(
        _numerics.safe_int32_increment(s.count),
        middle,
        value,
        grad,
        slope,
        dec,
        curv,
        s.interval_found,
        done,
        gave_up & ~done,
        *new_low,
        *new_high,
        *ref,
        *safe,
    )


def _safe_step(s: _Zoom, hp: _Hyper, pb: _Problem, verbose: bool) -> _Zoom:
    """The search failed: fall back to the best point with sufficient decrease.

    If every value seen was inf or NaN, the safe point is the stepsize 0 (no step).
    """
    del hp
    outside = jnp.isinf(s.decrease_error)
    stepsize, value, grad = _tree.select(
        (s.safe_stepsize > 0.0) | outside,
        (s.safe_stepsize, s.safe_value, s.safe_grad),
        (s.stepsize, s.value, s.grad),
    )
    if verbose:
        ls.cond_print(
            jnp.ones([], bool),
            "INFO: gradtx.scale_by_zoom_linesearch: search failed; value {v}, slope "
            "{sl}, decrease error {d}, curvature error {c}, stepsize taken {st}",
            v=pb.value_init,
            sl=pb.slope_init,
            d=s.decrease_error,
            c=s.curvature_error,
            st=stepsize,
        )
    return s._replace(stepsize=stepsize, value=value, grad=grad)
