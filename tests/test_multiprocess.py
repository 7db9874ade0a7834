# SPDX-License-Identifier: Apache-2.0
"""Multi-process `jax.distributed` on localhost (2 processes x 4 CPU devices, gloo).

`tests/multiprocess/worker.py` is started twice: the processes join one coordinator,
train on a global mesh of 8 devices (`adamw` data parallel, `zero1(adamw)`, and a
global-norm clip with params sharded across the processes) and process 0 writes the
gathered params and losses. This process repeats the training on one device and
compares at f32 rtol 1e-6 (RELIABILITY.md C8).
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

import gradtx

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "multiprocess" / "worker.py"


def _load_worker():
    # Importing has no side effects: XLA_FLAGS and `jax.distributed` are set up only
    # in the worker processes that `launch` starts.
    spec = importlib.util.spec_from_file_location("gradtx_multiprocess_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if text else "(empty)"


def _launch(out: pathlib.Path) -> dict[str, np.ndarray]:
    """Runs the two worker processes; what process 0 wrote (fails with their logs)."""
    results = worker.launch(out, timeout=300)
    if any(code != 0 for code, _, _ in results) or not out.exists():
        report = "\n".join(
            f"--- process {i} exited {code}\n[stdout]\n{_tail(o)}\n[stderr]\n{_tail(e)}"
            for i, (code, o, e) in enumerate(results)
        )
        pytest.fail(f"the worker processes failed:\n{report}", pytrace=False)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@functools.cache
def _one_device(make_tx):
    """Final params and losses of the training on one device, unsharded."""
    tx, device = make_tx(), jax.devices()[0]
    params_np, batches = worker.problem()
    params, _, losses = worker.train(
        tx,
        jax.device_put(params_np, device),
        batches,
        lambda b: jax.device_put(b, device),
    )
    return params, np.asarray(losses)


def _assert_close(actual, expected, rtol=1e-6, err_msg=""):
    # As tests/multidevice/_common.assert_close: atol 1e-7 of max(1, max |expected|)
    # covers elements near zero, where a different reduction order rounds differently.
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=0.1 * rtol * scale, err_msg=err_msg
    )


# The part of the largest leaf that each process holds: replicated AdamW keeps all
# of it; zero1's moments and the sharded params are split between the two processes.
LOCAL_PART = {"adamw": 1.0, "zero1_adamw": 0.5, "clip_adam_sharded": 0.5}


def test_multiprocess_training_equals_one_device(tmp_path):
    # One test for the whole launch (about 12 s): under xdist, tests split over
    # workers would each start their own pair of processes.
    got = _launch(tmp_path / "result.npz")
    assert int(got["process_count"]) == 2
    assert int(got["device_count"]) == 8
    assert set(worker.RUNS) == set(LOCAL_PART)
    for name, (_, _, one_device_tx) in worker.RUNS.items():
        part = float(got[f"{name}/smallest_local_part"])
        assert part == LOCAL_PART[name], f"{name}: each process holds {part}"
        params, losses = _one_device(one_device_tx)
        _assert_close(got[f"{name}/losses"], losses, err_msg=f"{name}: losses")
        for k, v in params.items():
            _assert_close(got[f"{name}/params/{k}"], v, err_msg=f"{name}: {k}")


def test_multiprocess_clip_is_active_at_the_first_step():
    # Otherwise the clipped run would not depend on the cross-process global norm.
    params_np, batches = worker.problem()
    grads = jax.grad(worker.loss)(params_np, *batches[0])
    assert float(gradtx.global_norm(grads)) > 1.0


def _adam():
    return gradtx.adam(1e-2)


def test_multiprocess_comparison_tells_the_clip_apart():
    # The one-device runs with and without the clip are far apart next to the
    # tolerance, so the multi-process run matching one of them is a real check.
    _, clipped = _one_device(worker.clipped_adam)
    _, unclipped = _one_device(_adam)
    with pytest.raises(AssertionError):
        _assert_close(unclipped, clipped)


def test_multiprocess_worker_is_not_collected_by_the_normal_run():
    names = [p.name for p in WORKER.parent.iterdir() if p.suffix == ".py"]
    assert "worker.py" in names
    for name in names:
        assert not name.startswith("test_"), name
        assert not name.endswith("_test.py"), name
        assert name != "conftest.py", "a conftest would be imported by every run"
    # --doctest-modules would import worker.py as a module of tests/.
    assert '"multiprocess/*"' in (ROOT / "tests" / "conftest.py").read_text()
