# SPDX-License-Identifier: Apache-2.0
"""References: L-BFGS, the line searches, Polyak step sizes and momo.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.
"""

from __future__ import annotations
