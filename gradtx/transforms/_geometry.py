# SPDX-License-Identifier: Apache-2.0
"""Geometry of the update: Lion's sign, trust ratios, block norms, normalization."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import EmptyState, GradientTransformation, stateless
from gradtx._errors import HyperparameterError
from gradtx._numerics import like, store, up
from gradtx.transforms._weight_decay import WeightDecaySchedule

LION_MODES = ("hard", "smooth", "refined")


class ScaleByLionState(NamedTuple):
    """State of `scale_by_lion`: the step count and the momentum `mu`."""

    count: jax.Array
    mu: Any


class NonNegativeParamsState(NamedTuple):
    """State of `keep_params_nonnegative` (empty, as in optax)."""


def safe_ratio(num: jax.Array, den: jax.Array, default: Any) -> jax.Array:
    """`num / den`, or `default` where `den == 0` (no 0/0 in the value or gradient)."""
    zero = den == 0
    return jnp.where(zero, default, num / jnp.where(zero, 1, den))


def block_norm(x: jax.Array) -> jax.Array:
    """The l2 (Frobenius) norm of one leaf, in float32 or wider."""
    return _numerics.safe_sqrt(jnp.sum(_numerics.abs_sq(up(x))))


def _floor(value: jax.Array, minimum: jax.Array) -> jax.Array:
    return jnp.where(value <= minimum, minimum, value)


def scale_by_lion(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.99,
    mu_dtype: Any | None = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformation:
    """Rescales updates by the sign of an interpolation of momentum and gradient (Lion).

    Update rule:
        c = b1 m + (1-b1) g;  u = sign(c) ('hard'), tanh(smooth_beta c) ('smooth'),
        or c where |c| < 1 else sign(c) ('refined');  m = b2 m + (1-b2) g

    Args:
        b1: Interpolation weight of the momentum in the update, in [0, 1).
        b2: Decay of the momentum, in [0, 1).
        mu_dtype: Storage dtype of `mu`; None keeps the params' dtype.
        mode: 'hard', 'smooth' or 'refined' (checked at construction).
        smooth_beta: Slope of the tanh in 'smooth' mode, >= 0.

    Returns:
        A transformation with `ScaleByLionState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range, or `mode`
            is unknown.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_lion()
        >>> tx.update(jnp.array([2.0, -0.5]), tx.init(jnp.zeros(2)))[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Chen et al., 2023: https://arxiv.org/abs/2302.06675
    """
    _validate.check_decay("scale_by_lion", "b1", b1)
    _validate.check_decay("scale_by_lion", "b2", b2)
    _validate.check_nonnegative("scale_by_lion", "smooth_beta", smooth_beta)
    if mode not in LION_MODES:
        raise HyperparameterError(
            f"gradtx.scale_by_lion: mode must be one of {LION_MODES}, got {mode!r}"
        )
    mu_dtype = _validate.check_dtype("scale_by_lion", "mu_dtype", mu_dtype)

    def init(params):
        return ScaleByLionState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params, mu_dtype)
        )

    def direction(c, r):
        if mode == "hard":
            return jnp.sign(c)
        if mode == "smooth":
            return jnp.tanh(r(_numerics.hparam(smooth_beta)) * c)
        return jnp.where(jnp.abs(c) < 1, c, jnp.sign(c))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_lion", state.mu, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)

        def leaf(g, m):
            cd = _numerics.leaf_dtype(g, m)
            gc, mc = g.astype(cd), m.astype(cd)
            r = lambda h: like(h, gc)
            u = direction(_numerics.moment(gc, mc, r(hb1)), r)
            m_store, _ = store(_numerics.moment(gc, mc, r(hb2)), m.dtype)
            return u.astype(g.dtype), m_store

        u, mu = _tree.unzip(jax.tree.map(leaf, updates, state.mu), updates, 2)
        count = _numerics.safe_int32_increment(state.count)
        return u, ScaleByLionState(count=count, mu=mu)

    return GradientTransformation(init, update)


def scale_by_trust_ratio(
    min_norm: ArrayLike = 0.0,
    trust_coefficient: ArrayLike = 1.0,
    eps: ArrayLike = 0.0,
) -> GradientTransformation:
    """Rescales each leaf's update by the trust ratio `||p|| / ||u||` (LARS/LAMB).

    Norms are taken per leaf in float32. When either norm is 0 the ratio is 1, and
    no 0/0 is ever evaluated, so zero params or zero updates stay finite (f16 too).

    Update rule:
        n_p = max(||p||, min_norm);  n_u = max(||u||, min_norm)
        u = u · trust_coefficient · n_p / (n_u + eps), or u where n_p = 0 or n_u = 0

    Args:
        min_norm: Floor of both norms, >= 0.
        trust_coefficient: Multiplier of the ratio, >= 0.
        eps: Added to the update norm in the denominator, >= 0.

    Returns:
        A stateless transformation whose `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_trust_ratio()
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None), jnp.array([0.0, 1.0]))[0]
        Array([0.6, 0.8], dtype=float32)

    References:
        You et al., 2017 (LARS): https://arxiv.org/abs/1708.03888
    """
    fn = "scale_by_trust_ratio"
    _validate.check_nonnegative(fn, "min_norm", min_norm)
    _validate.check_nonnegative(fn, "trust_coefficient", trust_coefficient)
    _validate.check_nonnegative(fn, "eps", eps)

    def leaf(u, p):
        x = up(u)
        r = lambda h: like(_numerics.hparam(h), x)
        p_norm = _floor(block_norm(p).astype(x.dtype), r(min_norm))
        u_norm = _floor(block_norm(x), r(min_norm))
        zero = (p_norm == 0) | (u_norm == 0)
        ratio = safe_ratio(r(trust_coefficient) * p_norm, u_norm + r(eps), 1)
        return (x * jnp.where(zero, 1, ratio).astype(x.dtype)).astype(u.dtype)

    return _with_params(fn, leaf)


def _with_params(fn: str, leaf: Any) -> GradientTransformation:
    """A stateless transform mapping `leaf(update, param)`; params are required."""

    def apply(updates, params):
        _tree.require_params(fn, params)
        return _tree.map_leaves(leaf, updates, params)

    return stateless(apply)


def scale_by_param_block_norm(min_scale: ArrayLike = 1e-3) -> GradientTransformation:
    """Multiplies each leaf's update by `max(||p||, min_scale)` of its param.

    Args:
        min_scale: Floor of the factor, >= 0.

    Returns:
        A stateless transformation whose `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete `min_scale` is negative or not finite.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_param_block_norm()
        >>> tx.update(jnp.array([1.0, 1.0]), tx.init(None), jnp.array([3.0, 4.0]))[0]
        Array([5., 5.], dtype=float32)
    """
    fn = "scale_by_param_block_norm"
    _validate.check_nonnegative(fn, "min_scale", min_scale)

    def leaf(u, p):
        x = up(u)
        factor = _floor(block_norm(p), _numerics.hparam(min_scale).astype(x.dtype))
        return (x * factor.astype(x.dtype)).astype(u.dtype)

    return _with_params(fn, leaf)


def scale_by_param_block_rms(min_scale: ArrayLike = 1e-3) -> GradientTransformation:
    """Multiplies each leaf's update by `max(rms(p), min_scale)` of its param.

    Args:
        min_scale: Floor of the factor, >= 0.

    Returns:
        A stateless transformation whose `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete `min_scale` is negative or not finite.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_param_block_rms()
        >>> tx.update(jnp.array([1.0, 1.0]), tx.init(None), jnp.array([2.0, -2.0]))[0]
        Array([2., 2.], dtype=float32)
    """
    fn = "scale_by_param_block_rms"
    _validate.check_nonnegative(fn, "min_scale", min_scale)

    def leaf(u, p):
        x = up(u)
        rms = _numerics.safe_sqrt(jnp.mean(_numerics.abs_sq(up(p)))).astype(x.dtype)
        factor = _floor(rms, _numerics.hparam(min_scale).astype(x.dtype))
        return (x * factor).astype(u.dtype)

    return _with_params(fn, leaf)


def normalize_by_update_norm(
    scale_factor: ArrayLike = 1.0, eps: ArrayLike = 1e-6
) -> GradientTransformation:
    """Divides all updates by their global l2 norm (plus `eps`), times `scale_factor`.

    The norm is accumulated in float32; with `eps = 0` and zero updates the result
    is zeros, not NaN (optax returns NaN there).

    Args:
        scale_factor: Multiplier of the normalized update; negative flips the sign.
        eps: Added to the norm, >= 0.

    Returns:
        A stateless transformation.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.normalize_by_update_norm(eps=0.0)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]
        Array([0.6, 0.8], dtype=float32)
    """
    _validate.check_range("normalize_by_update_norm", "scale_factor", scale_factor)
    _validate.check_nonnegative("normalize_by_update_norm", "eps", eps)

    def apply(updates, params):
        del params
        n = _tree.norm(updates)
        den = n + _numerics.hparam(eps).astype(n.dtype)
        factor = safe_ratio(_numerics.hparam(scale_factor).astype(n.dtype), den, 0)

        def leaf(u):
            x = up(u)
            return (x * like(factor, x)).astype(u.dtype)

        return jax.tree.map(leaf, updates)

    return stateless(apply)


def centralize() -> GradientTransformation:
    """Subtracts, from each leaf of rank >= 2, its mean over all but the first axis.

    Returns:
        A stateless transformation.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.centralize()
        >>> tx.update(jnp.array([[1.0, 2.0, 3.0]]), tx.init(None))[0]
        Array([[-1.,  0.,  1.]], dtype=float32)

    References:
        Yong et al., 2020: https://arxiv.org/abs/2004.01461
    """

    def leaf(u):
        if u.ndim <= 1:
            return u
        x = up(u)
        return (x - x.mean(tuple(range(1, x.ndim)), keepdims=True)).astype(u.dtype)

    return stateless(lambda updates, _: jax.tree.map(leaf, updates))


def keep_params_nonnegative() -> GradientTransformation:
    """Changes updates so that `params + updates >= 0` (put it last in a chain).

    Where `p + u < 0` the update becomes `-p`, which moves that param to exactly 0
    (also when the param was already negative).

    Returns:
        A transformation with `NonNegativeParamsState`, whose `update` needs `params`.

    Raises:
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.keep_params_nonnegative()
        >>> tx.update(jnp.array([-2.0, -0.5]), tx.init(None), jnp.array([1.0, 1.0]))[0]
        Array([-1. , -0.5], dtype=float32)
    """

    def leaf(u, p):
        x = up(u)
        pc = p.astype(x.dtype)
        return jnp.where(pc + x < 0, -pc, x).astype(u.dtype)

    def init(params):
        del params
        return NonNegativeParamsState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params("keep_params_nonnegative", params)
        return _tree.map_leaves(leaf, updates, params), state

    return GradientTransformation(init, update)


def add_scaled_params(coefficient: Any) -> GradientTransformation:
    """Adds `coefficient * params` to the updates, for any sign of `coefficient`.

    Fromage's `1 / sqrt(1 + lr²)` shrink of the params is, as optax writes it, an
    `add_decayed_weights(mult - 1)` with a negative coefficient, which the public
    block rightly rejects. `coefficient` is a scalar or a schedule (then the state
    counts steps, as `add_decayed_weights`'s does). Private: used by `fromage` only.
    """
    scheduled = callable(coefficient)

    def init(params):
        del params
        if scheduled:
            return WeightDecaySchedule(count=jnp.zeros([], jnp.int32))
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params("fromage", params)
        if scheduled:
            c = _numerics.hparam(coefficient(state.count))
            state = WeightDecaySchedule(_numerics.safe_int32_increment(state.count))
        else:
            c = _numerics.hparam(coefficient)

        def leaf(u, p):
            x = up(u)
            return (x + like(c, x) * p.astype(x.dtype)).astype(u.dtype)

        return _tree.map_leaves(leaf, updates, params), state

    return GradientTransformation(init, update)
