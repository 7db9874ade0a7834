# SPDX-License-Identifier: Apache-2.0
"""`make_step(fused=True)`: an Adam(W) chain as one in-place pass per leaf on CPU.

XLA:CPU writes one output per loop, so the jnp program of an Adam step makes three
passes over each leaf (`mu`, `nu`, params: 40 bytes per parameter) where one pass
reading p, g, m, v and writing p, m, v (28 bytes) would do. This module recognises
chains it can run through the native kernel of `gradtx._kernels`:

    [clip_by_global_norm | scale | scale_by_schedule]*   (on the gradients)
    scale_by_adam(nesterov=False)                        (exactly one)
    [add_decayed_weights | scale | scale_by_schedule]*   (on the Adam direction)

which covers `adam`, `adamw` and the canonical chain (`clip_by_global_norm`,
`scale_by_adam`, `add_decayed_weights`, `scale_by_learning_rate`), nested chains
included. Every block before Adam multiplies the gradients by a
scalar (`gain`); every block after it maps the direction `u` to `a u + b p` with
scalars `a`, `b` per leaf (a weight-decay mask makes `b` differ between leaves).

The kernel takes float32 params with float32 or bfloat16 moments. The step still
calls `tx.update` itself: its new counters and schedule states are the ones
returned, and its params, `mu` and `nu` stand in for the leaves the kernel does not
take (other dtypes, empty, an element-wise mask, split over a mesh). XLA removes
what the kernel replaces as dead code. On platforms other than CPU the step is the
jnp program.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _kernels, _numerics, _tree
from gradtx._update import apply_updates

_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_GAIN_KINDS = ("clip_by_global_norm", "scale", "scale_by_schedule")
_MOMENT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
_AFFINE_KINDS = ("add_decayed_weights", "scale", "scale_by_schedule")


def describe(tx: Any, kind: str, **hparams: Any) -> Any:
    """Records what `tx` computes, so that `make_step(fused=True)` can recognise it.

    The record is keyed by `tx.update` (weakly), so the transform itself is the plain
    `GradientTransformation` it always was.
    """
    _SPECS[tx.update] = (kind, hparams)
    return tx


class _Block(NamedTuple):
    kind: str
    hparams: dict[str, Any]
    path: tuple[int, ...]  # where its state sits in the chain's nested tuples


class Plan(NamedTuple):
    """The recognised chain: blocks on the gradients, the Adam block, blocks after."""

    gain: tuple[_Block, ...]
    adam: _Block
    affine: tuple[_Block, ...]


def _flatten(tx: Any, path: tuple[int, ...], out: list[_Block]) -> None:
    spec = _SPECS.get(getattr(tx, "update", None))
    if spec is None:
        out.append(_Block("", {"tx": tx}, path))
        return
    kind, hparams = spec
    if kind == "chain":
        for i, sub in enumerate(hparams["transforms"]):
            _flatten(sub, (*path, i), out)
    else:
        out.append(_Block(kind, hparams, path))


def _name(block: _Block) -> str:
    if block.kind:
        return block.kind
    return (
        "a transform without a fused form (from optax, or a gradtx block other than "
        "those listed)"
    )


def plan(tx: Any, fn: str = "make_step") -> Plan:
    """Recognises `tx`, or raises a `ValueError` that names the block in the way."""
    blocks: list[_Block] = []
    _flatten(tx, (), blocks)
    wanted = (
        f"gradtx.{fn}: fused=True runs chains of the form [clip_by_global_norm | "
        "scale | scale_by_schedule]*, scale_by_adam(nesterov=False), "
        "[add_decayed_weights | scale | scale_by_learning_rate | scale_by_schedule]*"
    )
    adams = [i for i, b in enumerate(blocks) if b.kind == "scale_by_adam"]
    if len(adams) != 1:
        raise ValueError(f"{wanted}; this one has {len(adams)} scale_by_adam blocks")
    at = adams[0]
    adam = blocks[at]
    if adam.hparams["nesterov"]:
        raise ValueError(f"{wanted}; its scale_by_adam has nesterov=True")
    for i, b in enumerate(blocks):
        allowed = _GAIN_KINDS if i < at else _AFFINE_KINDS
        if i != at and b.kind not in allowed:
            where = "before" if i < at else "after"
            raise ValueError(f"{wanted}; block {i} ({where} Adam) is {_name(b)}")
    return Plan(tuple(blocks[:at]), adam, tuple(blocks[at + 1 :]))


def _state_at(state: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        state = state[i]
    return state


def _replace_at(state: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    items = list(state)
    items[path[0]] = _replace_at(state[path[0]], path[1:], new)
    return tuple(items)


def _gain(blocks: tuple[_Block, ...], state: Any, grads: Any) -> jax.Array | None:
    """The scalar that the blocks before Adam multiply the gradients by (None: 1)."""
    from gradtx.transforms._clipping import _shrink_factor

    gain = None
    norm = None
    for b in blocks:
        if b.kind == "clip_by_global_norm":
            if norm is None:
                norm = _tree.norm(grads)
            size = norm if gain is None else norm * jnp.abs(gain).astype(norm.dtype)
            limit = _numerics.hparam(b.hparams["max_norm"]).astype(norm.dtype)
            factor = _shrink_factor(size, limit)
        elif b.kind == "scale":
            factor = _numerics.hparam(b.hparams["step_size"])
        else:  # scale_by_schedule
            count = _state_at(state, b.path).count
            factor = _numerics.hparam(b.hparams["step_size_fn"](count))
        gain = factor if gain is None else gain * factor.astype(gain.dtype)
    return gain


def _affine(
    blocks: tuple[_Block, ...], state: Any, params: Any, n: int
) -> tuple[jax.Array, list[Any]]:
    """`a` and the per-leaf `b` of `u -> a u + b p` for the blocks after Adam."""
    one = _numerics.hparam(1.0)
    a = one
    b: list[Any] = [None] * n
    for blk in blocks:
        if blk.kind == "add_decayed_weights":
            wd = blk.hparams["weight_decay"]
            if callable(wd):
                wd = wd(_state_at(state, blk.path).count)
            wd = _numerics.hparam(wd)
            mask = blk.hparams["mask"]
            keep = (
                [True] * n
                if mask is None
                else jax.tree.leaves(_tree.resolve_mask(mask, params))
            )
            if len(keep) != n:
                raise ValueError(
                    "gradtx.make_step: the weight-decay mask resolves to "
                    f"{len(keep)} leaves for {n} params"
                )
            for i, k in enumerate(keep):
                if k is False:
                    continue
                term = wd if k is True else jnp.where(k, wd, jnp.zeros_like(wd))
                b[i] = term if b[i] is None else b[i] + term
        else:
            if blk.kind == "scale":
                s = _numerics.hparam(blk.hparams["step_size"])
            else:  # scale_by_schedule
                s = _numerics.hparam(
                    blk.hparams["step_size_fn"](_state_at(state, blk.path).count)
                )
            a = a * s
            b = [None if x is None else x * s for x in b]
    return a, b


def _kernel_leaf(g, scalars, p, m, v):
    out = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
    call = jax.ffi.ffi_call(
        _kernels.ADAM_STEP_TARGET,
        (out(p), out(m), out(v)),
        input_output_aliases={2: 0, 3: 1, 4: 2},
        vmap_method="sequential",
    )
    return tuple(call(g, scalars, p, m, v))


def _eligible(g, p, m, v, b) -> bool:
    arrays = (g, p, m, v)
    if any(not hasattr(x, "dtype") for x in arrays):
        return False
    return (
        g.dtype == p.dtype == jnp.float32
        and m.dtype in _MOMENT_DTYPES
        and v.dtype in _MOMENT_DTYPES
        and all(x.shape == p.shape for x in arrays)
        and p.size > 0
        and (b is None or jnp.ndim(b) == 0)
        # Split over an Explicit mesh (the type says so): the kernel sees whole arrays.
        and all(_tree.explicit_sharding(x) is None for x in arrays)
    )


def update_and_apply(
    the_plan: Plan, tx: Any, grads: Any, state: Any, params: Any, **extra_args: Any
) -> tuple[Any, Any]:
    """`apply_updates(params, tx.update(grads, state, params))`, fused where it can."""
    ref_updates, new_state = tx.update(grads, state, params, **extra_args)
    ref_params = apply_updates(params, ref_updates)
    adam_path = the_plan.adam.path
    ref_adam = _state_at(new_state, adam_path)
    old_adam = _state_at(state, adam_path)

    treedef = jax.tree.structure(grads)
    g_leaves = treedef.flatten_up_to(grads)
    p_leaves = treedef.flatten_up_to(params)
    m_leaves = treedef.flatten_up_to(old_adam.mu)
    v_leaves = treedef.flatten_up_to(old_adam.nu)
    out_p = treedef.flatten_up_to(ref_params)
    out_m = treedef.flatten_up_to(ref_adam.mu)
    out_v = treedef.flatten_up_to(ref_adam.nu)

    hp = the_plan.adam.hparams
    hb1, hb2 = _numerics.hparam(hp["b1"]), _numerics.hparam(hp["b2"])
    count = _numerics.safe_int32_increment(old_adam.count)
    c1 = _numerics.bias_correction(hb1, count)
    c2 = _numerics.bias_correction(hb2, count)
    gain = _gain(the_plan.gain, state, grads)
    a, b = _affine(the_plan.affine, state, params, len(g_leaves))
    f32 = lambda x: jnp.asarray(x).astype(jnp.float32)
    b1, b2 = f32(hb1), f32(hb2)
    common = [
        f32(1.0 if gain is None else gain),
        b1,
        1 - b1,
        b2,
        1 - b2,
        f32(c1),
        f32(c2),
        f32(_numerics.hparam(hp["eps_root"])),
        f32(_numerics.hparam(hp["eps"])),
        f32(a),
    ]
    for i, (g, p, m, v) in enumerate(
        zip(g_leaves, p_leaves, m_leaves, v_leaves, strict=True)
    ):
        if not _eligible(g, p, m, v, b[i]):
            continue
        scalars = jnp.stack([*common, f32(0.0 if b[i] is None else b[i])])
        refs = (out_p[i], out_m[i], out_v[i])
        out_p[i], out_m[i], out_v[i] = jax.lax.platform_dependent(
            g,
            scalars,
            p,
            m,
            v,
            cpu=_kernel_leaf,
            default=lambda *_, refs=refs: refs,
        )
    new_adam = ref_adam._replace(
        mu=treedef.unflatten(out_m), nu=treedef.unflatten(out_v)
    )
    return treedef.unflatten(out_p), _replace_at(new_state, adam_path, new_adam)
