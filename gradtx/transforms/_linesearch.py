# SPDX-License-Identifier: Apache-2.0
"""Backtracking (Armijo) line search and `value_and_grad_from_state`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _tree, _validate
from gradtx import tree as _gtree
from gradtx._base import GradientTransformation
from gradtx.transforms import _linesearch_util as ls

_BT = "scale_by_backtracking_linesearch"


class BacktrackingLinesearchInfo(NamedTuple):
    """Diagnostics of the last backtracking search.

    `decrease_error > 0` flags a failed search: no tried stepsize met the Armijo
    criterion within `max_backtracking_steps` (inf: every try gave inf or NaN, and
    the step was set to 0).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of `scale_by_backtracking_linesearch`.

    `value` (and `grad` with `store_grad=True`) hold the objective at the accepted
    point, for `value_and_grad_from_state`; `grad` is None without `store_grad`.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: BacktrackingLinesearchInfo


class _Search(NamedTuple):
    learning_rate: jax.Array
    new_value: jax.Array
    new_grad: Any
    decrease_error: jax.Array
    iter_num: jax.Array


def _check_backtracking(
    max_backtracking_steps,
    slope_rtol,
    decrease_factor,
    increase_factor,
    max_learning_rate,
    atol,
    rtol,
) -> None:
    ls.check_int(_BT, "max_backtracking_steps", max_backtracking_steps, 0)
    _validate.check_range(_BT, "slope_rtol", slope_rtol, 0.0, 1.0, high_open=True)
    _validate.check_range(
        _BT, "decrease_factor", decrease_factor, 0.0, 1.0, low_open=True, high_open=True
    )
    ls.check_at_least(_BT, "increase_factor", increase_factor, 1.0, open_=False)
    _validate.check_range(
        _BT, "max_learning_rate", max_learning_rate, 0.0, low_open=True
    )
    _validate.check_nonnegative(_BT, "atol", atol)
    _validate.check_nonnegative(_BT, "rtol", rtol)


def scale_by_backtracking_linesearch(
    max_backtracking_steps: ArrayLike,
    slope_rtol: ArrayLike = 1e-4,
    decrease_factor: ArrayLike = 0.8,
    increase_factor: ArrayLike = 1.5,
    max_learning_rate: ArrayLike = 1.0,
    atol: ArrayLike = 0.0,
    rtol: ArrayLike = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    """Scales the updates by a stepsize meeting the Armijo sufficient-decrease test.

    Starts from `min(increase_factor * previous, max_learning_rate)` and multiplies by
    `decrease_factor` until the criterion holds; `update` needs `params`, `value=`,
    `grad=`, `value_fn=` (and the keywords `value_fn` takes). The updates must be a
    descent direction (put it after `sgd(1.0)` or a preconditioner).

    Update rule:
        accept eta when f(w + eta u) <= (1+rtol) f(w) + eta slope_rtol <u, grad> + atol

    Args:
        max_backtracking_steps: Integer >= 0: tries after the first guess.
        slope_rtol: Armijo constant in [0, 1).
        decrease_factor: Shrink factor in (0, 1).
        increase_factor: Growth of the first guess over the last stepsize, >= 1
            (inf: always start at `max_learning_rate`).
        max_learning_rate: Largest stepsize, > 0.
        atol: Absolute slack of the criterion, >= 0.
        rtol: Relative slack on `f(w)`, >= 0.
        store_grad: Keep the gradient at the accepted point for
            `value_and_grad_from_state`.
        verbose: Print diagnostics when the search fails.

    Returns:
        A transformation with `ScaleByBacktrackingLinesearchState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w**2)
        >>> search = gradtx.scale_by_backtracking_linesearch(15)
        >>> tx = gradtx.chain(gradtx.sgd(1.0), search)
        >>> w = jnp.array([1.0, 2.0]); v, g = jax.value_and_grad(f)(w)
        >>> u, _ = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
        >>> float(f(w + u)) < float(v)
        True

    References:
        Nocedal & Wright, Numerical Optimization, 2006, Algorithm 3.1;
        Vaswani et al., 2019: https://arxiv.org/abs/1905.09997
    """
    _check_backtracking(
        max_backtracking_steps,
        slope_rtol,
        decrease_factor,
        increase_factor,
        max_learning_rate,
        atol,
        rtol,
    )

    def init(params):
        dtype = ls.scalar_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=_tree.zeros_like(params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=jnp.zeros([], jnp.int32),
                decrease_error=jnp.full([], jnp.inf, dtype),
            ),
        )

    def update(
        updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra
    ):
        ls.require(_BT, params=params, value=value, grad=grad, value_fn=value_fn)
        _tree.check_structure(_BT, params, updates)
        dtype = state.learning_rate.dtype
        h = lambda x: jnp.asarray(x).astype(dtype)
        f = functools.partial(value_fn, **ls.fn_kwargs(value_fn, extra))
        value = h(value)
        slope = ls.vdot(updates, grad).astype(dtype)

        def decrease_error(lr, new_value):
            return ls.nan_to_inf(
                h(new_value) - (1 + h(rtol)) * value - lr * h(slope_rtol) * slope
            )

        def accepted(err):
            return err <= h(atol)

        def cond(s):
            return ~accepted(s.decrease_error) & (s.iter_num <= max_backtracking_steps)

        def body(s):
            lr = jnp.where(
                s.iter_num > 0, h(decrease_factor) * s.learning_rate, s.learning_rate
            )
            new_params = ls.add_scale(params, lr, updates)
            if store_grad:
                # linearize now, transpose only for the accepted (or last) point
                new_value, jvp = jax.linearize(f, new_params)
                err = decrease_error(lr, new_value)
                last = accepted(err) | (s.iter_num == max_backtracking_steps)
                new_grad = jax.lax.cond(
                    last,
                    lambda: _tree.cast_like(
                        jax.linear_transpose(jvp, new_params)(
                            jnp.ones([], jnp.asarray(new_value).dtype)
                        )[0],
                        params,
                    ),
                    lambda: s.new_grad,
                )
            else:
                new_value, new_grad = f(new_params), s.new_grad
                err = decrease_error(lr, new_value)
            return _Search(lr, h(new_value), new_grad, err, s.iter_num + 1)

        # gradtx: a previous stepsize of 0 (a failed search) restarts from the
        # maximum; optax multiplies 0 by increase_factor and stays at 0 for good.
        prev = state.learning_rate
        guess = jnp.where(
            prev > 0,
            jnp.minimum(h(increase_factor) * prev, h(max_learning_rate)),
            h(max_learning_rate),
        )
        start = _Search(
            guess,
            value,
            _tree.zeros_like(params),
            jnp.full([], jnp.inf, dtype),
            jnp.zeros([], jnp.int32),
        )
        s = jax.lax.while_loop(cond, body, start)
        outside = jnp.isinf(s.decrease_error)
        # No finite point found: no step, and the state keeps the current point.
        lr = jnp.where(outside, jnp.zeros([], dtype), s.learning_rate)
        new_value = jnp.where(outside, value, s.new_value)
        new_grad = None
        if store_grad:
            new_grad = _tree.select(outside, _tree.cast_like(grad, params), s.new_grad)
        if verbose:
            ls.cond_print(
                ~accepted(s.decrease_error),
                "INFO: gradtx.scale_by_backtracking_linesearch: no stepsize with "
                "sufficient decrease; value {value}, slope {slope}, stepsize "
                "{lr}, decrease error {err}",
                value=value,
                slope=slope,
                lr=lr,
                err=s.decrease_error,
            )
        info = BacktrackingLinesearchInfo(s.iter_num, s.decrease_error)
        new_state = ScaleByBacktrackingLinesearchState(lr, new_value, new_grad, info)
        return ls.scale(lr, updates), new_state

    return GradientTransformation(init, update)


def value_and_grad_from_state(
    value_fn: Callable[..., ArrayLike],
) -> Callable[..., tuple[jax.Array, Any]]:
    """Like `jax.value_and_grad(value_fn)`, but reuses what a line search stored.

    The returned function takes `(params, *args, state=opt_state, **kwargs)`. When
    the state's `value` is finite, its `value` and `grad` are returned (they were
    computed at these params by the last line search); otherwise (first step, or a
    failed search) they are computed. Use it for deterministic objectives only.

    Args:
        value_fn: The scalar objective, differentiable by `jax.value_and_grad`.

    Returns:
        `value_and_grad(params, *args, state, **kwargs) -> (value, grad)`.

    Raises:
        ValueError: When called with a state holding no `value` or no `grad`
            (a backtracking search needs `store_grad=True`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w**2)
        >>> tx = gradtx.lbfgs()
        >>> w = jnp.array([1.0, 2.0]); state = tx.init(w)
        >>> value_and_grad = gradtx.value_and_grad_from_state(f)
        >>> v, g = value_and_grad(w, state=state)  # computed: state value is inf
        >>> u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f)
        >>> v2, g2 = value_and_grad(w + u, state=state)  # read from the state
        >>> bool(v2 == gradtx.tree.get(state, "value")) and float(v2) < float(v)
        True
    """

    def value_and_grad(params, *fn_args, state, **fn_kwargs):
        value = _gtree.get(state, "value")
        grad = _gtree.get(state, "grad")
        if value is None or grad is None:
            raise ValueError(
                "gradtx.value_and_grad_from_state: the state holds no value or no "
                "grad; use a line search that stores them (backtracking needs "
                "store_grad=True)"
            )
        return jax.lax.cond(
            jnp.isfinite(value),
            lambda *_: (value, grad),
            lambda p, a, kw: jax.value_and_grad(value_fn)(p, *a, **kw),
            params,
            fn_args,
            fn_kwargs,
        )

    return value_and_grad
