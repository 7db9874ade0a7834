# SPDX-License-Identifier: Apache-2.0
"""Registry entries: sign, trust-ratio, clipping, noise, projections; lion, lamb.

See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

import numpy as np
from _registry_base import BF16, MASK_TREE, Entry, e, lr_schedule, matrices_only
from _registry_base import not_optax as _not_optax

NAN, INF = float("nan"), float("inf")
NONNEG_BAD = [-1e-3, -1.0, NAN, INF, -INF]
FINITE_BAD = [NAN, INF, -INF]
BF16_MOMENT = (
    "optax computes Lion's interpolation with the stored bf16 mu in bf16; gradtx "
    "does it in float32 (DESIGN.md §4), which the float64 reference confirms"
)
WD = 0.1


def not_vectors(params):
    """A callable mask (a MASK_TREE would drop the entry from the None-leaf tests)."""
    return {k: np.ndim(v) != 1 for k, v in params.items()}


ENTRIES: list[Entry] = [
    e("scale_by_lion", "scale_by_lion"),
    e("scale_by_lion-b1_b2", "scale_by_lion", b1=0.5, b2=0.8),
    e("scale_by_lion-smooth", "scale_by_lion", mode="smooth", smooth_beta=2.0),
    e("scale_by_lion-refined", "scale_by_lion", mode="refined"),
    _not_optax(
        e("scale_by_lion-mu_bf16", "scale_by_lion", mu_dtype=BF16),
        BF16_MOMENT,
        resync=True,
    ),
    # With trust_coefficient 1 a step moves the scalar leaf by exactly |p| (to 0 or
    # 2p), a chaotic map for 100 steps; 0.1 keeps the test well conditioned.
    e("scale_by_trust_ratio", "scale_by_trust_ratio", trust_coefficient=0.1),
    # A min_norm near the typical leaf norm makes the floor bite on some steps
    # (the scalar leaf's norm is |x|, often below 1).
    e(
        "scale_by_trust_ratio-min_norm",
        "scale_by_trust_ratio",
        min_norm=1.0,
        trust_coefficient=0.1,
    ),
    e(
        "scale_by_trust_ratio-coefficient_eps",
        "scale_by_trust_ratio",
        trust_coefficient=0.01,
        eps=0.5,
    ),
    e("scale_by_param_block_rms", "scale_by_param_block_rms"),
    e("scale_by_param_block_rms-min", "scale_by_param_block_rms", min_scale=1.0),
    e("normalize_by_update_norm", "normalize_by_update_norm"),
    e(
        "normalize_by_update_norm-negative",
        "normalize_by_update_norm",
        scale_factor=-0.5,
        eps=0.1,
    ),
    e("centralize", "centralize"),
    # clipping 0.8: both the clipped and the unclipped branch occur per unit.
    e("adaptive_grad_clip", "adaptive_grad_clip", clipping=0.8),
    e("adaptive_grad_clip-eps", "adaptive_grad_clip", clipping=0.5, eps=2.0),
    e("keep_params_nonnegative", "keep_params_nonnegative"),
    e("fromage", "fromage", learning_rate=0.05),
    e("fromage-schedule", "fromage", learning_rate=lr_schedule, min_norm=0.5),
    e("lamb", "lamb", learning_rate=0.01),
    e("lamb-wd-mask", "lamb", learning_rate=0.01, weight_decay=WD, mask=MASK_TREE),
    e("lars", "lars", learning_rate=0.05),
    e(
        "lars-wd-masks-nesterov",
        "lars",
        learning_rate=lr_schedule,
        weight_decay=WD,
        weight_decay_mask=matrices_only,
        trust_coefficient=0.01,
        eps=1e-3,
        trust_ratio_mask=not_vectors,
        momentum=0.5,
        nesterov=True,
    ),
    e("lion", "lion", learning_rate=0.01),
    e("lion-mask", "lion", learning_rate=lr_schedule, weight_decay=WD, mask=MASK_TREE),
]

NOT_IN_REGISTRY = {
    "scale_by_param_block_norm": (
        "u = g ||p|| with unit steps grows ||p|| ~4x a step: the 100-step reference "
        "run overflows float32; tests/test_catalogue_geometry_steps.py"
    ),
    "apply_every": (
        "count is a phase in [0, k) (optax's layout), not a saturating counter; "
        "tests/test_catalogue_geometry_steps.py"
    ),
    "add_noise": "state holds a PRNG key; tests/test_catalogue_geometry_steps.py",
    "noisy_sgd": "state holds a PRNG key; tests/test_catalogue_geometry_steps.py",
    "scale_by_optimistic_gradient": (
        "state holds a bool flag; tests/test_catalogue_geometry_steps.py"
    ),
    "optimistic_gradient_descent": (
        "state holds a bool flag; tests/test_catalogue_geometry_steps.py"
    ),
    "optimistic_adam": ("deprecated (warns); tests/test_catalogue_geometry_steps.py"),
    "optimistic_adam_v2": (
        "state holds a bool flag; tests/test_catalogue_geometry_steps.py"
    ),
}

REQUIRED = {"clipping": 0.8}
NUMERIC = {
    "min_norm": (NONNEG_BAD, [0.0]),
    "trust_coefficient": (NONNEG_BAD, [0.0]),
    "min_scale": (NONNEG_BAD, [0.0]),
    "scale_factor": (FINITE_BAD, [0.0, -1.0]),
    "clipping": (NONNEG_BAD, [0.0]),
    "smooth_beta": (NONNEG_BAD, [0.0]),
}
NON_NUMERIC = {"mode", "axis", "weight_decay_mask", "trust_ratio_mask"}
