# SPDX-License-Identifier: Apache-2.0
"""Scale-out: ZeRO-1 state sharding, host-offloaded state, bytes per device.

Every transform of gradtx already keeps the sharding of its inputs (per-parameter
state is created with its param's sharding, also under `jit`); this package adds
the wrappers that move the state somewhere else. See docs/scaling.md.
"""

from gradtx.sharding._offload import MemoryKindError, host_offload
from gradtx.sharding._place import bytes_per_device
from gradtx.sharding._zero import zero1

__all__ = ["MemoryKindError", "bytes_per_device", "host_offload", "zero1"]
