# SPDX-License-Identifier: Apache-2.0
"""The one registry of every gradtx transformation and optimizer, and their configs.

Every generic test (conformance, optax parity, counters, checkpoints) iterates over
`REGISTRY`, and `test_conformance.py` fails when a public `GradientTransformation`
factory of `gradtx` has no entry here. Each entry names the public factory, its
keyword arguments, the float64 reference from `_reference.py`, and, where it differs
from the defaults, why.
"""

from __future__ import annotations

import collections
import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry_base import (  # noqa: F401 (re-exported for the test modules)
    AREAS,
    BF16,
    MASK_TREE,
    SHAPES,
    Entry,
    lr_schedule,
    make_grads,
    make_params,
    matrices_only,
    wd_schedule,
)
from _registry_base import e as _e
from _registry_base import not_optax as _not_optax

import gradtx

LR_NONE = (
    "gradtx deliberately flips the sign for learning_rate=None (optax returns the "
    "identity and so ascends, RELIABILITY.md)"
)
BF16_MATH = (
    "optax multiplies the stored bf16 mu by b1 in bf16 (a weakly typed Python float "
    "takes the state's dtype), 4e-3 relative; gradtx does that math in float32 "
    "(DESIGN.md §4), which the float64 reference confirms"
)
NU_DTYPE = "nu_dtype is a gradtx addition (optax#1552)"

BLOCKS = [
    _e("scale", "scale", step_size=0.5),
    _e("scale_by_learning_rate-constant", "scale_by_learning_rate", learning_rate=0.1),
    _e(
        "scale_by_learning_rate-schedule",
        "scale_by_learning_rate",
        learning_rate=lr_schedule,
    ),
    _e(
        "scale_by_learning_rate-ascent",
        "scale_by_learning_rate",
        learning_rate=0.1,
        flip_sign=False,
    ),
    _not_optax(
        _e("scale_by_learning_rate-none", "scale_by_learning_rate", learning_rate=None),
        LR_NONE,
    ),
    _e("scale_by_schedule", "scale_by_schedule", step_size_fn=lr_schedule),
    _e("trace", "trace", decay=0.9),
    _e("trace-nesterov", "trace", decay=0.9, nesterov=True),
    _e("ema-debias", "ema", decay=0.9),
    _e("ema-no-debias", "ema", decay=0.9, debias=False),
    _e("scale_by_adam", "scale_by_adam"),
    _e("scale_by_adam-nesterov", "scale_by_adam", nesterov=True),
    _e("scale_by_adam-eps_root", "scale_by_adam", eps_root=1e-6),
    _not_optax(
        _e("scale_by_adam-mu_bf16", "scale_by_adam", mu_dtype=BF16),
        BF16_MATH,
        resync=True,
    ),
    _not_optax(
        _e("scale_by_adam-mu_nu_bf16", "scale_by_adam", mu_dtype=BF16, nu_dtype=BF16),
        NU_DTYPE,
        resync=True,
    ),
    _e("scale_by_amsgrad", "scale_by_amsgrad"),
    _e(
        "scale_by_amsgrad-no-bias-correction",
        "scale_by_amsgrad",
        bias_correction_mu=False,
        bias_correction_nu=False,
    ),
    _e("scale_by_adamax", "scale_by_adamax"),
    _e("scale_by_rms", "scale_by_rms"),
    _e("scale_by_rms-eps_outside_sqrt", "scale_by_rms", eps_in_sqrt=False),
    _e("scale_by_rms-bias_correction", "scale_by_rms", bias_correction=True),
    _e("scale_by_rms-initial_scale", "scale_by_rms", initial_scale=1.0),
    _e("scale_by_stddev", "scale_by_stddev"),
    _e("scale_by_stddev-eps_outside_sqrt", "scale_by_stddev", eps_in_sqrt=False),
    # With bias correction the first step's variance v̂ - m̂² is exactly 0 in exact
    # arithmetic, so float32 cancellation noise (~1e-7 g²) would dominate eps=1e-8
    # and no implementation can match the reference there; eps=0.1 keeps the test
    # well conditioned while exercising the same code path.
    _e(
        "scale_by_stddev-bias_correction",
        "scale_by_stddev",
        eps=0.1,
        bias_correction=True,
    ),
    _e("scale_by_stddev-initial_scale", "scale_by_stddev", initial_scale=1.0),
    _e("scale_by_rss", "scale_by_rss"),
    _e("scale_by_sign", "scale_by_sign"),
    _e("zero_nans", "zero_nans"),
    _e("add_decayed_weights-constant", "add_decayed_weights", weight_decay=0.1),
    _e("add_decayed_weights-schedule", "add_decayed_weights", weight_decay=wd_schedule),
    _e(
        "add_decayed_weights-mask_tree",
        "add_decayed_weights",
        weight_decay=0.1,
        mask=MASK_TREE,
    ),
    _e(
        "add_decayed_weights-mask_callable",
        "add_decayed_weights",
        weight_decay=0.1,
        mask=matrices_only,
    ),
    _e("clip", "clip", max_delta=0.5),
    # max_norm 4.0 is close to the typical norm of 18 N(0, 1) values, so both the
    # clipped and the unclipped branch are taken during the run.
    _e("clip_by_global_norm", "clip_by_global_norm", max_norm=4.0),
    _e("clip_by_block_rms", "clip_by_block_rms", threshold=0.8),
    _e("identity", "identity"),
    _e("set_to_zero", "set_to_zero"),
]

WD = 0.1  # non-zero weight decay everywhere it applies (RELIABILITY.md, C10)

OPTIMIZERS = [
    _e("sgd", "sgd", learning_rate=0.05),
    _e("sgd-momentum", "sgd", learning_rate=0.05, momentum=0.9),
    _e("sgd-nesterov", "sgd", learning_rate=0.05, momentum=0.9, nesterov=True),
    _e("sgd-schedule", "sgd", learning_rate=lr_schedule, momentum=0.5),
    _e("adagrad", "adagrad", learning_rate=0.1),
    _e("rmsprop", "rmsprop", learning_rate=0.01),
    _e("rmsprop-centered", "rmsprop", learning_rate=0.01, centered=True),
    _e("rmsprop-momentum", "rmsprop", learning_rate=0.01, momentum=0.9),
    _e(
        "rmsprop-nesterov",
        "rmsprop",
        learning_rate=0.01,
        momentum=0.9,
        nesterov=True,
    ),
    _e("rmsprop-eps_outside_sqrt", "rmsprop", learning_rate=0.01, eps_in_sqrt=False),
    _e("rmsprop-bias_correction", "rmsprop", learning_rate=0.01, bias_correction=True),
    _e("adam", "adam", learning_rate=0.01),
    _e("adamw", "adamw", learning_rate=0.01, weight_decay=WD),
    _e(
        "adamw-schedule-mask",
        "adamw",
        learning_rate=lr_schedule,
        weight_decay=WD,
        mask=matrices_only,
    ),
    _e("nadam", "nadam", learning_rate=0.01),
    _e("nadamw", "nadamw", learning_rate=0.01, weight_decay=WD),
    _e("amsgrad", "amsgrad", learning_rate=0.01),
    _e("adamax", "adamax", learning_rate=0.01),
    _e("adamaxw", "adamaxw", learning_rate=0.01, weight_decay=WD),
    _e("sign_sgd", "sign_sgd", learning_rate=0.01),
    _e("signum", "signum", learning_rate=0.01),
]

# One module per area of the catalogue; see `_registry_base.py` for what each holds.
AREA_MODULES = [importlib.import_module(f"_registry_{a}") for a in AREAS]

REGISTRY: list[Entry] = BLOCKS + OPTIMIZERS
for _area in AREA_MODULES:
    REGISTRY += _area.ENTRIES


def merged(attribute: str, base: Any) -> Any:
    """`base` (a dict or set) extended with every area module's `attribute`.

    A name that two sources define differently is an error, not a silent override.
    """
    out = type(base)(base)
    for area in AREA_MODULES:
        extra = getattr(area, attribute, type(base)())
        if isinstance(out, dict):
            clash = [k for k in extra if k in out and repr(out[k]) != repr(extra[k])]
            assert not clash, f"{area.__name__}.{attribute} redefines {clash}"
            out.update(extra)
        else:
            out |= extra
    return out


BY_ID = {e.id: e for e in REGISTRY}
assert len(BY_ID) == len(REGISTRY), "registry ids must be unique"


# --- deterministic data ---


def params_of(entries: list[Entry]) -> list[Any]:
    """`pytest.param`s with the entry ids, for `parametrize`."""
    return [pytest.param(e, id=e.id) for e in entries]


ALL = params_of(REGISTRY)
OPTAX = params_of([e for e in REGISTRY if e.optax])
WITH_COUNT = params_of([e for e in REGISTRY if e.stateful_count])


def to_f64(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def avals(tree: Any) -> Any:
    """Shape, dtype and weak type of every leaf (what decides a retrace)."""
    return jax.tree.map(
        lambda x: (jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False)),
        tree,
    )


def step_fn(tx: gradtx.GradientTransformation) -> Callable[..., Any]:
    """One training step: update, then `apply_updates` (params always passed)."""

    def step(params, state, grads, **extra):
        updates, state = tx.update(grads, state, params, **extra)
        return gradtx.apply_updates(params, updates), state, updates

    return step


@functools.cache
def jitted(entry_id: str) -> tuple[gradtx.GradientTransformation, Any, list[None]]:
    """`(tx, jax.jit(step), traces)` for an entry, built once per process.

    Compilation dominates the suite's run time, so every test module shares one
    jitted step per entry; `traces` grows by one each time the step is traced.
    """
    tx = BY_ID[entry_id].make()
    inner = step_fn(tx)
    traces: list[None] = []

    def step(params, state, grads, **extra):
        traces.append(None)
        return inner(params, state, grads, **extra)

    return tx, jax.jit(step), traces


def stepper(entry: Entry, jit: Any) -> tuple[gradtx.GradientTransformation, Any]:
    """The entry's transform and a step for the `jit` fixture's mode."""
    if jit is jax.jit:
        tx, step, _ = jitted(entry.id)
        return tx, step
    tx = entry.make()
    return tx, step_fn(tx)


class Trajectory:
    """Collects `(actual, expected)` arrays step by step and compares them at the end.

    One vectorized comparison per array instead of one per step keeps 100-step runs
    cheap; a failure still reports the first step and the element that differ.
    """

    def __init__(self) -> None:
        self.actual: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        self.expected: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        self.atol: dict[str, list[float]] = collections.defaultdict(list)
        self.rtol: dict[str, float] = {}

    def add(self, name: str, actual: Any, expected: Any, rtol: float, atol: float):
        self.actual[name].append(np.asarray(actual, np.float64))
        self.expected[name].append(np.asarray(expected, np.float64))
        self.atol[name].append(atol)
        self.rtol[name] = rtol

    def add_tree(self, name: str, actual: Any, expected: Any, rtol: float, scale=None):
        """Adds every leaf, with `atol = rtol * scale` (default: the tree's max, >= 1).

        An absolute tolerance relative to the largest value of the tree, as
        RELIABILITY.md asks for states: an element that passes near zero would
        otherwise be held to a far tighter standard than the float32 math gives.
        """
        if scale is None:
            scale = max(
                float(np.max(np.abs(v), initial=1.0)) for v in expected.values()
            )
        for k in expected:
            self.add(f"{name}[{k!r}]", actual[k], expected[k], rtol, rtol * scale)

    def add_state(self, state: Any, expected: Any, rtol: float, where: str = "state"):
        """Adds every field of a state; counts are compared at once, exactly."""
        if isinstance(expected, tuple):
            assert len(state) == len(expected), where
            for i, (s, e) in enumerate(zip(state, expected, strict=True)):
                self.add_state(s, e, rtol, f"{where}[{i}]")
            return
        assert set(state._fields) == set(expected), f"{where}: {state._fields}"
        for field, value in expected.items():
            got = getattr(state, field)
            if field == "count":
                assert jnp.result_type(got) == jnp.int32, f"{where}.count dtype"
                assert int(got) == value, f"{where}.count: {int(got)} != {value}"
                continue
            # States: rtol relative to the field's largest value (RELIABILITY.md).
            scale = max(float(np.max(np.abs(v), initial=0.0)) for v in value.values())
            self.add_tree(f"{where}.{field}", got, value, rtol, scale)

    def check(self) -> None:
        for name, actual in self.actual.items():
            a, e = np.stack(actual), np.stack(self.expected[name])
            rtol, atol = self.rtol[name], np.asarray(self.atol[name])
            atol_b = atol.reshape((-1,) + (1,) * (a.ndim - 1))
            bad = ~(np.abs(a - e) <= atol_b + rtol * np.abs(e))
            if bad.any():
                step = int(np.argmax(bad.reshape(len(a), -1).any(axis=1)))
                np.testing.assert_allclose(
                    a[step], e[step], rtol, atol[step], err_msg=f"{name} at step {step}"
                )


def state_to_reference(state: Any, template: Any) -> Any:
    """Converts a gradtx state into the reference's format (to resume from it)."""
    if isinstance(template, tuple):
        return tuple(
            state_to_reference(s, t) for s, t in zip(state, template, strict=True)
        )
    return {
        f: int(getattr(state, f)) if f == "count" else to_f64(getattr(state, f))
        for f in template
    }
