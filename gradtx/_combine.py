# SPDX-License-Identifier: Apache-2.0
"""Combinators that compose transformations: `chain` and `named_chain`."""

from __future__ import annotations

from typing import Any

from gradtx import _fusion
from gradtx._base import GradientTransformation, with_extra_args_support


def chain(*transforms: Any) -> GradientTransformation:
    """Applies transformations one after another; the state is a tuple of their states.

    Foreign transforms (an optax one, say) are welcome: extra keyword arguments reach
    only the updates that accept them.

    Args:
        *transforms: Transformations, applied in order.

    Returns:
        One transformation whose state is `tuple(state_i)`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.scale(2.0), gradtx.scale(-0.5))
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([-1., -1.], dtype=float32)
    """
    txs = tuple(with_extra_args_support(t) for t in transforms)

    def init(params):
        return tuple(t.init(params) for t in txs)

    def update(updates, state, params=None, **extra_args):
        if len(state) != len(txs):
            raise ValueError(
                f"gradtx.chain: the state has {len(state)} entries but the chain has "
                f"{len(txs)} transforms; was the state built by this chain's init?"
            )
        new_state = []
        for t, s in zip(txs, state, strict=True):
            updates, s = t.update(updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return _fusion.describe(
        GradientTransformation(init, update), "chain", transforms=transforms
    )


def named_chain(*transforms: tuple[str, Any]) -> GradientTransformation:
    """Like `chain`, but the state is a dict keyed by the given names.

    Args:
        *transforms: `(name, transformation)` pairs, applied in order.

    Returns:
        One transformation whose state is `{name: state}`.

    Raises:
        ValueError: If a name repeats.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> clip, sgd = ("clip", gradtx.clip(1.0)), ("sgd", gradtx.scale(-1.0))
        >>> tx = gradtx.named_chain(clip, sgd)
        >>> sorted(tx.init(jnp.ones(2)))
        ['clip', 'sgd']
    """
    names = [n for n, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"gradtx.named_chain: names must be unique, got {names!r}")
    txs = {n: with_extra_args_support(t) for n, t in transforms}

    def init(params):
        return {n: t.init(params) for n, t in txs.items()}

    def update(updates, state, params=None, **extra_args):
        new_state = {}
        for n, t in txs.items():
            updates, new_state[n] = t.update(updates, state[n], params, **extra_args)
        return updates, new_state

    return GradientTransformation(init, update)
