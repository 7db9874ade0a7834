# SPDX-License-Identifier: Apache-2.0
"""Registry entries: optax.contrib, part one: parameter-free and Adam variants.

See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _registry_base import Entry, e, lr_schedule, matrices_only, not_optax, wd_schedule

WD = 0.1  # non-zero weight decay wherever it applies (RELIABILITY.md C10)


def b3_schedule(count: Any) -> Any:
    """AdEMAMix's slow decay warmed up from 0.99 towards 0.9999 (jnp and NumPy)."""
    return 0.9999 - 0.0099 * 0.9 ** count.astype(np.float32)


def alpha_schedule(count: Any) -> Any:
    """AdEMAMix's alpha warmed up linearly to 5 over 50 steps."""
    return 5.0 * (count.astype(np.float32) / 50.0).clip(None, 1.0)


def clip_schedule(count: Any) -> Any:
    """A clipping schedule for ADOPT other than the default count**0.25."""
    return 0.5 + 0.1 * count.astype(np.float32)


SCALAR_LEAF = (
    "optax turns a scalar leaf's update into shape (1,) (its per-leaf sum of squares "
    "has shape (1,)); gradtx keeps shape (), compared with optax on a tree without "
    "scalar leaves in tests/test_contrib_a_parity.py"
)

ENTRIES: list[Entry] = [
    e("scale_by_acprop", "scale_by_acprop"),
    e("scale_by_acprop-eps", "scale_by_acprop", eps=1e-8, eps_root=1e-10),
    e("acprop", "acprop", learning_rate=0.01, weight_decay=WD),
    e(
        "acprop-mask",
        "acprop",
        learning_rate=lr_schedule,
        weight_decay=WD,
        mask=matrices_only,
    ),
    e("scale_by_ademamix", "scale_by_ademamix"),
    e(
        "scale_by_ademamix-schedules",
        "scale_by_ademamix",
        b3=b3_schedule,
        alpha=alpha_schedule,
        eps_root=1e-8,
    ),
    e("ademamix", "ademamix", learning_rate=0.01, weight_decay=WD),
    e(
        "ademamix-schedule-mask",
        "ademamix",
        learning_rate=lr_schedule,
        weight_decay=wd_schedule,
        mask=matrices_only,
    ),
    e("scale_by_simplified_ademamix", "scale_by_simplified_ademamix"),
    e(
        "scale_by_simplified_ademamix-alpha",
        "scale_by_simplified_ademamix",
        alpha=alpha_schedule,
        eps_root=1e-8,
    ),
    e(
        "simplified_ademamix",
        "simplified_ademamix",
        learning_rate=0.01,
        alpha=2.0,
        weight_decay=WD,
    ),
    e("scale_by_adopt", "scale_by_adopt"),
    e("scale_by_adopt-nesterov", "scale_by_adopt", nesterov=True),
    e("scale_by_adopt-no-clipping", "scale_by_adopt", use_clipping=False),
    e("scale_by_adopt-clip_schedule", "scale_by_adopt", clip_value_fn=clip_schedule),
    e("adopt", "adopt", learning_rate=0.01),
    e("scale_by_cocob", "scale_by_cocob"),
    e("scale_by_cocob-alpha", "scale_by_cocob", alpha=10.0, eps=1e-3),
    e("cocob", "cocob"),
    e("cocob-wd", "cocob", learning_rate=0.5, weight_decay=WD, mask=matrices_only),
    e("scale_by_madgrad", "scale_by_madgrad", learning_rate=0.01),
    e(
        "scale_by_madgrad-schedule",
        "scale_by_madgrad",
        learning_rate=lr_schedule,
        momentum=0.5,
    ),
    e("madgrad", "madgrad", learning_rate=0.01, weight_decay=WD),
    e("dadapt_adamw", "dadapt_adamw"),
    e(
        "dadapt_adamw-wd",
        "dadapt_adamw",
        learning_rate=lr_schedule,
        betas=(0.8, 0.99),
        estim_lr0=1e-3,
        weight_decay=WD,
    ),
    e("prodigy", "prodigy"),
    e(
        "prodigy-wd",
        "prodigy",
        learning_rate=lr_schedule,
        weight_decay=WD,
        estim_lr0=1e-3,
        estim_lr_coef=0.5,
    ),
    e("prodigy-safeguard", "prodigy", beta3=0.9, safeguard_warmup=True),
    e("dog", "dog"),
    e("dog-distance", "dog", init_step=("distance", 1e-3), weight_decay=WD),
    e(
        "dog-learning_rate",
        "dog",
        learning_rate=lr_schedule,
        init_step=("learning_rate", 0.01),
        weight_decay=WD,
        mask=matrices_only,
    ),
    e("dowg", "dowg"),
    e(
        "dowg-init",
        "dowg",
        learning_rate=0.5,
        init_estim_sq_dist=1e-2,
        eps=1e-6,
        weight_decay=WD,
    ),
    not_optax(
        e("scale_by_distance_over_gradients", "scale_by_distance_over_gradients"),
        SCALAR_LEAF,
    ),
    not_optax(
        e(
            "scale_by_distance_over_gradients-descent",
            "scale_by_distance_over_gradients",
            reps_rel=1e-4,
            global_scale=-1.0,
            param_dtype=np.float32,
        ),
        SCALAR_LEAF,
    ),
]

NOT_IN_REGISTRY = {
    "mechanize": "wrapper of a base optimizer; tests/test_contrib_a_value.py",
    "momo": "needs value=; reference and optax parity in tests/test_contrib_a_value.py",
    "momo_adam": "needs value=; reference and parity in tests/test_contrib_a_value.py",
}

NAN, INF = float("nan"), float("inf")
NONNEG_BAD = [-1e-3, -1.0, NAN, INF, -INF]
POSITIVE_BAD = [0.0, -1.0, NAN, INF]
DECAY_BAD = [-0.1, 1.0, 1.5, NAN, INF]

NUMERIC = {
    "alpha": (NONNEG_BAD, [0.0]),
    "b3": (DECAY_BAD, [0.0]),
    "beta3": (DECAY_BAD, [0.0, None]),
    "estim_lr0": (POSITIVE_BAD, [1e-30]),
    "estim_lr_coef": (NONNEG_BAD, [0.0]),
    "init_estim_sq_dist": (POSITIVE_BAD, [1e-30, None]),
    "reps_rel": (POSITIVE_BAD, [1e-30]),
    "global_scale": ([NAN, INF, -INF], [0.0, -1.0]),
}
DTYPES = {"param_dtype"}
CALLABLES = {"clip_value_fn"}
NON_NUMERIC = {
    "use_clipping",
    "betas",
    "init_step",
    "safeguard_warmup",
}
