# SPDX-License-Identifier: Apache-2.0
"""The optax.contrib names, re-exported from where they live."""

from gradtx.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]

# Each block below imports its names and extends `__all__` with them.

# --- contrib: parameter-free and Adam variants (begin) ---
# isort: split
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

__all__ += [
    "COCOBState",
    "DAdaptAdamWState",
    "DoGState",
    "DoWGState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "ProdigyState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "acprop",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "dog",
    "dowg",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "prodigy",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_madgrad",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]

# --- contrib: parameter-free and Adam variants (end) ---

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (begin) ---
# isort: split

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (end) ---
