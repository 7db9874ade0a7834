# SPDX-License-Identifier: Apache-2.0
"""Registry entries: Adaptive-moment blocks and optimizers (adadelta ... adafactor).

See `_registry_base.py` for the optional names this module may define.
"""

from __future__ import annotations

from _registry_base import Entry

ENTRIES: list[Entry] = []
