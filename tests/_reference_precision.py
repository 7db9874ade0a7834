# SPDX-License-Identifier: Apache-2.0
"""References: master weights, stochastic rounding, 8-bit states.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.

The 8-bit aliases quantize only state leaves of at least `min_size` elements; the
registry's test tree is far smaller, so there their reference is the base alias's
(the unquantized path). The quantized path cannot be matched at rtol 1e-5 by any
float64 emulation (a last-bit difference moves a code to its neighbour, up to 1% of
a block's absmax), so it is checked against the float32 run with the state re-synced
every step, as bitsandbytes does (RELIABILITY.md C10): tests/test_quantize_state.py.
"""

from __future__ import annotations

import math

import numpy as np
from _reference import adam, adamw, rmsprop, sgd
from _reference_geometry import lion


def _unquantized(base, params, min_size):
    sizes = [math.prod(np.shape(p)) for p in params.values()]
    if max(sizes, default=0) >= max(min_size, 1):
        raise NotImplementedError("the reference covers leaves below min_size only")
    return base


class _BelowMinSize:
    """The base reference, refusing params that would be quantized."""

    def __init__(self, base, min_size):
        self.base, self.min_size = base, min_size

    def init(self, params):
        return _unquantized(self.base, params, self.min_size).init(params)

    def update(self, grads, state, params=None):
        return self.base.update(grads, state, params)


def adam8bit(learning_rate, *, block_size=256, min_size=4096, **kwargs):
    del block_size
    return _BelowMinSize(adam(learning_rate, **kwargs), min_size)


def adamw8bit(learning_rate, *, block_size=256, min_size=4096, **kwargs):
    del block_size
    return _BelowMinSize(adamw(learning_rate, **kwargs), min_size)


def sgd8bit(
    learning_rate, momentum=None, nesterov=False, *, block_size=256, min_size=4096
):
    del block_size
    return _BelowMinSize(sgd(learning_rate, momentum, nesterov), min_size)


def rmsprop8bit(learning_rate, *, block_size=256, min_size=4096, **kwargs):
    del block_size
    return _BelowMinSize(rmsprop(learning_rate, **kwargs), min_size)


def lion8bit(learning_rate, *, block_size=256, min_size=4096, **kwargs):
    del block_size
    return _BelowMinSize(lion(learning_rate, **kwargs), min_size)
