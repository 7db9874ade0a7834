# SPDX-License-Identifier: Apache-2.0
"""`gradtx.transforms`: the names of `optax.transforms`, the same objects as `gradtx.X`.

Building blocks live in this package's private modules and are re-exported flat from
`gradtx`; this namespace exists so that `optax.transforms.X` code runs unchanged.
"""

from gradtx._combine import chain, named_chain
from gradtx._types import ConditionFn
from gradtx.transforms._accumulation import EmaState, TraceState, ema, trace
from gradtx.transforms._clipping import clip, clip_by_block_rms, clip_by_global_norm
from gradtx.transforms._constraining import ZeroNansState, zero_nans
from gradtx.transforms._geometry import NonNegativeParamsState, keep_params_nonnegative
from gradtx.transforms._geometry_clip import (
    adaptive_grad_clip,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_clip,
    unitwise_norm,
)
from gradtx.transforms._geometry_steps import AddNoiseState, add_noise
from gradtx.transforms._weight_decay import add_decayed_weights
from gradtx.wrappers._conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from gradtx.wrappers._finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers._layouts import flatten
from gradtx.wrappers._masking import MaskedNode, MaskedState, freeze, masked
from gradtx.wrappers._monitor import (
    MonitorState,
    SnapshotState,
    measure_with_ema,
    monitor,
    snapshot,
)
from gradtx.wrappers._multisteps import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)
from gradtx.wrappers._partition import PartitionState, partition, selective_transform

__all__ = [
    "AddNoiseState",
    "ApplyIfFiniteState",
    "ConditionFn",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaState",
    "MaskedNode",
    "MaskedState",
    "MonitorState",
    "MultiSteps",
    "MultiStepsState",
    "NonNegativeParamsState",
    "PartitionState",
    "ShouldSkipUpdateFunction",
    "SnapshotState",
    "TraceState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "apply_if_finite",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "conditionally_mask",
    "conditionally_transform",
    "ema",
    "flatten",
    "freeze",
    "keep_params_nonnegative",
    "masked",
    "measure_with_ema",
    "monitor",
    "named_chain",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "selective_transform",
    "skip_large_updates",
    "skip_not_finite",
    "snapshot",
    "trace",
    "unitwise_clip",
    "unitwise_norm",
    "zero_nans",
]
