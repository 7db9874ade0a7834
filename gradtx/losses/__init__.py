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
from gradtx.losses._ctc import ctc_loss, ctc_loss_with_forward_probs  # noqa: E402
from gradtx.losses._dice import (  # noqa: E402
    binary_dice_loss,
    dice_loss,
    multiclass_generalized_dice_loss,
)
from gradtx.losses._regression import (  # noqa: E402
    cosine_distance,
    cosine_similarity,
    huber_loss,
    l2_loss,
    log_cosh,
    squared_error,
)

_REGRESSION: list[str] = [
    "binary_dice_loss",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_loss",
    "huber_loss",
    "l2_loss",
    "log_cosh",
    "multiclass_generalized_dice_loss",
    "squared_error",
]
# --- losses: regression, similarity, CTC, dice (end) ---

__all__ = sorted(_CLASSIFICATION + _REGRESSION)
