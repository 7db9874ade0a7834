# SPDX-License-Identifier: Apache-2.0
"""Loss functions with optax's names, signatures and numbers (`optax.losses`).

Each helper computes a per-example loss (no reduction over the batch), as optax's
do; the top-level aliases (`gradtx.softmax_cross_entropy`, ...) are the same
functions.
"""

# --- losses: classification and divergences (begin) ---
from gradtx.losses._classification import (
    poly_loss_cross_entropy,
    safe_softmax_cross_entropy,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from gradtx.losses._divergences import (
    convex_kl_divergence,
    generalized_kl_divergence,
    kl_divergence,
    kl_divergence_with_log_targets,
)
from gradtx.losses._margin import (
    hinge_loss,
    make_fenchel_young_loss,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    multiclass_sparsemax_loss,
    perceptron_loss,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    sparsemax_loss,
)
from gradtx.losses._ranking import ntxent, ranking_softmax_loss

_CLASSIFICATION: list[str] = [
    "convex_kl_divergence",
    "generalized_kl_divergence",
    "hinge_loss",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "make_fenchel_young_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "ntxent",
    "perceptron_loss",
    "poly_loss_cross_entropy",
    "ranking_softmax_loss",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss",
]
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
from gradtx.losses._triplet import triplet_margin_loss  # noqa: E402

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
    "triplet_margin_loss",
]
# --- losses: regression, similarity, CTC, dice (end) ---

__all__ = sorted(_CLASSIFICATION + _REGRESSION)
