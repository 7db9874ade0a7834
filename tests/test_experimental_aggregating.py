# SPDX-License-Identifier: Apache-2.0
"""gradtx.experimental.aggregating against float64 references and optax 0.2.8.

Per-element inputs form a mixed pytree (a matrix, a vector and a scalar parameter)
with the batch axis (or axes) at `per_elt_axis`; every transform is run for several
steps, eagerly and under `jax.jit`.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.experimental import aggregating as G
from tests import _reference_experimental as R

OX = optax.experimental.aggregating
RTOL = 2e-5
PARAM_SHAPES = {"w": (3, 2), "b": (2,), "s": ()}
PARAMS = {k: jnp.zeros(s) for k, s in PARAM_SHAPES.items()}
AXES = [0, -1, [0, 1]]
AXIS_IDS = ["axis0", "axis-1", "axes01"]


def _batches(axis, steps, seed=0, batch=4, offset=3.0):
    """`steps` per-element update trees, batch axes placed at `axis`."""
    # NumPy draws: no per-shape compilation of jax.random (keeps the file fast).
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        tree = {}
        for name, shape in PARAM_SHAPES.items():
            if isinstance(axis, int) and axis == -1:
                full = (*shape, batch)
            elif isinstance(axis, int):
                full = (batch, *shape)
            else:
                full = (2, batch // 2, *shape)
            draw = offset + rng.standard_normal(full)
            tree[name] = jnp.asarray(draw.astype(np.float32))
        out.append(tree)
    return out


def _describe(state):
    """Class names, fields, keys and leaf (shape, dtype), for either library."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = {f: _describe(getattr(state, f)) for f in state._fields}
        return (type(state).__name__, fields)
    if isinstance(state, (tuple, list)):
        return [_describe(s) for s in state]
    if isinstance(state, dict):
        return {k: _describe(v) for k, v in state.items()}
    return (jnp.shape(state), jnp.asarray(state).dtype.name)


def _run(tx, batches, jit, params=PARAMS):
    update = jit(tx.update)
    state = tx.init(params)
    outs = []
    for g in batches:
        out, state = update(g, state, None)  # optax's aggregators need params
        outs.append(out)
    return outs, state


_OPTAX_RUNS = {}


def _optax_once(key, run):
    """optax's result for `key`, computed once for the eager and the jit variant."""
    if key not in _OPTAX_RUNS:
        _OPTAX_RUNS[key] = run()
    return _OPTAX_RUNS[key]


def _close(actual, expected, rtol=RTOL):
    chex.assert_trees_all_close(
        jax.tree.map(np.asarray, actual), expected, rtol=rtol, atol=1e-5
    )


# ------------------------------------------------------------------- API parity

EXCLUDED = {"Any", "NamedTuple", "Protocol", "Sequence", "jax", "jnp", "math"}
EXCLUDED |= {"base", "tree", "utils"}


def test_public_names_match_optax():
    theirs = {n for n in dir(OX) if not n.startswith("_")} - EXCLUDED
    assert sorted(G.__all__) == G.__all__
    assert set(G.__all__) == theirs
    assert gradtx.experimental.aggregating is G
    assert gradtx.experimental.__all__ == ["aggregating"]


@pytest.mark.parametrize("name", sorted(G.__all__))
def test_signatures_and_state_fields_match_optax(name):
    ours, theirs = getattr(G, name), getattr(OX, name)
    if inspect.isfunction(theirs):
        ps = inspect.signature(ours).parameters
        qs = inspect.signature(theirs).parameters
        assert [(p.name, p.default, p.kind) for p in ps.values()] == [
            (q.name, q.default, q.kind) for q in qs.values()
        ]
    elif hasattr(theirs, "_fields"):
        assert ours._fields == theirs._fields


# --------------------------------------------------------------- aggregators


@pytest.mark.parametrize("axis", AXES, ids=AXIS_IDS)
def test_average_per_element_updates_matches_reference_and_optax(
    axis, jit, standard_promotion
):
    batches = _batches(axis, 2)
    agg = G.average_per_element_updates(axis)
    outs, state = _run(agg, batches, jit)
    for out, g in zip(outs, batches, strict=True):
        _close(out, jax.tree.map(lambda x: R.average_per_element(x, axis), g))
    theirs, _ = _optax_once(
        ("average", str(axis)),
        lambda: _run(OX.average_per_element_updates(axis), batches, jax.jit),
    )
    chex.assert_trees_all_close(outs, theirs, rtol=1e-6)
    assert state == gradtx.EmptyState()


@pytest.mark.parametrize("steps", [1, 2, 3], ids=["steps1", "steps2", "steps3"])
def test_accumulate_avg_updates_matches_reference_and_optax(
    steps, jit, standard_promotion
):
    grads = [jax.tree.map(lambda x: x[0], b) for b in _batches(0, 6)]
    tx = G.accumulate_avg_updates(steps)
    outs, state = _run(tx, grads, jit)
    for name in PARAM_SHAPES:
        expected = R.accumulate_avg([g[name] for g in grads], steps)
        _close([o[name] for o in outs], expected)
    theirs_tx = OX.accumulate_avg_updates(steps)
    theirs, their_state = _optax_once(
        ("accumulate", steps), lambda: _run(theirs_tx, grads, jax.jit)
    )
    chex.assert_trees_all_close(outs, theirs, rtol=1e-6)
    assert _describe(state) == _describe(their_state)
    assert _describe(tx.init(PARAMS)) == _describe(theirs_tx.init(PARAMS))


@pytest.mark.parametrize("axis", [None, 0], ids=["no_axis", "axis0"])
def test_average_incrementally_updates_matches_reference_and_optax(
    axis, jit, standard_promotion
):
    batches = _batches(0, 4)
    inputs = (
        batches if axis == 0 else [jax.tree.map(lambda x: x[0], b) for b in batches]
    )
    agg = G.average_incrementally_updates(axis, 2)
    assert isinstance(agg, G.Aggregator) == (axis is not None)
    outs, state = _run(agg, inputs, jit)
    means = [
        jax.tree.map(lambda x: np.asarray(x, np.float64), g)
        if axis is None
        else jax.tree.map(lambda x: R.average_per_element(x, 0), g)
        for g in inputs
    ]
    for name in PARAM_SHAPES:
        expected = R.accumulate_avg([m[name] for m in means], 2)
        _close([o[name] for o in outs], expected)
    theirs, their_state = _optax_once(
        ("incremental", axis),
        lambda: _run(OX.average_incrementally_updates(axis, 2), inputs, jax.jit),
    )
    chex.assert_trees_all_close(outs, theirs, rtol=1e-6)
    assert _describe(state) == _describe(their_state)


@pytest.mark.parametrize("axis", AXES, ids=AXIS_IDS)
@pytest.mark.parametrize("steps", [1, 3], ids=["steps1", "steps3"])
def test_mean_and_sum_sq_diff_matches_two_pass_reference_and_optax(
    axis, steps, jit, standard_promotion
):
    batches = _batches(axis, 2 * steps, offset=10.0)
    agg = G.get_per_element_mean_and_sum_sq_diff_grads(axis, steps)
    outs, state = _run(agg, batches, jit)
    for name in PARAM_SHAPES:
        expected = R.group_mean_and_sum_sq_diff([b[name] for b in batches], steps, axis)
        for (mean, aux), (e_mean, e_sq, e_n) in zip(outs, expected, strict=True):
            _close(mean[name], e_mean)
            _close(aux["sum_sq_diff_grads"][name], e_sq, rtol=1e-4)
            assert int(aux["sample_size"]) == e_n
    theirs_agg = OX.get_per_element_mean_and_sum_sq_diff_grads(axis, steps)
    theirs, their_state = _optax_once(
        ("sum_sq_diff", str(axis), steps), lambda: _run(theirs_agg, batches, jax.jit)
    )
    chex.assert_trees_all_close(outs, theirs, rtol=1e-5, atol=1e-5)
    assert _describe(state) == _describe(their_state)


def test_get_batch_size_from_per_elt_updates_multiplies_axes_and_checks_leaves():
    (g,) = _batches((0, 1), 1)
    assert G.get_batch_size_from_per_elt_updates(g, [0, 1]) == 4
    assert G.get_batch_size_from_per_elt_updates(g, (0, 1)) == 4
    assert G.get_batch_size_from_per_elt_updates(g, 0) == 2
    assert G.get_batch_size_from_per_elt_updates(g, 1) == 2
    mixed = {"a": jnp.zeros((3, 2)), "b": jnp.zeros((4, 2))}
    with pytest.raises(gradtx.TreeMismatchError, match=r"sizes \[3, 4\]"):
        G.get_batch_size_from_per_elt_updates(mixed, 0)


# ------------------------------------------------------- mean and variance EMA


@pytest.mark.parametrize("steps", [1, 2], ids=["steps1", "steps2"])
def test_add_mean_variance_to_opt_tracks_reference_emas(steps, jit):
    decay = 0.8
    batches = _batches(0, 3 * steps)
    tx = G.add_mean_variance_to_opt(gradtx.sgd(0.1), decay, 0, steps)
    update = jit(tx.update)
    state = tx.init(PARAMS)
    hist = {
        n: R.ema_mean_variance(
            R.group_mean_and_sum_sq_diff([b[n] for b in batches], steps, 0), decay
        )
        for n in PARAM_SHAPES
    }
    for i, g in enumerate(batches):
        out, state = update(g, state)
        ema = gradtx.tree.get(state, "PerElementMeanAndVarianceEMAState")
        mean, var = G.get_unbiased_mean_and_variance_ema(state)
        ready = (i + 1) % steps == 0
        for n in PARAM_SHAPES:
            if hist[n][i] is None:  # before the first ready step: nothing tracked
                assert int(ema.count) == 0
                _close(ema.mean_grads_ema[n], np.zeros(PARAM_SHAPES[n]))
                assert np.isnan(np.asarray(mean[n])).all()  # 0 / (1 - d**0)
                _close(out[n], np.zeros(PARAM_SHAPES[n]))
                continue
            e_mean, e_var, count, u_mean, u_var = hist[n][i]
            _close(ema.mean_grads_ema[n], e_mean)
            _close(ema.variance_grads_ema[n], e_var)
            _close(mean[n], u_mean)
            _close(var[n], u_var)
            assert int(ema.count) == count
            # sgd steps on ready steps only: -lr times the group's mean gradient.
            if ready:
                _close(out[n], -0.1 * _group_mean(batches, i, steps, n))
            else:
                _close(out[n], np.zeros(PARAM_SHAPES[n]))


def _group_mean(batches, i, steps, name):
    group = batches[i + 1 - steps : i + 1]
    return np.mean([np.asarray(b[name], np.float64).mean(0) for b in group], axis=0)


@pytest.mark.parametrize("steps", [1, 2], ids=["steps1", "steps2"])
def test_add_mean_variance_to_opt_matches_optax(steps, standard_promotion):
    batches = _batches(0, 4)
    ours = G.add_mean_variance_to_opt(optax.adam(0.1), 0.7, 0, steps)
    theirs = OX.add_mean_variance_to_opt(optax.adam(0.1), 0.7, 0, steps)
    outs, state = _run(ours, batches, jax.jit)
    their_outs, their_state = _run(theirs, batches, jax.jit)
    chex.assert_trees_all_close(outs, their_outs, rtol=1e-6, atol=1e-7)
    assert _describe(state) == _describe(their_state)
    chex.assert_trees_all_close(
        jax.tree.leaves(state), jax.tree.leaves(their_state), rtol=1e-5, atol=1e-6
    )
    chex.assert_trees_all_close(
        G.get_unbiased_mean_and_variance_ema(state),
        OX.get_unbiased_mean_and_variance_ema(their_state),
        rtol=1e-5,
    )


def test_unit_sample_gives_nan_variance_as_optax(standard_promotion):
    # One sample has no sample variance: 0 / 0, NaN in both libraries.
    g = {"w": jnp.ones((1, 2))}
    params = {"w": jnp.zeros(2)}
    _, state = _run(G.add_mean_variance_to_opt(gradtx.sgd(0.1)), [g], jax.jit, params)
    _, theirs = _run(OX.add_mean_variance_to_opt(optax.sgd(0.1)), [g], jax.jit, params)
    mean, var = G.get_unbiased_mean_and_variance_ema(state)
    assert np.isnan(np.asarray(var["w"])).all()
    assert np.isnan(
        np.asarray(OX.get_unbiased_mean_and_variance_ema(theirs)[1]["w"])
    ).all()
    np.testing.assert_allclose(mean["w"], [1.0, 1.0], rtol=1e-6)


def test_unbiased_ema_is_found_in_optax_state_and_missing_state_raises():
    theirs = OX.add_mean_variance_to_opt(optax.sgd(0.1))
    with jax.numpy_dtype_promotion("standard"):
        _, state = _run(theirs, _batches(0, 1), jax.jit)
    mean, _ = G.get_unbiased_mean_and_variance_ema(state)
    _close(mean, jax.tree.map(lambda x: R.average_per_element(x, 0), _batches(0, 1)[0]))
    with pytest.raises(ValueError, match="get_unbiased_mean_and_variance_ema: state"):
        G.get_unbiased_mean_and_variance_ema(gradtx.adam(0.1).init(PARAMS))


def test_track_ema_update_without_aux_raises_missing_value():
    tx = G.track_per_element_mean_and_variance_with_ema()
    with pytest.raises(gradtx.MissingValueError, match="sum_sq_diff_grads"):
        tx.update(PARAMS, tx.init(PARAMS))


# ------------------------------------------------------------------- process


def _clip_and_average(lib):
    """optax's docstring example: clip each sample to the unit ball, then average."""
    clip = jax.vmap(optax.projections.projection_l2_ball, 0)
    return lib.process(
        optax.stateless(lambda gs, _: clip(gs)),
        lib.average_per_element_updates(0),
        optax.adam(0.1),
    )


def test_process_with_optax_transforms_matches_optax(jit, standard_promotion):
    batches = _batches(0, 3)
    outs, state = _run(_clip_and_average(G), batches, jit)
    theirs, their_state = _optax_once(
        ("clip_and_average",), lambda: _run(_clip_and_average(OX), batches, jax.jit)
    )
    chex.assert_trees_all_close(outs, theirs, rtol=1e-6, atol=1e-7)
    assert _describe(state) == _describe(their_state)


def test_process_with_gradtx_transforms_equals_optimizer_on_mean(jit):
    batches = _batches(0, 3)
    tx = G.process(gradtx.identity(), G.average_per_element_updates(), gradtx.adam(0.1))
    outs, state = _run(tx, batches, jit)
    means = [jax.tree.map(lambda x: jnp.mean(x, 0), b) for b in batches]
    expected, adam_state = _run(gradtx.adam(0.1), means, jit)
    chex.assert_trees_all_close(outs, expected, rtol=1e-6)
    chex.assert_trees_all_close(state[2], adam_state)
    assert isinstance(tx, G.Aggregator)


def test_process_steps_the_optimizer_only_on_ready_steps(jit):
    batches = _batches(0, 6)
    agg = G.average_incrementally_updates(0, 3)
    outs, state = _run(
        G.process(gradtx.identity(), agg, gradtx.adam(0.1)), batches, jit
    )
    assert int(gradtx.tree.get(state, "count")) == 2
    for i, out in enumerate(outs):
        if (i + 1) % 3:
            chex.assert_trees_all_equal(out, gradtx.tree.zeros_like(out))
        else:
            chex.assert_tree_all_finite(out)
            assert float(jnp.abs(out["w"]).max()) > 0


def test_process_accepts_an_optax_aggregator_and_passes_extra_args():
    seen = []

    def record(updates, state, params=None, **extra_args):
        seen.append(sorted(extra_args))
        return updates, state

    post = gradtx.GradientTransformation(gradtx.init_empty_state, record)
    tx = G.process(optax.identity(), OX.average_per_element_updates(0), post)
    out, _ = tx.update(_batches(0, 1)[0], tx.init(PARAMS), None, my_arg=1)
    assert seen == [["my_arg"]]
    assert isinstance(tx, G.Aggregator)
    _close(out, jax.tree.map(lambda x: R.average_per_element(x, 0), _batches(0, 1)[0]))


def test_aggregator_isinstance_is_exact():
    assert not isinstance(gradtx.sgd(0.1), G.Aggregator)
    assert isinstance(G.average_per_element_updates(), G.Aggregator)
    assert isinstance(G.average_per_element_updates(), gradtx.GradientTransformation)
    tx = G.process(gradtx.identity(), gradtx.identity(), gradtx.sgd(0.1))
    assert not isinstance(tx, G.Aggregator)
    assert isinstance(tx, gradtx.GradientTransformationExtraArgs)


# ------------------------------------------------- state, dtypes and errors


@pytest.mark.parametrize(
    ("make", "per_element"),
    [
        (lambda: G.accumulate_avg_updates(3), False),
        (lambda: G.average_incrementally_updates(0, 3), True),
        (lambda: G.get_per_element_mean_and_sum_sq_diff_grads(0, 3), True),
        (lambda: G.add_mean_variance_to_opt(gradtx.adam(0.1), 0.9, 0, 3), True),
    ],
    ids=["accumulate", "incremental", "sum_sq_diff", "mean_variance"],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_state_keeps_structure_and_dtypes_in_scan(make, per_element, dtype):
    tx = make()
    params = jax.tree.map(lambda x: x.astype(dtype), PARAMS)
    batches = [jax.tree.map(lambda x: x.astype(dtype), b) for b in _batches(0, 6)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    if not per_element:
        stacked = jax.tree.map(lambda x: x[:, 0], stacked)
    state = tx.init(params)

    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.eval_shape(tx.init, params), state
    )

    def step(s, g):
        out, s = tx.update(g, s, None, unknown_extra_argument=1.0)  # ignored
        return s, out

    final, outs = jax.lax.scan(step, state, stacked)
    chex.assert_trees_all_equal_shapes_and_dtypes(final, state)
    floats = {
        x.dtype for x in jax.tree.leaves(outs) if jnp.issubdtype(x.dtype, jnp.floating)
    }
    assert floats == {jnp.dtype(dtype)}


@pytest.mark.parametrize(
    ("build", "arg"),
    [
        (lambda: G.accumulate_avg_updates(0), "accumulation_steps"),
        (lambda: G.accumulate_avg_updates(2.0), "accumulation_steps"),
        (lambda: G.average_incrementally_updates(0, True), "accumulation_steps"),
        (lambda: G.average_per_element_updates("0"), "per_elt_axis"),
        (lambda: G.average_per_element_updates([]), "per_elt_axis"),
        (lambda: G.average_incrementally_updates(1.5, 2), "per_elt_axis"),
        (
            lambda: G.get_per_element_mean_and_sum_sq_diff_grads(0, 0),
            "accumulation_steps",
        ),
        (lambda: G.track_per_element_mean_and_variance_with_ema(1.5), "ema_decay"),
        (lambda: G.add_mean_variance_to_opt(gradtx.sgd(0.1), -0.1), "ema_decay"),
    ],
    ids=[
        "steps_zero",
        "steps_float",
        "steps_bool",
        "axis_str",
        "axis_empty",
        "axis_float",
        "sum_sq_steps_zero",
        "decay_above_one",
        "opt_decay_negative",
    ],
)
def test_bad_arguments_raise_hyperparameter_error_naming_them(build, arg):
    with pytest.raises(
        gradtx.HyperparameterError, match=rf"experimental\.aggregating\.\w+: {arg}"
    ):
        build()
