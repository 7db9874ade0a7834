# SPDX-License-Identifier: Apache-2.0
"""Layer-wise learning-rate decay (`scale_by_layer_decay`) and `decay_mask`.

Both read a leaf's `/`-joined key path (`encoder/layer_3/w`), as `param_groups` does;
`path_name` writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._errors import HyperparameterError
from gradtx.transforms._scaling import scale
from gradtx.wrappers._partition import build_partition

_NO_DECAY_KEYS = frozenset({"bias", "b", "scale", "gamma", "beta"})
_NORM_MODULE = re.compile(r"norm|^ln(_|\d|$)")


def path_name(path: tuple[Any, ...]) -> str:
    """A key path as `/`-joined keys, e.g. `head/dense/bias` (`""` for the root)."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):  # DictKey/FlattenedIndexKey, Seq, Attr
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _layer_fn(layer_of: Any) -> Callable[[str], Any]:
    if isinstance(layer_of, (str, re.Pattern)):
        pattern = re.compile(layer_of)
        if pattern.groups != 1:
            raise HyperparameterError(
                "gradtx.scale_by_layer_decay: layer_of must have exactly one "
                f"capturing group (the layer index), got {layer_of!r}"
            )

        def from_regex(path: str) -> Any:
            hit = pattern.search(path)
            return None if hit is None else int(hit.group(1))

        return from_regex
    if not callable(layer_of):
        raise TypeError(
            "gradtx.scale_by_layer_decay: layer_of must be a regex with one capturing "
            f"group or a callable path -> int | None, got {layer_of!r}"
        )
    return layer_of


def _check_layer(where: str, layer: Any, num_layers: int) -> int:
    ok = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
    if not ok or not 0 <= layer <= num_layers:
        raise HyperparameterError(
            f"gradtx.scale_by_layer_decay: the layer of {where} must be an integer "
            f"in [0, {num_layers}], got {layer!r}"
        )
    return int(layer)


def scale_by_layer_decay(
    decay: ArrayLike,
    num_layers: int,
    layer_of: str | re.Pattern | Callable[[str], int | None],
    *,
    default_layer: int | None = None,
) -> GradientTransformation:
    r"""Scales the updates of layer `l` by `decay ** (num_layers - l)` (LLRD).

    Chained after an optimizer, this multiplies each layer's learning rate (and
    decoupled weight decay with it), as in BERT/ELECTRA fine-tuning: the top layer
    `num_layers` (e.g. the head) keeps the base rate, the embeddings (layer 0) get
    `decay ** num_layers`. It is `partition` over one `scale` per layer.

    Args:
        decay: The per-layer factor, in (0, 1]; may be a traced array.
        num_layers: The index of the top layer; layers run from 0 to `num_layers`.
        layer_of: A regex whose one capturing group is the layer index, searched in
            the `/`-joined path, or a callable `path -> int | None`.
        default_layer: The layer of leaves `layer_of` gives no layer (None: error).

    Returns:
        A transformation with `PartitionState` keyed by layer index.

    Raises:
        HyperparameterError: If a concrete `decay` is outside (0, 1] or `num_layers`
            is not an int >= 1; at init or update, naming the leaves with no layer
            or a layer outside [0, num_layers].

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_layer_decay(0.5, 2, r"layer_(\d+)", default_layer=2)
        >>> p = {"layer_0": jnp.ones(1), "layer_1": jnp.ones(1), "head": jnp.ones(1)}
        >>> tx.update(p, tx.init(p))[0]
        {'head': Array([1.], dtype=float32), 'layer_0': Array([0.25], dtype=float32), 'layer_1': Array([0.5], dtype=float32)}

    References:
        Clark et al., ELECTRA, 2020: https://arxiv.org/abs/2003.10555
    """  # noqa: E501
    fn = "scale_by_layer_decay"
    _validate.check_range(fn, "decay", decay, 0.0, 1.0, low_open=True)
    _validate.check_positive_int(fn, "num_layers", num_layers)
    if default_layer is not None:
        _check_layer("default_layer", default_layer, num_layers)
    layer_fn = _layer_fn(layer_of)

    def labels(params: Any) -> Any:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        out, missing = [], []
        for path, _ in flat:
            name = path_name(path)
            layer = layer_fn(name)
            layer = default_layer if layer is None else layer
            if layer is None:
                missing.append(name)
            else:
                out.append(_check_layer(repr(name), layer, num_layers))
        if missing:
            raise HyperparameterError(
                f"gradtx.{fn}: layer_of gives no layer for {len(missing)} leaf "
                f"path(s) and default_layer is None: {missing[:20]}"
            )
        return treedef.unflatten(out)

    transforms = {i: scale(decay ** (num_layers - i)) for i in range(num_layers + 1)}
    return build_partition(fn, "layer_of", transforms, labels, False)


def _decays(path: tuple[Any, ...], leaf: Any) -> bool:
    keys = path_name(path).lower().split("/")
    if np.ndim(leaf) < 2 or keys[-1] in _NO_DECAY_KEYS:
        return False
    return not any(_NORM_MODULE.search(k) for k in keys)


def decay_mask(params: Any) -> Any:
    """A weight-decay mask: True for kernels and embeddings, False for the rest.

    A leaf is True exactly when (1) it has `ndim >= 2`, (2) its own key, lower-cased,
    is none of `bias`, `b`, `scale`, `gamma`, `beta`, and (3) no key on its path,
    lower-cased, contains `norm` or is `ln` optionally followed by `_` or a digit
    (`LayerNorm_0`, `layer_norm`, `norm1`, `ln_f`). Pass it as `adamw(..., mask=...)`.

    Args:
        params: The params tree; `None` leaves and `MaskedNode`s are kept as they are.

    Returns:
        A tree of Python bools shaped like `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> p = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
        >>> gradtx.decay_mask(p)
        {'Dense_0': {'bias': False, 'kernel': True}}
    """
    return jax.tree_util.tree_map_with_path(_decays, params)
