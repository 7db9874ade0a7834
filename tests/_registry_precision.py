# SPDX-License-Identifier: Apache-2.0
"""Registry entries: master weights, stochastic rounding, 8-bit states.

See `_registry_base.py` for the optional names this module may define.

The 8-bit aliases are registered on the shared tree, whose leaves are all below
`min_size`, so the generic checks cover their signatures, validation, dtypes,
checkpoints and counters on the unquantized path; the quantized path has the C10
tests of tests/test_quantize_state.py and tests/test_quantize_eightbit.py.
"""

from __future__ import annotations

from _registry_base import MASK_TREE, Entry, e, not_optax

NO_OPTAX = "optax has no 8-bit optimizers"
WD = 0.1

ENTRIES: list[Entry] = [
    not_optax(e("adam8bit", "adam8bit", learning_rate=0.01), NO_OPTAX),
    not_optax(
        e(
            "adam8bit-nesterov-eps_root",
            "adam8bit",
            learning_rate=0.01,
            nesterov=True,
            eps_root=1e-6,
            block_size=64,
        ),
        NO_OPTAX,
    ),
    not_optax(
        e("adamw8bit", "adamw8bit", learning_rate=0.01, weight_decay=WD), NO_OPTAX
    ),
    not_optax(
        e(
            "adamw8bit-mask",
            "adamw8bit",
            learning_rate=0.01,
            weight_decay=WD,
            mask=MASK_TREE,
        ),
        NO_OPTAX,
    ),
    not_optax(e("sgd8bit", "sgd8bit", learning_rate=0.05), NO_OPTAX),
    not_optax(e("lion8bit", "lion8bit", learning_rate=0.01, weight_decay=WD), NO_OPTAX),
    not_optax(
        e("sgd8bit-momentum", "sgd8bit", learning_rate=0.05, momentum=0.9), NO_OPTAX
    ),
    not_optax(
        e(
            "sgd8bit-nesterov",
            "sgd8bit",
            learning_rate=0.05,
            momentum=0.9,
            nesterov=True,
        ),
        NO_OPTAX,
    ),
    not_optax(e("rmsprop8bit", "rmsprop8bit", learning_rate=0.01), NO_OPTAX),
    not_optax(
        e(
            "rmsprop8bit-centered-momentum",
            "rmsprop8bit",
            learning_rate=0.01,
            centered=True,
            momentum=0.9,
        ),
        NO_OPTAX,
    ),
]

NOT_IN_REGISTRY = {
    "master_weights": "wrapper of an inner transform; tests/test_master_weights.py",
    "quantize_state": "wrapper of an inner transform; tests/test_quantize_state.py",
}

# block_size and min_size shape the state (static ints, never traced), so they are
# structure arguments; their validation is tested in tests/test_quantize_state.py.
NON_NUMERIC = {"block_size", "min_size"}
DTYPE_CONTEXT = {"sgd8bit": {"momentum": 0.9}}
