# SPDX-License-Identifier: Apache-2.0
"""gradtx: composable gradient transformations for JAX, a drop-in for optax."""

from gradtx import flat, losses, tree
from gradtx._base import (
    EmptyState,
    GradientTransformation,
    identity,
    set_to_zero,
    stateless,
    stateless_with_tree_map,
    with_extra_args_support,
)
from gradtx._combine import chain, named_chain
from gradtx._errors import (
    GradtxError,
    HyperparameterError,
    MissingParamsError,
    MissingValueError,
    TreeMismatchError,
)
from gradtx._numerics import safe_int32_increment
from gradtx._step import make_step
from gradtx._tree import norm as global_norm
from gradtx._types import (
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    TransformInitFn,
    TransformUpdateFn,
    Updates,
)
from gradtx._update import apply_updates, incremental_update, periodic_update
from gradtx.optimizers._adam import adam, adamax, adamaxw, adamw, amsgrad, nadam, nadamw
from gradtx.optimizers._adaptive import adagrad, rmsprop
from gradtx.optimizers._sgd import sgd, sign_sgd, signum
from gradtx.transforms._accumulation import EmaState, TraceState, ema, trace
from gradtx.transforms._adam import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
)
from gradtx.transforms._clipping import clip, clip_by_block_rms, clip_by_global_norm
from gradtx.transforms._constraining import ZeroNansState, zero_nans
from gradtx.transforms._rms import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from gradtx.transforms._scaling import (
    ScaleByScheduleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
    scale_by_sign,
)
from gradtx.transforms._weight_decay import WeightDecaySchedule, add_decayed_weights

# --- schedules (begin) ---
# isort: split
from gradtx import schedules
from gradtx.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cosine_restarts_schedule,
    cyclic_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    multistep_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    step_schedule,
    swa_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)

# --- schedules (end) ---

# --- wrappers: masking and partition (begin) ---
# isort: split
from gradtx.wrappers._conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from gradtx.wrappers._layouts import flatten
from gradtx.wrappers._masking import MaskedNode, MaskedState, freeze, masked
from gradtx.wrappers._partition import (
    MultiTransformState,
    PartitionState,
    multi_transform,
    partition,
    selective_transform,
)

# --- wrappers: masking and partition (end) ---

# --- wrappers: accumulation, finiteness, injection (begin) ---
# isort: split
from gradtx.wrappers._finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers._inject import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
)
from gradtx.wrappers._multisteps import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)

# --- wrappers: accumulation, finiteness, injection (end) ---

# --- precision (begin) ---
# isort: split
from gradtx.precision._loss_scale import (
    LossScaleState,
    loss_scale,
    scale_loss,
    with_loss_scaling,
)
from gradtx.precision._memory import StateBytes, state_bytes
from gradtx.precision._state_dtypes import with_state_dtypes

# --- precision (end) ---

# --- monitoring and plateau (begin) ---
# isort: split
from gradtx import contrib
from gradtx.transforms._statistics import RecordGlobalNormState, record_global_norm
from gradtx.wrappers._monitor import (
    MonitorState,
    SnapshotState,
    measure_with_ema,
    monitor,
    snapshot,
)
from gradtx.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

# --- monitoring and plateau (end) ---

# --- parameter groups (begin) ---
# isort: split
from gradtx.wrappers._groups import ParamGroup, param_group_report, param_groups
from gradtx.wrappers._llrd import decay_mask, scale_by_layer_decay

# --- parameter groups (end) ---

# --- averaging and lr finder (begin) ---
# isort: split
from gradtx._lr_finder import LRFinderResult, lr_finder
from gradtx.wrappers._averaging import (
    EmaParamsState,
    SwaParamsState,
    averaged_params,
    ema_params,
    swa_params,
)

# --- averaging and lr finder (end) ---

# --- catalogue: adaptive moments (begin) ---
# isort: split
from gradtx.optimizers._moments import (
    adabelief,
    adadelta,
    adafactor,
    adan,
    novograd,
    radam,
    rprop,
    sm3,
    yogi,
)
from gradtx.transforms._moments import (
    ScaleByAdaDeltaState,
    ScaleByBeliefState,
    scale_by_adadelta,
    scale_by_belief,
    scale_by_radam,
    scale_by_yogi,
)
from gradtx.transforms._moments_factored import (
    FactoredState,
    ScaleBySM3State,
    scale_by_factored_rms,
    scale_by_sm3,
)
from gradtx.transforms._moments_other import (
    ScaleByAdanState,
    ScaleByNovogradState,
    ScaleByRpropState,
    scale_by_adan,
    scale_by_novograd,
    scale_by_rprop,
)

# --- catalogue: adaptive moments (end) ---

# --- catalogue: sign, trust ratio, clipping, noise, projections (begin) ---
# isort: split
from gradtx import projections
from gradtx.optimizers._geometry import (
    fromage,
    lamb,
    lars,
    lion,
    noisy_sgd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from gradtx.transforms._geometry import (
    NonNegativeParamsState,
    ScaleByLionState,
    centralize,
    keep_params_nonnegative,
    normalize_by_update_norm,
    scale_by_lion,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_trust_ratio,
)
from gradtx.transforms._geometry_clip import (
    adaptive_grad_clip,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_clip,
    unitwise_norm,
)
from gradtx.transforms._geometry_steps import (
    AddNoiseState,
    ApplyEvery,
    ScaleByOptimisticGradientState,
    add_noise,
    apply_every,
    scale_by_optimistic_gradient,
)

# --- catalogue: sign, trust ratio, clipping, noise, projections (end) ---

# --- catalogue: L-BFGS, line searches, Polyak (begin) ---
# isort: split
from gradtx.optimizers._lbfgs import lbfgs
from gradtx.optimizers._polyak import polyak_sgd
from gradtx.transforms._lbfgs import ScaleByLBFGSState, scale_by_lbfgs
from gradtx.transforms._linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
    value_and_grad_from_state,
)
from gradtx.transforms._linesearch_zoom import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_zoom_linesearch,
)
from gradtx.transforms._polyak import scale_by_polyak

# --- catalogue: L-BFGS, line searches, Polyak (end) ---

# --- contrib: parameter-free and Adam variants (begin) ---
# isort: split
from gradtx.contrib._adam_variants import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from gradtx.contrib._adam_variants_async import (
    acprop,
    adopt,
    scale_by_acprop,
    scale_by_adopt,
)
from gradtx.contrib._pf_cocob_madgrad import (
    COCOBState,
    MadgradState,
    cocob,
    madgrad,
    scale_by_cocob,
    scale_by_madgrad,
)
from gradtx.contrib._pf_dadapt import (
    DAdaptAdamWState,
    ProdigyState,
    dadapt_adamw,
    prodigy,
)
from gradtx.contrib._pf_dog import (
    DoGState,
    DoWGState,
    ScaleByDistanceOverGradientsState,
    dog,
    dowg,
    scale_by_distance_over_gradients,
)
from gradtx.contrib._pf_mechanic import MechanicState, mechanize
from gradtx.contrib._pf_momo import MomoAdamState, MomoState, momo, momo_adam

# --- contrib: parameter-free and Adam variants (end) ---

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (begin) ---
# isort: split
from gradtx.contrib._complex import (
    SplitRealAndImaginaryState,
    split_real_and_imaginary,
)
from gradtx.contrib._galore import (
    GaLoreDimensionNumbers,
    GaLoreState,
    galore,
    scale_by_galore,
)
from gradtx.contrib._muon import MuonDimensionNumbers, MuonState, muon, scale_by_muon
from gradtx.contrib._privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
)
from gradtx.contrib._sam import NormalizeState, SAMState, normalize, sam
from gradtx.contrib._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradtx.contrib._sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    sophia,
)
from gradtx.wrappers._lookahead import LookaheadParams, LookaheadState, lookahead

# --- contrib: galore, muon, sam, schedule-free, sophia, dp, lookahead (end) ---

# --- torch porting layer and SOAP (begin) ---
# isort: split
from gradtx import torch
from gradtx.optimizers._soap import soap
from gradtx.transforms._soap import ScaleBySoapState, scale_by_soap

# --- torch porting layer and SOAP (end) ---

# --- precision: master weights, rounding, 8-bit states (begin) ---
# isort: split
from gradtx.optimizers._eightbit import (
    adam8bit,
    adamw8bit,
    lion8bit,
    rmsprop8bit,
    sgd8bit,
)
from gradtx.precision._master import MasterWeightsState, master_weights
from gradtx.precision._quantize import QuantizedArray, dequantize_state, quantize_state
from gradtx.precision._rounding import apply_updates_stochastic

# --- precision: master weights, rounding, 8-bit states (end) ---

# --- scale-out: sharding and ZeRO-1 (begin) ---
# isort: split
from gradtx.sharding import MemoryKindError, bytes_per_device, host_offload, zero1

# --- scale-out: sharding and ZeRO-1 (end) ---

# --- drop-in: tree utilities (begin) ---
# isort: split
from gradtx import tree_utils
from gradtx.tree import map_params as tree_map_params

# --- drop-in: tree utilities (end) ---

# --- drop-in: losses, classification and divergences (begin) ---
# isort: split
from gradtx.losses import (
    convex_kl_divergence,
    generalized_kl_divergence,
    hinge_loss,
    kl_divergence,
    ntxent,
    safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

# --- drop-in: losses, classification and divergences (end) ---

# --- drop-in: losses, regression, similarity, CTC, dice (begin) ---
# isort: split
from gradtx.losses import (
    cosine_distance,
    cosine_similarity,
    ctc_loss,
    ctc_loss_with_forward_probs,
    huber_loss,
    l2_loss,
    log_cosh,
    squared_error,
)

# --- drop-in: losses, regression, similarity, CTC, dice (end) ---

# --- drop-in: protocol, state classes and numerics helpers (begin) ---
# isort: split
from gradtx._base import (
    AdaptiveGradClipState,
    AddDecayedWeightsState,
    ClipByGlobalNormState,
    ClipState,
    GradientTransformationExtraArgs,
    ScaleByTrustRatioState,
    ScaleState,
    init_empty_state,
)
from gradtx._linear_algebra import matrix_inverse_pth_root, power_iteration
from gradtx._moment_trees import (
    bias_correction,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from gradtx._numerics import safe_increment, safe_norm, safe_root_mean_squares
from gradtx._types import MaskOrFn, TransformUpdateExtraArgsFn
from gradtx._utils import multi_normal, scale_gradient

# --- drop-in: protocol, state classes and numerics helpers (end) ---

# --- drop-in: second_order, perturbations, assignment, microbatching (begin) ---
# isort: split
from gradtx import assignment, microbatching, perturbations, second_order
from gradtx._nnls import nnls
from gradtx.microbatching import microbatch

# --- drop-in: second_order, perturbations, assignment, microbatching (end) ---

from gradtx import experimental  # isort: skip  (optax.experimental, as in optax)

__version__ = "0.1.0.dev0"
