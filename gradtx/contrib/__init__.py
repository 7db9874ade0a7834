# SPDX-License-Identifier: Apache-2.0
"""The optax.contrib names, re-exported from where they live."""

from gradtx.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]
