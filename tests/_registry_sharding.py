# SPDX-License-Identifier: Apache-2.0
"""Registry entries: scale-out (zero1, host_offload).

Both are wrappers: their numbers are the inner transform's, so they have no
entries of their own. tests/test_sharding.py checks them against the float64
reference and optax (one device), and tests/multidevice/ on 8 simulated devices.
See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

from _registry_base import Entry

ENTRIES: list[Entry] = []

NOT_IN_REGISTRY = {
    "zero1": "wrapper: shards the inner state over a mesh axis; tests/test_sharding.py",
    "host_offload": "wrapper: inner state in host memory; tests/test_sharding.py",
}
