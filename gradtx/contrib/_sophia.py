# SPDX-License-Identifier: Apache-2.0
"""Sophia: clipped momentum over an EMA of a Hessian-diagonal estimate."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.contrib._structured_ns import check_int
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


class HutchinsonState(NamedTuple):
    """State of `hutchinson_estimator_diag_hessian`: the PRNG key."""

    key: jax.Array


def hutchinson_estimator_diag_hessian(
    random_seed: jax.Array | None = None,
) -> GradientTransformation:
    """Estimates the Hessian diagonal as `z * (H z)` for a Rademacher vector `z`.

    `update` ignores the updates and needs `params` and `obj_fn=params -> loss`.
    The key in the state is split at every call.

    Args:
        random_seed: A PRNG key; None uses `jax.random.PRNGKey(0)`.

    Returns:
        A transformation with `HutchinsonState`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.hutchinson_estimator_diag_hessian()
        >>> p = jnp.ones(2)
        >>> f = lambda x: jnp.sum(jnp.array([1.0, 3.0]) * x**2)
        >>> tx.update(None, tx.init(p), p, obj_fn=f)[0]
        Array([2., 6.], dtype=float32)

    References:
        Hutchinson, 1989: https://doi.org/10.1080/03610918908812806
    """

    def init(params):
        del params
        return HutchinsonState(
            key=jax.random.PRNGKey(0) if random_seed is None else random_seed
        )

    def update(updates, state, params=None, *, obj_fn=None, **extra_args):
        del updates, extra_args
        _tree.require_params("hutchinson_estimator_diag_hessian", params)
        if obj_fn is None:
            raise ValueError(
                "gradtx.hutchinson_estimator_diag_hessian: update needs obj_fn="
            )
        key, sub = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(sub, len(leaves))
        lowest = min((x.dtype for x in leaves), key=lambda d: jnp.finfo(d).bits)
        z = [
            jax.random.rademacher(k, x.shape, jnp.float32).astype(lowest)
            for k, x in zip(keys, leaves, strict=True)
        ]
        z = jax.tree.unflatten(treedef, z)
        hz = jax.jvp(jax.grad(obj_fn), (params,), (z,))[1]
        return jax.tree.map(lambda h, r: h * r, hz, z), HutchinsonState(key=key)

    return GradientTransformation(init, update)


class SophiaState(NamedTuple):
    """State of `sophia`'s preconditioner."""

    count: jax.Array
    mu: Any
    nu: Any
    hessian_fn_state: Any


def _check_sophia(fn, b1, b2, eps, gamma, clip_threshold, update_interval) -> None:
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "gamma", gamma)
    if clip_threshold is not None:
        _validate.check_nonnegative(fn, "clip_threshold", clip_threshold)
    check_int(fn, "update_interval", update_interval, 1)


def scale_by_sophia(
    b1: ArrayLike = 0.965,
    b2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    gamma: ArrayLike = 0.01,
    clip_threshold: ArrayLike | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    """Sophia's preconditioner (not exported, as in optax); see `sophia`."""
    _check_sophia("sophia", b1, b2, eps, gamma, clip_threshold, update_interval)
    if verbose:
        check_int(
            "sophia", "print_win_rate_every_n_steps", print_win_rate_every_n_steps, 1
        )
    mu_dtype = _validate.check_dtype("sophia", "mu_dtype", mu_dtype)
    hess = with_extra_args_support(
        hessian_diagonal_fn or hutchinson_estimator_diag_hessian()
    )

    def init(params):
        return SophiaState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.zeros_like(params),
            hessian_fn_state=hess.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        _tree.require_params("sophia", params)
        _tree.check_structure("sophia", state.mu, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        heps, hgamma = _numerics.hparam(eps), _numerics.hparam(gamma)
        count = _numerics.safe_int32_increment(state.count)
        c1 = _numerics.bias_correction(hb1, count)

        def leaf(g, m, h):
            cd = _numerics.leaf_dtype(g, m, h)
            r = lambda x: x.astype(cd)
            m_store, m_new = _numerics.store(
                _numerics.moment(r(g), r(m), r(hb1)), m.dtype
            )
            u = m_new / r(c1) / jnp.maximum(r(hgamma) * r(h), r(heps))
            if clip_threshold is not None:
                t = r(_numerics.hparam(clip_threshold))
                u = jnp.clip(u, -t, t)
            return u, m_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu = _tree.unzip(out, updates, 2)
        if verbose and clip_threshold is not None:
            t = _numerics.hparam(clip_threshold)
            won = sum(
                jnp.sum(jnp.abs(x) < t.astype(x.dtype)) for x in jax.tree.leaves(u)
            )
            rate = won / max(1, sum(x.size for x in jax.tree.leaves(u)))
            jax.lax.cond(
                count % jnp.int32(print_win_rate_every_n_steps) == 0,
                lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
                lambda: None,
            )
        u = jax.tree.map(lambda x, g: x.astype(g.dtype), u, updates)

        def refresh(hs, nu):
            diag, hs = hess.update(updates, hs, params, **extra_args)

            def ema(d, n):
                cd = _numerics.leaf_dtype(d, n)
                new = _numerics.moment(d.astype(cd), n.astype(cd), hb2.astype(cd))
                return new.astype(n.dtype)

            return hs, jax.tree.map(ema, diag, nu)

        hs, nu = jax.lax.cond(
            state.count % jnp.int32(update_interval) == 0,
            refresh,
            lambda hs, nu: (hs, nu),
            state.hessian_fn_state,
            state.nu,
        )
        return u, SophiaState(count=count, mu=mu, nu=nu, hessian_fn_state=hs)

    return GradientTransformation(init, update)


_DEFAULT_HESSIAN = hutchinson_estimator_diag_hessian()


@_validate.names_errors({"add_decayed_weights.mask": "weight_decay_mask"})
def sophia(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.965,
    b2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 1e-4,
    weight_decay_mask: MaskOrFn | None = None,
    gamma: ArrayLike = 0.01,
    clip_threshold: ArrayLike | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = _DEFAULT_HESSIAN,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    """Sophia: momentum divided by a clipped-from-below Hessian EMA, then clipped.

    `update` needs `params` and whatever `hessian_diagonal_fn` needs (the default
    Hutchinson estimator: `obj_fn=params -> loss`). The Hessian EMA is refreshed
    when the step count before the update is a multiple of `update_interval`.

    Update rule:
        m = b1 m + (1-b1) g;  u = clip(m/(1-b1^t) / max(gamma h, eps), ±clip_threshold)
        every update_interval steps: h = b2 h + (1-b2) hessian_diagonal_fn(...)

    Args:
        learning_rate: A non-negative scalar or a schedule.
        b1: Momentum decay in [0, 1).
        b2: Decay of the Hessian-diagonal EMA in [0, 1).
        eps: Floor of the denominator, >= 0.
        weight_decay: Decoupled weight decay, >= 0.
        weight_decay_mask: Which leaves get weight decay (a tree or callable).
        gamma: Scale of the Hessian diagonal, >= 0.
        clip_threshold: Clip of the update (None: no clip), >= 0.
        update_interval: Steps between Hessian refreshes, an integer >= 1.
        hessian_diagonal_fn: Transform returning a Hessian-diagonal estimate.
        mu_dtype: Storage dtype of the momentum; None keeps the params' dtype.
        verbose: Print the fraction of unclipped updates.
        print_win_rate_every_n_steps: With `verbose`, print every n steps (>= 1).

    Returns:
        A transformation; its first state is `SophiaState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> tx = gradtx.contrib.sophia(0.1, weight_decay=0.0)
        >>> p = jnp.ones(2)
        >>> f = lambda x: jnp.sum(x**2)
        >>> tx.update(jax.grad(f)(p), tx.init(p), p, obj_fn=f)[0]
        Array([-0.1, -0.1], dtype=float32)

    References:
        Liu et al., 2023: https://arxiv.org/abs/2305.14342
    """
    return chain(
        scale_by_sophia(
            b1,
            b2,
            eps,
            gamma,
            clip_threshold,
            update_interval,
            hessian_diagonal_fn,
            mu_dtype,
            verbose,
            print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
