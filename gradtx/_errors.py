# SPDX-License-Identifier: Apache-2.0
"""Stable exception types, so callers never have to match message strings."""


class GradtxError(Exception):
    """Base class of every error gradtx raises on purpose."""


class HyperparameterError(GradtxError, ValueError):
    """A hyperparameter is outside its allowed range."""


class TreeMismatchError(GradtxError, ValueError):
    """Two pytrees that must share a structure do not."""


class MissingParamsError(GradtxError, ValueError):
    """A transform that needs `params` was called without them."""


class MissingValueError(GradtxError, TypeError):
    """A transform that needs a scalar `value=` (the loss) was called without one."""
