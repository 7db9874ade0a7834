# SPDX-License-Identifier: Apache-2.0
"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, moment, store


class ScaleBySoapState(NamedTuple):
    """State of `scale_by_soap`.

    `count` counts calls (the first only builds the basis, so Adam's step is
    `count - 1`); `mu` is the first moment in the params' coordinates, `nu` the
    second moment in the eigenbasis; `gg_left`/`gg_right` are Shampoo's factors
    `E[G Gᵀ]`/`E[Gᵀ G]` and `q_left`/`q_right` their eigenbases, `(0, 0)` arrays
    for axes left in the identity basis.
    """

    count: jax.Array
    mu: Any
    nu: Any
    gg_left: Any
    gg_right: Any
    q_left: Any
    q_right: Any


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The 2-D view SOAP preconditions (leading axes merged); None for 0/1-D."""
    if len(shape) < 2:
        return None
    return math.prod(shape[:-1]), shape[-1]


def _sides(shape: tuple[int, ...], max_precond_dim: int) -> tuple[int, int]:
    """Sizes of the left and right factors (0 where the axis keeps the identity)."""
    mat = _matrix_shape(shape)
    if mat is None:
        return 0, 0
    rows, cols = mat
    return (rows if rows <= max_precond_dim else 0), (
        cols if cols <= max_precond_dim else 0
    )


def _sign_fix(q: jax.Array, ref: jax.Array) -> jax.Array:
    """Flips columns so that `ref`'s entries are >= 0: a unique, sign-free basis."""
    return q * jnp.where(ref < 0, -1, 1).astype(q.dtype)[None, :]


def _eigenbasis(gg: jax.Array) -> jax.Array:
    """Eigenvectors of `gg` by decreasing eigenvalue, largest entry of each > 0."""
    _, q = jnp.linalg.eigh(gg)
    q = jnp.flip(q, axis=1)
    biggest = jnp.take_along_axis(q, jnp.argmax(jnp.abs(q), axis=0)[None], axis=0)
    return _sign_fix(q, biggest[0])


def _power_step(gg: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One QR power-iteration step of the basis; returns it and the sort order."""
    order = jnp.argsort(-jnp.diagonal(q.T @ gg @ q), stable=True)
    q_new, r = jnp.linalg.qr(gg @ q[:, order])
    return _sign_fix(q_new, jnp.diagonal(r)), order


def _rotate(x: jax.Array, q_left: jax.Array, q_right: jax.Array, back: bool = False):
    """`Q_Lᵀ X Q_R` (or `Q_L X Q_Rᵀ` when `back`), skipping identity sides."""
    out = _tree.explicit_sharding(x)  # a product over a sharded dim needs it
    if q_left.size:
        x = jnp.matmul(q_left if back else q_left.T, x, out_sharding=out)
    if q_right.size:
        x = jnp.matmul(x, q_right.T if back else q_right, out_sharding=out)
    return x


def _gram(x: jax.Array, left: bool) -> jax.Array:
    """`X Xᵀ` (or `Xᵀ X`), replicated on the mesh like the factors it updates."""
    out = _tree.explicit_sharding(x)
    if out is not None:
        out = jax.sharding.NamedSharding(out.mesh, jax.sharding.PartitionSpec())
    a, b = (x, x.T) if left else (x.T, x)
    return jnp.matmul(a, b, out_sharding=out)


def _check_soap_args(fn, b1, b2, shampoo_beta, eps, frequency, max_dim) -> None:
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    if shampoo_beta is not None:
        _validate.check_decay(fn, "shampoo_beta", shampoo_beta)
    _validate.check_nonnegative(fn, "eps", eps)
    _check_int(fn, "precondition_frequency", frequency, 1)
    _check_int(fn, "max_precond_dim", max_dim, 0)


def _check_int(fn: str, name: str, value: Any, minimum: int) -> None:
    # Through `_fail`, so that `soap` (names_errors) reports its own name.
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise _validate._fail(fn, name, value, f"an integer >= {minimum}")


def scale_by_soap(
    b1: ArrayLike = 0.95,
    b2: ArrayLike = 0.95,
    shampoo_beta: ArrayLike | None = None,
    eps: ArrayLike = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
) -> GradientTransformation:
    """Runs Adam in the eigenbasis of Shampoo's Kronecker factors (SOAP).

    A matrix leaf (leading axes merged into rows) keeps `L = E[G Gᵀ]` and
    `R = E[Gᵀ G]`; the first call only builds their eigenbases with `eigh` and
    returns zero updates (as the reference implementation does), later calls
    refresh them every `precondition_frequency` steps by one QR power-iteration
    step. Axes longer than `max_precond_dim`, vectors and scalars keep the
    identity basis (plain Adam).

    Update rule:
        G' = Q_Lᵀ G Q_R;  m = b1 m + (1-b1) G;  v = b2 v + (1-b2) G'²
        u = Q_L [(Q_Lᵀ m Q_R) / (sqrt(v) + eps)] Q_Rᵀ · sqrt(1-b2^t) / (1-b1^t)
        L = s L + (1-s) G Gᵀ;  R = s R + (1-s) Gᵀ G   (s = shampoo_beta or b2)

    Args:
        b1: First-moment decay in [0, 1).
        b2: Second-moment decay in [0, 1).
        shampoo_beta: Decay of `L` and `R` in [0, 1); None uses `b2`.
        eps: Added to `sqrt(v)`, >= 0.
        precondition_frequency: Steps between basis refreshes, an integer >= 1.
        max_precond_dim: Largest side preconditioned, an integer >= 0.

    Returns:
        A transformation with `ScaleBySoapState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_soap()
        >>> s = tx.init(jnp.zeros((2, 2)))
        >>> u, s = tx.update(jnp.eye(2), s)  # the first call builds the basis
        >>> jnp.round(tx.update(jnp.eye(2), s)[0], 4)
        Array([[1., 0.],
               [0., 1.]], dtype=float32)

    References:
        Vyas et al., 2024: https://arxiv.org/abs/2409.11321
    """
    _check_soap_args(
        "scale_by_soap",
        b1,
        b2,
        shampoo_beta,
        eps,
        precondition_frequency,
        max_precond_dim,
    )
    sb = b2 if shampoo_beta is None else shampoo_beta

    def factors(p):
        cd = _numerics.compute_dtype(p.dtype)
        left, right = _sides(p.shape, max_precond_dim)
        return jnp.zeros((left, left), cd), jnp.zeros((right, right), cd)

    def init(params):
        sides = jax.tree.map(factors, params)
        left = jax.tree.map(lambda p, s: s[0], params, sides)
        right = jax.tree.map(lambda p, s: s[1], params, sides)
        return ScaleBySoapState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params),
            nu=_tree.squares_like(params),
            gg_left=left,
            gg_right=right,
            q_left=left,
            q_right=right,
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_soap", state.mu, updates)
        hb1, hb2, hsb, heps = map(_numerics.hparam, (b1, b2, sb, eps))
        first = state.count == 0
        count = _numerics.safe_int32_increment(state.count)
        t = jnp.maximum(count - 1, 1)  # Adam's step (the first call takes none)
        refresh = (count - 1 > 0) & ((count - 1) % precondition_frequency == 0)
        step = jnp.sqrt(_numerics.bias_correction(hb2, t))
        step = step / _numerics.bias_correction(hb1, t)

        def leaf(g, m, v, ggl, ggr, ql, qr):
            # The factors and bases are small and replicated (`zero1` may have
            # split them); the moments keep their own layout.
            ggl, ggr, ql, qr = map(_tree.replicated, (ggl, ggr, ql, qr))
            cd = _numerics.leaf_dtype(g, m, v)
            r = lambda h: like(h, g.astype(cd))
            shape = _matrix_shape(g.shape) or g.shape
            gc, mc = g.astype(cd).reshape(shape), m.astype(cd).reshape(shape)
            vc = v.astype(cd).reshape(shape)
            m_new = moment(gc, mc, r(hb1))
            v_new = moment(abs_sq(_rotate(gc, ql, qr)), vc, r(hb2))
            u = _rotate(
                _rotate(m_new, ql, qr) / (jnp.sqrt(v_new) + r(heps)), ql, qr, True
            )
            u, m_new, v_new = (
                jnp.where(first, jnp.zeros_like(u), u * r(step)),
                jnp.where(first, mc, m_new),
                jnp.where(first, vc, v_new),
            )
            ggl = ggl if not ggl.size else moment(_gram(gc, True), ggl, r(hsb))
            ggr = ggr if not ggr.size else moment(_gram(gc, False), ggr, r(hsb))
            ql, qr, v_new = _new_basis(first, refresh, ggl, ggr, ql, qr, v_new)
            ggl, ggr, ql, qr = map(_tree.replicated, (ggl, ggr, ql, qr))
            m_store, _ = store(m_new.reshape(g.shape), m.dtype)
            v_store, _ = store(v_new.reshape(g.shape), v.dtype)
            return (
                u.reshape(g.shape).astype(g.dtype),
                m_store,
                v_store,
                ggl,
                ggr,
                ql,
                qr,
            )

        out = jax.tree.map(
            leaf,
            updates,
            state.mu,
            state.nu,
            state.gg_left,
            state.gg_right,
            state.q_left,
            state.q_right,
        )
        u, *fields = _tree.unzip(out, updates, 7)
        return u, ScaleBySoapState(count, *fields)

    return GradientTransformation(init, update)


def _eig_branch(ops):
    ggl, ggr, ql, qr, v = ops
    ql = _eigenbasis(ggl) if ggl.size else ql
    return ql, _eigenbasis(ggr) if ggr.size else qr, v


def _power_branch(ops):
    ggl, ggr, ql, qr, v = ops
    if ggl.size:
        ql, order = _power_step(ggl, ql)
        v = v.at[order, :].get(out_sharding=_tree.explicit_sharding(v))
    if ggr.size:
        qr, order = _power_step(ggr, qr)
        v = v.at[:, order].get(out_sharding=_tree.explicit_sharding(v))
    return ql, qr, v


def _keep_branch(ops):
    return ops[2], ops[3], ops[4]


def _new_basis(first, refresh, ggl, ggr, ql, qr, v):
    """The first basis by `eigh`; every `precondition_frequency` steps, a QR step.

    On a refresh the second moment is permuted with the basis columns (sorted by
    estimated eigenvalue), as in the reference implementation. The branches are
    module-level functions so that `lax.switch` caches them (eager mode included).
    """
    if not (ggl.size or ggr.size):
        return ql, qr, v
    index = jnp.where(first, 0, jnp.where(refresh, 1, 2))
    branches = (_eig_branch, _power_branch, _keep_branch)
    return jax.lax.switch(index, branches, (ggl, ggr, ql, qr, v))
