# SPDX-License-Identifier: Apache-2.0
"""Hessian-vector products and curvature diagonals, as in `optax.second_order`.

Each function takes a loss `loss(params, inputs, targets) -> scalar`. Vectors and
diagonals are flat: they follow the order of `jax.flatten_util.ravel_pytree(params)`.
optax 0.2.8 deprecates this module (removal planned for 0.2.9); gradtx keeps it and
warns about nothing, so code written against it keeps running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError

__all__ = ["fisher_diag", "hessian_diag", "hvp"]

LossFn = Callable[[Any, Any, Any], jax.Array]


def _check_vector(fn: str, v: ArrayLike, size: int) -> None:
    shape = jnp.shape(v)
    if shape != (size,):
        raise HyperparameterError(
            f"gradtx.second_order.{fn}: v must have shape ({size},), the size of "
            f"ravel_pytree(params), got shape {shape}"
        )


def hvp(loss: LossFn, v: ArrayLike, params: Any, inputs: Any, targets: Any) -> Any:
    """Returns the Hessian of `loss` at `params` times the flat vector `v`.

    Forward-over-reverse differentiation: one `jax.jvp` of `jax.grad`, so it costs
    about two gradient evaluations and never forms the Hessian.

    Args:
        loss: `loss(params, inputs, targets) -> scalar`.
        v: A vector of size `ravel_pytree(params)[0].size`.
        params: The point where the Hessian is taken (any pytree).
        inputs: Passed to `loss`.
        targets: Passed to `loss`.

    Returns:
        `H @ v` with the structure of `params` (as optax returns it).

    Raises:
        HyperparameterError: If `v` does not have the flat size of `params`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import second_order
        >>> loss = lambda p, x, y: jnp.sum((x * p) ** 2)
        >>> second_order.hvp(loss, jnp.ones(2), jnp.ones(2), jnp.array([1.0, 2.0]), 0)
        Array([2., 8.], dtype=float32)
    """
    flat, unravel = ravel_pytree(params)
    _check_vector("hvp", v, flat.size)
    tangent = unravel(jnp.asarray(v).astype(flat.dtype))
    grad_fn = jax.grad(lambda p: loss(p, inputs, targets))
    return jax.jvp(grad_fn, (params,), (tangent,))[1]


def hessian_diag(loss: LossFn, params: Any, inputs: Any, targets: Any) -> jax.Array:
    """Returns the diagonal of the Hessian of `loss` at `params`, as a flat vector.

    Entry `k` is `e_k . (H e_k)`, one Hessian-vector product per parameter (batched
    with `jax.vmap`), so use it on small models only: the cost grows as `n` gradients.

    Args:
        loss: `loss(params, inputs, targets) -> scalar`.
        params: The point where the Hessian is taken (any pytree).
        inputs: Passed to `loss`.
        targets: Passed to `loss`.

    Returns:
        A vector of size `ravel_pytree(params)[0].size`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import second_order
        >>> loss = lambda p, x, y: jnp.sum(x * p**3)
        >>> second_order.hessian_diag(loss, jnp.array([1.0, 2.0]), jnp.ones(2), 0)
        Array([ 6., 12.], dtype=float32)
    """
    flat, _ = ravel_pytree(params)
    basis = jnp.eye(flat.size, dtype=flat.dtype)

    def entry(e: jax.Array) -> jax.Array:
        return jnp.vdot(e, ravel_pytree(hvp(loss, e, params, inputs, targets))[0])

    return jax.vmap(entry)(basis)


def fisher_diag(
    negative_log_likelihood: LossFn, params: Any, inputs: Any, targets: Any
) -> jax.Array:
    """Returns the diagonal of the observed Fisher information, as a flat vector.

    The observed Fisher of one batch is the outer product of the gradient of the
    negative log-likelihood with itself; its diagonal is the squared gradient.

    Args:
        negative_log_likelihood: `nll(params, inputs, targets) -> scalar`.
        params: The point where the gradient is taken (any pytree).
        inputs: Passed to `negative_log_likelihood`.
        targets: Passed to `negative_log_likelihood`.

    Returns:
        A vector of size `ravel_pytree(params)[0].size`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import second_order
        >>> nll = lambda p, x, y: jnp.sum(x * p)
        >>> second_order.fisher_diag(nll, jnp.zeros(2), jnp.array([1.0, -3.0]), 0)
        Array([1., 9.], dtype=float32)
    """
    grads = jax.grad(negative_log_likelihood)(params, inputs, targets)
    return jnp.square(ravel_pytree(grads)[0])
