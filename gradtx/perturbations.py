# SPDX-License-Identifier: Apache-2.0
"""Smoothing by random perturbations, as in `optax.perturbations`.

`make_perturbed_fun(f)` returns a stochastic `f_sigma(key, x)`, a Monte-Carlo estimate
of `E_z f(x + sigma z)`, whose derivatives of any order (through JAX autodiff) are
unbiased estimates of those of the smoothed function, even where `f` itself is
piecewise constant. For the same key it draws the same noise as optax, so values and
gradients agree with optax to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from gradtx._validate import check_positive_int, check_range

__all__ = ["Gumbel", "Normal", "make_perturbed_fun"]


class Normal:
    """The standard normal distribution, `log_prob` up to its additive constant."""

    def sample(
        self,
        key: ArrayLike,
        sample_shape: tuple[int, ...] = (),
        dtype: DTypeLike = float,
    ) -> jax.Array:
        """Draws standard normal noise of `sample_shape` with `jax.random.normal`."""
        return jax.random.normal(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        """Returns `-x**2 / 2`, the log-density without its normalising constant."""
        return -0.5 * inputs**2


class Gumbel:
    """The standard Gumbel distribution, the default noise of `make_perturbed_fun`."""

    def sample(
        self,
        key: ArrayLike,
        sample_shape: tuple[int, ...] = (),
        dtype: DTypeLike = float,
    ) -> jax.Array:
        """Draws standard Gumbel noise of `sample_shape` with `jax.random.gumbel`."""
        return jax.random.gumbel(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        """Returns `-x - exp(-x)`, the exact log-density."""
        return -inputs - jnp.exp(-inputs)


def _magic_box(x: jax.Array) -> jax.Array:
    # DiCE's operator: equals 1 in value; its derivative is the derivative of x
    # times itself, which turns a log-probability into a score-function estimator.
    return jnp.exp(x - jax.lax.stop_gradient(x))


def _noise_like(noise: Any, key: jax.Array, tree: Any) -> Any:
    # One key per leaf, in leaf order: the split optax.tree.random_like uses.
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    draws = [
        noise.sample(k, jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, draws)


def _times(weight: jax.Array, leaf: Any) -> jax.Array:
    leaf = jnp.asarray(leaf)
    dtype = jnp.promote_types(leaf.dtype, weight.dtype)
    return weight.astype(dtype) * leaf.astype(dtype)


def make_perturbed_fun(
    fun: Callable[[Any], Any],
    num_samples: int = 1000,
    sigma: ArrayLike = 0.1,
    noise: Any = Gumbel(),  # noqa: B008 (stateless, as in optax)
    use_baseline: bool = True,
) -> Callable[[jax.Array, Any], Any]:
    """Returns `f_sigma(key, x)`, a perturbation-smoothed estimate of `fun(x)`.

    Each of the `num_samples` draws evaluates `fun(x + sigma z)` with `z ~ noise`
    (held constant for autodiff) weighted by DiCE's magic box of `log p(z)`, so
    derivatives are score-function (REINFORCE) estimates; `fun` is never
    differentiated. With `use_baseline`, `fun(x)` is subtracted as a control variate.

    Args:
        fun: A function from a pytree of arrays to a pytree of arrays.
        num_samples: Number of perturbed evaluations averaged (an integer >= 1).
        sigma: Scale of the perturbation (> 0; a traced array is allowed).
        noise: An object with `sample(key, shape, dtype)` and `log_prob(z)`, such as
            `Gumbel()` (the default) or `Normal()`.
        use_baseline: Whether to use `fun(x)` as a variance-reducing baseline.

    Returns:
        `f_sigma(key, x)` with the output structure of `fun`.

    Raises:
        HyperparameterError: If `num_samples < 1` or a concrete `sigma <= 0`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx import perturbations
        >>> f = lambda x: jnp.sum(jnp.maximum(x, 0.0))
        >>> fs = perturbations.make_perturbed_fun(f, 1000, 0.1)
        >>> g = jax.grad(fs, argnums=1)(jax.random.key(0), jnp.zeros(3))
        >>> g.shape
        (3,)

    References:
        Berthet et al., 2020, https://arxiv.org/abs/2002.08676;
        Foerster et al., 2018, https://arxiv.org/abs/1802.05098
    """
    check_positive_int("perturbations.make_perturbed_fun", "num_samples", num_samples)
    check_range("perturbations.make_perturbed_fun", "sigma", sigma, 0.0, low_open=True)

    def one_sample(key: jax.Array, x: Any, baseline: Any) -> Any:
        z = _noise_like(noise, key, x)
        moved = jax.tree.map(lambda a, b: a + sigma * b, x, z)
        moved = jax.lax.stop_gradient(moved)
        # z recomputed from the moved point: its dependence on x carries the
        # gradient through log p(z).
        z = jax.tree.map(lambda a, y: (y - a) / sigma, x, moved)
        logp = sum(jnp.sum(noise.log_prob(leaf)) for leaf in jax.tree.leaves(z))
        box = _magic_box(jnp.asarray(logp))
        out = jax.tree.map(lambda leaf: _times(box, leaf), fun(moved))
        if use_baseline:
            out = jax.tree.map(
                lambda o, b: o + _times(1 - box, b).astype(o.dtype), out, baseline
            )
        return out

    def perturbed(key: jax.Array, x: Any) -> Any:
        baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None
        keys = jax.random.split(key, num_samples)
        outs = jax.vmap(one_sample, in_axes=(0, None, None))(keys, x, baseline)
        return jax.tree.map(lambda o: jnp.mean(o, axis=0), outs)

    return perturbed
