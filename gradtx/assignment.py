# SPDX-License-Identifier: Apache-2.0
"""Jittable linear assignment (the Hungarian algorithm), as in `optax.assignment`.

Given an `n x m` cost matrix, both functions return row indices `i` and column
indices `j` of `min(n, m)` pairs, each row and column used at most once, minimising
`cost[i, j].sum()`. They share one solver, the shortest-augmenting-path form of the
Hungarian algorithm with row and column potentials (O(n^2 m) for `n <= m`), and
differ only in the order of the pairs, which follows optax's. Where several
assignments are optimal, the one returned may differ from optax's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError

__all__ = ["base_hungarian_algorithm", "hungarian_algorithm"]


@jax.jit  # the loops' closures are rebuilt per call: jit caches the compile per shape
def _solve(cost: jax.Array) -> jax.Array:
    """Returns `match`, with `match[c]` the row assigned to column c, for rows <= cols.

    Columns are numbered from 1 in the loop; column 0 is a virtual column that holds
    the row being inserted. Each row adds one augmenting path: Dijkstra over columns
    on reduced costs `cost[r, c] - u[r] - v[c]`, then the path is flipped.
    """
    rows, cols = cost.shape
    dtype = cost.dtype
    inf = jnp.asarray(jnp.inf, dtype)

    def insert_row(carry, row):
        u, v, owner = carry  # u: rows; v, owner: cols + 1 (owner == rows: free)
        owner = owner.at[0].set(row)

        def search_cond(state):
            _, _, _, _, _, col = state
            return owner[col] != rows

        def search_step(state):
            u, v, used, dist, came_from, col = state
            used = used.at[col].set(True)
            free = ~used[1:]
            here = owner[col]
            reduced = cost[here] - u[here] - v[1:]
            better = free & (reduced < dist)
            dist = jnp.where(better, reduced, dist)
            came_from = jnp.where(better, col, came_from)
            masked = jnp.where(free, dist, inf)
            best = jnp.argmin(masked)
            # All-infinite or NaN costs: still step to a free column, so the search
            # ends within `cols` steps whatever the values.
            best = jnp.where(free[best], best, jnp.argmax(free))
            delta = masked[best]
            owners = jnp.where(used, owner, rows)  # out of bounds: dropped
            u = u.at[owners].add(delta, mode="drop")
            v = jnp.where(used, v - delta, v)
            dist = jnp.where(free, dist - delta, dist)
            return u, v, used, dist, came_from, best + 1

        used = jnp.zeros(cols + 1, bool)
        dist = jnp.full(cols, inf)
        came_from = jnp.zeros(cols, jnp.int32)
        state = (u, v, used, dist, came_from, jnp.int32(0))
        u, v, _, _, came_from, col = jax.lax.while_loop(search_cond, search_step, state)

        def flip_cond(state):
            return state[1] != 0

        def flip_step(state):
            owner, col = state
            prev = came_from[col - 1]
            return owner.at[col].set(owner[prev]), prev

        owner, _ = jax.lax.while_loop(flip_cond, flip_step, (owner, col))
        return (u, v, owner), None

    u = jnp.zeros(rows, dtype)
    v = jnp.zeros(cols + 1, dtype)
    owner = jnp.full(cols + 1, rows, jnp.int32)
    (_, _, owner), _ = jax.lax.scan(
        insert_row, (u, v, owner), jnp.arange(rows, dtype=jnp.int32)
    )
    return owner[1:]


def _prepare(fn: str, cost_matrix: ArrayLike) -> tuple[jax.Array, bool]:
    cost = jnp.asarray(cost_matrix)
    if cost.ndim != 2:
        raise HyperparameterError(
            f"gradtx.assignment.{fn}: cost_matrix must be a matrix (ndim 2), "
            f"got shape {cost.shape}"
        )
    dtype = cost.dtype
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize < 4:
        dtype = jnp.float32
    transpose = cost.shape[0] > cost.shape[1]
    cost = cost.T if transpose else cost
    return cost.astype(dtype), transpose


def _row_to_col(match: jax.Array, rows: int) -> jax.Array:
    # Inverse of `match` on its assigned columns: the column of each row.
    cols = jnp.arange(match.shape[0], dtype=jnp.int32)
    return jnp.zeros(rows, jnp.int32).at[match].set(cols, mode="drop")


def hungarian_algorithm(cost_matrix: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Solves the linear assignment problem; returns `(i, j)` in optax's order.

    Pairs come in optax's order: for a square matrix by column (`j = arange(n)`);
    with more columns than rows by row, descending; with more rows than columns
    by column, descending.

    Args:
        cost_matrix: An `(n, m)` matrix of finite costs (integer or floating; the
            solver runs in float32 or wider).

    Returns:
        `(i, j)`, two int32 vectors of length `min(n, m)`; the optimal cost is
        `cost_matrix[i, j].sum()`.

    Raises:
        HyperparameterError: If `cost_matrix` is not two-dimensional.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import assignment
        >>> cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
        >>> i, j = assignment.hungarian_algorithm(cost)
        >>> int(cost[i, j].sum())
        15

    References:
        Kuhn, 1955; Crouse, On implementing 2D rectangular assignment algorithms,
        2016, https://ieeexplore.ieee.org/document/7738348
    """
    cost, transpose = _prepare("hungarian_algorithm", cost_matrix)
    rows, cols = cost.shape
    if rows == 0:
        return jnp.zeros(0, jnp.int32), jnp.zeros(0, jnp.int32)
    match = _solve(cost)
    if rows == cols:
        return match, jnp.arange(cols, dtype=jnp.int32)
    descending = jnp.arange(rows - 1, -1, -1, dtype=jnp.int32)
    partner = _row_to_col(match, rows)[::-1]
    return (partner, descending) if transpose else (descending, partner)


def base_hungarian_algorithm(cost_matrix: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Solves the linear assignment problem; returns `(i, j)` with `i` ascending.

    The same solver as `hungarian_algorithm`; the pairs are sorted by row, as
    `scipy.optimize.linear_sum_assignment` and optax's `base_hungarian_algorithm`
    return them.

    Args:
        cost_matrix: An `(n, m)` matrix of finite costs (integer or floating).

    Returns:
        `(i, j)`, two int32 vectors of length `min(n, m)` with `i` increasing.

    Raises:
        HyperparameterError: If `cost_matrix` is not two-dimensional.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import assignment
        >>> cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
        >>> assignment.base_hungarian_algorithm(cost)
        (Array([0, 1, 3], dtype=int32), Array([0, 2, 1], dtype=int32))
    """
    cost, transpose = _prepare("base_hungarian_algorithm", cost_matrix)
    rows = cost.shape[0]
    if rows == 0:
        return jnp.zeros(0, jnp.int32), jnp.zeros(0, jnp.int32)
    match = _solve(cost)
    if not transpose:
        return jnp.arange(rows, dtype=jnp.int32), _row_to_col(match, rows)
    (assigned,) = jnp.nonzero(match != rows, size=rows, fill_value=0)
    assigned = assigned.astype(jnp.int32)
    return assigned, match[assigned]
