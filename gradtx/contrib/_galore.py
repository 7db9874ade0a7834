# SPDX-License-Identifier: Apache-2.0
"""GaLore: optimizer states in a low-rank projection of each matrix gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.contrib._structured_ns import check_int, fans, matrix_view
from gradtx.transforms._adam import scale_by_adam
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a weight form the rows (reduction) and columns (output)."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """State of `scale_by_galore`.

    Attributes:
        count: Steps taken.
        base_optimizer_state: The base optimizer's state, on the projected
            gradients of the matrices and the full gradients of the other leaves.
        projector: The projection matrix of each matrix leaf ((0, 0) elsewhere).
    """

    count: jax.Array
    base_optimizer_state: Any
    projector: Any


_is_dim_leaf = lambda x: x is None or isinstance(x, GaLoreDimensionNumbers)


def _plan(shape: tuple[int, ...], spec: Any, rank: int):
    """`(to, back, left, r, m, n)` of a matrix leaf: views, projection side, rank."""
    to, back = matrix_view(shape, spec, "scale_by_galore", batch=False)
    m, n = fans(shape, spec)
    return to, back, m >= n, min(rank, m, n), m, n


def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any | None = None,
) -> GradientTransformation:
    """Runs `base_optimizer` on low-rank projections of the matrix gradients.

    Every `update_proj_gap` steps the projector P is refreshed from the SVD of the
    gradient (its top `rank` left singular vectors if rows >= cols, else right);
    other leaves go to the base optimizer unprojected. The SVD and the projections
    run in float32; the projector is stored in the params' dtype, as in optax.

    Update rule:
        R = Pᵀ G (or G P);  N = base(R);  u = scale * P N (or N Pᵀ)

    Args:
        rank: Target rank, an integer >= 1 (capped by the matrix's dimensions).
        update_proj_gap: Steps between projector refreshes, an integer >= 1.
        scale: Factor applied to the projected-back updates.
        base_optimizer: A transform that needs no params (default `scale_by_adam()`).
        weight_dimension_numbers: None (project 2-D leaves), one
            `GaLoreDimensionNumbers` for every leaf of rank >= 2, a tree of them
            (None: not projected), or a callable returning such a tree.

    Returns:
        A transformation with `GaLoreState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_galore(rank=1)
        >>> u, _ = tx.update(jnp.ones((3, 2)), tx.init(jnp.zeros((3, 2))))
        >>> u.round(3)
        Array([[0.577, 0.577],
               [0.577, 0.577],
               [0.577, 0.577]], dtype=float32)

    References:
        Zhao et al., 2024: https://arxiv.org/abs/2403.03507
    """
    check_int("scale_by_galore", "rank", rank, 1)
    check_int("scale_by_galore", "update_proj_gap", update_proj_gap, 1)
    _validate.check_range("scale_by_galore", "scale", scale)
    base = with_extra_args_support(base_optimizer or scale_by_adam())

    def dims_of(tree):
        w = weight_dimension_numbers
        if w is None:
            return jax.tree.map(
                lambda p: GaLoreDimensionNumbers() if jnp.ndim(p) == 2 else None, tree
            )
        if callable(w):
            return w(tree)
        if isinstance(w, GaLoreDimensionNumbers):
            return jax.tree.map(lambda p: w if jnp.ndim(p) >= 2 else None, tree)
        return w

    def shapes(spec, p):
        if spec is None:
            return jnp.zeros((0, 0), p.dtype), jnp.zeros_like(p)
        _, _, left, r, m, n = _plan(p.shape, spec, rank)
        proj = (m, r) if left else (n, r)
        proxy = (r, n) if left else (m, r)
        return jnp.zeros(proj, p.dtype), jnp.zeros(proxy, p.dtype)

    def init(params):
        out = jax.tree.map(shapes, dims_of(params), params, is_leaf=_is_dim_leaf)
        projector, proxy = _tree.unzip(out, params, 2)
        return GaLoreState(jnp.zeros([], jnp.int32), base.init(proxy), projector)

    def update(updates, state, params=None, **extra_args):
        del params
        refresh = state.count % jnp.int32(update_proj_gap) == 0

        def down(spec, g, proj):
            if spec is None:
                return g, proj
            to, _, left, r, _, _ = _plan(g.shape, spec, rank)
            g2 = to(_numerics.up(g))

            def fresh():
                u, _, vh = jnp.linalg.svd(g2.astype(jnp.float32), full_matrices=False)
                return (u[:, :r] if left else vh[:r, :].T).astype(proj.dtype)

            proj = jax.lax.cond(refresh, fresh, lambda: proj)
            p = _numerics.up(proj)
            low = p.T @ g2 if left else g2 @ p
            return low.astype(g.dtype), proj

        out = jax.tree.map(
            down, dims_of(updates), updates, state.projector, is_leaf=_is_dim_leaf
        )
        low, projector = _tree.unzip(out, updates, 2)
        low_u, base_state = base.update(
            low, state.base_optimizer_state, None, **extra_args
        )

        def back(spec, n, proj, g):
            if spec is None:
                return n
            _, inv, left, _, _, _ = _plan(g.shape, spec, rank)
            p, nc = _numerics.up(proj), _numerics.up(n)
            full = p @ nc if left else nc @ p.T
            s = _numerics.hparam(scale).astype(full.dtype)
            return (s * inv(full)).astype(g.dtype)

        new = jax.tree.map(
            back, dims_of(updates), low_u, projector, updates, is_leaf=_is_dim_leaf
        )
        count = _numerics.safe_int32_increment(state.count)
        return new, GaLoreState(count, base_state, projector)

    return GradientTransformation(init, update)


@_validate.names_errors({"add_decayed_weights.mask": "mask"})
def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: ArrayLike = 0.0,
    mask: MaskOrFn | None = None,
    weight_dimension_numbers: Any | None = None,
) -> GradientTransformation:
    """GaLore: `chain(scale_by_galore(...), add_decayed_weights, lr)`.

    See `scale_by_galore`; weight decay is applied in the full parameter space.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.galore(0.1, rank=1)
        >>> p = jnp.zeros((3, 2))
        >>> u, _ = tx.update(jnp.ones((3, 2)), tx.init(p), p)
        >>> round(float(u[0, 0]), 4)
        -0.0577

    References:
        Zhao et al., 2024: https://arxiv.org/abs/2403.03507
    """
    return chain(
        scale_by_galore(
            rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
