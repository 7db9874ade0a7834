# SPDX-License-Identifier: Apache-2.0
"""Power iteration and the coupled Newton inverse p-th root (Shampoo's numerics)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._errors import HyperparameterError

_FN_POWER = "power_iteration"
_FN_ROOT = "matrix_inverse_pth_root"


def _vdot(a: Any, b: Any) -> jax.Array:
    """`<a, b>` summed over the leaves of two matching pytrees (conjugating `a`)."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    terms = [jnp.vdot(x, y) for x, y in pairs]
    return functools.reduce(jnp.add, terms)


def _normalized(tree: Any) -> Any:
    """`tree / ||tree||_2`, the norm taken over every leaf together."""
    norm = jnp.sqrt(jnp.real(_vdot(tree, tree)))
    return jax.tree.map(lambda x: x / norm.astype(x.dtype), tree)


def _check_square(fn: str, matrix: Any) -> jax.Array:
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise HyperparameterError(
            f"gradtx.{fn}: matrix must be a square 2-D array, got shape {matrix.shape}"
        )
    return matrix


def power_iteration(
    matrix: ArrayLike | Callable[[Any], Any],
    *,
    v0: Any = None,
    num_iters: ArrayLike = 100,
    error_tolerance: ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Finds the dominant eigenvalue of a matrix and its eigenvector.

    Repeats `v <- A v / ||A v||` until the residual `||A v - lambda v|| / |lambda|`
    falls below `error_tolerance` or `num_iters` steps have run, with
    `lambda = <v, A v>`. `matrix` is an `(n, n)` array or a function computing
    `A v` on a pytree `v` (then `v0`, a pytree like `v`, is required).

    Args:
        matrix: A square array, or a matrix-vector product `v -> A v`.
        v0: The starting vector. None draws it uniformly from [-1, 1]^n with `key`
            (only when `matrix` is an array).
        num_iters: The largest number of iterations.
        error_tolerance: Stop when the relative residual is below this.
        precision: The `lax.Precision` of the matrix products.
        key: The PRNG key for `v0`; None uses `jax.random.PRNGKey(0)`.

    Returns:
        `(eigenvalue, eigenvector)`, the eigenvector of unit L2 norm.

    Raises:
        HyperparameterError: For a callable `matrix` without `v0`, a non-square
            array, or a negative `num_iters` / `error_tolerance`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> eig, vec = gradtx.power_iteration(jnp.diag(jnp.array([1.0, 3.0])))
        >>> round(float(eig), 4), round(abs(float(vec[1])), 4)
        (3.0, 1.0)
    """
    _validate.check_nonnegative(_FN_POWER, "num_iters", num_iters)
    _validate.check_nonnegative(_FN_POWER, "error_tolerance", error_tolerance)
    if callable(matrix):
        if v0 is None:
            raise HyperparameterError(
                f"gradtx.{_FN_POWER}: v0 must be given when matrix is a callable "
                f"(its input pytree is unknown), got v0={v0!r}"
            )
        mvp = matrix
    else:
        a = _check_square(_FN_POWER, matrix)
        mvp = lambda v: jnp.matmul(a, v, precision=precision)
        if v0 is None:
            key = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(
                key, a.shape[-1:], dtype=a.dtype, minval=-1.0, maxval=1.0
            )
    v0 = _normalized(v0)
    z0 = mvp(v0)
    eig_dtype = jax.eval_shape(_vdot, v0, z0).dtype

    def not_done(carry):
        v, z, eig, i = carry
        residual = jax.tree.map(lambda zi, vi: zi - eig.astype(vi.dtype) * vi, z, v)
        rel = jnp.sqrt(jnp.real(_vdot(residual, residual))) / eig
        return ~(jnp.abs(rel) < error_tolerance) & (i < num_iters)

    def step(carry):
        _, z, _, i = carry
        v = _normalized(z)
        z = mvp(v)
        return v, z, _vdot(v, z).astype(eig_dtype), i + 1

    # eig starts at 0, so the first check never passes and one step always runs.
    init = (v0, z0, jnp.zeros((), eig_dtype), jnp.zeros((), jnp.int32))
    _, z, eig, _ = lax.while_loop(not_done, step, init)
    return eig, _normalized(z)


def _int_power(m: jax.Array, p: int, precision: lax.Precision) -> jax.Array:
    """`m**p` for a Python integer `p >= 1`, by repeated squaring."""
    result = None
    while p:
        if p & 1:
            result = m if result is None else jnp.matmul(result, m, precision=precision)
        p >>= 1
        if p:
            m = jnp.matmul(m, m, precision=precision)
    assert result is not None
    return result


def _traced_power(m: jax.Array, p: jax.Array, precision: lax.Precision) -> jax.Array:
    """`m**p` for a traced `p`, which must then be 1, 2, 4 or 8 (`log2 p` rounded)."""
    branches = [lambda x, k=k: _int_power(x, 2**k, precision) for k in range(4)]
    index = jnp.round(jnp.log2(jnp.asarray(p, jnp.float32))).astype(jnp.int32)
    return lax.switch(index, branches, m)


def matrix_inverse_pth_root(
    matrix: ArrayLike,
    p: ArrayLike,
    num_iters: ArrayLike = 100,
    ridge_epsilon: ArrayLike = 1e-6,
    error_tolerance: ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """Computes `(A + r I)^(-1/p)` for a symmetric PSD `A` by coupled Newton steps.

    The ridge is `r = ridge_epsilon * max(lambda_max(A), 1e-16)` (from
    `power_iteration`). With `alpha = -1/p`, `z = (1 + p) / (2 ||A + r I||_F)`,
    `M = z (A + r I)` and `H = z^(1/p) I`, each step sets `T = (1 - alpha) I +
    alpha M`, `M <- T^p M`, `H <- H T` until `max|M - I| <= error_tolerance`, it
    grows by more than 1.2x (the previous `H` is kept), or `num_iters` steps ran.

    Args:
        matrix: A symmetric positive semi-definite `(n, n)` matrix.
        p: A positive integer. Traced, it must be 1, 2, 4 or 8.
        num_iters: The largest number of Newton steps.
        ridge_epsilon: The ridge, relative to the largest eigenvalue.
        error_tolerance: Stop when `max|M - I|` is at or below this.
        precision: The `lax.Precision` of the matrix products.

    Returns:
        `(root, error)`: the inverse p-th root in `matrix`'s dtype, and the final
        `max|M - I|` (0 for a 1x1 matrix).

    Raises:
        HyperparameterError: For a non-square matrix, a concrete `p` that is not a
            positive integer, or a negative `num_iters` / `ridge_epsilon` /
            `error_tolerance`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> a = 4.0 * jnp.eye(2)
        >>> root, _ = gradtx.matrix_inverse_pth_root(a, 2, ridge_epsilon=0.0)
        >>> root
        Array([[0.5, 0. ],
               [0. , 0.5]], dtype=float32)

    References:
        Higham, *Functions of Matrices*, SIAM 2008, eq. 7.18;
        Gupta et al., Shampoo, https://arxiv.org/abs/1802.09568
    """
    matrix = _check_square(_FN_ROOT, matrix)
    for name, value in [
        ("num_iters", num_iters),
        ("ridge_epsilon", ridge_epsilon),
        ("error_tolerance", error_tolerance),
    ]:
        _validate.check_nonnegative(_FN_ROOT, name, value)
    p_fixed = _validate.concrete_float(p)
    if p_fixed is not None and not (p_fixed >= 1 and float(p_fixed).is_integer()):
        raise HyperparameterError(
            f"gradtx.{_FN_ROOT}: p must be a positive integer, got {p!r}"
        )
    dtype = jnp.result_type(jnp.float32, matrix.dtype)
    a = matrix.astype(dtype)
    n = a.shape[0]
    p_h = jnp.asarray(p, dtype)
    alpha = -1 / p_h
    eye = jnp.eye(n, dtype=dtype)
    # The ridge scale uses fixed power-iteration settings, as in optax.
    max_ev, _ = power_iteration(
        a, num_iters=100, error_tolerance=1e-6, precision=precision
    )
    ridge = jnp.asarray(ridge_epsilon, dtype) * jnp.maximum(max_ev, 1e-16)
    if n == 1:
        return ((a + ridge) ** alpha).astype(matrix.dtype), jnp.zeros((), dtype)

    if p_fixed is not None:
        power = lambda m: _int_power(m, int(p_fixed), precision)
    else:
        power = lambda m: _traced_power(m, p, precision)
    damped = a + ridge * eye
    z = (1 + p_h) / (2 * jnp.linalg.norm(damped))
    m0 = z * damped
    h0 = z ** (1 / p_h) * eye

    def not_done(carry):
        i, _, _, _, err, improving = carry
        return (i < num_iters) & (err > error_tolerance) & improving

    def step(carry):
        i, m, h, _, err, _ = carry
        t = (1 - alpha) * eye + alpha * m
        new_m = jnp.matmul(power(t), m, precision=precision)
        new_h = jnp.matmul(h, t, precision=precision)
        new_err = jnp.max(jnp.abs(new_m - eye))
        # The error may rise a little before it falls; 1.2x more means divergence.
        return i + 1, new_m, new_h, h, new_err, new_err < 1.2 * err

    init = (0, m0, h0, h0, jnp.max(jnp.abs(m0 - eye)), jnp.asarray(True))
    _, m, h, prev_h, _, improving = lax.while_loop(not_done, step, init)
    root = jnp.where(improving, h, prev_h)
    return root.astype(matrix.dtype), jnp.max(jnp.abs(m - eye))
