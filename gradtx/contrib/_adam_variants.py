# SPDX-License-Identifier: Apache-2.0
"""AdEMAMix and its simplified form (optax.contrib): Adam with a slow second EMA."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._numerics import abs_sq, like, moment, store
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


class ScaleByAdemamixState(NamedTuple):
    """State of `scale_by_ademamix`: fast (`m1`) and slow (`m2`) EMAs, `nu`."""

    count: jax.Array
    count_m2: jax.Array
    m1: Any
    m2: Any
    nu: Any


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    """State of `scale_by_simplified_ademamix`: step `t`, momentum `m`, `n`."""

    t: jax.Array
    m: Any
    n: Any


def _at(value: Any, count: jax.Array) -> jax.Array:
    """A hyperparameter or schedule evaluated at the (pre-increment) `count`."""
    return _numerics.hparam(value(count) if callable(value) else value)


def _check(fn: str, **values: Any) -> None:
    for name in ("b1", "b2", "b3"):
        if name in values:
            _validate.check_decay(fn, name, values[name])
    for name in ("alpha", "eps", "eps_root"):
        _validate.check_nonnegative(fn, name, values[name])


def scale_by_ademamix(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    """Rescales updates by AdEMAMix: a bias-corrected fast EMA plus `alpha` slow EMAs.

    `b3` and `alpha` may be schedules of the step (the paper warms both up); they are
    evaluated at the count before the increment, as in optax.

    Update rule:
        m1 = b1 m1 + (1-b1) g;  m2 = b3 m2 + (1-b3) g;  nu = b2 nu + (1-b2) g²
        u = (m1/(1-b1^t) + alpha m2) / (sqrt(nu/(1-b2^t) + eps_root) + eps)

    Args:
        b1: Decay of the fast EMA in [0, 1).
        b2: Decay of the second moment in [0, 1).
        b3: Decay of the slow EMA in [0, 1), or a schedule.
        alpha: Weight of the slow EMA, >= 0, or a schedule.
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.
        mu_dtype: Storage dtype of `m1`, `m2` and `nu` (as in optax); None keeps the
            params' dtype (float32 for `nu` of float16 params).

    Returns:
        A transformation with `ScaleByAdemamixState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_ademamix(alpha=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Pagliardini et al., 2024: https://arxiv.org/abs/2409.03137
    """
    fn = "scale_by_ademamix"
    _check(fn, b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root)
    if not callable(b3):
        _validate.check_decay(fn, "b3", b3)
    mu_dtype = _validate.check_dtype(fn, "mu_dtype", mu_dtype)

    def init(params):
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            count_m2=jnp.zeros([], jnp.int32),
            m1=_tree.zeros_like(params, mu_dtype),
            m2=_tree.zeros_like(params, mu_dtype),
            nu=_tree.squares_like(params, dtype=mu_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.m1, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        hb3, halpha = _at(b3, state.count_m2), _at(alpha, state.count_m2)
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        count = _numerics.safe_int32_increment(state.count)
        c1 = _numerics.bias_correction(hb1, count)
        c2 = _numerics.bias_correction(hb2, count)

        def leaf(g, m1, m2, v):
            cd = _numerics.leaf_dtype(g, m1, m2, v)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m1_store, m1_new = store(moment(gc, m1.astype(cd), r(hb1)), m1.dtype)
            m2_store, m2_new = store(moment(gc, m2.astype(cd), r(hb3)), m2.dtype)
            v_new = moment(abs_sq(gc).astype(cd), v.astype(cd), r(hb2))
            v_store, v_new = store(v_new, v.dtype)
            den = jnp.sqrt(v_new / r(c2) + r(heps_root)) + r(heps)
            u = (m1_new / r(c1) + r(halpha) * m2_new) / den
            return u.astype(g.dtype), m1_store, m2_store, v_store

        out = jax.tree.map(leaf, updates, state.m1, state.m2, state.nu)
        u, m1, m2, nu = _tree.unzip(out, updates, 4)
        count_m2 = _numerics.safe_int32_increment(state.count_m2)
        return u, ScaleByAdemamixState(count, count_m2, m1, m2, nu)

    return GradientTransformation(init, update)


@_validate.names_errors()
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """AdEMAMix: `chain(scale_by_ademamix, add_decayed_weights, scale_by_lr)`.

    See `scale_by_ademamix` and `add_decayed_weights` for the arguments (the alias's
    default `alpha` is 5, the block's 6, as in optax).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.ademamix(0.1, alpha=0.0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Pagliardini et al., 2024: https://arxiv.org/abs/2409.03137
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def scale_by_simplified_ademamix(
    b1: ArrayLike = 0.99,
    b2: ArrayLike = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
) -> GradientTransformation:
    """Rescales updates by simplified AdEMAMix: an undamped momentum plus `alpha g`.

    Update rule:
        m = b1 m + g;  n = b2 n + (1-b2) g²
        u = (m + alpha g) / (sqrt(n/(1-b2^t) + eps_root) + eps)

    Args:
        b1: Momentum decay in [0, 1) (no `1-b1` damping).
        b2: Second-moment decay in [0, 1).
        alpha: Weight of the current gradient, >= 0, or a schedule.
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.

    Returns:
        A transformation with `ScaleBySimplifiedAdEMAMixState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_simplified_ademamix(b2=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Morwani et al., 2024: https://arxiv.org/abs/2502.02431
    """
    fn = "scale_by_simplified_ademamix"
    _check(fn, b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root)

    def init(params):
        return ScaleBySimplifiedAdEMAMixState(
            t=jnp.zeros([], jnp.int32),
            m=_tree.zeros_like(params),
            n=_tree.squares_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.m, updates)
        hb1, hb2, halpha = (
            _numerics.hparam(b1),
            _numerics.hparam(b2),
            _at(alpha, state.t),
        )
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        t = _numerics.safe_int32_increment(state.t)
        c2 = _numerics.bias_correction(hb2, t)

        def leaf(g, m, n):
            cd = _numerics.leaf_dtype(g, m, n)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m_store, m_new = store(gc + r(hb1) * m.astype(cd), m.dtype)
            n_new = moment(abs_sq(gc).astype(cd), n.astype(cd), r(hb2))
            n_store, n_new = store(n_new, n.dtype)
            den = jnp.sqrt(n_new / r(c2) + r(heps_root)) + r(heps)
            return ((m_new + r(halpha) * gc) / den).astype(g.dtype), m_store, n_store

        out = jax.tree.map(leaf, updates, state.m, state.n)
        u, m, n = _tree.unzip(out, updates, 3)
        return u, ScaleBySimplifiedAdEMAMixState(t=t, m=m, n=n)

    return GradientTransformation(init, update)


@_validate.names_errors()
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.99,
    b2: ArrayLike = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """Simplified AdEMAMix with decoupled weight decay.

    `chain(scale_by_simplified_ademamix, add_decayed_weights, scale_by_learning_rate)`;
    see `scale_by_simplified_ademamix` and `add_decayed_weights` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.simplified_ademamix(0.1, b2=0.0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Morwani et al., 2024: https://arxiv.org/abs/2502.02431
    """
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
