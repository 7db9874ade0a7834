# SPDX-License-Identifier: Apache-2.0
"""Building blocks; the public names are re-exported flat from `gradtx`."""
