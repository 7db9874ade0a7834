# SPDX-License-Identifier: Apache-2.0
"""Optimizer aliases; the public names are re-exported flat from `gradtx`."""
