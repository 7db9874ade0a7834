# SPDX-License-Identifier: Apache-2.0
"""Schedules: pure functions `step -> value`; the names are also re-exported flat.

As in `optax.schedules`, the namespace also holds the hyperparameter injection
wrappers and the schedule protocol types.
"""

from gradtx._types import Schedule, StatefulSchedule
from gradtx.schedules._basic import (
    constant_schedule,
    linear_schedule,
    polynomial_schedule,
    warmup_constant_schedule,
)
from gradtx.schedules._cosine import (
    cosine_decay_schedule,
    sgdr_schedule,
    warmup_cosine_decay_schedule,
)
from gradtx.schedules._cyclic import cyclic_schedule
from gradtx.schedules._exponential import (
    exponential_decay,
    warmup_exponential_decay_schedule,
)
from gradtx.schedules._join import join_schedules
from gradtx.schedules._piecewise import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
)
from gradtx.schedules._torch import (
    cosine_restarts_schedule,
    multistep_schedule,
    step_schedule,
    swa_schedule,
)
from gradtx.wrappers._inject import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    WrappedSchedule,
    inject_hyperparams,
    inject_stateful_hyperparams,
)

__all__ = [
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "Schedule",
    "StatefulSchedule",
    "WrappedSchedule",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "cosine_restarts_schedule",
    "cyclic_schedule",
    "exponential_decay",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "multistep_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "step_schedule",
    "swa_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
