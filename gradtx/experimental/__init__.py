# SPDX-License-Identifier: Apache-2.0
"""Experimental modules, as `optax.experimental`."""

from gradtx.experimental import aggregating

__all__ = ["aggregating"]
