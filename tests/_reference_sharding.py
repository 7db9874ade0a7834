# SPDX-License-Identifier: Apache-2.0
"""Float64 references of the scale-out area: none of its own.

`zero1` and `host_offload` change where the state lives, not its numbers, so
tests/test_sharding.py compares them with the reference of the wrapped entry
(`_registry.BY_ID[...].reference()`). This module exists because every area in
`_registry_base.AREAS` has a `_reference_<area>.py`.
"""
