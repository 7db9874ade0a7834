# SPDX-License-Identifier: Apache-2.0
"""Matrix views of weights and the Newton-Schulz orthogonalization used by Muon."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validate

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
DION_NS_COEFFS = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
NS_PRESETS = {"standard": DEFAULT_NS_COEFFS, "dion": DION_NS_COEFFS}


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight form the rows (reduction) and columns (output) of Muon.

    Every other axis is a batch axis: each slice is orthogonalized on its own.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def check_int(fn: str, name: str, value: Any, minimum: int) -> None:
    """Raises an alias-renamable `HyperparameterError` unless an int >= minimum."""
    if isinstance(value, jax.core.Tracer):
        return
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise _validate._fail(fn, name, value, f"an integer >= {minimum}")


def check_choice(fn: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Raises an alias-renamable `HyperparameterError` unless `value in allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise _validate._fail(fn, name, value, f"one of {allowed}")


def axes(ndim: int, spec: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`(reduction_axes, output_axes)` of a dimension-number spec, non-negative."""

    def norm(a):
        return tuple(x % ndim for x in ((a,) if isinstance(a, int) else a))

    return norm(spec.reduction_axis), norm(spec.output_axis)


def matrix_view(
    shape: tuple[int, ...], spec: Any, fn: str, *, batch: bool = True
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """`(to, back)`: reshape to `(batch, rows, cols)` (or `(rows, cols)`) and back."""
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"gradtx.{fn}: needs leaves of rank >= 2, got shape {shape}")
    red, out = axes(ndim, spec)
    if set(red) & set(out):
        raise ValueError(
            f"gradtx.{fn}: reduction axes {red} and output axes {out} overlap"
        )
    rest = tuple(sorted(set(range(ndim)) - set(red) - set(out)))
    if rest and not batch:
        raise ValueError(f"gradtx.{fn}: axes {rest} of shape {shape} are unassigned")
    perm = rest + red + out
    inv = tuple(sorted(range(ndim), key=lambda i: perm[i]))
    size = lambda ax: math.prod(shape[a] for a in ax)
    flat = (size(red), size(out))
    if batch:
        flat = (size(rest), *flat)
    permuted = tuple(shape[a] for a in perm)
    return (
        lambda x: x.transpose(perm).reshape(flat),
        lambda x: x.reshape(permuted).transpose(inv),
    )


def fans(shape: tuple[int, ...], spec: Any) -> tuple[int, int]:
    """`(fan_in, fan_out)`: the sizes of the reduction and output axes."""
    red, out = axes(len(shape), spec)
    return math.prod(shape[a] for a in red), math.prod(shape[a] for a in out)


def _ns_step(x: jax.Array, c: jax.Array) -> jax.Array:
    # f(X) = c0 X + (c1 A + c2 A²) X with A = X Xᴴ (Jordan et al., 2024).
    a = x @ x.T.conj()
    return c[0] * x + (c[1] * a + c[2] * a @ a) @ x


def _first_step(x: jax.Array, c: jax.Array, how: str, eps: jax.Array) -> jax.Array:
    a = x @ x.T.conj()
    if how == "aol":  # Boissin et al., 2025: row-sum rescaling of A
        s = jax.lax.rsqrt(jnp.maximum(jnp.abs(a).sum(axis=-1), eps))[:, None]
        x, a = x * s, a * s * s.T
    else:  # "schatten": ||A||_F = ||X||_{S4}^2 (Grishina et al., 2025)
        s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(a), eps))
        x, a = x * s, a * s**2
    return c[0] * x + (c[1] * a + c[2] * a @ a) @ x


def orthogonalize(
    x: jax.Array, coeffs: jax.Array, steps: int, how: str, eps: jax.Array
) -> jax.Array:
    """Newton-Schulz orthogonalization of one matrix, in x's dtype (>= float32).

    `coeffs` is `(3,)` (the same step `steps` times) or `(n, 3)` (one row per step).
    """
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    eps = eps.astype(x.dtype)
    if how == "frobenius":
        x = x / (jnp.linalg.norm(x) + eps)
    elif how == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    coeffs = coeffs.astype(x.dtype)
    rows = [coeffs] * steps if coeffs.ndim == 1 else list(coeffs)
    for i, c in enumerate(rows):
        special = i == 0 and how in ("aol", "schatten")
        x = _first_step(x, c, how, eps) if special else _ns_step(x, c)
    return x.T if transposed else x
