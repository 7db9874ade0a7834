# SPDX-License-Identifier: Apache-2.0
"""`import gradtx as optax`: every public name of optax exists in gradtx, at the same
path, and every public function has optax's signature (names, kinds, defaults).

The namespaces are optax 0.2.8's: the top level and each public submodule. A name
left out is listed in `NOT_PORTED` with the reason; the list is checked too, so it
cannot outlive the gap it explains.
"""

from __future__ import annotations

import inspect
import types

import optax
import pytest
from test_parity_optax import _assert_same_signature

import gradtx

NAMESPACES = (
    "",
    "contrib",
    "schedules",
    "transforms",
    "tree",
    "tree_utils",
    "losses",
    "projections",
    "second_order",
    "perturbations",
    "assignment",
    "microbatching",
)

NOT_PORTED = {
    "experimental": "optax.experimental (aggregating) is optax's experimental API; "
    "it may change between releases and is not part of the drop-in promise",
}


def _resolve(root, path: str):
    for part in filter(None, path.split(".")):
        root = getattr(root, part)
    return root


def _names():
    out = []
    for ns in NAMESPACES:
        module = _resolve(optax, ns)
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            full = f"{ns}.{name}" if ns else name
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) and not value.__name__.startswith(
                "optax"
            ):
                continue  # jax, numpy, typing, functools: imports, not optax's API
            out.append(full)
    return out


NAMES = _names()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_PORTED])
def test_every_optax_name_exists_in_gradtx(name):
    parent, _, leaf = name.rpartition(".")
    owner = _resolve(gradtx, parent)
    assert hasattr(owner, leaf), f"gradtx.{name} is missing (optax.{name} exists)"
    theirs = _resolve(optax, name)
    if inspect.isfunction(theirs) and not name.startswith("tree_utils."):
        ours = getattr(owner, leaf)
        _assert_same_signature(ours, theirs, f"gradtx.{name}")


def test_not_ported_names_are_still_missing_and_still_in_optax():
    for name in NOT_PORTED:
        assert name in NAMES, f"optax no longer has {name}: drop it from NOT_PORTED"
        parent, _, leaf = name.rpartition(".")
        assert not hasattr(_resolve(gradtx, parent), leaf), f"gradtx has {name} now"


def test_stateful_schedule_protocol_accepts_both_libraries():
    ours, theirs = (
        gradtx.WrappedSchedule(lambda n: n),
        optax.WrappedSchedule(lambda n: n),
    )
    for schedule in (ours, theirs):
        assert isinstance(schedule, gradtx.schedules.StatefulSchedule)
        assert isinstance(schedule, optax.schedules.StatefulSchedule)
    assert not isinstance(lambda n: n, gradtx.schedules.StatefulSchedule)
