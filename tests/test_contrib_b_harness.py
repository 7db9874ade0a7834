# SPDX-License-Identifier: Apache-2.0
"""Shared by the test_contrib_b* modules: wrapper references, a runner, a comparator.

The names of this area that wrap an inner optimizer, need extra update arguments,
per-example gradients or complex params are not in the registry (NOT_IN_REGISTRY in
`_registry_contrib_b.py`); these helpers check them against their float64
references (eager and under jit) and against optax. The references of the wrappers
(SAM, schedule-free, lookahead) live here, those of the rest in
`_reference_contrib_b.py`; none calls gradtx or optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from _reference import AddDecayedWeights, Chain, Rms, scale_by_learning_rate
from _reference_base import Reference, hp, increment, tmap

import gradtx

RTOL = 1e-5

# --- SAM (Foret et al., 2021) ---


class Sam(Reference):
    """Ascent steps p + rho g/||g|| (via adv), then the outer step from the cache."""

    def __init__(
        self,
        optimizer,
        adv_optimizer,
        sync_period=2,
        reset_state=True,
        opaque_mode=False,
    ):
        self.opt, self.adv, self.k = optimizer, adv_optimizer, sync_period
        self.reset, self.opaque = reset_state, opaque_mode

    def init(self, params):
        return {
            "steps_since_sync": 0,
            "opt_state": self.opt.init(params),
            "adv_state": self.adv.init(params),
            "cache": None if self.opaque else dict(params),
        }

    def update(self, grads, state, params=None, grad_fn=None):
        if self.opaque:
            return self._opaque(grads, state, params, grad_fn)
        s, last = state["steps_since_sync"], state["steps_since_sync"] == self.k - 1
        cache = dict(params) if s == 0 else state["cache"]
        new = dict(state, steps_since_sync=(s + 1) % self.k, cache=cache)
        if not last:
            a, new["adv_state"] = self.adv.update(grads, state["adv_state"], params)
            return tmap(lambda x: -x, a), new
        o, new["opt_state"] = self.opt.update(grads, state["opt_state"], state["cache"])
        new["adv_state"] = self.adv.init(params) if self.reset else state["adv_state"]
        u = tmap(lambda c, p, u: c - p + u, state["cache"], params, o)
        return u, new

    def _opaque(self, grads, state, params, grad_fn):
        p, g, adv_state = dict(params), grads, state["adv_state"]
        for i in range(self.k - 1):
            a, adv_state = self.adv.update(g, adv_state, p)
            p = tmap(lambda p, a: np.float32(p - a).astype(np.float64), p, a)
            g = grad_fn(p, i)
        if self.reset:
            adv_state = self.adv.init(params)
        u, opt_state = self.opt.update(g, state["opt_state"], params)
        return u, {
            "steps_since_sync": 0,
            "opt_state": opt_state,
            "adv_state": adv_state,
            "cache": None,
        }


sam = Sam

# --- Schedule-free (Defazio et al., 2024) ---


class ScheduleFree(Reference):
    """z' = z + base(g);  x' = (1-c) x + c z';  y' = b1 x' + (1-b1) z'."""

    def __init__(self, base_optimizer, learning_rate, b1=0.9, weight_lr_power=2.0):
        self.base, self.lr, self.b1, self.pw = (
            base_optimizer,
            learning_rate,
            hp(b1),
            hp(weight_lr_power),
        )

    def init(self, params):
        return {
            "b1": self.b1,
            "weight_sum": 0.0,
            "step_count": 1,
            "max_lr": 0.0,
            "base_optimizer_state": self.base.init(params),
            "z": dict(params),
        }

    def update(self, grads, state, params=None):
        lr = self.lr(np.int64(state["step_count"])) if callable(self.lr) else self.lr
        max_lr = max(state["max_lr"], hp(lr))
        w = max_lr**self.pw
        total = state["weight_sum"] + w
        c = w / total if total > 0 else 0.0
        u, base_state = self.base.update(grads, state["base_optimizer_state"], params)
        b, z_old = self.b1, state["z"]
        z = tmap(lambda z, u: z + u, z_old, u)
        x = tmap(
            lambda y, zo, zn: (1 - c) * (y - (1 - b) * zo) / b + c * zn,
            params,
            z_old,
            z,
        )
        new = tmap(lambda x, z, y: b * x + (1 - b) * z - y, x, z, params)
        return new, {
            "b1": b,
            "weight_sum": total,
            "step_count": increment(state["step_count"]),
            "max_lr": max_lr,
            "base_optimizer_state": base_state,
            "z": z,
        }


def _warmup(lr, warmup_steps):
    if warmup_steps is None:
        return lr
    return lambda t: hp(lr) * min(float(t), warmup_steps) / warmup_steps


def schedule_free_sgd(
    learning_rate=1.0, warmup_steps=None, b1=0.9, weight_decay=None, weight_lr_power=2.0
):
    from _reference import Identity

    lr = _warmup(learning_rate, warmup_steps)
    base = Chain(Identity(), scale_by_learning_rate(lr))
    if weight_decay is not None:
        base = Chain(AddDecayedWeights(weight_decay), base)
    return ScheduleFree(base, lr, b1, weight_lr_power)


def schedule_free_adamw(
    learning_rate=0.0025,
    warmup_steps=None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    weight_lr_power=2.0,
):
    lr = _warmup(learning_rate, warmup_steps)
    base = Chain(
        Rms(b2, eps, 0.0, False, True),
        AddDecayedWeights(weight_decay),
        scale_by_learning_rate(lr),
    )
    return ScheduleFree(base, lr, b1, weight_lr_power)


# --- Lookahead (Zhang et al., 2019) ---


class Lookahead(Reference):
    """k fast steps; then slow += a (fast - slow) and fast = slow."""

    def __init__(self, fast_optimizer, sync_period, slow_step_size, reset_state=False):
        self.fast, self.k, self.a, self.reset = (
            fast_optimizer,
            sync_period,
            hp(slow_step_size),
            reset_state,
        )

    def init(self, params):
        return {"fast_state": self.fast.init(params.fast), "steps_since_sync": 0}

    def update(self, grads, state, params=None):
        u, fs = self.fast.update(grads, state["fast_state"], params.fast)
        s = state["steps_since_sync"]
        if s == self.k - 1:
            diff = tmap(lambda f, u, s: f + u - s, params.fast, u, params.slow)
            slow = tmap(lambda d: self.a * d, diff)
            fast = tmap(lambda u, d: u - (1 - self.a) * d, u, diff)
            fs = self.fast.init(params.fast) if self.reset else fs
        else:
            slow, fast = tmap(lambda u: 0.0 * u, u), u
        return type(params)(fast=fast, slow=slow), {
            "fast_state": fs,
            "steps_since_sync": (s + 1) % self.k,
        }


lookahead = Lookahead


# --- runner and comparator ---


def to64(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: (
            x
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            else np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)
        ),
        tree,
    )


def close(got: Any, exp: Any, where: str, rtol: float = RTOL) -> None:
    """`got` (gradtx) equals `exp` (reference) within rtol, atol = rtol * max."""
    if exp is None:
        assert got is None or jax.tree.leaves(got) == [], where
    elif isinstance(exp, tuple) and not hasattr(exp, "_fields"):
        assert len(got) == len(exp), where
        for i, (g, e) in enumerate(zip(got, exp, strict=True)):
            close(g, e, f"{where}[{i}]", rtol)
    elif isinstance(exp, dict) or hasattr(exp, "_fields"):
        items = exp.items() if isinstance(exp, dict) else exp._asdict().items()
        for k, e in items:
            g = got[k] if isinstance(got, dict) else getattr(got, k)
            close(g, e, f"{where}.{k}", rtol)
    elif isinstance(exp, int) and not isinstance(exp, bool):
        assert int(got) == exp, f"{where}: {int(got)} != {exp}"
    elif isinstance(exp, jax.Array) and jax.dtypes.issubdtype(
        exp.dtype, jax.dtypes.prng_key
    ):
        np.testing.assert_array_equal(
            jax.random.key_data(got), jax.random.key_data(exp)
        )
    else:
        e = np.asarray(exp)
        atol = rtol * max(1.0, float(np.max(np.abs(e), initial=0.0)))
        np.testing.assert_allclose(np.asarray(got), e, rtol, atol, err_msg=where)


def run_reference(
    tx: gradtx.GradientTransformation,
    ref: Any,
    params: Any,
    grads: list[Any],
    jit: Callable[..., Any],
    *,
    extra: Callable[[bool], dict[str, Any]] = lambda is_ref: {},
    check_state: bool = True,
    rtol: float = RTOL,
) -> None:
    """Steps `tx` (through `jit`) and the float64 `ref` side by side, step by step.

    The reference keeps float32 params (as `_registry` does), float64 math.
    """
    step = jit(lambda p, s, g: tx.update(g, s, p, **extra(False)))
    state, rparams = tx.init(params), to64(params)
    rstate = ref.init(rparams)
    for i, g in enumerate(grads):
        u, state = step(params, state, g)
        ru, rstate = ref.update(to64(g), rstate, rparams, **extra(True))
        params = gradtx.apply_updates(params, u)
        rparams = jax.tree.map(_round32, rparams, ru)
        close(u, ru, f"updates at step {i}", rtol)
        close(params, rparams, f"params at step {i}", rtol)
        if check_state:
            close(state, rstate, f"state at step {i}", rtol)


def run_both(
    tx: Any,
    otx: Any,
    params: Any,
    grads: list[Any],
    extra=None,
    rtol=RTOL,
    oparams=None,
    jit=False,
) -> None:
    """`tx` and optax's `otx` give the same updates, params and state leaves.

    `oparams`: optax's own container of the same params (e.g. its LookaheadParams).
    """
    import optax

    extra = extra or {}
    op = params if oparams is None else oparams
    s, os_ = tx.init(params), otx.init(op)
    p = params
    ours = lambda g, s, p: tx.update(g, s, p, **extra)
    theirs = lambda g, s, p: otx.update(g, s, p, **extra)
    if jit:  # extra arguments (functions) are closed over, not traced
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    for i, g in enumerate(grads):
        u, s = ours(g, s, p)
        ou, os_ = theirs(g, os_, op)
        p, op = gradtx.apply_updates(p, u), optax.apply_updates(op, ou)
        close(u, jax.tree.map(np.asarray, ou), f"updates at step {i}", rtol)
        close(p, jax.tree.map(np.asarray, op), f"params at step {i}", rtol)
        ls = [x for x in jax.tree.leaves(s) if not _is_key(x)]
        lo = [x for x in jax.tree.leaves(os_) if not _is_key(x)]
        if len(ls) == len(lo):
            for j, (a, b) in enumerate(zip(ls, lo, strict=True)):
                close(a, np.asarray(b), f"state leaf {j} at step {i}", rtol)


def _round32(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """`p + u` rounded to the params' float32 (complex64) storage, kept in 64 bits."""
    low = np.complex64 if np.iscomplexobj(p) else np.float32
    return np.asarray(np.asarray(p + u, low), p.dtype)


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
