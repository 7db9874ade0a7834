# SPDX-License-Identifier: Apache-2.0
"""Registry entries: L-BFGS, the line searches, Polyak step sizes and momo.

See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

from _registry_base import Entry

ENTRIES: list[Entry] = []
