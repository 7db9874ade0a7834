# SPDX-License-Identifier: Apache-2.0
"""torch.optim's Rprop, ASGD, Adafactor and Muon steps, as transformations.

These return the step *before* the sign flip: the aliases end with `scale(-1.0)`
(Rprop, ASGD, Adafactor, whose learning rate enters the state or a `min`) or with
`scale_by_learning_rate` (Muon).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, store
from gradtx.torch._common import compute, fn_name, leaf_map, lr_at, step_float


class TorchRpropState(NamedTuple):
    """State of torch's Rprop: the previous (masked) gradient and per-entry steps."""

    prev: Any
    step_size: Any


class TorchAsgdState(NamedTuple):
    """State of torch's ASGD: the step count and the averaged params `ax`."""

    count: jax.Array
    ax: Any


class TorchAdafactorState(NamedTuple):
    """State of torch's Adafactor; unused factors are empty arrays."""

    count: jax.Array
    row_var: Any
    col_var: Any
    variance: Any


class TorchMuonState(NamedTuple):
    """State of torch's Muon: the momentum buffer."""

    momentum_buffer: Any


def scale_by_torch_rprop(
    lr: Any, etas: tuple[Any, Any], step_sizes: tuple[Any, Any]
) -> GradientTransformation:
    """Rprop: grow a step where the gradient kept its sign, shrink and skip it else."""
    etaminus, etaplus = etas
    lo, hi = step_sizes

    def init(params):
        return TorchRpropState(
            _tree.zeros_like(params), _tree.full_like(params, _numerics.hparam(lr))
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hm, hp, hlo, hhi = map(_numerics.hparam, (etaminus, etaplus, lo, hi))

        def leaf(g, prev, step):
            cd, r = compute(g, prev, step)
            gc = g.astype(cd)
            sign = jnp.sign(gc * prev.astype(cd))
            factor = jnp.where(sign > 0, r(hp), jnp.where(sign < 0, r(hm), 1))
            step_new = jnp.clip(step.astype(cd) * factor, r(hlo), r(hhi))
            step_store, step_new = store(step_new, step.dtype)
            gc = jnp.where(sign < 0, 0, gc)
            u = jnp.sign(gc) * step_new
            return u.astype(g.dtype), gc.astype(prev.dtype), step_store

        u, prev, step = leaf_map("rprop", leaf, updates, state.prev, state.step_size)
        return u, TorchRpropState(prev, step)

    return GradientTransformation(init, update)


def scale_by_torch_asgd(
    lr: Any, lambd: Any, alpha: Any, t0: Any
) -> GradientTransformation:
    """ASGD: `u = eta_t (g + lambd p)`; `ax` averages the params after step `t0`."""

    def init(params):
        return TorchAsgdState(jnp.zeros([], jnp.int32), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn_name("asgd"), params)
        hlr, hl, ha, ht0 = map(_numerics.hparam, (lr, lambd, alpha, t0))
        t = step_float(state.count)  # the previous step: eta and mu are one step late
        eta = hlr / (1 + hl * hlr * t) ** ha
        mu = jnp.where(t == 0, 1.0, 1.0 / jnp.maximum(1.0, t - ht0))

        def leaf(g, ax, p):
            cd, r = compute(g, ax, p)
            u = r(eta) * (g.astype(cd) + r(hl) * p.astype(cd))
            new_p = p.astype(cd) - u
            axc = ax.astype(cd)
            ax_new = jnp.where(mu == 1, new_p, axc + r(mu) * (new_p - axc))
            return u.astype(g.dtype), ax_new.astype(ax.dtype)

        u, ax = leaf_map("asgd", leaf, updates, state.ax, params)
        return u, TorchAsgdState(_numerics.safe_int32_increment(state.count), ax)

    return GradientTransformation(init, update)


def _factored(x: jax.Array) -> bool:
    return x.ndim > 1


def scale_by_torch_adafactor(
    lr: Any, beta2_decay: Any, eps: tuple[Any, Any], d: Any, weight_decay: Any
) -> GradientTransformation:
    """Adafactor as torch.optim.Adafactor computes it (relative step, RMS clipping)."""
    eps1, eps2 = eps
    empty = lambda p: jnp.zeros((0,), p.dtype)

    def init(params):
        row = lambda p: (
            jnp.zeros((*p.shape[:-1], 1), p.dtype) if _factored(p) else empty(p)
        )
        col = lambda p: (
            jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype)
            if _factored(p)
            else empty(p)
        )
        var = lambda p: empty(p) if _factored(p) else jnp.zeros(p.shape, p.dtype)
        return TorchAdafactorState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(row, params),
            jax.tree.map(col, params),
            jax.tree.map(var, params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn_name("adafactor"), params)
        hlr, hdecay = lr_at(lr, state.count), _numerics.hparam(beta2_decay)
        hd, hwd, heps2 = map(_numerics.hparam, (d, weight_decay, eps2))
        t = step_float(_numerics.safe_int32_increment(state.count))
        w = t**hdecay  # 1 - beta2_t
        rho = jnp.minimum(hlr, 1 / jnp.sqrt(t))

        def leaf(g, row, col, var, p):
            cd, r = compute(g, row, col, var, p)
            gc, pc = g.astype(cd), p.astype(cd)
            row_c, col_c, var_c = row.astype(cd), col.astype(cd), var.astype(cd)
            e1 = r(jnp.finfo(p.dtype).eps if eps1 is None else _numerics.hparam(eps1))
            size = math.prod(g.shape)
            step = jnp.maximum(r(heps2), jnp.sqrt(jnp.sum(abs_sq(pc)) / size)) * r(rho)
            g2 = abs_sq(gc)
            if _factored(g):
                row_n = (1 - r(w)) * row_c + r(w) * jnp.sum(
                    g2, -1, keepdims=True
                ) / g.shape[-1]
                col_n = (1 - r(w)) * col_c + r(w) * jnp.sum(
                    g2, -2, keepdims=True
                ) / g.shape[-2]
                est = (
                    row_n @ col_n / jnp.maximum(jnp.mean(row_n, -2, keepdims=True), e1)
                )
                var_n = var
            else:
                row_n, col_n = row, col
                var_n = (1 - r(w)) * var_c + r(w) * g2
                est = var_n
            u = gc * jax.lax.rsqrt(jnp.maximum(est, e1 * e1))
            rms = jnp.sqrt(jnp.sum(abs_sq(u)) / size)
            u = step / jnp.maximum(1.0, rms / r(hd)) * u + r(hlr) * r(hwd) * pc
            cast = lambda new, old: new.astype(old.dtype)
            return (
                u.astype(g.dtype),
                cast(row_n, row),
                cast(col_n, col),
                cast(var_n, var),
            )

        u, row, col, var = leaf_map(
            "adafactor",
            leaf,
            updates,
            state.row_var,
            state.col_var,
            state.variance,
            params,
        )
        count = _numerics.safe_int32_increment(state.count)
        return u, TorchAdafactorState(count, row, col, var)

    return GradientTransformation(init, update)


def _newton_schulz(x: jax.Array, coefficients: Any, steps: int, eps: Any) -> jax.Array:
    """Torch's quintic Newton-Schulz orthogonalisation (in x's dtype, not bf16)."""
    a, b, c = coefficients
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / jnp.maximum(jnp.sqrt(jnp.sum(x * x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def lr_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """torch.optim.Muon's `_adjust_lr` factor for a param of `shape`."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(rows / cols)  # "spectral_unclamped"


def scale_by_torch_muon(
    momentum: Any,
    nesterov: bool,
    ns_coefficients: tuple[Any, Any, Any],
    eps: Any,
    ns_steps: int,
    adjust_lr_fn: str | None,
) -> GradientTransformation:
    """Muon: momentum, then Newton-Schulz orthogonalisation, times the lr ratio."""

    def init(params):
        return TorchMuonState(_tree.zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hm, heps = _numerics.hparam(momentum), _numerics.hparam(eps)
        coefficients = tuple(map(_numerics.hparam, ns_coefficients))

        def leaf(g, buf):
            if g.ndim != 2:
                raise ValueError(
                    "gradtx.torch.muon: only 2-D params are supported (as in torch), "
                    f"got shape {g.shape}; route the others to another optimizer "
                    "with gradtx.partition"
                )
            cd, r = compute(g, buf)
            gc = g.astype(cd)
            buf_store, b = store(r(hm) * buf.astype(cd) + (1 - r(hm)) * gc, buf.dtype)
            x = (1 - r(hm)) * gc + r(hm) * b if nesterov else b
            x = _newton_schulz(x, tuple(map(r, coefficients)), ns_steps, r(heps))
            u = lr_ratio(adjust_lr_fn, g.shape) * x
            return u.astype(g.dtype), buf_store

        u, buf = leaf_map("muon", leaf, updates, state.momentum_buffer)
        return u, TorchMuonState(buf)

    return GradientTransformation(init, update)
