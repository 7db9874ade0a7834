# SPDX-License-Identifier: Apache-2.0
"""An opt-in flat parameter layout: one 1-D buffer per dtype instead of many leaves.

An optimizer applied to a layout's flat buffers sees one leaf per dtype, so its compile
time no longer grows with the number of leaves and its per-step dispatch overhead is
that of a handful of arrays (see docs/performance.md for the measured figures). The
model reads its params as views of the buffers:

    layout = gradtx.flat.layout(params)
    flat = layout.ravel(params)                      # {"float32": f32[N], ...}
    loss = lambda flat, batch: model_loss(layout.unravel(flat), batch)
    grads = jax.grad(loss)(flat, batch)              # flat too: same buffers, one each

Per-leaf semantics are the caller's to keep: a transform that treats each leaf on its
own (`clip_by_block_rms`, trust ratios) sees one leaf per dtype here, and a weight-decay
mask must be expanded with `layout.ravel_mask`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _tree

__all__ = ["Layout", "layout"]


@dataclasses.dataclass(frozen=True)
class _Slot:
    group: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each leaf of a params tree lives in the per-dtype flat buffers.

    Hashable and made of static Python data, so it can be closed over or passed as a
    static argument of `jax.jit`. Build one with `gradtx.flat.layout(params)`.
    """

    treedef: Any
    slots: tuple[_Slot, ...]
    sizes: tuple[tuple[str, int], ...]  # (dtype name, total elements) per buffer

    @property
    def num_leaves(self) -> int:
        """Number of leaves of the original tree."""
        return len(self.slots)

    def _check(self, tree: Any, what: str) -> list[Any]:
        _tree.check_structure(
            f"flat.Layout.{what}",
            self.treedef.unflatten([0] * self.treedef.num_leaves),
            tree,
            what="tree",
        )
        return jax.tree.leaves(tree)

    def ravel(self, tree: Any) -> dict[str, jax.Array]:
        """Packs a tree shaped like the layout's params into one 1-D buffer per dtype.

        Example:
            >>> import gradtx, jax.numpy as jnp
            >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}
            >>> gradtx.flat.layout(params).ravel(params)["float32"]
            Array([0., 0., 0., 1., 1., 1., 1.], dtype=float32)
        """
        leaves = self._check(tree, "ravel")
        parts: dict[str, list[jax.Array]] = {name: [] for name, _ in self.sizes}
        for slot, leaf in zip(self.slots, leaves, strict=True):
            parts[slot.group].append(jnp.reshape(jnp.asarray(leaf, slot.group), (-1,)))
        return {
            name: parts[name][0]
            if len(parts[name]) == 1
            else jnp.concatenate(parts[name])
            for name, _ in self.sizes
        }

    def unravel(self, flat: dict[str, jax.Array]) -> Any:
        """Returns the params tree as views (slices and reshapes) of the flat buffers.

        Example:
            >>> import gradtx, jax.numpy as jnp
            >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}
            >>> layout = gradtx.flat.layout(params)
            >>> layout.unravel(layout.ravel(params))["w"]
            Array([[1., 1.],
                   [1., 1.]], dtype=float32)
        """
        missing = sorted({name for name, _ in self.sizes} - set(flat))
        if missing:
            raise KeyError(
                f"gradtx.flat.Layout.unravel: no buffer for dtypes {missing}"
            )
        leaves = [
            jax.lax.slice_in_dim(flat[s.group], s.offset, s.offset + s.size).reshape(
                s.shape
            )
            for s in self.slots
        ]
        return self.treedef.unflatten(leaves)

    def ravel_mask(self, mask: Any) -> dict[str, Any]:
        """Expands a per-leaf bool mask (tree, prefix or callable) to per-element bools.

        The result can be passed as the `mask` of `add_decayed_weights` (or `adamw`)
        applied to the flat buffers.

        Example:
            >>> import gradtx, jax.numpy as jnp
            >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}
            >>> layout = gradtx.flat.layout(params)
            >>> layout.ravel_mask({"w": True, "b": False})["float32"].tolist()
            [False, False, False, True, True, True, True]
        """
        params_like = self.treedef.unflatten(
            [jnp.zeros(s.shape, s.group) for s in self.slots]
        )
        full = jax.tree.leaves(_tree.resolve_mask(mask, params_like))
        parts: dict[str, list[Any]] = {name: [] for name, _ in self.sizes}
        for slot, keep in zip(self.slots, full, strict=True):
            if isinstance(keep, (bool, np.bool_)):
                parts[slot.group].append(np.full(slot.size, bool(keep)))
            else:
                parts[slot.group].append(jnp.broadcast_to(keep, slot.shape).reshape(-1))
        out: dict[str, Any] = {}
        for name, _ in self.sizes:
            if all(isinstance(p, np.ndarray) for p in parts[name]):
                out[name] = (
                    np.concatenate(parts[name]) if parts[name] else np.zeros(0, bool)
                )
            else:
                out[name] = jnp.concatenate([jnp.asarray(p) for p in parts[name]])
        return out


def layout(params: Any) -> Layout:
    """Plans one flat buffer per dtype for `params` (arrays or `jax.ShapeDtypeStruct`s).

    Leaves are packed in `jax.tree.leaves` order; buffers are keyed by dtype name in
    order of first appearance.

    Args:
        params: Any pytree of arrays or shape-dtype structs.

    Returns:
        A static, hashable `Layout`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> params = {"w": jnp.ones((2, 2)), "s": jnp.ones((), jnp.bfloat16)}
        >>> layout = gradtx.flat.layout(params)
        >>> layout.sizes
        (('bfloat16', 1), ('float32', 4))
    """
    leaves, treedef = jax.tree.flatten(params)
    offsets: dict[str, int] = {}
    slots = []
    for leaf in leaves:
        group = jnp.dtype(leaf.dtype).name
        offset = offsets.setdefault(group, 0)
        slot = _Slot(group, offset, tuple(int(d) for d in jnp.shape(leaf)))
        offsets[group] = offset + slot.size
        slots.append(slot)
    return Layout(treedef, tuple(slots), tuple(offsets.items()))
