# SPDX-License-Identifier: Apache-2.0
"""Non-negative least squares by accelerated projected gradient (`optax.nnls`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError
from gradtx._validate import check_positive_int, check_range


def _spectral_bound(q: jax.Array) -> jax.Array:
    # For a symmetric Q the spectral radius is at most any induced norm and at most
    # the Frobenius norm: take the smaller of the Frobenius norm and the 1-norm.
    if q.size == 0:
        return jnp.zeros((), q.dtype)
    frobenius = jnp.sqrt(jnp.sum(q * q))
    one_norm = jnp.max(jnp.sum(jnp.abs(q), axis=0))
    return jnp.minimum(frobenius, one_norm)


def _check_shapes(a: jax.Array, b: jax.Array) -> None:
    if a.ndim != 2:
        raise HyperparameterError(
            f"gradtx.nnls: A must be a matrix (ndim 2), got shape {a.shape}"
        )
    if b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
        raise HyperparameterError(
            f"gradtx.nnls: b must have shape ({a.shape[0]},) or ({a.shape[0]}, K) "
            f"to match A of shape {a.shape}, got shape {b.shape}"
        )


def nnls(
    A: ArrayLike,
    b: ArrayLike,
    iters: int,
    unroll: int | bool = 1,
    L: ArrayLike | None = None,
) -> jax.Array:
    """Solves `min ||A x - b||_2` subject to `x >= 0` with `iters` FISTA steps.

    Each step is a projected gradient step on `x^T Q x / 2 - q^T x` (`Q = A^T A`,
    `q = A^T b`) of size `1 / L` from a Nesterov-extrapolated point. The momentum
    sequence starts at `t_0 = 0`, as in optax, so the first step only sets `x_1`.

    Args:
        A: Matrix of shape `(M, N)`.
        b: Vector of shape `(M,)` or matrix of shape `(M, K)` (K problems at once).
        iters: Number of iterations (an integer >= 0; 0 returns zeros).
        unroll: Passed to `jax.lax.scan`.
        L: An upper bound on the largest eigenvalue of `A^T A` (>= 0). `None`
            uses `min(||Q||_F, ||Q||_1)`. A zero bound is replaced by 1.

    Returns:
        The solution, of shape `(N,)` or `(N, K)`, in the inputs' floating dtype
        (float32 for integer inputs); the iteration runs in float32 or wider.

    Raises:
        HyperparameterError: On mismatched shapes, `iters < 0` or a concrete `L < 0`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> A = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> x = gradtx.nnls(A, jnp.array([5.0, 6.0]), 1000)
        >>> print(f"{x[0]:.2f} {x[1]:.2f}")
        0.00 1.70

    References:
        Polyak, Projected gradient method for non-negative least square, 2015,
        http://www.ams.org/books/conm/636/; Beck and Teboulle, 2009 (FISTA)
    """
    a, b = jnp.asarray(A), jnp.asarray(b)
    _check_shapes(a, b)
    check_positive_int("nnls", "iters", iters, minimum=0)
    check_range("nnls", "L", L, 0.0)
    out_dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
    if jnp.issubdtype(jnp.result_type(a, b), jnp.floating):
        out_dtype = jnp.result_type(a, b)
    dtype = jnp.promote_types(out_dtype, jnp.float32)
    a, b = a.astype(dtype), b.astype(dtype)
    q_mat = a.T @ a
    q_vec = a.T @ b
    bound = _spectral_bound(q_mat) if L is None else jnp.asarray(L).astype(dtype)
    bound = jnp.where(bound == 0, jnp.ones((), dtype), bound)

    def step(carry, _):
        x, y, t = carry
        t_next = (1 + jnp.sqrt(1 + 4 * t**2)) / 2
        x_next = jnp.maximum(y - (q_mat @ y - q_vec) / bound, 0)
        y_next = x_next + ((t - 1) / t_next) * (x_next - x)
        return (x_next, y_next, t_next), None

    x0 = jnp.zeros(a.shape[1:] + b.shape[1:], dtype)
    t0 = jnp.zeros((), dtype)
    (x, _, _), _ = jax.lax.scan(step, (x0, x0, t0), length=iters, unroll=unroll)
    return x.astype(out_dtype)
