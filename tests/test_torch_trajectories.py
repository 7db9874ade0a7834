# SPDX-License-Identifier: Apache-2.0
"""gradtx.torch follows torch.optim's float64 trajectories (tests/data, recorded by
tests/make_torch_trajectories.py from a real torch; see the file's `source`)."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import gradtx.torch

DATA = json.loads(
    (pathlib.Path(__file__).parent / "data" / "torch_trajectories.json").read_text()
)
PROBLEM = {k: np.asarray(v, np.float64) for k, v in DATA["problem"].items()}
CONFIGS = {c["id"]: c for c in DATA["configs"]}
EXACT = [i for i in CONFIGS if not i.endswith("_bf16")]
RTOL, ATOL = 1e-7, 1e-10


def gradient(params):
    """The problem's closed-form gradient (same formula as the generator's)."""
    p = {k: np.asarray(v) for k, v in params.items()}
    a, w = PROBLEM["A"], p["w"]
    g = {"w": a.T @ (a @ w - PROBLEM["B"]) / 6 + 0.05 * w**3}
    if "b" in p:
        g["b"] = PROBLEM["d"] * (p["b"] - PROBLEM["c"])
        g["s"] = 2 * (p["s"] - 0.7)
    return g


def make(config):
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v for k, v in config["kwargs"].items()
    }
    if config["exponential_lr"] is not None:
        kwargs["lr"] = gradtx.exponential_decay(
            kwargs["lr"], 1, config["exponential_lr"]
        )
    return getattr(gradtx.torch, config["name"])(**kwargs)


def replay(config, jit, steps=None, tx=None):
    tx = tx or make(config)
    keys = ["w"] if config["name"] == "muon" else ["w", "b", "s"]
    params = {k: jnp.asarray(PROBLEM[k + "0"]) for k in keys}
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    step = jit(step)
    trajectory = []
    for _ in range(steps or DATA["steps"]):
        grads = {k: jnp.asarray(v) for k, v in gradient(params).items()}
        params, state = step(params, state, grads)
        trajectory.append(params)
    return trajectory, state


@pytest.mark.parametrize("cid", EXACT)
def test_float64_trajectory_matches_torch(cid, jit, x64):
    # Eager mode dispatches each primitive separately; it runs the code jit runs,
    # so its first 4 steps (the first-step buffers and counters) cover it.
    config = CONFIGS[cid]
    steps = DATA["steps"] if jit is jax.jit else 4
    trajectory, state = replay(config, jit, steps)
    expected = config["params"][:steps]
    for t, (ours, theirs) in enumerate(zip(trajectory, expected, strict=True)):
        for k, v in theirs.items():
            np.testing.assert_allclose(
                np.asarray(ours[k]),
                np.asarray(v),
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{cid}: param {k} after step {t + 1}",
            )
    if "ax" in config and steps == DATA["steps"]:
        (ax,) = gradtx.tree.get_all_with_path(state, "ax")
        for k, v in config["ax"].items():
            np.testing.assert_allclose(np.asarray(ax[1][k]), v, rtol=RTOL, atol=ATOL)


def test_muon_follows_torch_bfloat16_newton_schulz_loosely(x64):
    # torch runs Newton-Schulz in bfloat16 (8 bits of mantissa), gradtx in float32
    # or wider: the trajectories agree to bfloat16's precision, not to 1e-7.
    config = CONFIGS["muon_bf16"]
    trajectory, _ = replay(config, jax.jit)
    ours, theirs = (
        np.asarray(trajectory[-1]["w"]),
        np.asarray(config["params"][-1]["w"]),
    )
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-2)
    exact = np.asarray(CONFIGS["muon"]["params"][-1]["w"])
    assert np.max(np.abs(exact - theirs)) > 1e-6  # the cast does change torch's numbers


def test_optax_amsgrad_formula_is_told_apart(x64):
    # The comparison can fail: optax's AMSGrad (max of the bias-corrected second
    # moment) leaves torch's trajectory (max of the raw one) well beyond 1e-7.
    config = CONFIGS["adam_amsgrad"]
    tx = gradtx.amsgrad(0.05, b1=0.8, b2=0.99)
    trajectory, _ = replay(config, jax.jit, tx=tx)
    ours, theirs = np.asarray(trajectory[-1]["w"]), config["params"][-1]["w"]
    assert np.max(np.abs(ours - np.asarray(theirs))) > 1e-3
