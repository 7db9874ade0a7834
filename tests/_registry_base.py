# SPDX-License-Identifier: Apache-2.0
"""What every registry file shares: the test pytree, `Entry` and its constructors.

`_registry.py` builds `REGISTRY` from its own lists and from the `ENTRIES` of one
`_registry_<area>.py` file per area (`AREAS`), so areas of the catalogue can grow in
separate files. An area file may also define, merged by the generic tests:

- `NOT_IN_REGISTRY`: public factories tested elsewhere, name -> where and why;
- `NUMERIC`, `OVERRIDES`, `REQUIRED`, `NON_NUMERIC`, `DTYPES`, `CALLABLES`: the
  parameter classification of `test_validation.py` (same meaning as there);
- `ALLOWED_EXTRA`: parameters gradtx adds to an optax signature, name -> why.

An entry's float64 reference is `<module>.<name>(**kwargs)`, looked up in
`_reference.py` and then in each `_reference_<area>.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradtx

# One name per area file pair `_registry_<area>.py` / `_reference_<area>.py`.
AREAS = (
    "adaptive",
    "geometry",
    "linesearch",
    "contrib_a",
    "contrib_b",
    "torch",
    "precision",
    "sharding",
)

# --- the mixed pytree every shared check runs on: a matrix, a vector and a scalar ---

SHAPES = {"w": (4, 3), "b": (5,), "s": ()}


def lr_schedule(count: Any) -> Any:
    """A decaying schedule that runs on jnp (int32 count) and NumPy alike."""
    return 0.1 * 0.98 ** count.astype(np.float32)


def wd_schedule(count: Any) -> Any:
    return 0.2 * 0.95 ** count.astype(np.float32)


def matrices_only(params: Any) -> dict[str, bool]:
    """A callable mask: decay only the 2-D leaves (works on arrays and tracers)."""
    return {k: np.ndim(v) == 2 for k, v in params.items()}


MASK_TREE = {"w": True, "b": False, "s": True}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One configuration of one public factory.

    Attributes:
        id: The pytest id.
        name: The public name: `gradtx.<name>`, `optax.<name>` for parity, and
            `_reference.<name>`, its float64 reference taking the same arguments.
        kwargs: Arguments of the factory.
        optax: Whether optax, given the same arguments, must give the same numbers;
            when False, `optax_reason` says why.
        optax_reason: Why this configuration is not compared with optax.
        resync: Copy gradtx's stored state into the reference after every step.
            Needed for bfloat16 state storage: a float32 vs float64 difference in
            the last bit can round a stored moment to the neighbouring bf16 value
            (one ulp is 2**-8), which then leaks into later steps; re-syncing (the
            bitsandbytes method) keeps each step's math checked at float32
            tolerance, while the stored state is checked to one bf16 ulp.
    """

    id: str
    name: str
    kwargs: dict[str, Any]
    optax: bool = True
    optax_reason: str = ""
    resync: bool = False

    @property
    def state_rtol(self) -> float:
        return 2.0**-8 if self.resync else 1e-5

    def make(self) -> gradtx.GradientTransformation:
        return getattr(gradtx, self.name)(**self.kwargs)

    def reference(self) -> Any:
        for module in reference_modules():
            factory = getattr(module, self.name, None)
            if factory is not None:
                return factory(**self.kwargs)
        raise AttributeError(f"no float64 reference named {self.name!r}")

    @property
    def stateful_count(self) -> bool:
        """Whether some field of the initial state is named `count`."""
        state = self.make().init(make_params())
        return bool(gradtx.tree.get_all_with_path(state, "count"))


def reference_modules() -> list[Any]:
    """`_reference` and every area's `_reference_<area>`, in lookup order."""
    names = ("_reference", *(f"_reference_{a}" for a in AREAS))
    return [importlib.import_module(n) for n in names]


def e(id_: str, name: str, **kwargs: Any) -> Entry:
    """An entry compared with optax (the default)."""
    return Entry(id_, name, kwargs)


def not_optax(entry: Entry, reason: str, **extra: Any) -> Entry:
    """The entry, not compared with optax, and why."""
    return dataclasses.replace(entry, optax=False, optax_reason=reason, **extra)


BF16 = jnp.bfloat16


def make_params(dtype: Any = jnp.float32, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {
        k: jnp.asarray(rng.standard_normal(s).astype(np.float32), dtype)
        for k, s in SHAPES.items()
    }


def make_grads(n: int, dtype: Any = jnp.float32, seed: int = 1) -> list[Any]:
    """`n` steps of N(0, 1) gradients, drawn once from a fixed seed."""
    rng = np.random.default_rng(seed)
    return [
        {
            k: jnp.asarray(rng.standard_normal(s).astype(np.float32), dtype)
            for k, s in SHAPES.items()
        }
        for _ in range(n)
    ]
