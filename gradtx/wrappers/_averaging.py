# SPDX-License-Identifier: Apache-2.0
"""Parameter averaging (EMA and SWA) as transforms, and the SWA learning-rate schedule.

The averaging transforms pass the updates through unchanged and keep a running
average of the *new* params, `apply_updates(params, updates)`, in their state. Put
them last in a chain, after `scale_by_learning_rate`: only there are the updates the
ones `apply_updates` will add, so only there is `params + updates` the next params.
Every average is `a_n = a_{n-1} + w_n * (p_n - a_{n-1})` with `n` the number of
averaged steps; the first averaged step has `w_1 = 1` and copies the params, as
torch's `AveragedModel` does, so no average is ever biased towards its initial value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import TreeMismatchError
from gradtx._update import apply_updates


class EmaParamsState(NamedTuple):
    """State of `ema_params`.

    Int32 counters of calls and of averaged steps (saturating), the average, and
    zero-size arrays in each param's dtype (0 bytes) for `averaged_params`.
    """

    count: jax.Array
    n_averaged: jax.Array
    average: Any
    dtypes: Any


class SwaParamsState(NamedTuple):
    """State of `swa_params`; the fields mean what they mean in `EmaParamsState`."""

    count: jax.Array
    n_averaged: jax.Array
    average: Any
    dtypes: Any


_STATES = (EmaParamsState, SwaParamsState)


def _averaging(fn, state_cls, weight, start, every, average_dtype):
    """The shared transform: `weight(n)` is the f32 weight of the n-th averaged step."""

    def init(params):
        def leaf(p):
            return p.astype(average_dtype or _numerics.compute_dtype(p.dtype))

        return state_cls(
            count=jnp.zeros([], jnp.int32),
            n_averaged=jnp.zeros([], jnp.int32),
            average=jax.tree.map(leaf, params),  # torch: a copy of the initial model
            dtypes=jax.tree.map(lambda p: jnp.zeros((0,), p.dtype), params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.average, updates)
        t = state.count
        active = (t >= start) & ((t - start) % every == 0)
        n = jnp.where(
            active, _numerics.safe_int32_increment(state.n_averaged), state.n_averaged
        )
        w = jnp.where(active, weight(n), jnp.zeros([], _numerics.hparam_dtype()))

        def leaf(p, a):
            cd = _numerics.leaf_dtype(p, a)
            ac, pc = a.astype(cd), p.astype(cd)
            if jnp.finfo(p.dtype).bits < jnp.finfo(cd).bits:
                # XLA may skip the rounding of p to its dtype (excess precision);
                # the average must see the params `apply_updates` will store.
                info = jnp.finfo(p.dtype)
                pc = jax.lax.reduce_precision(pc, info.nexp, info.nmant)
            return (ac + w.astype(cd) * (pc - ac)).astype(a.dtype)

        new_params = apply_updates(params, updates)
        average = jax.tree.map(leaf, new_params, state.average)
        count = _numerics.safe_int32_increment(t)
        return updates, state_cls(count, n, average, state.dtypes)

    return GradientTransformation(init, update)


def ema_params(
    decay: ArrayLike,
    *,
    debias: bool = False,
    start: int = 0,
    average_dtype: Any | None = None,
) -> GradientTransformation:
    """Keeps an exponential moving average of the new params (torch's EMA model).

    Updates pass through unchanged; the average of `params + updates` is read with
    `averaged_params`. Put it last in the chain (see the module docstring).

    Update rule:
        a_n = p_n if n == 1, else decay * a_{n-1} + (1 - decay) * p_n
        with debias: a_n = a_{n-1} + (1 - decay) / (1 - decay**n) * (p_n - a_{n-1})

    Args:
        decay: Weight of the old average, in [0, 1); a traced array is allowed.
        debias: Use Adam's bias-corrected EMA of a zero-initialized average (the
            same as averaging `p_1..p_n` with weights `decay**(n-i)`), whose early
            steps weigh the params more evenly than torch's copy-then-EMA.
        start: Number of `update` calls before averaging begins (0: from the first).
        average_dtype: Storage dtype of the average; None: at least float32.

    Returns:
        A transformation with `EmaParamsState`, whose `update` needs `params`.

    Raises:
        HyperparameterError: If `decay` is outside [0, 1) or `start` is not an
            integer >= 0.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.ema_params(0.5))
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     updates, state = tx.update(jnp.full(1, -1.0), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> params, gradtx.averaged_params(state)
        (Array([2.], dtype=float32), Array([1.5], dtype=float32))
    """
    fn = "ema_params"
    _validate.check_decay(fn, "decay", decay)
    _validate.check_positive_int(fn, "start", start, minimum=0)
    average_dtype = _validate.check_dtype(fn, "average_dtype", average_dtype)

    def weight(n):
        d = _numerics.hparam(decay)
        if debias:
            return (1 - d) / _numerics.bias_correction(d, jnp.maximum(n, 1))
        return jnp.where(n <= 1, jnp.ones([], d.dtype), 1 - d)

    return _averaging(fn, EmaParamsState, weight, start, 1, average_dtype)


def swa_params(
    start: int = 0, every: int = 1, *, average_dtype: Any | None = None
) -> GradientTransformation:
    """Keeps the equal-weight average of the new params (stochastic weight averaging).

    From `update` call `start` on, every `every`-th new params `params + updates` are
    averaged with equal weights (torch's `AveragedModel` default); read the average
    with `averaged_params`. Put it last in the chain (see the module docstring).

    Update rule:
        a_n = a_{n-1} + (p_n - a_{n-1}) / n
        on calls t >= start with (t - start) % every == 0

    Args:
        start: Number of `update` calls before averaging begins (0: from the first).
        every: Average one new params out of `every`, a positive integer.
        average_dtype: Storage dtype of the average; None: at least float32.

    Returns:
        A transformation with `SwaParamsState`, whose `update` needs `params`.

    Raises:
        HyperparameterError: If `start` is not an integer >= 0 or `every` not >= 1.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.swa_params(start=1))
        >>> params = jnp.zeros(1)
        >>> state = tx.init(params)
        >>> for _ in range(3):  # params 1, 2, 3; the first is before `start`
        ...     updates, state = tx.update(jnp.full(1, -1.0), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> gradtx.averaged_params(state)
        Array([2.5], dtype=float32)

    References:
        Izmailov et al., 2018: https://arxiv.org/abs/1803.05407
    """
    fn = "swa_params"
    _validate.check_positive_int(fn, "start", start, minimum=0)
    _validate.check_positive_int(fn, "every", every, minimum=1)
    average_dtype = _validate.check_dtype(fn, "average_dtype", average_dtype)

    def weight(n):
        return 1 / jnp.maximum(n, 1).astype(_numerics.hparam_dtype())

    return _averaging(fn, SwaParamsState, weight, start, every, average_dtype)


def averaged_params(state: Any) -> Any:
    """Returns the average kept by `ema_params` or `swa_params`, in the params' dtypes.

    The averaging state is found by type anywhere in a nested state (chains,
    wrappers, dicts), like `gradtx.tree.get`. Before the first averaged step the
    average is the params given to `init`.

    Args:
        state: An optimizer state containing exactly one averaging state.

    Returns:
        The averaged params, leaf for leaf in the dtypes of the params.

    Raises:
        TreeMismatchError: If `state` contains no averaging state, or several (then
            pass the one you want, e.g. `state[-1]`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.sgd(0.1), gradtx.swa_params())
        >>> state = tx.init(jnp.ones(2, jnp.bfloat16))
        >>> gradtx.averaged_params(state)
        Array([1, 1], dtype=bfloat16)
    """
    found = [
        (jax.tree_util.keystr(p) or "state", node)
        for p, node in _tree.instances(state, _STATES)
    ]
    if len(found) != 1:
        where = ", ".join(p for p, _ in found) or "none"
        raise TreeMismatchError(
            "gradtx.averaged_params: state must contain exactly one EmaParamsState "
            f"or SwaParamsState, got {len(found)} ({where})"
        )
    s = found[0][1]
    return jax.tree.map(lambda a, d: a.astype(d.dtype), s.average, s.dtypes)
