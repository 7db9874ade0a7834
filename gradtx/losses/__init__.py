# SPDX-License-Identifier: Apache-2.0
"""Loss functions with optax's names, signatures and numbers (`optax.losses`).

Each helper computes a per-example loss (no reduction over the batch), as optax's
do; the top-level aliases (`gradtx.softmax_cross_entropy`, ...) are the same
functions.
"""

# --- losses: classification and divergences (begin) ---
_CLASSIFICATION: list[str] = []
# --- losses: classification and divergences (end) ---

# --- losses: regression, similarity, CTC, dice (begin) ---
_REGRESSION: list[str] = []
# --- losses: regression, similarity, CTC, dice (end) ---

__all__ = sorted(_CLASSIFICATION + _REGRESSION)
