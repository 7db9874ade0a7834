# SPDX-License-Identifier: Apache-2.0
"""Registry entries: Adaptive-moment blocks and optimizers (adadelta ... adafactor).

See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

from _registry_base import MASK_TREE, Entry, e, lr_schedule, matrices_only, not_optax

LR_NONE = (
    "gradtx deliberately flips the sign for learning_rate=None (optax returns the "
    "identity and so ascends, RELIABILITY.md)"
)
RPROP = (
    "optax returns the previous step's update (zero on step 1; optax PR #1725); "
    "gradtx returns this step's, which is optax's own stored prev_updates "
    "(tests/test_catalogue_adaptive.py)"
)
RADAM = (
    "optax computes rho_t = rho_inf - 2t b2^t/(1-b2^t) with float32 cancellation "
    "(up to 0.7% error in r_t at b2=0.999); gradtx's rho_t is float32-accurate, the "
    "float64 reference confirms (tests/test_catalogue_adaptive.py)"
)
WD = 0.1

ENTRIES: list[Entry] = [
    # --- AdaDelta ---
    e("scale_by_adadelta", "scale_by_adadelta"),
    e("scale_by_adadelta-rho0-eps", "scale_by_adadelta", rho=0.5, eps=1e-3),
    e("adadelta-lr", "adadelta", learning_rate=1.0),
    e(
        "adadelta-weight_decay-mask",
        "adadelta",
        learning_rate=lr_schedule,
        weight_decay=WD,
        weight_decay_mask=matrices_only,
    ),
    not_optax(e("adadelta-none", "adadelta"), LR_NONE),
    # --- AdaBelief ---
    e("scale_by_belief", "scale_by_belief"),
    e("scale_by_belief-eps_root", "scale_by_belief", eps=1e-8, eps_root=1e-6),
    e("scale_by_belief-nesterov", "scale_by_belief", nesterov=True),
    e("adabelief", "adabelief", learning_rate=0.01),
    e("adabelief-nesterov", "adabelief", learning_rate=0.01, nesterov=True),
    # --- Yogi ---
    e("scale_by_yogi", "scale_by_yogi"),
    e("scale_by_yogi-eps_root", "scale_by_yogi", eps_root=1e-6, eps=1e-6),
    e("scale_by_yogi-init0", "scale_by_yogi", initial_accumulator_value=0.0),
    e("yogi", "yogi", learning_rate=0.01),
    # --- RAdam: rho_t passes 5 at step 6 (b2=0.999), so both branches run; with
    # threshold 1000 only the momentum branch; b2=0.9 (rho_inf = 19) saturates ---
    not_optax(e("scale_by_radam", "scale_by_radam"), RADAM),
    not_optax(
        e("scale_by_radam-momentum-only", "scale_by_radam", threshold=1000.0), RADAM
    ),
    e("scale_by_radam-b2_0.9", "scale_by_radam", b2=0.9, eps_root=1e-8),
    not_optax(e("scale_by_radam-nesterov", "scale_by_radam", nesterov=True), RADAM),
    not_optax(e("radam", "radam", learning_rate=0.01), RADAM),
    e("radam-b2_0.9-nesterov", "radam", learning_rate=0.01, b2=0.9, nesterov=True),
    # --- Adan ---
    e("scale_by_adan", "scale_by_adan"),
    e("scale_by_adan-eps_root", "scale_by_adan", eps_root=1e-6, b2=0.5),
    e("adan", "adan", learning_rate=0.01),
    e(
        "adan-weight_decay-mask",
        "adan",
        learning_rate=0.01,
        weight_decay=WD,
        mask=MASK_TREE,
    ),
    # --- NovoGrad ---
    e("scale_by_novograd", "scale_by_novograd"),
    e(
        "scale_by_novograd-weight_decay",
        "scale_by_novograd",
        weight_decay=WD,
        eps_root=1e-6,
    ),
    e("novograd", "novograd", learning_rate=0.01),
    e("novograd-weight_decay", "novograd", learning_rate=0.01, weight_decay=WD),
    # --- Rprop: N(0, 1) gradients change sign about every other step, so growth,
    # shrinkage, the zeroed step and the clip at max_step_size all occur ---
    not_optax(e("scale_by_rprop", "scale_by_rprop", learning_rate=0.1), RPROP),
    not_optax(
        e(
            "scale_by_rprop-clipped",
            "scale_by_rprop",
            learning_rate=0.1,
            eta_plus=2.0,
            eta_minus=0.1,
            min_step_size=0.01,
            max_step_size=0.3,
        ),
        RPROP,
    ),
    not_optax(e("rprop", "rprop", learning_rate=0.01), RPROP),
    # --- Adafactor: min_dim 3 factors the (4, 3) matrix; the default does not ---
    e("scale_by_factored_rms", "scale_by_factored_rms"),
    e(
        "scale_by_factored_rms-factored",
        "scale_by_factored_rms",
        min_dim_size_to_factor=3,
    ),
    e("adafactor", "adafactor", learning_rate=0.01),
    e("adafactor-factored", "adafactor", learning_rate=0.01, min_dim_size_to_factor=3),
    e(
        "adafactor-momentum-wd",
        "adafactor",
        learning_rate=0.01,
        min_dim_size_to_factor=2,
        momentum=0.9,
        weight_decay_rate=WD,
        weight_decay_mask=matrices_only,
    ),
    e(
        "adafactor-plain",
        "adafactor",
        learning_rate=lr_schedule,
        multiply_by_parameter_scale=False,
        clipping_threshold=None,
        factored=False,
        decay_rate=0.5,
        eps=1e-3,
    ),
    e("adafactor-no-lr", "adafactor", clipping_threshold=0.5),
]

DECAY_BAD = [-0.1, 1.0, 1.5, float("nan"), float("inf")]
NONNEG_BAD = [-1e-3, -1.0, float("nan"), float("inf"), float("-inf")]

NOT_IN_REGISTRY = {
    "scale_by_sm3": "ragged per-axis state the shared Trajectory cannot compare; "
    "tests/test_catalogue_adaptive_sm3.py",
    "sm3": "as scale_by_sm3; tests/test_catalogue_adaptive_sm3.py",
}

NUMERIC = {
    "rho": (DECAY_BAD, [0.0]),
    "b3": (DECAY_BAD, [0.0]),
    "decay_rate": (NONNEG_BAD, [0.0]),
    "step_offset": (NONNEG_BAD, [0, 0.0]),
    "decay_offset": (NONNEG_BAD, [0, 0.0]),
    "epsilon": (NONNEG_BAD, [0.0]),
    "eta_minus": ([-0.1, 1.5, float("nan"), float("inf")], [0.0, 1.0]),
    "eta_plus": ([0.9, -1.0, float("nan"), float("inf")], [1.0]),
    "min_step_size": (NONNEG_BAD, [0.0]),
    # max_step_size >= min_step_size (1e-6 by default)
    "max_step_size": ([1e-7, *NONNEG_BAD], [1e-6]),
    "clipping_threshold": (NONNEG_BAD, [0.0]),
    "weight_decay_rate": (NONNEG_BAD, [0.0]),
    "min_scale": (NONNEG_BAD, [0.0]),
}
# sm3's accumulator decay b2 may be 1 (the paper's sum); adafactor's momentum is
# checked as a decay in [0, 1) although the block it builds (`ema`) allows 1.
OVERRIDES = {
    ("scale_by_sm3", "b2"): ([-0.1, 1.5, float("nan"), float("inf")], [0.0, 1.0]),
}
DTYPES = {"dtype_momentum"}
DTYPE_CONTEXT = {"adafactor": {"momentum": 0.9}}
CALLABLES = {"decay_rate_fn"}
NON_NUMERIC = {
    "factored",
    "multiply_by_parameter_scale",
    "min_dim_size_to_factor",  # a shape threshold (Python int), tested on its own
    "weight_decay_mask",
}
SCHEDULABLE = {"weight_decay_rate"}
