"""gradtx.tree arithmetic and reductions: float64 NumPy references, optax parity, jit.

The NumPy references are written from each function's definition; optax 0.2.8 is the
parity target for values and dtypes (its reductions run under standard promotion,
since it mixes leaf dtypes implicitly).
"""

import functools
import inspect
import itertools
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import tree_utils

ROOT = pathlib.Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _f32(*shape):
    return jnp.asarray(RNG.standard_normal(shape).astype(np.float32))


X = {"m": _f32(3, 4), "v": _f32(5), "s": _f32()}
Y = {"m": _f32(3, 4), "v": _f32(5) + 3.0, "s": _f32()}
Z = {"m": _f32(3, 4), "v": _f32(5), "s": _f32()}
MIXED = {
    "f": jnp.array([[1.5, -2.25], [0.5, 4.0]]),
    "h": jnp.array([-3.0, 0.75, 2.0], jnp.bfloat16),
    "i": jnp.array([2, -5], jnp.int32),
}
COMPLEX = {"z": jnp.array([1 + 2j, -3 + 0.5j], jnp.complex64), "r": _f32(3)}
INTS = {"a": jnp.array([1, -2, 3], jnp.int32), "b": jnp.array(4, jnp.int32)}


def _np(tree):
    return [
        np.asarray(x, np.complex128 if jnp.iscomplexobj(x) else np.float64)
        for x in jax.tree.leaves(tree)
    ]


def _close(got, want, rtol=1e-6, atol=1e-6):
    kind = np.complex128 if np.iscomplexobj(got) else np.float64
    np.testing.assert_allclose(np.asarray(got, kind), want, rtol=rtol, atol=atol)


# --- names and signatures ---


def _public(module):
    return sorted(n for n in dir(module) if not n.startswith("_"))


def test_tree_all_lists_every_optax_tree_function():
    assert gradtx.tree.__all__ == sorted(gradtx.tree.__all__)
    assert gradtx.tree.__all__ == _public(optax.tree)


def test_tree_utils_all_matches_optax_and_aliases_tree():
    theirs = [n for n in _public(optax.tree_utils) if n not in ("functools", "typing")]
    assert tree_utils.__all__ == sorted(tree_utils.__all__) == theirs
    for name in tree_utils.__all__:
        if name.startswith("tree_"):
            assert getattr(tree_utils, name) is getattr(gradtx.tree, name[5:]), name
    assert gradtx.tree_map_params is gradtx.tree.map_params


@pytest.mark.parametrize("name", _public(optax.tree), ids=str)
def test_tree_signature_matches_optax(name):
    ours = inspect.signature(getattr(gradtx.tree, name)).parameters
    theirs = inspect.signature(getattr(optax.tree, name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


# --- leafwise arithmetic ---

ARITH = {
    "add": (lambda t: t.add(X, Y, Z), lambda x, y, z: x + y + z),
    "sub": (lambda t: t.sub(X, Y), lambda x, y, z: x - y),
    "mul": (lambda t: t.mul(X, Y), lambda x, y, z: x * y),
    "div": (lambda t: t.div(X, Y), lambda x, y, z: x / y),
    "scale": (lambda t: t.scale(0.5, X), lambda x, y, z: 0.5 * x),
    "add_scale": (lambda t: t.add_scale(X, -2.0, Y), lambda x, y, z: x - 2.0 * y),
    "where": (lambda t: t.where(True, X, Y), lambda x, y, z: x),
    "clip": (lambda t: t.clip(X, -0.5, 0.25), lambda x, y, z: np.clip(x, -0.5, 0.25)),
    "clip_min": (lambda t: t.clip(X, min_value=0.0), lambda x, y, z: np.maximum(x, 0)),
    "clip_max": (lambda t: t.clip(X, max_value=0.0), lambda x, y, z: np.minimum(x, 0)),
    "conj": (lambda t: t.conj(X), lambda x, y, z: x),
    "real": (lambda t: t.real(X), lambda x, y, z: x),
}


@pytest.mark.parametrize("name", list(ARITH), ids=str)
def test_tree_arithmetic_matches_float64_reference_and_optax(name, jit):
    call, ref = ARITH[name]
    got = jit(lambda: call(gradtx.tree))()
    for g, x, y, z in zip(jax.tree.leaves(got), _np(X), _np(Y), _np(Z), strict=True):
        _close(g, ref(x, y, z))
    assert jax.tree.structure(got) == jax.tree.structure(X)
    chex.assert_trees_all_close(got, call(optax.tree), rtol=1e-6)


def test_tree_add_scale_keeps_none_leaves_and_sub_keeps_dtypes():
    tree_x = {"a": None, "b": jnp.ones(2, jnp.bfloat16)}
    tree_y = {"a": jnp.ones(3), "b": jnp.full(2, 2.0, jnp.bfloat16)}
    out = gradtx.tree.add_scale(tree_x, 0.5, tree_y)
    assert out["a"] is None
    chex.assert_trees_all_equal(out["b"], jnp.full(2, 2.0, jnp.bfloat16))
    assert gradtx.tree.sub(tree_y, tree_y)["b"].dtype == jnp.bfloat16
    assert gradtx.tree.add({}, {}) == {}


def test_tree_complex_conj_and_real():
    z = COMPLEX["z"]
    chex.assert_trees_all_equal(gradtx.tree.conj(COMPLEX)["z"], jnp.conj(z))
    real = gradtx.tree.real(COMPLEX)
    assert real["z"].dtype == jnp.float32
    _close(real["z"], np.real(np.asarray(z)))


def test_tree_where_with_an_array_condition_and_batch_shape():
    cond = {"m": X["m"] > 0, "v": X["v"] > 0, "s": X["s"] > 0}
    got = jax.tree.map(lambda c, x, y: gradtx.tree.where(c, x, y), cond, X, Y)
    for g, c, x, y in zip(*map(jax.tree.leaves, (got, cond, X, Y)), strict=True):
        np.testing.assert_array_equal(g, np.where(c, x, y))
    batched = gradtx.tree.batch_shape(X, (2, 1))
    assert [x.shape for x in jax.tree.leaves(batched)] == [
        (2, 1, 3, 4),
        (2, 1),
        (2, 1, 5),
    ]
    np.testing.assert_array_equal(batched["m"][1, 0], X["m"])
    chex.assert_trees_all_equal(batched, optax.tree.batch_shape(X, (2, 1)))


@pytest.mark.parametrize(
    ("name", "value", "dtype"),
    [
        ("zeros_like", 0, None),
        ("ones_like", 1, jnp.bfloat16),
        ("full_like", 2.5, None),
        ("full_like", 2.5, jnp.int32),  # truncated to 2, as jnp.full_like does
    ],
    ids=["zeros", "ones-bf16", "full", "full-int32"],
)
def test_tree_filled_like_follow_dtype_and_value(name, value, dtype, jit):
    args = (value,) if name == "full_like" else ()
    got = jit(lambda: getattr(gradtx.tree, name)(X, *args, dtype=dtype))()
    for out, x in zip(jax.tree.leaves(got), jax.tree.leaves(X), strict=True):
        assert out.dtype == (dtype or x.dtype)
        assert out.shape == x.shape
        np.testing.assert_array_equal(out, np.full(x.shape, value).astype(out.dtype))
    want = getattr(optax.tree, name)(X, *args, dtype=dtype)
    chex.assert_trees_all_equal(got, want)
    chex.assert_trees_all_equal_dtypes(got, want)


# --- reductions ---


def _ref_sum(tree):
    return sum(np.sum(x) for x in _np(tree))


def _ref_vdot(a, b):
    return sum(
        np.vdot(x.ravel(), y.ravel()) for x, y in zip(_np(a), _np(b), strict=True)
    )


def _ref_norm(tree, ord_, squared):
    flat = np.concatenate([np.abs(x).ravel() for x in _np(tree)] + [np.zeros(0)])
    if ord_ in (None, 2):
        out = np.sqrt(np.sum(flat**2))
    elif ord_ == 1:
        out = np.sum(flat)
    else:
        out = np.max(flat, initial=-np.inf)
    return out**2 if squared else out


TREES = {"f32": X, "mixed": MIXED, "complex": COMPLEX, "int": INTS, "empty": {}}
# Every tree under jit; eagerly only the two that exercise the most code paths
# (compiling each reduction for each tree twice would double these tests' time).
RUNS = [(t, "jit") for t in TREES] + [("mixed", "eager"), ("complex", "eager")]
RUN_IDS = [f"{mode}-{t}" for t, mode in RUNS]


def _runner(mode):
    return jax.jit if mode == "jit" else lambda f: f


@pytest.mark.parametrize(("tree_id", "mode"), RUNS, ids=RUN_IDS)
def test_tree_sum_vdot_size_match_reference_and_optax_dtype(
    tree_id, mode, standard_promotion
):
    tree, jit = TREES[tree_id], _runner(mode)
    got_sum = jit(gradtx.tree.sum)(tree)
    got_pairwise = jit(functools.partial(gradtx.tree.sum, associative_reduction=True))(
        tree
    )
    got_vdot = jit(gradtx.tree.vdot)(tree, tree)
    _close(got_sum, _ref_sum(tree), rtol=1e-5)
    _close(got_pairwise, _ref_sum(tree), rtol=1e-5)
    _close(got_vdot, _ref_vdot(tree, tree), rtol=1e-5)
    assert (
        gradtx.tree.size(tree)
        == optax.tree.size(tree)
        == sum(x.size for x in _np(tree))
    )
    if tree_id != "empty":  # optax returns the Python int 0 there
        assert got_sum.dtype == optax.tree.sum(tree).dtype
        assert got_vdot.dtype == optax.tree.vdot(tree, tree).dtype
        _close(got_vdot, optax.tree.vdot(tree, tree), rtol=2e-3)


def test_tree_reductions_run_under_strict_promotion_on_mixed_dtypes():
    # conftest sets strict promotion: the mixed tree (f32, bf16, int32) is promoted
    # explicitly, to the dtype optax gets under standard promotion.
    assert gradtx.tree.sum(MIXED).dtype == jnp.float32
    assert gradtx.tree.vdot(MIXED, MIXED).dtype == jnp.float32
    assert gradtx.tree.norm(MIXED).dtype == jnp.float32
    _close(gradtx.tree.norm(MIXED), _ref_norm(MIXED, None, False))


def test_tree_sum_of_bfloat16_leaves_is_accumulated_in_float32():
    # 300 leaves of 1.0: adding in bfloat16 stalls at 256 (optax's result); gradtx
    # adds in float32 and returns 300, exactly representable in bfloat16.
    tree = [jnp.ones((), jnp.bfloat16)] * 300
    got = gradtx.tree.sum(tree)
    assert got.dtype == jnp.bfloat16
    assert float(got) == 300.0
    assert float(gradtx.tree.norm(tree, squared=True)) == 300.0
    assert float(gradtx.tree.vdot(tree, tree)) == 300.0


@pytest.mark.parametrize(("tree_id", "mode"), RUNS, ids=RUN_IDS)
def test_tree_max_min_match_reference_and_optax(tree_id, mode, standard_promotion):
    tree, jit = {k: v for k, v in TREES[tree_id].items() if k != "z"}, _runner(mode)
    flat = np.concatenate([x.ravel() for x in _np(tree)] + [np.zeros(0)])
    got_max, got_min = jit(gradtx.tree.max)(tree), jit(gradtx.tree.min)(tree)
    assert float(got_max) == np.max(flat, initial=-np.inf)
    assert float(got_min) == np.min(flat, initial=np.inf)
    want = optax.tree.max(tree)
    assert got_max.dtype == jnp.asarray(want).dtype  # float32 for int leaves, as optax
    assert float(want) == float(got_max)


def test_tree_max_skips_empty_leaves():
    tree = {"e": jnp.zeros((0, 3)), "v": jnp.array([-2.0, -1.0])}
    assert float(gradtx.tree.max(tree)) == -1.0
    assert float(gradtx.tree.min(tree)) == -2.0


ORDS = [None, 2, 1, jnp.inf, "inf", "infinity"]


COMBOS = list(itertools.product(ORDS, (False, True)))


def _all_norms(lib, tree):
    return [lib.tree.norm(tree, ord=o, squared=sq) for o, sq in COMBOS]


@pytest.mark.parametrize(("tree_id", "mode"), RUNS, ids=RUN_IDS)
def test_tree_norm_matches_reference_and_optax(tree_id, mode, standard_promotion):
    tree, jit = TREES[tree_id], _runner(mode)
    got = jit(functools.partial(_all_norms, gradtx))(tree)
    want = jax.jit(functools.partial(_all_norms, optax))(tree)
    for (ord_, squared), g, w in zip(COMBOS, got, want, strict=True):
        _close(g, _ref_norm(tree, ord_, squared), rtol=1e-5)
        assert g.dtype == w.dtype, (ord_, squared)
        _close(g, np.asarray(w, np.float64), rtol=1e-5)


def test_tree_norm_of_bfloat16_keeps_the_dtype():
    tree = {"h": jnp.array([3.0, 4.0], jnp.bfloat16)}
    got = gradtx.tree.norm(tree)
    assert got.dtype == jnp.bfloat16
    assert float(got) == 5.0


def test_tree_norm_gradient_is_finite_at_zero():
    # Deliberate difference: optax.tree.norm's gradient at a zero tree is NaN.
    zero = {"a": jnp.zeros(3), "b": jnp.zeros(())}
    grad = jax.grad(gradtx.tree.norm)(zero)
    chex.assert_trees_all_equal(grad, zero)
    away = jax.grad(gradtx.tree.norm)(
        {"a": jnp.array([3.0, 0.0, 0.0]), "b": jnp.array(4.0)}
    )
    _close(away["a"], [0.6, 0.0, 0.0])
    _close(away["b"], 0.8)


@pytest.mark.parametrize("bad", [3, 0, -1, "fro", 0.5], ids=str)
def test_tree_norm_rejects_unknown_ord(bad):
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.tree\.norm: ord.*"):
        gradtx.tree.norm(X, ord=bad)


# --- moments and bias correction ---


@pytest.mark.parametrize("order", [2, 3], ids=str)
def test_tree_update_moments_match_reference_and_optax(order, jit):
    decay = 0.9
    g, m = X, jax.tree.map(jnp.abs, Y)
    fns = {
        "update_moment": (order, lambda x, t: (1 - decay) * x**order + decay * t),
        "update_moment_per_elem_norm": (
            order,
            lambda x, t: (
                (1 - decay) * np.abs(x) ** order + decay * t
                if order % 2 == 0
                else (1 - decay) * x**order + decay * t
            ),
        ),
        "update_infinity_moment": (
            1e-3,
            lambda x, t: np.maximum(np.abs(x) + 1e-3, decay * t),
        ),
    }
    for name, (arg, ref) in fns.items():
        fn = getattr(gradtx.tree, name)
        got = jit(lambda fn=fn, a=arg: fn(g, m, decay, a))()
        for out, x, t in zip(jax.tree.leaves(got), _np(g), _np(m), strict=True):
            _close(out, ref(x, t), rtol=1e-5)
        chex.assert_trees_all_close(
            got, getattr(optax.tree, name)(g, m, decay, arg), rtol=1e-6
        )


@pytest.mark.parametrize("order", [2, 3], ids=str)
def test_tree_update_moment_per_elem_norm_uses_modulus_for_complex(order):
    z = COMPLEX["z"]
    moment = jnp.ones(2, jnp.float32)
    got = gradtx.tree.update_moment_per_elem_norm({"z": z}, {"z": moment}, 0.5, order)
    _close(
        got["z"], 0.5 * np.abs(np.asarray(z, np.complex128)) ** order + 0.5, rtol=1e-5
    )
    want = optax.tree.update_moment_per_elem_norm({"z": z}, {"z": moment}, 0.5, order)
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_tree_update_moments_keep_none_updates():
    updates, moments = {"a": None, "b": jnp.ones(2)}, {"a": None, "b": jnp.ones(2)}
    for name in (
        "update_moment",
        "update_moment_per_elem_norm",
        "update_infinity_moment",
    ):
        out = getattr(gradtx.tree, name)(updates, moments, 0.9, 2)
        assert out["a"] is None, name
        _close(out["b"], 1.0 if name != "update_infinity_moment" else 3.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=str)
def test_tree_bias_correction_matches_reference_and_keeps_dtype(dtype, jit):
    moment = jax.tree.map(lambda x: x.astype(dtype), X)
    got = jit(gradtx.tree.bias_correction)(moment, 0.9, jnp.int32(3))
    factor = 1 - 0.9**3
    rtol = 1e-5 if dtype == jnp.float32 else 1e-2
    for out, x in zip(jax.tree.leaves(got), _np(moment), strict=True):
        assert out.dtype == dtype
        _close(out, x / factor, rtol=rtol, atol=0)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes float and int32
        want = optax.tree.bias_correction(moment, 0.9, jnp.int32(3))
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_tree_allclose_matches_numpy_and_optax(jit):
    near = jax.tree.map(lambda x: x * (1 + 1e-7), X)
    far = jax.tree.map(lambda x: x + 1e-3, X)
    nan = {"a": jnp.array([jnp.nan, 1.0])}
    allclose = jit(gradtx.tree.allclose, static_argnames="equal_nan")
    assert bool(allclose(X, near))
    assert not bool(allclose(X, far))
    assert bool(allclose(X, far, atol=1e-2))
    assert not bool(allclose(nan, nan))
    assert bool(allclose(nan, nan, equal_nan=True))
    assert bool(gradtx.tree.allclose({}, {})) is True
    for a, b in ((X, near), (X, far)):
        assert bool(gradtx.tree.allclose(a, b)) == bool(optax.tree.allclose(a, b))


# --- sharded leaves (a child process with 4 CPU devices) ---

SHARDED = """
import jax, jax.numpy as jnp, numpy as np, gradtx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
for kind in (AxisType.Explicit,):
    mesh = jax.make_mesh((4,), ("d",), axis_types=(kind,))
    rows = NamedSharding(mesh, P("d"))
    x = jax.device_put(jnp.arange(8.0).reshape(4, 2) - 3.0, rows)
    h = jax.device_put(jnp.arange(4.0, dtype=jnp.bfloat16), rows)
    tree = {"x": x, "h": h, "y": jnp.ones(3)}
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in tree.values()])
    with jax.set_mesh(mesh):
        for run in (lambda f: f, jax.jit):
            assert float(run(gradtx.tree.vdot)(tree, tree)) == np.dot(flat, flat)
            assert float(run(gradtx.tree.sum)(tree)) == flat.sum()
            norm = run(gradtx.tree.norm)(tree)
            np.testing.assert_allclose(norm, np.linalg.norm(flat), rtol=1e-6)
            assert float(run(gradtx.tree.max)(tree)) == flat.max()
        if kind == AxisType.Explicit:
            noise = jax.jit(gradtx.tree.random_like)(jax.random.key(0), tree)
            assert noise["x"].sharding.is_equivalent_to(rows, 2), noise["x"].sharding
            zeros = jax.jit(gradtx.tree.zeros_like)(tree)
            assert zeros["x"].sharding.is_equivalent_to(rows, 2), zeros["x"].sharding
print("ok")
"""


def test_tree_reductions_on_leaves_sharded_over_an_explicit_mesh():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", SHARDED],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert done.stdout.strip() == "ok"
