# SPDX-License-Identifier: Apache-2.0
"""optax's protocol names, state aliases and numerics helpers, against references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

# --- protocol ---


def test_extra_args_class_is_a_gradient_transformation():
    assert issubclass(
        gradtx.GradientTransformationExtraArgs, gradtx.GradientTransformation
    )
    tx = gradtx.GradientTransformationExtraArgs(
        gradtx.init_empty_state, lambda u, s: (u, s)
    )
    assert isinstance(tx, gradtx.GradientTransformation)
    # A real instance counts even though its update takes no **kwargs.
    assert isinstance(tx, gradtx.GradientTransformationExtraArgs)
    assert jax.tree.leaves(tx) == [tx.init, tx.update]


def test_extra_args_isinstance_asks_whether_update_takes_kwargs():
    extra = gradtx.GradientTransformationExtraArgs
    assert isinstance(gradtx.sgd(0.1), extra)
    assert isinstance(gradtx.scale_by_adam(), extra)
    assert isinstance(optax.adam(0.1), extra)  # optax's chain: update(**extra_args)
    # optax.scale's update has no **kwargs: optax says False, and so does gradtx.
    assert not isinstance(optax.scale(0.1), optax.GradientTransformationExtraArgs)
    assert not isinstance(optax.scale(0.1), extra)
    no_kwargs = gradtx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    assert not isinstance(no_kwargs, extra)
    assert not isinstance((gradtx.init_empty_state, print), extra)
    assert not isinstance("init", extra)


def test_extra_args_instance_gets_its_keywords_in_gradtx_chain():
    def update(updates, state, params=None, *, value, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda u: u * value, updates), state

    tx = gradtx.GradientTransformationExtraArgs(gradtx.init_empty_state, update)
    c = gradtx.chain(tx, gradtx.scale(-1.0))
    u = jnp.array([1.0, 2.0])
    out, _ = c.update(u, c.init(u), value=jnp.float32(3.0))
    chex.assert_trees_all_equal(out, jnp.array([-3.0, -6.0]))


def test_extra_args_instance_runs_in_optax_chain(standard_promotion):
    # optax.chain only forwards keywords to optax's own class (documented in
    # docs/api/numerics.md); the transform still runs there.
    def update(updates, state, params=None, **extra_args):
        del params
        return jax.tree.map(lambda u: u * extra_args.get("value", 2.0), updates), state

    tx = gradtx.GradientTransformationExtraArgs(gradtx.init_empty_state, update)
    c = optax.chain(tx, optax.scale(-1.0))
    u = jnp.array([1.0, 2.0])
    out, _ = c.update(u, c.init(u))
    chex.assert_trees_all_equal(out, jnp.array([-2.0, -4.0]))


def test_type_aliases_are_the_protocol_types():
    assert gradtx.TransformUpdateExtraArgsFn is gradtx.TransformUpdateFn
    assert gradtx.MaskOrFn is not None


STATE_ALIASES = {
    "AdaptiveGradClipState": lambda: gradtx.adaptive_grad_clip(1.0),
    "AddDecayedWeightsState": lambda: gradtx.add_decayed_weights(0.1),
    "ClipByGlobalNormState": lambda: gradtx.clip_by_global_norm(1.0),
    "ClipState": lambda: gradtx.clip(1.0),
    "ScaleByTrustRatioState": lambda: gradtx.scale_by_trust_ratio(),
    "ScaleState": lambda: gradtx.scale(0.5),
}


@pytest.mark.parametrize("name", list(STATE_ALIASES), ids=list(STATE_ALIASES))
def test_state_alias_is_empty_state_as_in_optax(name):
    assert getattr(optax, name) is optax.EmptyState
    alias = getattr(gradtx, name)
    assert alias is gradtx.EmptyState
    state = STATE_ALIASES[name]().init({"w": jnp.ones((2, 2))})
    assert isinstance(state, alias)
    assert state == alias()


def test_init_empty_state_ignores_params():
    assert gradtx.init_empty_state({"w": jnp.ones(3)}) == gradtx.EmptyState()
    assert gradtx.init_empty_state(None) == optax.init_empty_state(None)


# --- safe counters and norms ---

INC_DTYPES = [jnp.int8, jnp.int32, jnp.uint8, jnp.float16, jnp.float32]


@pytest.mark.parametrize(
    "dtype", INC_DTYPES, ids=[jnp.dtype(d).name for d in INC_DTYPES]
)
def test_safe_increment_adds_one_and_saturates(dtype, jit):
    fn = jit(gradtx.safe_increment)
    top = (
        jnp.iinfo(dtype).max
        if jnp.issubdtype(dtype, jnp.integer)
        else jnp.finfo(dtype).max
    )
    one = fn(jnp.asarray(1, dtype))
    assert one.dtype == dtype
    assert one == 2
    assert fn(jnp.asarray(top, dtype)) == jnp.asarray(top, dtype)
    chex.assert_trees_all_equal(
        fn(jnp.asarray(top, dtype)), optax.safe_increment(jnp.asarray(top, dtype))
    )


def test_safe_increment_rejects_bool():
    with pytest.raises(gradtx.HyperparameterError, match=r"safe_increment.*count"):
        gradtx.safe_increment(jnp.asarray(True))


NORM_CASES = [
    ({}, "default"),
    ({"axis": 1, "keepdims": True}, "axis1_keep"),
    ({"ord": 1, "axis": 0}, "ord1_axis0"),
    ({"ord": "fro"}, "fro"),
    ({"ord": "nuc", "axis": (0, 1)}, "nuc"),
]


def _ref_safe_norm(x, min_norm, kw):
    norm = np.linalg.norm(np.asarray(x, np.float64), **kw)
    return np.maximum(norm, min_norm)


@pytest.mark.parametrize(
    "kw", [c[0] for c in NORM_CASES], ids=[c[1] for c in NORM_CASES]
)
def test_safe_norm_matches_reference_and_optax_with_finite_grads(kw, jit):
    x = jnp.array([[3.0, -4.0, 1.0], [0.0, 0.0, 0.0], [1e-4, 0.0, -1e-4]])
    fn = jit(lambda x: gradtx.safe_norm(x, 1e-3, **kw))
    got = fn(x)
    np.testing.assert_allclose(got, _ref_safe_norm(x, 1e-3, kw), rtol=1e-5)
    chex.assert_trees_all_close(got, optax.safe_norm(x, 1e-3, **kw), rtol=1e-6)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(fn(x))))(x)
    chex.assert_tree_all_finite(grad)
    want = jax.jit(jax.grad(lambda x: jnp.sum(optax.safe_norm(x, 1e-3, **kw))))(x)
    chex.assert_trees_all_close(grad, want, rtol=1e-6, atol=1e-7)


def test_safe_norm_gradient_is_zero_below_the_floor():
    grad = jax.grad(lambda x: gradtx.safe_norm(x, 0.1))(jnp.zeros(3))
    chex.assert_trees_all_equal(grad, jnp.zeros(3))
    naive = jax.grad(lambda x: jnp.maximum(jnp.linalg.norm(x), 0.1))(jnp.zeros(3))
    assert np.isnan(naive).all()  # the failure safe_norm exists for


def test_safe_root_mean_squares_matches_reference_and_optax(jit):
    x = jnp.array([3.0, 4.0, 0.0, 12.0])
    fn = jit(gradtx.safe_root_mean_squares)
    ref = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))
    np.testing.assert_allclose(fn(x, 0.1), ref, rtol=1e-6)
    chex.assert_trees_all_close(fn(x, 0.1), optax.safe_root_mean_squares(x, 0.1))
    assert fn(jnp.zeros(4), 0.25) == 0.25
    chex.assert_trees_all_equal(jax.grad(fn)(jnp.zeros(4), 0.25), jnp.zeros(4))
    z = jnp.array([3.0 + 4.0j, 0.0j])
    np.testing.assert_allclose(fn(z, 0.1), np.sqrt(12.5), rtol=1e-6)


# --- moment trees ---


def _tree(dtype=jnp.float32):
    return {"a": jnp.array([1.0, -2.0, 0.5], dtype), "b": jnp.array([[3.0]], dtype)}


def _moments(dtype=jnp.float32):
    return {"a": jnp.array([0.1, 0.2, -0.3], dtype), "b": jnp.array([[1.0]], dtype)}


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


@pytest.mark.parametrize("order", [1, 2, 3], ids=["o1", "o2", "o3"])
def test_update_moment_matches_reference_and_optax(order, jit):
    got = jit(lambda g, m: gradtx.update_moment(g, m, 0.9, order))(_tree(), _moments())
    ref = jax.tree.map(
        lambda g, t: 0.1 * g**order + 0.9 * t, _np(_tree()), _np(_moments())
    )
    chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=1e-7)
    want = optax.update_moment(_tree(), _moments(), 0.9, order)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


def test_update_moment_per_elem_norm_matches_reference_and_optax(jit):
    fn = jit(lambda g, m: gradtx.update_moment_per_elem_norm(g, m, 0.8, 2))
    got = fn(_tree(), _moments())
    ref = jax.tree.map(lambda g, t: 0.2 * g**2 + 0.8 * t, _np(_tree()), _np(_moments()))
    chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(
        got,
        optax.update_moment_per_elem_norm(_tree(), _moments(), 0.8, 2),
        rtol=1e-6,
        atol=1e-7,
    )
    z = jnp.array([3.0 + 4.0j, 1.0j])
    out = fn(z, jnp.zeros(2))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, [0.2 * 25.0, 0.2], rtol=1e-6)


def test_update_infinity_moment_matches_reference_and_optax(jit):
    fn = jit(lambda g, m: gradtx.update_infinity_moment(g, m, 0.5, 1e-3))
    got = fn(_tree(), _moments())
    ref = jax.tree.map(
        lambda g, t: np.maximum(np.abs(g) + 1e-3, 0.5 * t),
        _np(_tree()),
        _np(_moments()),
    )
    chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(
        got,
        optax.update_infinity_moment(_tree(), _moments(), 0.5, 1e-3),
        rtol=1e-6,
        atol=1e-7,
    )


def test_moment_trees_keep_none_leaves_and_state_dtype():
    g = {"a": None, "b": jnp.ones(2, jnp.bfloat16)}
    m = {"a": None, "b": jnp.zeros(2, jnp.bfloat16)}
    for fn in (gradtx.update_moment, gradtx.update_moment_per_elem_norm):
        out = fn(g, m, 0.999, 2)
        assert out["a"] is None
        assert out["b"].dtype == jnp.bfloat16
        # 0.001 survives: the EMA ran in float32, not with b2 rounded to 1 in bf16.
        np.testing.assert_allclose(np.asarray(out["b"], np.float32), 1e-3, rtol=1e-2)
    out = gradtx.update_infinity_moment(g, m, 0.9, 0.0)
    assert out["a"] is None
    assert out["b"].dtype == jnp.bfloat16


def test_bias_correction_matches_reference_and_optax(jit):
    fn = jit(gradtx.bias_correction)
    count = jnp.asarray(3, jnp.int32)
    got = fn(_moments(), 0.9, count)
    ref = jax.tree.map(lambda t: t / (1 - 0.9**3), _np(_moments()))
    chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=1e-7)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes float and int32
        want = optax.bias_correction(_moments(), 0.9, count)
    chex.assert_trees_all_close(got, want, rtol=1e-6)
    low = fn(_moments(jnp.bfloat16), 0.999, jnp.asarray(1, jnp.int32))
    assert low["a"].dtype == jnp.bfloat16
    chex.assert_tree_all_finite(low)  # 1 - 0.999 computed in float32, not 0 in bf16


# --- linear algebra ---


def _spd(n, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, n))
    return b @ b.T + 0.5 * np.eye(n)


def _ref_power_iteration(a, v0, steps):
    """`steps` iterations of v <- A v / ||A v|| in float64, eig = <v, A v>."""
    v = v0 / np.linalg.norm(v0)
    z = a @ v
    eig = 0.0
    for _ in range(steps):
        v = z / np.linalg.norm(z)
        z = a @ v
        eig = v @ z
    return eig, z / np.linalg.norm(z)


def test_power_iteration_fixed_steps_match_reference_and_optax(jit):
    a64 = _spd(5)
    a = jnp.asarray(a64, jnp.float32)
    v0 = jnp.asarray(np.linspace(-1.0, 1.0, 5) + 0.3, jnp.float32)
    fn = jit(
        lambda a, v0: gradtx.power_iteration(a, v0=v0, num_iters=4, error_tolerance=0.0)
    )
    eig, vec = fn(a, v0)
    ref_eig, ref_vec = _ref_power_iteration(a64, np.asarray(v0, np.float64), 4)
    np.testing.assert_allclose(eig, ref_eig, rtol=1e-5)
    np.testing.assert_allclose(vec, ref_vec, rtol=1e-5, atol=1e-6)
    want = optax.power_iteration(a, v0=v0, num_iters=4, error_tolerance=0.0)
    chex.assert_trees_all_close((eig, vec), want, rtol=1e-6, atol=1e-7)


def test_power_iteration_converges_to_the_dominant_eigenpair(jit):
    a64 = _spd(6, seed=1)
    eig, vec = jit(gradtx.power_iteration)(jnp.asarray(a64, jnp.float32))
    w, v = np.linalg.eigh(a64)
    np.testing.assert_allclose(eig, w[-1], rtol=1e-5)
    np.testing.assert_allclose(np.abs(vec @ v[:, -1]), 1.0, rtol=1e-5)
    # The default start is uniform in [-1, 1] from PRNGKey(0), as in optax.
    want = optax.power_iteration(jnp.asarray(a64, jnp.float32))
    chex.assert_trees_all_close((eig, vec), want, rtol=1e-6, atol=1e-7)
    other = gradtx.power_iteration(jnp.asarray(a64, jnp.float32), key=jax.random.key(3))
    np.testing.assert_allclose(other[0], w[-1], rtol=1e-5)


def test_power_iteration_on_a_pytree_matvec():
    a = jnp.asarray(_spd(3), jnp.float32)

    def mvp(v):
        return {"x": a @ v["x"], "y": 7.5 * v["y"]}

    v0 = {"x": jnp.ones(3), "y": jnp.ones(2)}
    eig, vec = gradtx.power_iteration(mvp, v0=v0)
    top = max(np.linalg.eigvalsh(_spd(3))[-1], 7.5)
    np.testing.assert_allclose(eig, top, rtol=1e-5)
    assert jax.tree.structure(vec) == jax.tree.structure(v0)
    chex.assert_trees_all_close(
        (eig, vec), optax.power_iteration(mvp, v0=v0), rtol=1e-6
    )


def test_power_iteration_rejects_bad_arguments():
    with pytest.raises(gradtx.HyperparameterError, match="power_iteration: v0"):
        gradtx.power_iteration(lambda v: v)
    with pytest.raises(gradtx.HyperparameterError, match="power_iteration: matrix"):
        gradtx.power_iteration(jnp.ones((2, 3)))
    with pytest.raises(gradtx.HyperparameterError, match="num_iters"):
        gradtx.power_iteration(jnp.eye(2), num_iters=-1)


def _ref_inverse_root(a, p, ridge_epsilon=1e-6):
    w, v = np.linalg.eigh(a)
    ridge = ridge_epsilon * max(w[-1], 1e-16)
    return (v * (w + ridge) ** (-1.0 / p)) @ v.T


@pytest.mark.parametrize("p", [1, 2, 4, 8], ids=["p1", "p2", "p4", "p8"])
def test_matrix_inverse_pth_root_matches_reference_and_optax(p):
    a64 = _spd(5)
    a = jnp.asarray(a64, jnp.float32)
    # Jitted only: the eager path runs in the p = 3 test below.
    root, err = jax.jit(lambda a: gradtx.matrix_inverse_pth_root(a, p))(a)
    np.testing.assert_allclose(root, _ref_inverse_root(a64, p), atol=5e-5)
    assert root.dtype == jnp.float32
    assert err < 1e-5
    want_root, want_err = optax.matrix_inverse_pth_root(a, p)
    chex.assert_trees_all_close(root, want_root, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(err, want_err, atol=1e-7)


def test_matrix_inverse_pth_root_with_traced_p_picks_the_same_power():
    a = jnp.asarray(_spd(4), jnp.float32)
    fn = jax.jit(gradtx.matrix_inverse_pth_root)
    for p in (2, 4):
        root, _ = fn(a, jnp.float32(p))
        np.testing.assert_allclose(root, _ref_inverse_root(_spd(4), p), atol=5e-5)


def test_matrix_inverse_pth_root_is_right_for_p_3_where_optax_is_not():
    a64 = _spd(5)
    a = jnp.asarray(a64, jnp.float32)
    ref = _ref_inverse_root(a64, 3)
    root, _ = gradtx.matrix_inverse_pth_root(a, 3)
    np.testing.assert_allclose(root, ref, atol=5e-5)
    # optax's Newton step uses T**2 for p = 3 (log2 rounded): a wrong root.
    assert np.abs(optax.matrix_inverse_pth_root(a, 3)[0] - ref).max() > 1e-2


def test_matrix_inverse_pth_root_of_a_scalar_matrix_and_bad_arguments():
    root, err = gradtx.matrix_inverse_pth_root(jnp.array([[4.0]]), 2, ridge_epsilon=0.0)
    np.testing.assert_allclose(root, [[0.5]], rtol=1e-6)
    assert err == 0
    with pytest.raises(gradtx.HyperparameterError, match="pth_root: p"):
        gradtx.matrix_inverse_pth_root(jnp.eye(2), 2.5)
    with pytest.raises(gradtx.HyperparameterError, match="pth_root: p"):
        gradtx.matrix_inverse_pth_root(jnp.eye(2), 0)
    with pytest.raises(gradtx.HyperparameterError, match="pth_root: matrix"):
        gradtx.matrix_inverse_pth_root(jnp.ones(3), 2)
    with pytest.raises(gradtx.HyperparameterError, match="ridge_epsilon"):
        gradtx.matrix_inverse_pth_root(jnp.eye(2), 2, ridge_epsilon=-1.0)


# --- utilities ---


@pytest.mark.parametrize(
    "scale", [0.5, 0.0, 1.0, -2.0], ids=["half", "zero", "one", "neg"]
)
def test_scale_gradient_scales_only_the_backward_pass(scale, jit):
    x = {"a": jnp.array([1.0, -2.0]), "b": jnp.float32(3.0)}

    def loss(x, s):
        y = gradtx.scale_gradient(x, s)
        return jnp.sum(y["a"] ** 2) + y["b"] ** 2

    value, grad = jit(jax.value_and_grad(loss))(x, scale)
    np.testing.assert_allclose(value, 14.0)
    chex.assert_trees_all_close(
        grad, {"a": 2 * scale * x["a"], "b": 2 * scale * x["b"]}
    )
    with jax.numpy_dtype_promotion("standard"):
        want = jax.grad(lambda x: jnp.sum(optax.scale_gradient(x, scale)["a"] ** 2))(x)
    chex.assert_trees_all_close(grad["a"], want["a"])


def test_scale_gradient_takes_a_traced_scale_and_keeps_bf16():
    x = jnp.ones(2, jnp.bfloat16)
    grad = jax.jit(
        jax.grad(lambda x, s: jnp.sum(gradtx.scale_gradient(x, s).astype(jnp.float32)))
    )(x, jnp.float32(0.25))
    assert grad.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(grad, np.float32), 0.25)


def test_multi_normal_matches_reference_and_optax():
    loc, log_scale = jnp.array([0.0, 1.0]), jnp.array([0.0, -1.0])
    dist = gradtx.multi_normal(loc, log_scale)
    other = optax.multi_normal(loc, log_scale)
    key = jax.random.key(1)
    x = jnp.asarray([[0.3, 0.2], [1.0, 2.0]], jnp.float32)
    with jax.numpy_rank_promotion("allow"):  # optax broadcasts (3, 2) with (2,)
        want_sample, want_log_prob = other.sample((3,), key), other.log_prob(x)
    chex.assert_trees_all_close(dist.sample((3,), key), want_sample)
    assert dist.sample((4, 3), key).shape == (4, 3, 2)
    s = np.exp(np.array([0.0, -1.0]))
    ref = np.sum(
        -0.5 * ((np.asarray(x, np.float64) - [0.0, 1.0]) / s) ** 2
        - np.log(s)
        - 0.5 * np.log(2 * np.pi),
        -1,
    )
    got = dist.log_prob(x)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    chex.assert_trees_all_close(got, want_log_prob, rtol=1e-6)
    chex.assert_trees_all_equal(dist.params, [loc, log_scale])
    chex.assert_trees_all_equal(dist.log_scale, log_scale)
