# SPDX-License-Identifier: Apache-2.0
"""gradtx.schedules: optax and torch parity, jit, vmap, the int32 range, errors."""

import bisect
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

# Every public optax schedule (the inject_* wrappers live elsewhere in gradtx).
OPTAX_NAMES = [
    name
    for name in dir(optax.schedules)
    if name.islower() and not name.startswith(("_", "inject"))
]
TORCH_NAMES = ["cosine_restarts_schedule", "cyclic_schedule"]
TORCH_NAMES += ["multistep_schedule", "step_schedule"]
INT32_MAX = 2**31 - 1
N = 60  # steps compared: every case ends, restarts or saturates before this


def _case(name, *args, **kwargs):
    """A builder `lib -> lib.name(*args, **kwargs)`, for lib gradtx or optax."""
    return lambda lib: getattr(lib, name)(*args, **kwargs)


def _cycle(*values):
    """One `sgdr_schedule` cycle: `warmup_cosine_decay_schedule` keyword arguments."""
    keys = ("init_value", "peak_value", "warmup_steps", "decay_steps")
    return dict(zip(keys, values, strict=True))


def _join(lib):
    parts = [
        lib.constant_schedule(1.0),
        lib.linear_schedule(1.0, 0.0, 10),
        lib.cosine_decay_schedule(0.5, 20),
    ]
    return lib.join_schedules(parts, [5, 20])


# Each case builds the same schedule from either library: `build(lib)` with lib
# gradtx or optax.schedules.
PC, PI = "piecewise_constant_schedule", "piecewise_interpolate_schedule"
WC, WE = "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule"
OPTAX_CASES = {
    "constant": _case("constant_schedule", 0.3),
    "constant-array": _case("constant_schedule", jnp.asarray(0.25)),
    "linear": _case("linear_schedule", 1.0, 0.1, 50),
    "linear-begin": _case("linear_schedule", 0.0, 2.0, 30, transition_begin=10),
    "linear-zero-steps": _case("linear_schedule", 1.0, 0.0, 0),
    "linear-negative-begin": _case("linear_schedule", 1.0, 0.0, 20, -5),
    "polynomial-2": _case("polynomial_schedule", 1.0, 0.01, 2, 45),
    "polynomial-sqrt-begin": _case("polynomial_schedule", 0.1, 1.0, 0.5, 40, 5),
    "polynomial-0": _case("polynomial_schedule", 1.0, 0.5, 0, 10),
    "piecewise-constant": _case(PC, 1.0, {10: 0.5, 30: 0.1, 31: 3.0}),
    "piecewise-constant-none": _case(PC, 0.7),
    "piecewise-constant-edges": _case(PC, 2.0, {-3: 0.5, 0: 2.0, 5: 0.0}),
    "interpolate-linear": _case(PI, "linear", 1.0, {10: 0.5, 30: 0.1}),
    "interpolate-cosine": _case(PI, "cosine", 0.5, {5: 2.0, 25: 0.01, 26: 4.0}),
    "interpolate-none": _case(PI, "linear", 0.4),
    "interpolate-at-zero": _case(PI, "linear", 1.0, {0: 0.5, 10: 2.0}),
    "exponential": _case("exponential_decay", 1.0, 10, 0.5),
    "exponential-staircase-begin": _case(
        "exponential_decay", 2.0, 7, 0.3, transition_begin=9, staircase=True
    ),
    "exponential-end": _case("exponential_decay", 1.0, 5, 0.5, end_value=0.2),
    "exponential-growth-capped": _case("exponential_decay", 0.1, 4, 1.5, end_value=3),
    "exponential-zero-rate": _case("exponential_decay", 0.9, 10, 0.0),
    "exponential-zero-steps": _case("exponential_decay", 0.9, 0, 0.5),
    "cosine": _case("cosine_decay_schedule", 1.0, 50),
    "cosine-alpha-exponent": _case(
        "cosine_decay_schedule", 0.5, 7, alpha=0.1, exponent=2.0
    ),
    "warmup-constant": _case("warmup_constant_schedule", 0.0, 1.0, 10),
    "warmup-constant-zero": _case("warmup_constant_schedule", 0.1, 1.0, 0),
    "warmup-cosine": _case(WC, 0.0, 1.0, 10, 50),
    "warmup-cosine-end-exponent": _case(
        WC, 0.1, 2.0, 5, 40, end_value=0.2, exponent=2.0
    ),
    "warmup-cosine-zero-peak": _case(WC, 0.0, 0.0, 5, 30, end_value=0.1),
    "warmup-cosine-no-warmup": _case(WC, 0.0, 1.0, 0, 30),
    "warmup-exponential": _case(WE, 0.0, 1.0, 10, 5, 0.8),
    "warmup-exponential-staircase-end": _case(WE, 0.0, 1.0, 4, 3, 0.5, 3, True, 0.3),
    "sgdr": _case(
        "sgdr_schedule",
        [_cycle(0.0, 1.0, 5, 20), _cycle(0.1, 0.5, 0, 25), _cycle(0.0, 0.2, 3, 10)],
    ),
    "onecycle-cosine": _case("cosine_onecycle_schedule", 50, 1.0),
    "onecycle-cosine-args": _case(
        "cosine_onecycle_schedule", 40, 0.5, 0.25, div_factor=10.0, final_div_factor=100
    ),
    "onecycle-linear": _case("linear_onecycle_schedule", 50, 1.0),
    "onecycle-linear-args": _case(
        "linear_onecycle_schedule", 50, 2.0, 0.2, 0.7, 5.0, 50.0
    ),
    "join": _join,
}


# float64 references written from the PyTorch documentation (torch is not a test
# dependency). The value at step t is the lr after t calls of scheduler.step().
def _torch_step_lr(t, init, step_size, gamma=0.1):
    return init * gamma ** (t // step_size)


def _torch_multistep_lr(t, init, milestones, gamma=0.1):
    return init * gamma ** bisect.bisect_right(sorted(milestones), t)


def _torch_warm_restarts(t, init, t_0, t_mult=1, eta_min=0.0):
    """T_cur and T_i advanced one step() at a time, as torch's step() without epoch."""
    t_cur, t_i = 0, t_0
    for _ in range(t):
        t_cur += 1
        if t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * t_mult
    return eta_min + (init - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def _torch_warm_restarts_log(t, init, t_0, t_mult, eta_min=0.0):
    """torch's step(epoch) closed form, cycle found with a float log."""
    n = int(math.log(t / t_0 * (t_mult - 1) + 1, t_mult))
    t_cur = t - t_0 * (t_mult**n - 1) / (t_mult - 1)
    t_i = t_0 * t_mult**n
    return eta_min + (init - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def _torch_cyclic_lr(t, base, top, up, down=None, mode="triangular", gamma=1.0):
    down = up if down is None else down
    total = float(up + down)
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    scale = {
        "triangular": 1.0,
        "triangular2": 1 / (2.0 ** (cycle - 1)),
        "exp_range": gamma**t,
    }[mode]
    return base + (top - base) * factor * scale


REFERENCES = {
    "step_schedule": _torch_step_lr,
    "multistep_schedule": _torch_multistep_lr,
    "cosine_restarts_schedule": _torch_warm_restarts,
    "cyclic_schedule": _torch_cyclic_lr,
}
# (gradtx name, *positional args); the reference takes the same arguments after t.
TORCH_CASES = {
    "step": ("step_schedule", 0.5, 7),
    "step-gamma": ("step_schedule", 2.0, 3, 0.8),
    "multistep": ("multistep_schedule", 1.0, [10, 25, 50]),
    "multistep-repeated": ("multistep_schedule", 0.3, [0, 5, 5, 40], 0.5),
    "multistep-empty": ("multistep_schedule", 0.3, []),
    "restarts": ("cosine_restarts_schedule", 1.0, 10),
    "restarts-mult": ("cosine_restarts_schedule", 0.5, 3, 2, 0.05),
    "restarts-mult-3": ("cosine_restarts_schedule", 1.0, 1, 3),
    "cyclic": ("cyclic_schedule", 0.1, 1.0, 10),
    "cyclic-asymmetric-triangular2": (
        "cyclic_schedule",
        0.1,
        1.0,
        4,
        11,
        "triangular2",
    ),
    "cyclic-exp-range": ("cyclic_schedule", 0.01, 0.5, 6, 3, "exp_range", 0.97),
    "cyclic-sawtooth": ("cyclic_schedule", 0.0, 1.0, 8, 0),
}


@functools.cache
def _schedule(case):
    """One gradtx schedule per case, so jit's cache is shared between the tests."""
    if case in OPTAX_CASES:
        return OPTAX_CASES[case](gradtx)
    name, *args = TORCH_CASES[case]
    return getattr(gradtx, name)(*args)


ALL_CASES = [*OPTAX_CASES, *TORCH_CASES]
OPTAX_NAN_UNDER_JIT = {"polynomial-sqrt-begin"}


@functools.cache
def _optax_values(case):
    """optax's values at steps 0..N-1 (optax needs standard dtype promotion).

    Jitted, except where optax under jit returns NaN and is right eagerly (see
    `test_polynomial_fractional_power_is_finite_at_the_end_under_jit`).
    """
    with jax.numpy_dtype_promotion("standard"):
        sched = jax.vmap(OPTAX_CASES[case](optax.schedules))
        if case not in OPTAX_NAN_UNDER_JIT:
            sched = jax.jit(sched)
        return np.asarray(sched(jnp.arange(N, dtype=jnp.int32)), np.float32)


def _values(sched, wrap):
    fn = wrap(sched)
    out = [fn(jnp.asarray(t, jnp.int32)) for t in range(N)]
    assert all(v.dtype == jnp.float32 and v.shape == () for v in out)
    return np.array(out)


@pytest.mark.parametrize("case", list(OPTAX_CASES), ids=list(OPTAX_CASES))
def test_schedule_matches_optax(case, jit):
    values = _values(_schedule(case), jit)
    np.testing.assert_allclose(values, _optax_values(case), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", list(TORCH_CASES), ids=list(TORCH_CASES))
def test_schedule_matches_torch_reference(case, jit):
    name, *args = TORCH_CASES[case]
    expected = [REFERENCES[name](t, *args) for t in range(N)]
    values = _values(_schedule(case), jit)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)


BIG_STEPS = [2**24 + 1, 2**30, INT32_MAX - 1, INT32_MAX]


@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_CASES)
def test_schedule_is_finite_up_to_int32_max_under_jit(case):
    sched = jax.jit(_schedule(case))
    values = [sched(jnp.int32(t)) for t in [0, 1, N - 1, N, *BIG_STEPS]]
    assert all(v.dtype == jnp.float32 for v in values)
    assert np.isfinite(values).all()


# One case per code path (vmap of every case would double the runtime).
VMAP_CASES = [
    *("constant", "linear-begin", "polynomial-sqrt-begin", "piecewise-constant-edges"),
    *("interpolate-cosine", "exponential-staircase-begin", "exponential-end"),
    *("cosine-alpha-exponent", "warmup-constant", "warmup-cosine-end-exponent"),
    *("warmup-exponential-staircase-end", "sgdr", "onecycle-cosine", "onecycle-linear"),
    *("join", "step", "multistep-repeated", "restarts", "restarts-mult"),
    *("cyclic-asymmetric-triangular2", "cyclic-exp-range"),
]


@pytest.mark.parametrize("case", VMAP_CASES, ids=VMAP_CASES)
def test_schedule_vmap_matches_loop(case):
    sched = _schedule(case)
    steps = [*range(N), *BIG_STEPS]
    looped = np.array([jax.jit(sched)(jnp.int32(t)) for t in steps])
    batched = jax.vmap(sched)(jnp.asarray(steps, jnp.int32))
    assert batched.dtype == jnp.float32
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-7)


def test_torch_hand_values():
    # StepLR(step_size=3, gamma=0.5): 1, 1, 1, .5, .5, .5, .25.
    sched = gradtx.step_schedule(1.0, 3, 0.5)
    got = [float(sched(t)) for t in range(7)]
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    # MultiStepLR([2, 2, 5]): the repeated milestone counts twice, so 1, 1, .01, ...
    sched = gradtx.multistep_schedule(1.0, [2, 2, 5])
    np.testing.assert_allclose([sched(t) for t in (1, 2, 5)], [1.0, 0.01, 0.001])
    # WarmRestarts(T_0=2, T_mult=2): cycles [0, 2), [2, 6), [6, 14); inside the
    # 4-step cycle (1 + cos(pi k / 4)) / 2 = 1, .853553, .5, .146447.
    sched = gradtx.cosine_restarts_schedule(1.0, 2, 2)
    expected = [1.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0]
    np.testing.assert_allclose([sched(t) for t in range(7)], expected, atol=1e-6)
    # CyclicLR(0.1, 1.0, up=2) triangular: 0.1, 0.55, 1.0, 0.55, 0.1, 0.55.
    sched = gradtx.cyclic_schedule(0.1, 1.0, 2)
    expected = [0.1, 0.55, 1.0, 0.55, 0.1, 0.55]
    np.testing.assert_allclose([sched(t) for t in range(6)], expected, rtol=1e-6)
    # exp_range, gamma=0.5, up=2: t=1: .5 * .5; t=2: 1 * .25; t=3: .5 * .125.
    sched = gradtx.cyclic_schedule(0.0, 1.0, 2, mode="exp_range", gamma=0.5)
    expected = [0.0, 0.25, 0.25, 0.0625]
    np.testing.assert_allclose([sched(t) for t in range(4)], expected, rtol=1e-6)


def test_cosine_restarts_counts_cycles_like_step_calls():
    # Step 111 of T_0=1, T_mult=10 starts the fourth cycle (1 + 10 + 100 = 111),
    # which torch's step() reaches exactly; the log form rounds to the third.
    assert _torch_warm_restarts(111, 1.0, 1, 10) == 1.0
    assert _torch_warm_restarts_log(111, 1.0, 1, 10) == pytest.approx(0.0)
    sched = gradtx.cosine_restarts_schedule(1.0, 1, 10)
    assert float(jax.jit(sched)(jnp.int32(111))) == 1.0
    # Elsewhere the two torch forms agree.
    for t in [*range(1, 111), *range(112, 300)]:
        assert _torch_warm_restarts(t, 1.0, 1, 10) == pytest.approx(
            _torch_warm_restarts_log(t, 1.0, 1, 10), abs=1e-9
        )


G = 10**10  # past int32 (optax bug B17)


def _half_cosine(x):
    return 0.5 * (1 + math.cos(math.pi * x))


# (gradtx name, *args) -> float64 reference t -> value
GIANT_CASES = {
    "cosine": (("cosine_decay_schedule", 1.0, G), lambda t: _half_cosine(t / G)),
    "linear": (("linear_schedule", 1.0, 0.0, G), lambda t: 1 - t / G),
    "linear-begin": (("linear_schedule", 1.0, 0.0, 10, G), lambda t: 1.0),
    "exponential": (("exponential_decay", 1.0, G, 0.5), lambda t: 0.5 ** (t / G)),
    "piecewise-constant": (
        ("piecewise_constant_schedule", 1.0, {5: 0.5, G: 0.1}),
        lambda t: 0.5 if t >= 5 else 1.0,
    ),
    "interpolate": (
        ("piecewise_interpolate_schedule", "linear", 1.0, {G: 0.0}),
        lambda t: 1 - t / G,
    ),
    "join": (
        ("join_schedules", [gradtx.constant_schedule(1.0), lambda t: 2.0], [G]),
        lambda t: 1.0,
    ),
    "warmup-cosine": (
        ("warmup_cosine_decay_schedule", 0.0, 1.0, 10, G),
        lambda t: min(t / 10, _half_cosine((t - 10) / (G - 10))),
    ),
    "onecycle": (
        ("linear_onecycle_schedule", G, 1.0, 0.5, 0.9, 2.0, 1.0),
        lambda t: 0.5 + 0.5 * t / (G // 2),
    ),
    "step": (("step_schedule", 1.0, G), lambda t: 1.0),
    "multistep": (("multistep_schedule", 1.0, [3, G]), lambda t: 0.1 ** (t >= 3)),
    "cyclic": (("cyclic_schedule", 0.0, 1.0, G), lambda t: t / G),
    "restarts": (("cosine_restarts_schedule", 1.0, G), lambda t: _half_cosine(t / G)),
    "restarts-mult": (
        ("cosine_restarts_schedule", 1.0, G, 2),
        lambda t: _half_cosine(t / G),
    ),
}


@pytest.mark.parametrize("case", list(GIANT_CASES), ids=list(GIANT_CASES))
def test_schedule_giant_int_arguments_do_not_overflow_under_jit(case):
    (name, *args), reference = GIANT_CASES[case]
    steps = [0, 7, 2**30 + 3, INT32_MAX]
    sched = getattr(gradtx, name)(*args)
    got = jax.jit(jax.vmap(sched))(jnp.asarray(steps, jnp.int32))
    np.testing.assert_allclose(got, [reference(t) for t in steps], rtol=1e-6)


def test_schedule_steps_past_float32_precision_are_exact():
    # 2**30 + 3 rounds to 2**30 in float32; the elapsed steps are taken in int32.
    begin = 2**30 + 1
    sched = jax.jit(gradtx.linear_schedule(0.0, 1.0, 4, transition_begin=begin))
    assert float(sched(jnp.int32(begin + 2))) == 0.5
    sched = jax.jit(gradtx.cyclic_schedule(0.0, 1.0, 2))
    assert float(sched(jnp.int32(2**30 + 3))) == 0.5  # (2**30 + 3) % 4 == 3


def test_schedule_traced_hyperparameters(jit):
    def values(lr, rate, end):
        return jnp.stack(
            [
                gradtx.cosine_decay_schedule(lr, 10, alpha=end)(jnp.int32(5)),
                gradtx.exponential_decay(lr, 2, rate, end_value=end)(jnp.int32(4)),
                gradtx.warmup_cosine_decay_schedule(0.0, lr, 2, 12, end)(7),
                gradtx.cyclic_schedule(0.0, lr, 2, mode="exp_range", gamma=rate)(2),
                gradtx.step_schedule(lr, 2, gamma=rate)(jnp.int32(4)),
            ]
        )

    got = jit(values)(jnp.float32(2.0), jnp.float32(0.5), jnp.float32(0.2))
    expected = [2 * 0.6, 0.5, 0.5 * (2.0 + 0.2), 2 * 0.25, 0.5]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_schedule_float64_under_x64(x64):
    sched = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100, end_value=0.1)
    for step in (jnp.int32(55), jnp.int64(55), 55):
        value = jax.jit(sched)(step)
        assert value.dtype == jnp.float64
        expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90))
        np.testing.assert_allclose(value, expected, rtol=1e-12)
    sched = gradtx.cosine_restarts_schedule(1.0, 2, 3)
    assert jax.jit(sched)(jnp.int64(2**40)).dtype == jnp.float64


def test_join_schedules_accepts_plain_python_schedules():
    # Outputs of any dtype (here Python and int32 ints) come back as float32.
    sched = gradtx.join_schedules([lambda t: 1, lambda t: t], [4])
    got = [jax.jit(sched)(jnp.int32(t)) for t in (3, 4, 6)]
    assert [v.dtype for v in got] == [jnp.float32] * 3
    assert [float(v) for v in got] == [1.0, 0.0, 2.0]


@pytest.mark.parametrize("name", OPTAX_NAMES, ids=OPTAX_NAMES)
def test_schedule_signature_matches_optax(name):
    def params(fn):
        sig = inspect.signature(fn).parameters.values()
        return [(p.name, p.kind, p.default) for p in sig]

    assert params(getattr(gradtx, name)) == params(getattr(optax.schedules, name))


@pytest.mark.parametrize("name", OPTAX_NAMES + TORCH_NAMES)
def test_schedule_is_exported_flat_and_under_schedules(name):
    assert getattr(gradtx, name) is getattr(gradtx.schedules, name)
    assert name in gradtx.schedules.__all__


C = gradtx.constant_schedule(1.0)
P = "the phases must start at distinct increasing steps"
# (gradtx name, args, the message after "gradtx.<name>: " as a regex)
BAD = {
    "constant-nan": ("constant_schedule", (math.nan,), "value must be a finite value"),
    "polynomial-power": (
        "polynomial_schedule",
        (1, 0, -1.0, 9),
        "power .* >= 0.0, got -1.0",
    ),
    "linear-inf": ("linear_schedule", (math.inf, 0.0, 10), "init_value must be"),
    "piecewise-scale": (
        "piecewise_constant_schedule",
        (1, {9: -1}),
        r"\[9\] .* >= 0.0",
    ),
    "interpolate": ("piecewise_interpolate_schedule", ("quad", 1), "interpolate_type"),
    "exponential-rate": ("exponential_decay", (1.0, 10, -0.5), "decay_rate must be"),
    "cosine-steps": ("cosine_decay_schedule", (1.0, 0), "decay_steps .* > 0, got 0"),
    "cosine-exponent": ("cosine_decay_schedule", (1.0, 10, 0.0, -1.0), "exponent"),
    "warmup-cosine": (
        "warmup_cosine_decay_schedule",
        (0, 1, 9, 9),
        "decay_steps .* > ",
    ),
    "warmup-exp": ("warmup_exponential_decay_schedule", (0, 1, 5, 5, -1), "decay_rate"),
    "sgdr-empty": ("sgdr_schedule", ([],), "cosine_kwargs must hold at least one"),
    "onecycle-steps": ("cosine_onecycle_schedule", (0, 1.0), "transition_steps"),
    "onecycle-pct": ("cosine_onecycle_schedule", (9, 1, 1.0), r"pct_start .* 1.0\)"),
    "onecycle-div": ("linear_onecycle_schedule", (100, 1.0, 0.3, 0.8, 0), "div_fac"),
    "onecycle-collide": ("linear_onecycle_schedule", (1, 1.0), P),
    "onecycle-order": ("linear_onecycle_schedule", (9, 1, 0.5, 0.3), P + r".*\[4, 2"),
    "join-empty": ("join_schedules", ([], []), "schedules must hold at least one"),
    "join-lengths": ("join_schedules", ([C, C], [1, 2]), "boundaries must have len"),
    "join-order": ("join_schedules", ([C, C, C], [5, 2]), "boundaries .* non-decr"),
    "step-size-zero": ("step_schedule", (1.0, 0), "step_size .* integer >= 1, got 0"),
    "step-size-float": ("step_schedule", (1.0, 2.5), "step_size must be an integer"),
    "step-gamma": ("step_schedule", (1.0, 2, -0.1), "gamma must be"),
    "multistep-order": ("multistep_schedule", (1.0, [5, 3]), r"non-decr.*\[5, 3\]"),
    "multistep-negative": ("multistep_schedule", (1.0, [-1]), r"milestones\[0\]"),
    "restarts-period": ("cosine_restarts_schedule", (1.0, 0), "first_period must"),
    "restarts-mult": ("cosine_restarts_schedule", (1.0, 5, 1.5), "period_mult .* 1.5"),
    "cyclic-mode": ("cyclic_schedule", (0, 1, 5, None, "tri"), "mode must be one of"),
    "cyclic-up": ("cyclic_schedule", (0.1, 1.0, 0), "step_size_up must be"),
    "cyclic-down": ("cyclic_schedule", (0.1, 1.0, 5, -1), "step_size_down must be"),
    "cyclic-gamma": (
        "cyclic_schedule",
        (0, 1, 5, None, "exp_range", 2),
        "gamma .* 1.0",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_schedule_bad_hyperparameter_raises(case):
    name, args, message = BAD[case]
    with pytest.raises(
        gradtx.HyperparameterError, match=rf"^gradtx\.{name}: .*{message}"
    ):
        getattr(gradtx, name)(*args)


def test_schedule_errors_are_value_errors_and_name_the_function():
    with pytest.raises(ValueError, match=r"^gradtx\.step_schedule: gamma"):
        gradtx.step_schedule(1.0, 2, gamma=math.nan)
    with pytest.raises(TypeError, match=r"schedules\[1\] must be callable"):
        gradtx.join_schedules([gradtx.constant_schedule(1.0), 2.0], [3])


def test_polynomial_fractional_power_is_finite_at_the_end_under_jit():
    # Under jit XLA turns `t / 40` into `t * (1 / 40)`, so 1 - 40/40 becomes -1.5e-8
    # and optax's `frac**0.5` is NaN from step 45 on; gradtx floors frac at 0.
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(optax.polynomial_schedule(0.1, 1.0, 0.5, 40, 5))(45)
    assert np.isnan(theirs)  # if optax fixes this, drop the NaN half of the test
    ours = jax.jit(gradtx.polynomial_schedule(0.1, 1.0, 0.5, 40, 5))
    assert float(ours(jnp.int32(45))) == float(ours(jnp.int32(10**6))) == 1.0


def test_exponential_staircase_drops_exactly_on_the_step_under_jit():
    # Under jit XLA computes 41 / 41 as 41 * (1 / 41) = 0.99999994, so optax's
    # floor keeps the old value one step too long; gradtx divides in int32.
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(optax.exponential_decay(1.0, 41, 0.5, staircase=True))(41)
    assert float(theirs) == 1.0  # if optax fixes this, drop this line
    ours = jax.jit(gradtx.exponential_decay(1.0, 41, 0.5, staircase=True))
    steps = [0, 40, 41, 81, 82, 164, 2**30]
    got = [float(ours(jnp.int32(t))) for t in steps]
    assert got == [0.5 ** (t // 41) for t in steps]
