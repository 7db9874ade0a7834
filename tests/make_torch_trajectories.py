# SPDX-License-Identifier: Apache-2.0
"""Regenerates tests/data/torch_trajectories.json from torch.optim (float64).

torch is not a gradtx dependency: run this in an environment that has it,
    python tests/make_torch_trajectories.py
and commit the JSON. `tests/test_torch_trajectories.py` replays every configuration
with `gradtx.torch` and compares the params after each step (and ASGD's `ax`).

The problem is a small deterministic one: a least-squares matrix `w` (with a quartic
term), a badly scaled quadratic vector `b` and a scalar `s`; its gradient is written
out in closed form (`gradient` below, and again in the test), so both sides feed the
optimizers bit-identical gradients for identical params. Muon only takes 2-D params,
so it runs on `w` alone.

torch.optim.Muon casts to bfloat16 for its Newton-Schulz iteration; the `muon`
configurations are recorded with that cast disabled (torch's code otherwise
unchanged, see `_float64_newton_schulz`), so float64 can be compared to 1e-7. The
`muon_bf16` configurations keep torch's bfloat16 cast and are compared loosely.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import pathlib

import numpy as np
import torch

STEPS = 20
OUT = pathlib.Path(__file__).parent / "data" / "torch_trajectories.json"


def problem() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "A": rng.standard_normal((6, 4)),
        "B": rng.standard_normal((6, 3)),
        "c": rng.standard_normal(3),
        "d": np.array([0.5, 1.0, 2.0]),
        "w0": rng.standard_normal((4, 3)),
        "b0": rng.standard_normal(3),
        "s0": np.array(0.3),
    }


def gradient(data, w, b=None, s=None):
    """Closed-form gradient of the test problem (arrays of torch or NumPy)."""
    g = {"w": data["A"].T @ (data["A"] @ w - data["B"]) / 6 + 0.05 * w**3}
    if b is not None:
        g["b"] = data["d"] * (b - data["c"])
        g["s"] = 2 * (s - 0.7)
    return g


# (id, torch.optim class name, gradtx.torch name, kwargs, lr schedule or None)
CONFIGS = [
    ("sgd", "SGD", "sgd", {"lr": 0.1}),
    ("sgd_momentum", "SGD", "sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd_dampening", "SGD", "sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    (
        "sgd_nesterov_wd",
        "SGD",
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ),
    (
        "sgd_maximize",
        "SGD",
        "sgd",
        {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.2, "maximize": True},
    ),
    ("adam", "Adam", "adam", {"lr": 0.05}),
    ("adam_l2", "Adam", "adam", {"lr": 0.05, "weight_decay": 0.1}),
    (
        "adam_amsgrad",
        "Adam",
        "adam",
        {"lr": 0.05, "amsgrad": True, "betas": (0.8, 0.99)},
    ),
    (
        "adam_decoupled_amsgrad",
        "Adam",
        "adam",
        {
            "lr": 0.05,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
            "amsgrad": True,
        },
    ),
    ("adam_maximize", "Adam", "adam", {"lr": 0.01, "eps": 1e-3, "maximize": True}),
    ("adam_exponential_lr", "Adam", "adam", {"lr": 0.05}, 0.9),
    ("adamw", "AdamW", "adamw", {"lr": 0.05}),
    (
        "adamw_amsgrad",
        "AdamW",
        "adamw",
        {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True},
    ),
    ("adagrad", "Adagrad", "adagrad", {"lr": 0.1}),
    (
        "adagrad_all",
        "Adagrad",
        "adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.05,
            "initial_accumulator_value": 0.5,
            "weight_decay": 0.1,
        },
    ),
    (
        "adagrad_maximize",
        "Adagrad",
        "adagrad",
        {"lr": 0.05, "eps": 1e-3, "maximize": True},
    ),
    ("adadelta", "Adadelta", "adadelta", {}),
    (
        "adadelta_all",
        "Adadelta",
        "adadelta",
        {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1},
    ),
    ("adadelta_maximize", "Adadelta", "adadelta", {"maximize": True}),
    ("adamax", "Adamax", "adamax", {"lr": 0.05}),
    (
        "adamax_all",
        "Adamax",
        "adamax",
        {"lr": 0.05, "weight_decay": 0.1, "betas": (0.8, 0.95), "eps": 1e-3},
    ),
    ("adamax_maximize", "Adamax", "adamax", {"lr": 0.01, "maximize": True}),
    ("nadam", "NAdam", "nadam", {"lr": 0.05}),
    (
        "nadam_l2",
        "NAdam",
        "nadam",
        {"lr": 0.05, "momentum_decay": 0.01, "weight_decay": 0.1},
    ),
    (
        "nadam_decoupled",
        "NAdam",
        "nadam",
        {
            "lr": 0.05,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
            "betas": (0.8, 0.99),
        },
    ),
    ("nadam_maximize", "NAdam", "nadam", {"lr": 0.01, "maximize": True}),
    ("radam", "RAdam", "radam", {"lr": 0.05}),
    (
        "radam_l2",
        "RAdam",
        "radam",
        {"lr": 0.05, "weight_decay": 0.1, "betas": (0.9, 0.99)},
    ),
    (
        "radam_decoupled",
        "RAdam",
        "radam",
        {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    (
        "radam_maximize",
        "RAdam",
        "radam",
        {"lr": 0.01, "maximize": True, "betas": (0.8, 0.9)},
    ),
    ("rmsprop", "RMSprop", "rmsprop", {"lr": 0.01}),
    (
        "rmsprop_centered",
        "RMSprop",
        "rmsprop",
        {"lr": 0.01, "alpha": 0.9, "centered": True},
    ),
    (
        "rmsprop_momentum_l2",
        "RMSprop",
        "rmsprop",
        {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1, "eps": 1e-3},
    ),
    (
        "rmsprop_all_maximize",
        "RMSprop",
        "rmsprop",
        {"lr": 0.005, "centered": True, "momentum": 0.5, "maximize": True},
    ),
    ("rprop", "Rprop", "rprop", {"lr": 0.01}),
    (
        "rprop_all",
        "Rprop",
        "rprop",
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
    ),
    ("rprop_maximize", "Rprop", "rprop", {"lr": 0.01, "maximize": True}),
    ("asgd", "ASGD", "asgd", {"lr": 0.05}),
    (
        "asgd_all",
        "ASGD",
        "asgd",
        {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 5.0, "weight_decay": 0.1},
    ),
    ("asgd_maximize", "ASGD", "asgd", {"lr": 0.01, "t0": 10.0, "maximize": True}),
    ("adafactor", "Adafactor", "adafactor", {"lr": 0.05}),
    (
        "adafactor_all",
        "Adafactor",
        "adafactor",
        {
            "lr": 0.05,
            "beta2_decay": -0.5,
            "eps": (1e-6, 1e-2),
            "d": 1.5,
            "weight_decay": 0.1,
        },
    ),
    ("adafactor_maximize", "Adafactor", "adafactor", {"lr": 0.02, "maximize": True}),
    ("muon", "Muon", "muon", {"lr": 0.02}),
    (
        "muon_plain",
        "Muon",
        "muon",
        {
            "lr": 0.02,
            "nesterov": False,
            "momentum": 0.9,
            "adjust_lr_fn": "match_rms_adamw",
        },
    ),
    (
        "muon_spectral",
        "Muon",
        "muon",
        {
            "lr": 0.02,
            "weight_decay": 0.0,
            "adjust_lr_fn": "spectral_unclamped",
            "ns_steps": 3,
        },
    ),
    ("muon_bf16", "Muon", "muon", {"lr": 0.02}),
]


@contextlib.contextmanager
def _float64_newton_schulz(enabled: bool):
    """Makes `Tensor.bfloat16()` a copy, so Muon's Newton-Schulz stays float64."""
    original = torch.Tensor.bfloat16
    if enabled:
        torch.Tensor.bfloat16 = lambda self, *a, **k: self.clone()
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = original


def run(config, data):
    cid, cls, _, kwargs, *rest = config
    muon = cls == "Muon"
    keys = ["w"] if muon else ["w", "b", "s"]
    tdata = {k: torch.tensor(v) for k, v in data.items()}
    params = {
        k: torch.tensor(data[k + "0"]).clone().requires_grad_(False) for k in keys
    }
    opt = getattr(torch.optim, cls)(list(params.values()), **kwargs)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, rest[0]) if rest else None
    trajectory = []
    with _float64_newton_schulz(muon and not cid.endswith("bf16")):
        for _ in range(STEPS):
            grads = gradient(tdata, *(params[k] for k in keys))
            for k in keys:
                params[k].grad = grads[k].clone()
            opt.step()
            if sched is not None:
                sched.step()
            trajectory.append({k: params[k].tolist() for k in keys})
    out = {
        "id": cid,
        "torch": cls,
        "name": config[2],
        "kwargs": kwargs,
        "exponential_lr": rest[0] if rest else None,
        "params": trajectory,
    }
    if cls == "ASGD":
        out["ax"] = {k: opt.state[params[k]]["ax"].tolist() for k in keys}
    return out


# torch-only switches with no meaning for a functional JAX optimizer.
TORCH_ONLY = {"self", "params", "foreach", "capturable", "differentiable", "fused"}


def signatures() -> dict[str, list[list]]:
    """torch's parameter names, kinds and defaults, for the signature-parity test."""
    out = {}
    for _, cls, name, *_ in CONFIGS:
        sig = inspect.signature(getattr(torch.optim, cls).__init__)
        out[name] = [
            [p.name, p.kind == p.KEYWORD_ONLY, p.default]
            for p in sig.parameters.values()
            if p.name not in TORCH_ONLY
        ]
    return out


def main() -> None:
    torch.set_default_dtype(torch.float64)
    data = problem()
    result = {
        "source": f"torch {torch.__version__} (torch.optim, float64, CPU)",
        "steps": STEPS,
        "problem": {k: v.tolist() for k, v in data.items()},
        "signatures": signatures(),
        "configs": [run(c, data) for c in CONFIGS],
    }
    # One line per configuration: readable diffs, a third of the indented size.
    lines = [json.dumps(c, separators=(",", ":")) for c in result.pop("configs")]
    head = json.dumps(result, separators=(",", ":"))[:-1]
    OUT.write_text(head + ',"configs":[\n' + ",\n".join(lines) + "\n]}\n")
    print(f"wrote {len(CONFIGS)} trajectories to {OUT} ({result['source']})")


if __name__ == "__main__":
    main()
