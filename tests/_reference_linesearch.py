# SPDX-License-Identifier: Apache-2.0
"""References: L-BFGS, the line searches, Polyak step sizes.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.
These names need extra update arguments (`value=`, `grad=`, `value_fn=`), so they
are checked by tests/test_lbfgs.py, tests/test_linesearch.py and
tests/test_polyak.py rather than by the generic registry tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from _reference_base import Tree, hp, increment, tmap


def dot(a: Tree, b: Tree) -> float:
    return float(sum(np.vdot(a[k], b[k]).real for k in a))


def axpy(x: Tree, a: float, y: Tree) -> Tree:
    return tmap(lambda xi, yi: xi + a * yi, x, y)


def finite(*trees: Tree) -> bool:
    return all(np.all(np.isfinite(t[k])) for t in trees for k in t)


class scale_by_lbfgs:
    """L-BFGS, Nocedal & Wright (2006) Algorithm 7.4, kept in optax's ring buffer.

    The pair made at step k (s = w_k - w_{k-1}, y = g_k - g_{k-1}) is written at slot
    (k - 1) % m; the recursion reads the pairs back newest first. gradtx's rule for
    non-finite input: such a pair is not stored (zeros, rho = 0) and the reference
    point stays the last finite one; `count` does not move before a finite point.
    """

    def __init__(self, memory_size: int = 10, scale_init_precond: bool = True):
        self.m, self.scale = memory_size, scale_init_precond

    def init(self, params: Tree) -> dict[str, Any]:
        stack = {k: np.zeros((self.m, *np.shape(v))) for k, v in params.items()}
        zeros = tmap(lambda p: np.zeros(np.shape(p)), params)
        return {
            "count": 0,
            "params": zeros,
            "updates": dict(zeros),
            "diff_params_memory": stack,
            "diff_updates_memory": {k: v.copy() for k, v in stack.items()},
            "weights_memory": np.zeros(self.m),
        }

    def update(self, grads: Tree, state: dict[str, Any], params: Tree):
        k, m = state["count"], self.m
        s = tmap(lambda a, b: a - b, params, state["params"])
        y = tmap(lambda a, b: a - b, grads, state["updates"])
        sy = dot(y, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = 0.0 if sy == 0.0 else 1.0 / sy
        if k == 0 or not (finite(s, y) and math.isfinite(rho)):
            s, y, rho = tmap(np.zeros_like, s), tmap(np.zeros_like, y), 0.0
        slot = (k - 1) % m
        smem = {n: v.copy() for n, v in state["diff_params_memory"].items()}
        ymem = {n: v.copy() for n, v in state["diff_updates_memory"].items()}
        rhos = state["weights_memory"].copy()
        for n in smem:
            smem[n][slot], ymem[n][slot] = s[n], y[n]
        rhos[slot] = rho
        newest_first = [(k - 1 - j) % m for j in range(m)]
        pair = lambda i: (
            {n: v[i] for n, v in smem.items()},
            {n: v[i] for n, v in ymem.items()},
        )
        gamma = 1.0
        if self.scale and k > 0:
            yy = dot(y, y)
            gamma = dot(y, s) / yy if yy > 0 else 1.0
        elif self.scale:
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = min(1.0, 1.0 / math.sqrt(dot(grads, grads)))
        q, alphas = dict(grads), {}
        for i in newest_first:
            si, yi = pair(i)
            alphas[i] = rhos[i] * dot(si, q)
            q = axpy(q, -alphas[i], yi)
        r = tmap(lambda x: gamma * x, q)
        for i in reversed(newest_first):
            si, yi = pair(i)
            beta = rhos[i] * dot(yi, r)
            r = axpy(r, alphas[i] - beta, si)
        ok = finite(params, grads)
        new = {
            "count": increment(k) if (ok or k > 0) else k,
            "params": dict(params) if ok else state["params"],
            "updates": dict(grads) if ok else state["updates"],
            "diff_params_memory": smem,
            "diff_updates_memory": ymem,
            "weights_memory": rhos,
        }
        return r, new


class scale_by_backtracking_linesearch:
    """Armijo backtracking (Nocedal & Wright Algorithm 3.1) with optax's guesses.

    First guess min(increase_factor * previous, max_learning_rate) (gradtx: the
    maximum after a stepsize of 0), then multiply by decrease_factor until
    f(w + eta u) <= (1 + rtol) f(w) + eta slope_rtol <u, g> + atol, at most
    max_backtracking_steps + 1 evaluations. An inf/NaN error at the end: no step.
    """

    def __init__(
        self,
        max_backtracking_steps,
        slope_rtol=1e-4,
        decrease_factor=0.8,
        increase_factor=1.5,
        max_learning_rate=1.0,
        atol=0.0,
        rtol=0.0,
    ):
        self.n, self.c1 = max_backtracking_steps, hp(slope_rtol)
        self.dec, self.inc = hp(decrease_factor), hp(increase_factor)
        self.lr_max, self.atol, self.rtol = hp(max_learning_rate), hp(atol), hp(rtol)

    def init(self, params: Tree) -> dict[str, Any]:
        del params
        return {
            "learning_rate": 1.0,
            "value": math.inf,
            "info": {"num_linesearch_steps": 0, "decrease_error": math.inf},
        }

    def update(
        self,
        updates: Tree,
        state: dict[str, Any],
        params: Tree,
        *,
        value: float,
        grad: Tree,
        value_fn: Callable[[Tree], float],
    ):
        slope = dot(updates, grad)
        prev = state["learning_rate"]
        lr = min(self.inc * prev, self.lr_max) if prev > 0 else self.lr_max
        for it in range(self.n + 1):
            if it > 0:
                lr *= self.dec
            new_value = value_fn(axpy(params, lr, updates))
            err = new_value - (1 + self.rtol) * value - lr * self.c1 * slope
            err = math.inf if math.isnan(err) else max(err, 0.0)
            if err <= self.atol:
                break
        if math.isinf(err):
            lr, new_value = 0.0, value
        info = {"num_linesearch_steps": it + 1, "decrease_error": err}
        new = {"learning_rate": lr, "value": new_value, "info": info}
        return tmap(lambda u: lr * u, updates), new


class scale_by_polyak:
    """Polyak step (Loizou et al. 2021, SPS_max; SPS+ of Garrigos et al. 2023)."""

    def __init__(self, f_min=0.0, max_learning_rate=1.0, eps=0.0, variant="sps"):
        self.f_min, self.lr_max, self.eps = hp(f_min), hp(max_learning_rate), hp(eps)
        self.plus = variant == "sps+"

    def init(self, params: Tree) -> dict[str, Any]:
        del params
        return {}

    def update(
        self, updates: Tree, state: Any, params: Tree | None = None, *, value: float
    ):
        del params
        gap = value - self.f_min
        if self.plus:
            gap = max(gap, 0.0)
        sq = dot(updates, updates)
        if sq + self.eps <= np.finfo(np.float64).eps:
            step = 0.0
        else:
            step = min(gap / (sq + self.eps), self.lr_max)
        return tmap(lambda u: step * u, updates), state


class polyak_sgd:
    """`sgd(scaling)` then `scale_by_polyak`: the step divides by ||scaling g||^2."""

    def __init__(
        self, max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0, variant="sps"
    ):
        self.scaling = scaling
        self.polyak = scale_by_polyak(f_min, max_learning_rate, eps, variant)

    def init(self, params: Tree) -> dict[str, Any]:
        return {"count": 0}

    def update(self, grads: Tree, state: dict[str, Any], params: Tree, *, value: float):
        c = state["count"]
        lr = hp(self.scaling(np.float32(c)) if callable(self.scaling) else self.scaling)
        u, _ = self.polyak.update(tmap(lambda g: -lr * g, grads), {}, value=value)
        return u, {"count": increment(c)}


# --- deterministic test problems, written once for jnp (float32) and NumPy (float64)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "d": rng.uniform(0.5, 5.0, (4, 3)),
        "db": rng.uniform(0.5, 5.0, (5,)),
        "c": rng.standard_normal((4, 3)),
        "cb": rng.standard_normal((5,)),
        "X": rng.standard_normal((40, 5)),
        "y": np.where(rng.standard_normal(40) > 0, 1.0, -1.0),
    }


def problem(name: str, xp: Any, dtype: Any) -> tuple[Callable[..., Any], Tree]:
    """`(value_fn, initial params)`: quadratic, rosenbrock or logistic."""
    c = {k: xp.asarray(v.astype(np.float32), dtype) for k, v in _data().items()}
    if name == "quadratic":

        def f(p):
            return 0.5 * (
                xp.sum(c["d"] * (p["w"] - c["c"]) ** 2)
                + xp.sum(c["db"] * (p["b"] - c["cb"]) ** 2)
            )

        w0 = {"w": xp.zeros((4, 3), dtype), "b": xp.ones((5,), dtype)}
    elif name == "rosenbrock":

        def f(p):
            x = p["x"]
            return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

        w0 = {"x": xp.asarray(np.array([-1.2, 1.0, -1.2, 1.0], np.float32), dtype)}
    else:

        def f(p):
            z = c["y"] * (c["X"] @ p["w"] + p["b"])
            return xp.mean(xp.logaddexp(0.0, -z)) + 0.05 * xp.sum(p["w"] ** 2)

        w0 = {"w": xp.zeros((5,), dtype), "b": xp.zeros((), dtype)}
    return f, w0


PROBLEMS = ("quadratic", "rosenbrock", "logistic")


def trajectory(lib: Any, tx: Any, name: str, use_jit: bool, steps: int, *, reuse: bool):
    """`[(params, state)]` after each of `steps` updates of `tx` (gradtx or optax).

    `reuse`: take the value and gradient from the state with the library's
    `value_and_grad_from_state` (else `jax.value_and_grad`).
    """
    import jax
    import jax.numpy as jnp

    f, w = problem(name, jnp, jnp.float32)
    vg = lib.value_and_grad_from_state(f) if reuse else None

    def step(w, state):
        v, g = vg(w, state=state) if reuse else jax.value_and_grad(f)(w)
        u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f)
        return lib.apply_updates(w, u), state

    step = jax.jit(step) if use_jit else step
    state, out = tx.init(w), []
    for _ in range(steps):
        w, state = step(w, state)
        out.append((w, state))
    return out
