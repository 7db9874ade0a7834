# SPDX-License-Identifier: Apache-2.0
"""Registry entries: gradtx.torch (torch.optim's formulas) and SOAP.

See `_registry_base.py` for the optional names this module may define. The
`gradtx.torch` functions live in a namespace of their own (torch's argument names,
not optax's), so they are not registry entries: tests/test_torch_*.py replay
torch.optim's float64 trajectories and check torch's signatures and validation.
"""

from __future__ import annotations

from _registry_base import Entry, e, lr_schedule, matrices_only, not_optax

NO_OPTAX = "optax has no SOAP"
NAN, INF = float("nan"), float("inf")

ENTRIES: list[Entry] = [
    not_optax(e("scale_by_soap", "scale_by_soap"), NO_OPTAX),
    not_optax(
        e(
            "scale_by_soap_all",
            "scale_by_soap",
            b1=0.9,
            b2=0.99,
            shampoo_beta=0.8,
            eps=1e-6,
            precondition_frequency=3,
        ),
        NO_OPTAX,
    ),
    # The (4, 3) matrix keeps its 3-wide side in the eigenbasis, its 4-high side in
    # the identity basis; the others are Adam (SOAP's eps and bias correction).
    not_optax(
        e("scale_by_soap_one_sided", "scale_by_soap", max_precond_dim=3), NO_OPTAX
    ),
    not_optax(
        e(
            "soap_schedule_mask",
            "soap",
            learning_rate=lr_schedule,
            weight_decay=0.1,
            precondition_frequency=4,
            mask=matrices_only,
        ),
        NO_OPTAX,
    ),
]

# Integers that shape the state or the control flow (a traced value cannot);
# their bad values are checked in tests/test_soap.py.
NON_NUMERIC = {"precondition_frequency", "max_precond_dim"}
NUMERIC = {"shampoo_beta": ([-0.1, 1.0, 1.5, NAN, INF], [0.0])}
