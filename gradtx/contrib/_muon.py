# SPDX-License-Identifier: Apache-2.0
"""Muon: momentum orthogonalized by Newton-Schulz, AdamW for the other leaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, stateless
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.contrib._structured_ns import (
    DEFAULT_NS_COEFFS,
    NS_PRESETS,
    PRECONDITIONINGS,
    MuonDimensionNumbers,
    check_choice,
    check_int,
    fans,
    matrix_view,
    orthogonalize,
)
from gradtx.optimizers._adam import adamw
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights
from gradtx.wrappers._masking import MaskedNode
from gradtx.wrappers._partition import partition

__all__ = ["MuonDimensionNumbers", "MuonState", "muon", "scale_by_muon"]

_is_spec = lambda x: isinstance(x, MuonDimensionNumbers)
_is_spec_leaf = lambda x: x is None or _is_spec(x)


class MuonState(NamedTuple):
    """State of `scale_by_muon`: step count, momentum and the Newton-Schulz rows."""

    count: jax.Array
    mu: Any
    ns_coeffs: jax.Array


def _coeffs(fn: str, ns_coeffs: Any, ns_steps: Any) -> np.ndarray:
    try:
        c = np.asarray(ns_coeffs, np.float32)
    except (TypeError, ValueError):
        c = np.zeros((0,), np.float32)
    if c.ndim not in (1, 2) or c.shape[-1] != 3 or not np.isfinite(c).all():
        raise _validate._fail(
            fn, "ns_coeffs", ns_coeffs, "finite, of shape (3,) or (n, 3)"
        )
    if c.ndim == 2:
        if c.shape[0] > ns_steps:  # optax's rule: at most ns_steps rows
            raise _validate._fail(
                fn, "ns_coeffs", ns_coeffs, f"at most ns_steps={ns_steps} rows"
            )
        c = c[-ns_steps:]
    return c


def _check_muon(fn: str, ns_steps, beta, eps, preconditioning) -> None:
    check_int(fn, "ns_steps", ns_steps, 0)
    _validate.check_decay(fn, "beta", beta)
    _validate.check_nonnegative(fn, "eps", eps)
    check_choice(fn, "preconditioning", preconditioning, PRECONDITIONINGS)


def _specs(dims: Any, tree: Any) -> Any:
    """The dimension numbers for each leaf of `tree` (the default: a matrix)."""
    if dims is None:
        return jax.tree.map(lambda _: MuonDimensionNumbers(), tree)
    return dims(tree) if callable(dims) else dims


def scale_by_muon(
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: ArrayLike = 5,
    beta: ArrayLike = 0.95,
    eps: ArrayLike = 1e-8,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    weight_dimension_numbers: Any | None = None,
) -> GradientTransformation:
    """Orthogonalizes the bias-corrected momentum of each matrix by Newton-Schulz.

    The iteration runs in float32 (or wider) for every params dtype, so bf16 or f16
    weights and all-zero gradients give finite updates.

    Update rule:
        m = beta m + (1-beta) g;  m̂ = m/(1-beta^t), or with nesterov
        m̂ = beta m/(1-beta^{t+1}) + (1-beta) g/(1-beta^t)
        X = m̂ / (||m̂|| + eps); repeat X = c0 X + (c1 A + c2 A²) X, A = X Xᵀ
        adaptive: u = <m̂, X> X

    Args:
        ns_coeffs: `(c0, c1, c2)`, or one row per step (at most `ns_steps` rows).
        ns_steps: Number of Newton-Schulz steps, an integer >= 0.
        beta: Momentum decay in [0, 1).
        eps: Added to the pre-scaling norm, >= 0.
        mu_dtype: Storage dtype of the momentum; None keeps the params' dtype.
        nesterov: Use Nesterov momentum.
        adaptive: Scale by the dual norm `<m̂, X>` (Bernstein et al., 2024).
        preconditioning: 'frobenius', 'spectral', 'aol' or 'schatten' pre-scaling.
        weight_dimension_numbers: `MuonDimensionNumbers` per leaf (a tree, or a
            callable `params -> tree`); None treats every leaf as a matrix. A None
            entry in the tree leaves that leaf's momentum unorthogonalized.

    Returns:
        A transformation with `MuonState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_muon(nesterov=False)
        >>> u, _ = tx.update(jnp.eye(2) * 3.0, tx.init(jnp.zeros((2, 2))))
        >>> u.round(2)
        Array([[1.11, 0.  ],
               [0.  , 1.11]], dtype=float32)

    References:
        Jordan, 2024: https://github.com/KellerJordan/modded-nanogpt;
        Bernstein et al., 2024: https://arxiv.org/abs/2409.20325
    """
    _check_muon("scale_by_muon", ns_steps, beta, eps, preconditioning)
    coeffs = _coeffs("scale_by_muon", ns_coeffs, ns_steps)
    mu_dtype = _validate.check_dtype("scale_by_muon", "mu_dtype", mu_dtype)

    def init(params):
        return MuonState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            ns_coeffs=jnp.asarray(coeffs),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_muon", state.mu, updates)
        hb, heps = _numerics.hparam(beta), _numerics.hparam(eps)
        count = _numerics.safe_int32_increment(state.count)
        c1 = _numerics.bias_correction(hb, count)
        c1_next = _numerics.bias_correction(hb, _numerics.safe_int32_increment(count))

        def moment(g, m):
            cd = _numerics.leaf_dtype(g, m)
            gc, b = g.astype(cd), hb.astype(cd)
            m_store, m_new = _numerics.store(
                _numerics.moment(gc, m.astype(cd), b), m.dtype
            )
            if nesterov:
                m_hat = b * m_new / c1_next.astype(cd) + (1 - b) * gc / c1.astype(cd)
            else:
                m_hat = m_new / c1.astype(cd)
            return m_hat, m_store

        m_hat, mu = _tree.unzip(jax.tree.map(moment, updates, state.mu), updates, 2)

        def ortho(spec, x, g):
            if spec is None:  # left out of the orthogonalization: momentum only
                return jax.tree.map(lambda a, b: a.astype(b.dtype), x, g)
            to, back = matrix_view(x.shape, spec, "scale_by_muon")
            n = state.ns_coeffs
            f = lambda a: orthogonalize(a, n, ns_steps, preconditioning, heps)
            o = back(jax.vmap(f)(to(x)))
            if adaptive:
                o = jnp.sum(x.conj() * o) * o
            return o.astype(g.dtype)

        specs = _specs(weight_dimension_numbers, updates)
        new = jax.tree.map(ortho, specs, m_hat, updates, is_leaf=_is_spec_leaf)
        return new, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return GradientTransformation(init, update)


def _scale_by_shape(dims: Any, consistent_rms: Any) -> GradientTransformation:
    """Muon's width scaling sqrt(max(1, fan_out/fan_in)), or the consistent-RMS one."""

    def scale(spec, u):
        if spec is None:
            return u
        fan_in, fan_out = fans(u.shape, spec)
        if consistent_rms is None:
            s = _numerics.hparam(max(1.0, fan_out / fan_in) ** 0.5)
        else:
            s = _numerics.hparam(max(fan_in, fan_out) ** 0.5) * _numerics.hparam(
                consistent_rms
            )
        return (_numerics.up(u) * s.astype(_numerics.up(u).dtype)).astype(u.dtype)

    def f(updates, params):
        del params
        specs = _specs(dims, updates)
        return jax.tree.map(scale, specs, updates, is_leaf=_is_spec_leaf)

    return stateless(f)


def _labels_and_specs(
    dims: Any,
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Muon/Adam labels of the params and the Muon specs (MaskedNode elsewhere)."""

    def specs(params):
        if dims is None:
            return jax.tree.map(
                lambda x: MuonDimensionNumbers() if jnp.ndim(x) == 2 else None, params
            )
        return dims(params) if callable(dims) else dims

    def labels(params):
        fill = lambda d, sub: jax.tree.map(
            lambda _: "adam" if d is None else "muon", sub
        )
        return jax.tree.map(fill, specs(params), params, is_leaf=_is_spec_leaf)

    def muon_specs(tree):
        # Inside `partition` the tree has MaskedNode where Adam runs; the user's
        # callable gets a scalar placeholder there, and its answer is discarded.
        hidden = lambda x: isinstance(x, MaskedNode)
        filled = jax.tree.map(
            lambda x: jnp.zeros(()) if hidden(x) else x, tree, is_leaf=hidden
        )
        fill = lambda d, sub: jax.tree.map(lambda _: d, sub)
        full = jax.tree.map(fill, specs(filled), filled, is_leaf=_is_spec_leaf)
        leaves, treedef = jax.tree.flatten(tree, is_leaf=hidden)
        found = jax.tree.leaves(full, is_leaf=_is_spec_leaf)
        out = [
            MaskedNode() if hidden(x) or d is None else d
            for x, d in zip(leaves, found, strict=True)
        ]
        return treedef.unflatten(out)

    return labels, muon_specs


def _check_alias(ns_coeffs: Any) -> Any:
    if isinstance(ns_coeffs, str):
        check_choice("muon", "ns_coeffs", ns_coeffs, tuple(NS_PRESETS))
        return NS_PRESETS[ns_coeffs]
    return ns_coeffs


@_validate.names_errors(
    {
        "adamw.b1": "adam_b1",
        "adamw.b2": "adam_b2",
        "adamw.eps_root": "adam_eps_root",
        "adamw.weight_decay": "adam_weight_decay",
        "adamw.learning_rate": "adam_learning_rate",
        "add_decayed_weights.mask": "weight_decay_mask",
    }
)
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: ArrayLike = 5,
    beta: ArrayLike = 0.95,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    weight_decay_mask: MaskOrFn | None = None,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    adam_b1: ArrayLike = 0.9,
    adam_b2: ArrayLike = 0.999,
    adam_eps_root: ArrayLike = 0.0,
    adam_weight_decay: ArrayLike = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any | None = None,
    consistent_rms: ArrayLike | None = None,
) -> GradientTransformation:
    """Muon for the matrices, AdamW for every other leaf; see `scale_by_muon`.

    Muon leaves: `chain(scale_by_muon, width scaling, add_decayed_weights,
    scale_by_learning_rate)`; the width scaling is `sqrt(max(1, fan_out/fan_in))`,
    or `sqrt(max(fan_in, fan_out)) * consistent_rms`. Other leaves (or those whose
    `muon_weight_dimension_numbers` entry is None): `adamw(adam_learning_rate or
    learning_rate, adam_b1, adam_b2, eps, adam_eps_root, ..., adam_weight_decay)`.
    `ns_coeffs` may also name a preset: 'standard' or 'dion'.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.muon(0.1)
        >>> p = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
        >>> u, _ = tx.update({"w": jnp.eye(2), "b": jnp.ones(2)}, tx.init(p), p)
        >>> [round(float(x), 3) for x in u["w"].ravel()]
        [-0.111, -0.0, -0.0, -0.111]

    References:
        Jordan, 2024: https://github.com/KellerJordan/modded-nanogpt;
        Liu et al., 2025: https://arxiv.org/abs/2502.16982
    """
    coeffs = _check_alias(ns_coeffs)
    if consistent_rms is not None:
        _validate.check_nonnegative("muon", "consistent_rms", consistent_rms)
    labels, muon_specs = _labels_and_specs(muon_weight_dimension_numbers)
    adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
    muon_tx = chain(
        scale_by_muon(
            coeffs,
            ns_steps,
            beta,
            eps,
            mu_dtype,
            nesterov=nesterov,
            adaptive=adaptive,
            preconditioning=preconditioning,
            weight_dimension_numbers=muon_specs,
        ),
        _scale_by_shape(muon_specs, consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
    adam_tx = adamw(
        adam_lr,
        b1=adam_b1,
        b2=adam_b2,
        eps=eps,
        eps_root=adam_eps_root,
        weight_decay=adam_weight_decay,
        mu_dtype=mu_dtype,
        nesterov=nesterov,
    )
    return partition({"muon": muon_tx, "adam": adam_tx}, labels)
