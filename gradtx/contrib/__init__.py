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

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (end) ---
