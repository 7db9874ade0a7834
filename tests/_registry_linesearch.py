# SPDX-License-Identifier: Apache-2.0
"""Registry entries: L-BFGS, the line searches, Polyak step sizes and momo.

See `_registry_base.py` for the optional names this module may define.

Every name of this area needs extra update arguments (`value=`, `grad=`,
`value_fn=`) that the generic tests do not pass, so each is listed in
`NOT_IN_REGISTRY` with the test file that checks its float64 reference (eagerly
and under jit), its optax parity and its hyperparameter validation.
"""

from __future__ import annotations

from _registry_base import Entry

ENTRIES: list[Entry] = []

NOT_IN_REGISTRY = {
    "scale_by_lbfgs": "needs params and real gradients; tests/test_lbfgs.py",
    "lbfgs": "needs value=, grad=, value_fn=; tests/test_lbfgs.py",
    "scale_by_zoom_linesearch": "needs value=, grad=, value_fn=; test_linesearch.py",
    "scale_by_backtracking_linesearch": "needs value=, grad=, value_fn=; "
    "tests/test_linesearch.py",
    "scale_by_polyak": "needs value=; tests/test_polyak.py",
    "polyak_sgd": "needs value=; tests/test_polyak.py",
}

# Defaults that cannot compare equal to optax's objects, for the signature test.
