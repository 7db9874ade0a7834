# SPDX-License-Identifier: Apache-2.0
"""torch.optim's optimizers with PyTorch's argument names, defaults and formulas.

A recipe written for `torch.optim` ports line for line: `torch.optim.AdamW(params,
lr=1e-3, weight_decay=0.05)` becomes `gradtx.torch.adamw(lr=1e-3, weight_decay=0.05)`
and follows torch's trajectory. See docs/api/torch.md for the porting table.
"""

from gradtx.torch._aliases import adam, adamax, adamw, nadam, radam, sgd
from gradtx.torch._aliases_adaptive import (
    adadelta,
    adafactor,
    adagrad,
    asgd,
    muon,
    rmsprop,
    rprop,
)

__all__ = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "muon",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
]
