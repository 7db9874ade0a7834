# SPDX-License-Identifier: Apache-2.0
"""Registry entries: optax.contrib, part two: galore, muon, sam, schedule-free, sophia.

See `_registry_base.py` for the optional names this module may define. Most names of
this area wrap an inner optimizer, need extra update arguments, per-example or
complex gradients, or keep scalar and nested states that the generic trajectory
check does not compare; they are listed in NOT_IN_REGISTRY and checked against
their float64 references (eager and jit) and optax in the tests/test_contrib_b_*.py
modules, with the harness of tests/test_contrib_b_harness.py.
"""

from __future__ import annotations

from _registry_base import Entry, e

ENTRIES: list[Entry] = [
    e("normalize", "normalize"),
]

_STATE = "scalar and nested state fields; "
NOT_IN_REGISTRY = {
    "sam": "wraps two optimizers (opaque mode needs grad_fn=); test_contrib_b_sam.py",
    "lookahead": "wraps an optimizer, needs LookaheadParams; test_contrib_b_sam.py",
    "scale_by_muon": "defined for matrices only (the registry tree has vectors); "
    "tests/test_contrib_b_muon.py",
    "muon": "partition of Muon and AdamW (nested state); tests/test_contrib_b_muon.py",
    "schedule_free": "wraps an optimizer; tests/test_contrib_b_schedule_free.py",
    "schedule_free_sgd": _STATE + "tests/test_contrib_b_schedule_free.py",
    "schedule_free_adamw": _STATE + "tests/test_contrib_b_schedule_free.py",
    "scale_by_galore": "wraps a base optimizer (nested state; SVD signs); "
    "tests/test_contrib_b_misc.py",
    "galore": "chain around scale_by_galore; tests/test_contrib_b_misc.py",
    "hutchinson_estimator_diag_hessian": "needs obj_fn=; tests/test_contrib_b_misc.py",
    "sophia": "needs obj_fn=; tests/test_contrib_b_misc.py",
    "dpsgd": "per-example gradients in; tests/test_contrib_b_misc.py",
    "differentially_private_aggregate": "per-example gradients in; "
    "tests/test_contrib_b_misc.py",
    "split_real_and_imaginary": "complex params, wraps an optimizer; "
    "tests/test_contrib_b_misc.py",
}
