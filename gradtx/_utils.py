# SPDX-License-Identifier: Apache-2.0
"""optax's small utilities: backward-pass gradient scaling and a diagonal Gaussian."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate


@jax.custom_vjp
def _scaled_backward(inputs: Any, scale: jax.Array) -> Any:
    del scale
    return inputs


def _scaled_backward_fwd(inputs: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    return inputs, scale


def _scaled_backward_bwd(scale: jax.Array, g: Any) -> tuple[Any, None]:
    def leaf(x: jax.Array) -> jax.Array:
        wide = _numerics.up(x)
        return (wide * _numerics.like(scale, wide)).astype(x.dtype)

    # `scale` is a hyperparameter: no gradient flows into it.
    return jax.tree.map(leaf, g), None


_scaled_backward.defvjp(_scaled_backward_fwd, _scaled_backward_bwd)


def scale_gradient(inputs: Any, scale: ArrayLike) -> Any:
    """Returns `inputs` unchanged, but multiplies their gradient by `scale`.

    The forward pass is the identity; on the backward pass the cotangent of every
    leaf is multiplied by `scale` (0 stops the gradient, -1 reverses it). A
    concrete 1 returns `inputs` as is, a concrete 0 is `lax.stop_gradient`.

    Args:
        inputs: A pytree of arrays.
        scale: The factor of the gradient; a traced array is allowed.

    Returns:
        `inputs`, with a scaled gradient.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> jax.grad(lambda x: gradtx.scale_gradient(x, 0.5) ** 2)(jnp.float32(3))
        Array(3., dtype=float32)
    """
    fixed = _validate.concrete_float(scale)
    if fixed == 1.0:
        return inputs
    if fixed == 0.0:
        return jax.lax.stop_gradient(inputs)
    return _scaled_backward(inputs, _numerics.hparam(scale))


class MultiNormalDiagFromLogScale:
    """A Gaussian with independent coordinates, mean `loc`, std `exp(log_scale)`.

    Its `params` are `[loc, log_scale]`, the arrays a Monte Carlo gradient
    estimator differentiates.
    """

    def __init__(self, loc: ArrayLike, log_scale: ArrayLike) -> None:
        """Stores the mean and log standard deviation (broadcast together)."""
        self._mean = jnp.asarray(loc)
        self._log_scale = jnp.asarray(log_scale)
        self._scale = jnp.exp(self._log_scale)
        self._param_shape = jnp.broadcast_shapes(self._mean.shape, self._scale.shape)

    def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
        """Draws samples of shape `(*shape, *param_shape)` from the distribution."""
        noise = jax.random.normal(key, (*tuple(shape), *self._param_shape))
        scale, mean = (
            jnp.broadcast_to(a, noise.shape) for a in (self._scale, self._mean)
        )
        return noise * scale + mean

    def log_prob(self, x: ArrayLike) -> jax.Array:
        """The log density of `x`, summed over the parameter axes."""
        x, mean, scale, log_scale = jnp.broadcast_arrays(
            jnp.asarray(x), self._mean, self._scale, self._log_scale
        )
        z = (x - mean) / scale
        per_coord = -0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)
        axes = tuple(range(-len(self._param_shape), 0))
        return jnp.sum(per_coord, axis=axes)

    @property
    def log_scale(self) -> jax.Array:
        """The log standard deviation."""
        return self._log_scale

    @property
    def params(self) -> list[jax.Array]:
        """`[loc, log_scale]`."""
        return [self._mean, self._log_scale]


def multi_normal(loc: ArrayLike, log_scale: ArrayLike) -> MultiNormalDiagFromLogScale:
    """Returns a diagonal Gaussian with mean `loc` and std `exp(log_scale)`.

    Args:
        loc: The mean.
        log_scale: The log standard deviation, broadcastable against `loc`.

    Returns:
        A `MultiNormalDiagFromLogScale` with `sample(shape, key)`, `log_prob(x)`,
        `log_scale` and `params == [loc, log_scale]`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> dist = gradtx.multi_normal(jnp.zeros(2), jnp.zeros(2))
        >>> dist.log_prob(jnp.zeros(2))
        Array(-1.837877, dtype=float32)
    """
    return MultiNormalDiagFromLogScale(loc, log_scale)
