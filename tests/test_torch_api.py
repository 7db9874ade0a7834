# SPDX-License-Identifier: Apache-2.0
"""gradtx.torch: torch's signatures, torch-style validation, dtypes and jit."""

from __future__ import annotations

import inspect
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import gradtx.torch

SIGNATURES = json.loads(
    (pathlib.Path(__file__).parent / "data" / "torch_trajectories.json").read_text()
)["signatures"]
NAN, INF = float("nan"), float("inf")
NEG = [-1e-3, NAN, INF]


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


@pytest.mark.parametrize("name", gradtx.torch.__all__)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(gradtx.torch, name)).parameters.values()
    theirs = SIGNATURES[name]
    assert [p.name for p in ours] == [t[0] for t in theirs]
    for p, (_, keyword_only, default) in zip(ours, theirs, strict=True):
        assert _plain(p.default) == default, p.name
        # torch's `maximize` is positional only after `foreach`/`capturable`, which
        # gradtx has no use for: there it is keyword-only.
        if p.kind != p.KEYWORD_ONLY:
            assert not keyword_only, p.name


def test_all_lists_every_public_function():
    public = {
        n
        for n, f in vars(gradtx.torch).items()
        if callable(f) and not n.startswith("_")
    }
    assert public == set(gradtx.torch.__all__)


# (function, argument, bad values); every numeric argument of every function.
BAD = [
    *[(n, "lr", [-1.0, NAN, INF]) for n in gradtx.torch.__all__],
    *[
        (n, "weight_decay", NEG)
        for n in gradtx.torch.__all__
        if "weight_decay" in inspect.signature(getattr(gradtx.torch, n)).parameters
    ],
    *[
        (n, "eps", NEG)
        for n in ("adam", "adamw", "adamax", "nadam", "radam", "adagrad", "adadelta")
    ],
    *[(n, "eps", NEG) for n in ("rmsprop", "muon")],
    *[
        (n, "betas", [(1.0, 0.9), (0.9, -0.1), (NAN, 0.9), (0.9,)])
        for n in ("adam", "adamw", "adamax", "nadam", "radam")
    ],
    ("sgd", "momentum", NEG),
    ("sgd", "dampening", [NAN, INF]),
    ("adagrad", "lr_decay", NEG),
    ("adagrad", "initial_accumulator_value", NEG),
    ("adadelta", "rho", [-0.1, 1.5, NAN]),
    ("nadam", "momentum_decay", NEG),
    ("rmsprop", "alpha", [-0.1, 1.0, NAN]),
    ("rmsprop", "momentum", NEG),
    ("rprop", "etas", [(1.0, 1.2), (0.5, 1.0), (0.0, 1.2), (0.5,)]),
    ("rprop", "step_sizes", [(-1.0, 1.0), (0.0, NAN)]),
    ("asgd", "lambd", NEG),
    ("asgd", "alpha", NEG),
    ("asgd", "t0", NEG),
    ("adafactor", "beta2_decay", [0.5, NAN]),
    ("adafactor", "eps", [(-1.0, 1e-3), (None, -1.0), (1e-3,)]),
    ("adafactor", "d", [0.5, NAN]),
    ("muon", "momentum", NEG),
    ("muon", "ns_coefficients", [(1.0, 2.0), (1.0, NAN, 2.0)]),
    ("muon", "ns_steps", [0, 100, 2.5]),
    ("muon", "adjust_lr_fn", ["sqrt"]),
]


@pytest.mark.parametrize(
    ("name", "arg", "value"),
    [
        pytest.param(n, a, v, id=f"{n}-{a}={v!r}")
        for n, a, values in BAD
        for v in values
    ],
)
def test_bad_value_raises_naming_function_argument_and_value(name, arg, value):
    with pytest.raises(gradtx.HyperparameterError) as info:
        getattr(gradtx.torch, name)(**{arg: value})
    message = str(info.value)
    assert message.startswith(f"gradtx.torch.{name}: {arg}")
    parts = list(value) if isinstance(value, tuple) else []
    assert any(repr(v) in message for v in [value, *parts])


def test_every_numeric_argument_is_validated():
    switches = {"nesterov", "amsgrad", "maximize", "decoupled_weight_decay", "centered"}
    checked = {(n, a) for n, a, _ in BAD}
    for name in gradtx.torch.__all__:
        for arg in inspect.signature(getattr(gradtx.torch, name)).parameters:
            assert arg in switches or (name, arg) in checked, (name, arg)


def test_nesterov_needs_momentum_and_no_dampening_as_in_torch():
    with pytest.raises(
        gradtx.HyperparameterError, match=r"gradtx\.torch\.sgd: nesterov"
    ):
        gradtx.torch.sgd(momentum=0.0, nesterov=True)
    with pytest.raises(gradtx.HyperparameterError, match=r"dampening=0\.1"):
        gradtx.torch.sgd(momentum=0.9, dampening=0.1, nesterov=True)


def test_rprop_and_asgd_reject_a_schedule_for_lr():
    for name in ("rprop", "asgd"):
        with pytest.raises(gradtx.HyperparameterError, match=f"torch.{name}: lr"):
            getattr(gradtx.torch, name)(lr=lambda count: 0.1)


def test_muon_rejects_params_that_are_not_matrices():
    tx = gradtx.torch.muon()
    with pytest.raises(ValueError, match=r"gradtx\.torch\.muon: only 2-D"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)), jnp.ones(3))


def _params(dtype, name):
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3)} if name == "muon" else {"w": (4, 3), "b": (5,), "s": ()}
    return {k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in shapes.items()}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", gradtx.torch.__all__)
def test_jitted_updates_keep_dtype_and_do_not_retrace(name, dtype):
    tx = getattr(gradtx.torch, name)()
    params = _params(dtype, name)
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jax.tree.map(lambda p: jnp.sin(p) + p, params)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, updates

    for _ in range(3):
        new_params, new_state, updates = step(params, state)
        assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(
            lambda x: x.dtype, state
        )
        params, state = new_params, new_state
    assert len(traces) == 1
    for k, u in updates.items():
        assert u.dtype == jnp.dtype(dtype)
        assert math.isfinite(float(jnp.max(jnp.abs(u.astype(jnp.float32))))), k


@pytest.mark.parametrize("name", gradtx.torch.__all__)
def test_traced_lr_and_weight_decay_need_no_recompile(name):
    params = _params(jnp.float32, name)
    grads = jax.tree.map(jnp.cos, params)
    has_wd = "weight_decay" in inspect.signature(getattr(gradtx.torch, name)).parameters

    @jax.jit
    def step(lr, wd):
        kwargs = {"lr": lr, **({"weight_decay": wd} if has_wd else {})}
        tx = getattr(gradtx.torch, name)(**kwargs)
        return tx.update(grads, tx.init(params), params)[0]

    small = step(jnp.float32(1e-3), jnp.float32(0.0))
    large = step(jnp.float32(1e-2), jnp.float32(0.1))
    assert step._cache_size() == 1
    assert any(
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(large), strict=True)
    )
