# SPDX-License-Identifier: Apache-2.0
"""The optax.contrib names, re-exported from where they live (also as `gradtx.X`)."""

from gradtx.contrib._adam_variants import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from gradtx.contrib._adam_variants_async import (
    acprop,
    adopt,
    scale_by_acprop,
    scale_by_adopt,
)
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
from gradtx.contrib._pf_cocob_madgrad import (
    COCOBState,
    MadgradState,
    cocob,
    madgrad,
    scale_by_cocob,
    scale_by_madgrad,
)
from gradtx.contrib._pf_dadapt import (
    DAdaptAdamWState,
    ProdigyState,
    dadapt_adamw,
    prodigy,
)
from gradtx.contrib._pf_dog import DoGState, DoWGState, dog, dowg
from gradtx.contrib._pf_mechanic import MechanicState, mechanize
from gradtx.contrib._pf_momo import MomoAdamState, MomoState, momo, momo_adam
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
from gradtx.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DoGState",
    "DoWGState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "acprop",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "prodigy",
    "reduce_on_plateau",
    "sam",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_galore",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
    "split_real_and_imaginary",
]
