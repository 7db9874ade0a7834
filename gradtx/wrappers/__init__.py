# SPDX-License-Identifier: Apache-2.0
"""Transforms that wrap transforms; the public names are re-exported from `gradtx`."""
