# SPDX-License-Identifier: Apache-2.0
"""Distance over gradients: DoG, DoWG and layer-wise DoG (parameter-free SGD steps)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.contrib import _pf_common as pf
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights

_INIT_STEPS = ("distance", "learning_rate", "heuristic")


class DoGState(NamedTuple):
    """State of `dog`: first-step flag, initial params, max distance, sum of |g|²."""

    is_init_step: jax.Array
    init_params: Any
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


class DoWGState(NamedTuple):
    """State of `dowg`: initial params, weighted sum of |g|², max squared distance."""

    init_params: Any
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array


class ScaleByDistanceOverGradientsState(NamedTuple):
    """State of `scale_by_distance_over_gradients`: per-leaf distance and sum of g²."""

    max_dist: Any
    grad_sum_of_squares: Any
    init_params: Any


def _scale(updates: Any, factor: jax.Array) -> Any:
    return jax.tree.map(
        lambda g: (_numerics.up(g) * _numerics.like(factor, _numerics.up(g))).astype(
            g.dtype
        ),
        updates,
    )


def _scale_by_dog(init_step: tuple[str, Any], eps: Any) -> GradientTransformation:
    """DoG's step `max_dist / sqrt(sum |g|² + eps)` (optax's scale_by_dog)."""
    kind, value = init_step

    def init(params):
        dtype = pf.scalar_dtype(params)
        if kind == "distance":
            r_eps = pf.scalar(value, dtype)
        elif kind == "heuristic" and pf.abstract(params):
            r_eps = jnp.full([], jnp.nan, dtype)  # known at the first update
        elif kind == "heuristic":
            r_eps = heuristic(params, dtype)
        else:
            r_eps = jnp.zeros([], dtype)
        x0 = pf.initial_point(params)
        return DoGState(jnp.asarray(True), x0, r_eps, jnp.zeros([], dtype))

    def heuristic(params, dtype):
        return pf.scalar(value, dtype) * (1 + jnp.sqrt(pf.sum_sq(params, dtype)))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params("dog", params)
        dtype = state.max_dist.dtype
        x0 = pf.known_point(state.init_params, params)
        r_eps = state.max_dist
        if kind == "heuristic":
            r_eps = pf.known_scalar(r_eps, lambda: heuristic(x0, dtype))
        dist = jnp.sqrt(pf.sum_sq_diff(x0, params, dtype))
        max_dist = jnp.maximum(r_eps, dist)
        sum_sq = state.sum_sq_norm_grads + pf.sum_sq(updates, dtype)
        lr = max_dist / jnp.sqrt(sum_sq + pf.scalar(eps, dtype))
        if kind == "learning_rate":
            lr = jnp.where(state.is_init_step, pf.scalar(value, dtype), lr)
        state = DoGState(jnp.asarray(False), x0, max_dist, sum_sq)
        return _scale(updates, lr), state

    return GradientTransformation(init, update)


def _check_init_step(init_step: Any) -> None:
    if (
        not isinstance(init_step, (tuple, list))
        or len(init_step) != 2
        or init_step[0] not in _INIT_STEPS
    ):
        raise _validate.HyperparameterError(
            f"gradtx.dog: init_step must be a pair (kind, value) with kind in "
            f"{_INIT_STEPS}, got {init_step!r}"
        )
    _validate.check_nonnegative("dog", "init_step[1]", init_step[1])


def _decay(weight_decay: Any, mask: Any) -> GradientTransformation:
    if weight_decay is None:
        return identity()
    return add_decayed_weights(weight_decay, mask)


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[Literal["distance", "learning_rate", "heuristic"], ArrayLike] = (
        "heuristic",
        1e-6,
    ),
    eps: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """DoG: SGD with the step `max_t |x_t - x_0| / sqrt(sum_t |g_t|²)`.

    `chain(add_decayed_weights (if weight_decay is set), DoG's step,
    scale_by_learning_rate(lr))`; the learning rate only rescales DoG's step.

    Args:
        learning_rate: Non-negative multiplier of the step, or a schedule.
        init_step: How the first step is set: `("distance", r)` starts the distance
            at r; `("heuristic", r)` at `r (1 + |x_0|)`; `("learning_rate", lr)`
            takes a first step of lr. The value must be >= 0.
        eps: Added to the sum of squared gradient norms, >= 0.
        weight_decay: Coupled weight decay added to the gradient, or None for none.
        mask: Which leaves get weight decay (see `add_decayed_weights`).

    Returns:
        A transformation with `(EmptyState or weight-decay state, DoGState,
        step state)`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range or
            `init_step` is not one of the three kinds.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.dog(init_step=("learning_rate", 0.5))
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-1.], dtype=float32)

    References:
        Ivgi et al., 2023: https://arxiv.org/abs/2302.12022
    """
    _check_init_step(init_step)
    _validate.check_nonnegative("dog", "eps", eps)
    _validate.check_nonnegative("dog", "learning_rate", learning_rate)
    _validate.check_nonnegative("dog", "weight_decay", weight_decay)
    return chain(
        _decay(weight_decay, mask),
        _scale_by_dog(tuple(init_step), eps),
        scale_by_learning_rate(learning_rate),
    )


def _scale_by_dowg(init_estim_sq_dist: Any, eps: Any) -> GradientTransformation:
    """DoWG's step `r² / (sqrt(sum r² |g|²) + eps)` (optax.contrib._dog)."""

    def init(params):
        dtype = pf.scalar_dtype(params)
        r2 = eps if init_estim_sq_dist is None else init_estim_sq_dist
        x0 = pf.initial_point(params)
        return DoWGState(x0, jnp.zeros([], dtype), pf.scalar(r2, dtype))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params("dowg", params)
        dtype = state.estim_sq_dist.dtype
        x0 = pf.known_point(state.init_params, params)
        r2 = jnp.maximum(state.estim_sq_dist, pf.sum_sq_diff(x0, params, dtype))
        weighted = state.weighted_sq_norm_grads + r2 * pf.sum_sq(updates, dtype)
        lr = r2 / (jnp.sqrt(weighted) + pf.scalar(eps, dtype))
        return _scale(updates, lr), DoWGState(x0, weighted, r2)

    return GradientTransformation(init, update)


def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: ArrayLike | None = None,
    eps: ArrayLike = 1e-4,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """DoWG: DoG with gradients weighted by the squared distance.

    `chain(add_decayed_weights (if weight_decay is set), DoWG's step,
    scale_by_learning_rate(lr))`, where the step is
    `r_t² / (sqrt(sum_s r_s² |g_s|²) + eps)`, `r_t = max_s |x_s - x_0|`.

    Args:
        learning_rate: Non-negative multiplier of the step, or a schedule.
        init_estim_sq_dist: Initial squared distance, > 0; None means `eps`.
        eps: Added to the denominator (and the default initial distance), >= 0.
        weight_decay: Coupled weight decay added to the gradient, or None for none.
        mask: Which leaves get weight decay (see `add_decayed_weights`).

    Returns:
        A transformation with `(EmptyState or weight-decay state, DoWGState,
        step state)`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.dowg(init_estim_sq_dist=1.0, eps=0.0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-1.], dtype=float32)

    References:
        Khaled et al., 2023: https://arxiv.org/abs/2305.16284
    """
    _validate.check_range(
        "dowg", "init_estim_sq_dist", init_estim_sq_dist, 0.0, low_open=True
    )
    _validate.check_nonnegative("dowg", "eps", eps)
    _validate.check_nonnegative("dowg", "learning_rate", learning_rate)
    _validate.check_nonnegative("dowg", "weight_decay", weight_decay)
    return chain(
        _decay(weight_decay, mask),
        _scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )


def scale_by_distance_over_gradients(
    reps_rel: ArrayLike = 1e-6,
    eps: ArrayLike = 1e-8,
    param_dtype: Any = jnp.float32,
    global_scale: ArrayLike = 1.0,
) -> GradientTransformation:
    """Layer-wise DoG (LDoG): each leaf gets its own distance-over-gradients step.

    Per leaf: r = max(r, |x - x0|) starting at `reps_rel (1 + |x0|)`;
    G = G + |g|²; u = global_scale r / sqrt(G + eps) g. `G` has shape (1,) per leaf
    as in optax, but a scalar leaf's update keeps shape () (optax makes it (1,)).

    Args:
        reps_rel: Relative initial distance, > 0 (1e-4 with batch norm, else 1e-6).
        eps: Added to the sum of squares, >= 0.
        param_dtype: Floating dtype the initial params are stored in.
        global_scale: Multiplies the step; -1 makes it a descent direction.

    Returns:
        A transformation with `ScaleByDistanceOverGradientsState`; its `update` needs
        `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        TypeError: If `param_dtype` is not a floating dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_distance_over_gradients(reps_rel=1.0, eps=0.0)
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([1.], dtype=float32)

    References:
        Ivgi et al., 2023: https://arxiv.org/abs/2302.12022
    """
    fn = "scale_by_distance_over_gradients"
    _validate.check_range(fn, "reps_rel", reps_rel, 0.0, low_open=True)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_range(fn, "global_scale", global_scale)
    param_dtype = _validate.check_dtype(fn, "param_dtype", param_dtype)

    def init(params):
        def leaf(x):
            cd = _numerics.compute_dtype(x.dtype)
            if isinstance(x, jax.ShapeDtypeStruct):  # known at the first update
                return _tree.filled_reduced(x, None, jnp.nan, cd), jnp.zeros((1,), cd)
            return first_dist(x), jnp.zeros((1,), cd)

        out = jax.tree.map(leaf, params)
        dist, sos = _tree.unzip(out, params, 2)
        x0 = pf.initial_point(params, param_dtype)
        return ScaleByDistanceOverGradientsState(dist, sos, x0)

    def first_dist(x):
        xc = _numerics.up(x)
        r = _numerics.like(_numerics.hparam(reps_rel), xc)
        return r * (1 + jnp.sqrt(jnp.sum(xc * xc)))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.max_dist, updates)
        heps, hscale = _numerics.hparam(eps), _numerics.hparam(global_scale)
        x0 = pf.known_point(state.init_params, params)

        def leaf(g, x, x0, d, sos):
            gc, xc = _numerics.up(g), _numerics.up(x)
            r = lambda h: _numerics.like(h, gc)
            d = pf.known_scalar(d, lambda: first_dist(x0).astype(d.dtype))
            dist = jnp.sqrt(jnp.sum(jnp.square(xc - x0.astype(xc.dtype))))
            d_new = jnp.maximum(d, dist.astype(d.dtype))
            sos_new = sos + jnp.sum(gc * gc).astype(sos.dtype)
            eta = r(hscale) * d_new.astype(gc.dtype) / jnp.sqrt(sos_new[0] + r(heps))
            return (eta * gc).astype(g.dtype), d_new, sos_new

        out = jax.tree.map(
            leaf,
            updates,
            params,
            x0,
            state.max_dist,
            state.grad_sum_of_squares,
        )
        u, dist, sos = _tree.unzip(out, updates, 3)
        return u, ScaleByDistanceOverGradientsState(dist, sos, x0)

    return GradientTransformation(init, update)
