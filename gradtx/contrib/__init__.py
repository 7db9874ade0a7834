# SPDX-License-Identifier: Apache-2.0
"""The optax.contrib names, re-exported from where they live."""

from gradtx.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]

# Each block below imports its names and extends `__all__` with them.

# --- contrib: parameter-free and Adam variants (begin) ---
# isort: split

# --- contrib: parameter-free and Adam variants (end) ---

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (begin) ---
# isort: split
from gradtx.contrib._complex import (
    SplitRealAndImaginaryState,
    split_real_and_imaginary,
)
from gradtx.contrib._galore import (
    GaLoreDimensionNumbers,
    GaLoreState,
    galore,
    scale_by_galore,
)
from gradtx.contrib._muon import MuonDimensionNumbers, MuonState, muon, scale_by_muon
from gradtx.contrib._privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
)
from gradtx.contrib._sam import NormalizeState, SAMState, normalize, sam
from gradtx.contrib._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradtx.contrib._sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    sophia,
)

__all__ += [
    "DifferentiallyPrivateAggregateState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "SAMState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "differentially_private_aggregate",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "muon",
    "normalize",
    "sam",
    "scale_by_galore",
    "scale_by_muon",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "sophia",
    "split_real_and_imaginary",
]

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (end) ---
