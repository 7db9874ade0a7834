"""make_step(fused=True): the native one-pass Adam(W) kernel on CPU.

Checked against the unfused step (the same jnp program gradtx always runs), a float64
NumPy reference written from the papers, and optax; eagerly (`_fusion.update_and_apply`
outside jit) and jitted. Structural facts of the compiled step (the kernel is called
once per eligible leaf, every buffer is aliased, no leaf-sized temporary) are asserted;
no timing is.
"""

import os
import subprocess
import sys
import warnings

import _reference as R
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import _fusion, _kernels

BUILT, WHY = _kernels.load()
needs_kernel = pytest.mark.skipif(not BUILT, reason=f"no native kernel: {WHY}")

SCHEDULE = gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 20)


def _canonical(lib=gradtx, wd_mask=None):
    return lib.chain(
        lib.clip_by_global_norm(1.0),
        lib.scale_by_adam(),
        lib.add_decayed_weights(0.1, wd_mask),
        lib.scale_by_learning_rate(lib.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 20)),
    )


FUSABLE = {
    "adam": lambda: gradtx.adam(1e-2),
    "adamw": lambda: gradtx.adamw(1e-2, weight_decay=0.1),
    "adamw_eps_root": lambda: gradtx.adamw(1e-2, eps=1e-6, eps_root=1e-8),
    "adamw_mask_fn": lambda: gradtx.adamw(
        1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ),
    "adamw_mask_prefix": lambda: gradtx.adamw(
        1e-2, weight_decay=0.1, mask={"w": True, "b": False, "h": {"x": True}}
    ),
    "canonical": _canonical,
    "nested_chain": lambda: gradtx.chain(
        gradtx.clip_by_global_norm(0.5), gradtx.adamw(SCHEDULE, weight_decay=0.05)
    ),
    "gain_and_schedules": lambda: gradtx.chain(
        gradtx.scale(2.0),
        gradtx.clip_by_global_norm(0.3),
        gradtx.scale_by_schedule(lambda c: 1.0 / (1.0 + c.astype(jnp.float32))),
        gradtx.scale_by_adam(b1=0.8, b2=0.99),
        gradtx.add_decayed_weights(lambda c: 0.1 * 0.5 ** c.astype(jnp.float32)),
        gradtx.add_decayed_weights(0.01, mask={"w": False, "b": True, "h": True}),
        gradtx.scale_by_learning_rate(SCHEDULE),
        gradtx.scale(0.5),
    ),
}


def _params(key=0):
    k = jax.random.split(jax.random.key(key), 3)
    return {
        "w": jax.random.normal(k[0], (33, 70)),
        "b": jax.random.normal(k[1], (70,)),
        "h": {"x": jax.random.normal(k[2], (5, 3, 2))},
    }


def _grads(n=6):
    return [jax.tree.map(lambda x: 3.0 * x, _params(10 + i)) for i in range(n)]


def _run(step, tx, params, grads):
    state = tx.init(params)
    for g in grads:
        params, state = step(params, state, g)
    return params, state


def _assert_close(a, b, rtol=2e-6, atol=1e-7):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@needs_kernel
@pytest.mark.parametrize("name", list(FUSABLE))
def test_fused_step_equals_the_jnp_step(name):
    tx = FUSABLE[name]()
    plain = gradtx.make_step(tx, donate=False)
    fused = gradtx.make_step(tx, donate=False, fused=True)
    _assert_close(
        _run(fused, tx, _params(), _grads()), _run(plain, tx, _params(), _grads())
    )


@needs_kernel
@pytest.mark.parametrize("name", ["adamw", "canonical", "gain_and_schedules"])
def test_fused_update_and_apply_eagerly_equals_jitted(name):
    tx = FUSABLE[name]()
    plan = _fusion.plan(tx)
    params, state = _params(), tx.init(_params())
    eager = params, state
    for g in _grads(3):
        eager = _fusion.update_and_apply(plan, tx, g, eager[1], eager[0])
    jitted = _run(gradtx.make_step(tx, fused=True), tx, _params(), _grads(3))
    _assert_close(eager, jitted)


def _np_tree(tree):
    return {
        "w": np.asarray(tree["w"], np.float64),
        "b": np.asarray(tree["b"], np.float64),
        "x": np.asarray(tree["h"]["x"], np.float64),
    }


@needs_kernel
def test_fused_canonical_chain_matches_the_float64_reference():
    mask = {"w": True, "b": False, "h": {"x": True}}
    tx = _canonical(wd_mask=mask)
    ref = R.Chain(
        R.ClipByGlobalNorm(1.0),
        R.Adam(),
        R.AddDecayedWeights(0.1, {"w": True, "b": False, "x": True}),
        R.scale_by_learning_rate(SCHEDULE),
    )
    got = _run(gradtx.make_step(tx, fused=True), tx, _params(), _grads())[0]
    p = _np_tree(_params())
    s = ref.init(p)
    for g in _grads():
        u, s = ref.update(_np_tree(g), s, p)
        p = {k: p[k] + u[k] for k in p}
    got = _np_tree(got)
    for k in p:
        np.testing.assert_allclose(got[k], p[k], rtol=1e-5, atol=1e-6)


@needs_kernel
def test_fused_canonical_chain_matches_optax(standard_promotion):
    tx = _canonical()
    otx = _canonical(optax)
    got = _run(gradtx.make_step(tx, fused=True), tx, _params(), _grads())[0]
    params, state = _params(), otx.init(_params())
    for g in _grads():
        u, state = otx.update(g, state, params)
        params = optax.apply_updates(params, u)
    _assert_close(got, params, rtol=1e-5, atol=1e-6)


@needs_kernel
def test_fused_and_plain_steps_share_one_state_and_can_alternate():
    tx = FUSABLE["canonical"]()
    plain = gradtx.make_step(tx, donate=False)
    fused = gradtx.make_step(tx, donate=False, fused=True)
    params, state = _params(), tx.init(_params())
    for i, g in enumerate(_grads()):
        params, state = (fused if i % 2 else plain)(params, state, g)
    _assert_close((params, state), _run(plain, tx, _params(), _grads()))


@needs_kernel
def test_fused_step_with_loss_fn_and_aux():
    tx = gradtx.adamw(1e-2, weight_decay=0.1)
    x = jnp.linspace(-1.0, 1.0, 70)

    def loss(p, x):
        value = jnp.sum((p["w"] @ x - 1.0) ** 2) + jnp.sum(p["b"] * x) ** 2
        return value + jnp.sum(p["h"]["x"] ** 2), {"x0": x[0]}

    results = []
    for fused in (False, True):
        step = gradtx.make_step(tx, loss, has_aux=True, fused=fused)
        params, state = _params(), tx.init(_params())
        for _ in range(4):
            params, state, (value, aux) = step(params, state, x)
        results.append((params, state, value, aux))
    _assert_close(results[1], results[0], rtol=1e-5, atol=1e-6)


@needs_kernel
def test_leaves_the_kernel_cannot_take_run_the_jnp_program():
    params = {
        "f32": jnp.linspace(-1.0, 1.0, 64).reshape(8, 8),
        "bf16": jnp.linspace(-1.0, 1.0, 16).astype(jnp.bfloat16),
        "empty": jnp.zeros((0, 3)),
        "scalar": jnp.asarray(0.5),
    }
    grads = [jax.tree.map(lambda x, i=i: (x + 0.1 * i) * 2, params) for i in range(4)]
    tx = gradtx.adamw(1e-2, weight_decay=0.1)
    plain = gradtx.make_step(tx, donate=False)
    fused = gradtx.make_step(tx, donate=False, fused=True)
    _assert_close(_run(fused, tx, params, grads), _run(plain, tx, params, grads))
    # The f32 matrix and the f32 scalar go through the kernel; bf16 and empty do not.
    hlo = fused.lower(params, tx.init(params), params).as_text()
    assert hlo.count(_kernels.ADAM_STEP_TARGET) == 2


def _assert_jnp_program(tx, fused):
    """`fused` calls no kernel and gives the unfused step's numbers."""
    hlo = fused.lower(_params(), tx.init(_params()), _params()).as_text()
    assert _kernels.ADAM_STEP_TARGET not in hlo
    plain = gradtx.make_step(tx, donate=False)
    _assert_close(
        _run(fused, tx, _params(), _grads(3)), _run(plain, tx, _params(), _grads(3))
    )


BF16_MOMENTS = {
    "mu": {"mu_dtype": jnp.bfloat16},
    "nu": {"nu_dtype": jnp.bfloat16},
    "both": {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16},
}


@needs_kernel
@pytest.mark.parametrize("which", list(BF16_MOMENTS))
def test_bf16_moments_go_through_the_kernel(which):
    tx = gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.adamw(SCHEDULE, weight_decay=0.1, **BF16_MOMENTS[which]),
    )
    fused = gradtx.make_step(tx, donate=False, fused=True)
    hlo = fused.lower(_params(), tx.init(_params()), _params()).as_text()
    assert hlo.count(_kernels.ADAM_STEP_TARGET) == 3
    plain = gradtx.make_step(tx, donate=False)
    got = _run(fused, tx, _params(), _grads())
    want = _run(plain, tx, _params(), _grads())
    # The kernel stores each moment rounded to bf16, and computes the update from the
    # stored value, as scale_by_adam does: the states agree bit for bit where the
    # float32 values before rounding do, which is almost everywhere.
    moments = 0
    for x, y in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
        assert x.dtype == y.dtype
        if x.dtype == jnp.bfloat16:
            moments += 1
            x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
            assert np.mean(x == y) > 0.99
            np.testing.assert_allclose(x, y, rtol=1e-2, atol=1e-6)
        else:
            np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-7)
    assert moments == 3 * len(BF16_MOMENTS[which])
    _assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


@needs_kernel
def test_float16_moments_run_the_jnp_program():
    tx = gradtx.adamw(1e-2, mu_dtype=jnp.float16)
    _assert_jnp_program(tx, gradtx.make_step(tx, donate=False, fused=True))


@needs_kernel
@pytest.mark.parametrize("name", ["adamw", "canonical"])
def test_fused_step_aliases_every_buffer_and_needs_no_leaf_sized_temporary(name):
    tx = FUSABLE[name]()
    params = {f"l{i}": jnp.ones((64, 64)) for i in range(4)}
    state = tx.init(params)
    lowered = gradtx.make_step(tx, fused=True).lower(params, state, params)
    assert lowered.as_text().count(_kernels.ADAM_STEP_TARGET) == 4
    compiled = lowered.compile()
    memory = compiled.memory_analysis()
    donated = sum(x.nbytes for x in jax.tree.leaves((params, state)))
    assert memory.alias_size_in_bytes == donated
    assert memory.temp_size_in_bytes < 64 * 64 * 4 // 4
    # What the kernel replaces is gone: no loop writes a 64x64 leaf any more.
    assert "f32[64,64]{1,0} fusion(" not in compiled.as_text()


@needs_kernel
def test_fused_donated_step_consumes_its_inputs():
    tx = gradtx.adamw(1e-2)
    params = _params()
    state = tx.init(params)
    new = gradtx.make_step(tx, fused=True)(params, state, _grads(1)[0])
    assert all(x.is_deleted() for x in jax.tree.leaves((params, state)))
    assert not any(x.is_deleted() for x in jax.tree.leaves(new))


@pytest.mark.parametrize(
    ("tx", "needle"),
    [
        (lambda: gradtx.sgd(0.1), "0 scale_by_adam blocks"),
        (lambda: gradtx.nadamw(0.1), "nesterov=True"),
        (lambda: gradtx.chain(gradtx.adam(0.1), gradtx.adam(0.1)), "2 scale_by_adam"),
        (lambda: optax.adamw(0.1), "0 scale_by_adam blocks"),
        (
            lambda: gradtx.chain(gradtx.clip(1.0), gradtx.adam(0.1)),
            "block 0 (before Adam) is a transform without a fused form",
        ),
        (
            lambda: gradtx.chain(gradtx.adam(0.1), gradtx.clip_by_global_norm(1.0)),
            "block 2 (after Adam) is clip_by_global_norm",
        ),
        (
            lambda: gradtx.chain(gradtx.adam(0.1), optax.scale(0.5)),
            "block 2 (after Adam) is a transform without a fused form",
        ),
    ],
)
def test_unsupported_chains_are_refused_at_construction(tx, needle):
    with pytest.raises(ValueError, match=r"gradtx\.make_step: fused=True") as err:
        gradtx.make_step(tx(), fused=True)
    assert needle in str(err.value)


@pytest.mark.parametrize("arg", ["fused", "donate"])
def test_step_flags_must_be_bools(arg):
    with pytest.raises(TypeError, match=f"gradtx.make_step: {arg} must be a bool"):
        gradtx.make_step(gradtx.adam(0.1), **{arg: "yes"})


def test_without_a_kernel_the_step_warns_and_runs_the_jnp_program(monkeypatch):
    monkeypatch.setattr(_kernels, "load", lambda: (False, "no C++ compiler found"))
    tx = gradtx.adamw(1e-2)
    with pytest.warns(RuntimeWarning, match="runs the jnp program instead: no C"):
        fused = gradtx.make_step(tx, donate=False, fused=True)
    _assert_jnp_program(tx, fused)


_LOAD = """
import gradtx._kernels as k
print(k.load())
"""


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CXX": "no-such-compiler-gradtx"}, "no C++ compiler found"),
        ({"CXX": "false"}, "building the CPU kernel failed"),
        ({"GRADTX_DISABLE_KERNELS": "1"}, "GRADTX_DISABLE_KERNELS is set"),
    ],
)
def test_load_says_why_it_could_not_build(tmp_path, env, needle):
    run_env = {**os.environ, "GRADTX_CACHE_DIR": str(tmp_path), **env}
    out = subprocess.run(
        [sys.executable, "-c", _LOAD], env=run_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "(False, " in out.stdout
    assert needle in out.stdout
    assert not list(tmp_path.glob("*.so"))


@needs_kernel
def test_load_builds_into_the_cache_folder_once(tmp_path):
    env = {**os.environ, "GRADTX_CACHE_DIR": str(tmp_path)}
    code = _LOAD + "print(k.load() is k.load())\n"
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert "(True, " in out.stdout
        assert out.stdout.endswith("True\n")
    built = list(tmp_path.glob("gradtx_kernels_*.so"))
    assert len(built) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_chains_record_their_blocks_without_changing_the_transform_type():
    tx = _canonical()
    assert type(tx) is gradtx.GradientTransformation
    plan = _fusion.plan(tx)
    assert [b.kind for b in plan.gain] == ["clip_by_global_norm"]
    assert [b.kind for b in plan.affine] == ["add_decayed_weights", "scale_by_schedule"]
    assert [b.path for b in (*plan.gain, plan.adam, *plan.affine)] == [
        (0,),
        (1,),
        (2,),
        (3,),
    ]


def test_nothing_warns_when_fused_is_off():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradtx.make_step(gradtx.adamw(1e-2))


@needs_kernel
def test_fused_step_under_vmap_runs_the_kernel_per_element():
    tx = gradtx.adamw(1e-2, weight_decay=0.1)
    plain = gradtx.make_step(tx, donate=False)
    fused = gradtx.make_step(tx, donate=False, fused=True)
    params = jnp.arange(24.0).reshape(3, 8)
    grads = jnp.ones((3, 8)) * jnp.arange(3.0)[:, None]
    state = jax.vmap(tx.init)(params)
    _assert_close(
        jax.vmap(fused)(params, state, grads), jax.vmap(plain)(params, state, grads)
    )


@needs_kernel
def test_the_fused_step_has_no_derivative():
    tx = gradtx.adam(1e-2)
    fused = gradtx.make_step(tx, donate=False, fused=True)
    with pytest.raises(ValueError, match="cannot be differentiated"):
        jax.grad(lambda p: jnp.sum(fused(p, tx.init(p), p)[0]))(jnp.ones(4))


@needs_kernel
def test_inputs_that_are_not_donated_are_left_intact():
    tx = gradtx.adamw(1e-2, weight_decay=0.1)
    params, grads = _params(), _grads(1)[0]
    state = tx.init(params)
    before = jax.tree.map(np.array, (params, state))
    gradtx.make_step(tx, donate=False, fused=True)(params, state, grads)
    _fusion.update_and_apply(_fusion.plan(tx), tx, grads, state, params)  # eager
    after = jax.tree.map(np.array, (params, state))
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(x, y)
