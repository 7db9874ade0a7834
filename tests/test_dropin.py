# SPDX-License-Identifier: Apache-2.0
"""`import gradtx as optax`: every public name of optax exists in gradtx, at the same
path, and every public function has optax's signature (names, kinds, defaults).

The namespaces are optax 0.2.8's: the top level and each public submodule,
`experimental.aggregating` included. None is left out.
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
    "experimental",
    "experimental.aggregating",
)


# What `optax.experimental.aggregating` imports for itself (typing helpers and
# optax's own modules under short names), not part of its API.
_IMPORTED = {"Any", "NamedTuple", "Protocol", "Sequence", "base", "tree", "utils"}


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
            if ns == "experimental.aggregating" and name in _IMPORTED:
                continue
            out.append(full)
    return out


NAMES = _names()


@pytest.mark.parametrize("name", NAMES)
def test_every_optax_name_exists_in_gradtx(name):
    parent, _, leaf = name.rpartition(".")
    owner = _resolve(gradtx, parent)
    assert hasattr(owner, leaf), f"gradtx.{name} is missing (optax.{name} exists)"
    theirs = _resolve(optax, name)
    if inspect.isfunction(theirs) and not name.startswith("tree_utils."):
        ours = getattr(owner, leaf)
        _assert_same_signature(ours, theirs, f"gradtx.{name}")


def test_stateful_schedule_protocol_accepts_both_libraries():
    ours, theirs = (
        gradtx.WrappedSchedule(lambda n: n),
        optax.WrappedSchedule(lambda n: n),
    )
    for schedule in (ours, theirs):
        assert isinstance(schedule, gradtx.schedules.StatefulSchedule)
        assert isinstance(schedule, optax.schedules.StatefulSchedule)
    assert not isinstance(lambda n: n, gradtx.schedules.StatefulSchedule)
