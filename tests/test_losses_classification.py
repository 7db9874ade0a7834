"""gradtx.losses classification losses and divergences: references and optax parity."""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import losses as G
from tests import _reference_losses_classification as ref

RNG = np.random.default_rng(0)
X = (3 * RNG.normal(size=(4, 5))).astype(np.float32)
P = RNG.dirichlet(np.ones(5), size=4).astype(np.float32)  # soft labels
YI = np.array([0, 3, 4, 1], np.int32)
W = RNG.random((4, 5)) > 0.3
W[2] = False  # one fully masked example
WS = W.copy()
WS[0] = True  # every class included somewhere (smooth_labels along axis 0)
YB = RNG.integers(0, 2, size=(4, 5)).astype(np.float32)
X4 = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
Y4 = RNG.integers(0, 12, size=(2, 5)).astype(np.int32)
W4 = RNG.random((2, 3, 4, 5)) > 0.3
XB = RNG.normal(size=(2, 3, 5)).astype(np.float32)  # extra batch axis
YIB = RNG.integers(0, 5, size=(2, 3)).astype(np.int32)
LQ = np.log(RNG.dirichlet(np.ones(5), size=4)).astype(np.float32)
REL = RNG.integers(0, 3, size=(4, 5)).astype(np.float32)
E = RNG.normal(size=(6, 3)).astype(np.float32)
EL = np.array([0, 0, 1, 1, 2, 0], np.int32)

# (id, call(losses_module, *args), args, reference(*args))
CASES = [
    (
        "sce",
        lambda L, x, y: L.softmax_cross_entropy(x, y),
        (X, P),
        ref.softmax_cross_entropy,
    ),
    (
        "sce_where",
        lambda L, x, y, w: L.softmax_cross_entropy(x, y, where=w),
        (X, P, W),
        lambda x, y, w: ref.softmax_cross_entropy(x, y, where=w),
    ),
    (
        "sce_where_rows",
        lambda L, x, y, w: L.softmax_cross_entropy(x, y, where=w[:, 0]),
        (X, P, W),
        lambda x, y, w: ref.softmax_cross_entropy(x, y, where=w[:, 0]),
    ),
    (
        "sce_axis0",
        lambda L, x, y: L.softmax_cross_entropy(x, y, axis=0),
        (X, P),
        lambda x, y: ref.softmax_cross_entropy(x, y, axis=0),
    ),
    (
        "sce_batch",
        lambda L, x: L.softmax_cross_entropy(x, jax.nn.softmax(-x)),
        (XB,),
        lambda x: ref.softmax_cross_entropy(x, np.exp(ref.log_softmax(-x))),
    ),
    (
        "safe_sce",
        lambda L, x, y: L.safe_softmax_cross_entropy(x, y),
        (X, P),
        ref.softmax_cross_entropy,
    ),
    (
        "int",
        lambda L, x, y: L.softmax_cross_entropy_with_integer_labels(x, y),
        (X, YI),
        ref.softmax_cross_entropy_with_integer_labels,
    ),
    (
        "int_where",
        lambda L, x, y, w: L.softmax_cross_entropy_with_integer_labels(x, y, where=w),
        (X, YI, W),
        lambda x, y, w: ref.softmax_cross_entropy_with_integer_labels(x, y, where=w),
    ),
    (
        "int_axes",
        lambda L, x, y, w: L.softmax_cross_entropy_with_integer_labels(
            x, y, axis=(1, 2), where=w
        ),
        (X4, Y4, W4),
        lambda x, y, w: ref.softmax_cross_entropy_with_integer_labels(x, y, (1, 2), w),
    ),
    (
        "poly",
        lambda L, x, y: L.poly_loss_cross_entropy(x, y),
        (X, P),
        ref.poly_loss_cross_entropy,
    ),
    (
        "poly_where",
        lambda L, x, y, w: L.poly_loss_cross_entropy(x, y, epsilon=-1.0, where=w),
        (X, P, W),
        lambda x, y, w: ref.poly_loss_cross_entropy(x, y, -1.0, where=w),
    ),
    (
        "smooth",
        lambda L, y: L.smooth_labels(y, 0.1),
        (P,),
        lambda y: ref.smooth_labels(y, 0.1),
    ),
    (
        "smooth_where",
        lambda L, y, w: L.smooth_labels(y, 0.3, axis=0, where=w),
        (P, WS),
        lambda y, w: ref.smooth_labels(y, 0.3, axis=0, where=w),
    ),
    (
        "bce",
        lambda L, x, y: L.sigmoid_binary_cross_entropy(x, y),
        (X, YB),
        ref.sigmoid_binary_cross_entropy,
    ),
    (
        "focal",
        lambda L, x, y: L.sigmoid_focal_loss(x, y),
        (X, YB),
        ref.sigmoid_focal_loss,
    ),
    (
        "focal_soft",
        lambda L, x, y: L.sigmoid_focal_loss(x, y, alpha=0.25, gamma=0.5),
        (X, P),
        lambda x, y: ref.sigmoid_focal_loss(x, y, 0.25, 0.5),
    ),
    (
        "hinge",
        lambda L, x, y: L.hinge_loss(x, 2 * y - 1),
        (X, YB),
        lambda x, y: ref.hinge_loss(x, 2 * y - 1),
    ),
    (
        "perceptron",
        lambda L, x, y: L.perceptron_loss(x, 2 * y - 1),
        (X, YB),
        lambda x, y: ref.perceptron_loss(x, 2 * y - 1),
    ),
    (
        "mc_hinge",
        lambda L, x, y: L.multiclass_hinge_loss(x, y),
        (XB, YIB),
        ref.multiclass_hinge_loss,
    ),
    (
        "mc_perceptron",
        lambda L, x, y: L.multiclass_perceptron_loss(x, y),
        (X, YI),
        ref.multiclass_perceptron_loss,
    ),
    ("sparsemax", lambda L, x, y: L.sparsemax_loss(x, y), (X, YB), ref.sparsemax_loss),
    (
        "mc_sparsemax",
        lambda L, x, y: L.multiclass_sparsemax_loss(x, y),
        (X / 4, YI),
        ref.multiclass_sparsemax_loss,
    ),
    (
        "fenchel_young",
        lambda L, s, t: L.make_fenchel_young_loss(jax.nn.logsumexp)(s, t),
        (X4, X4 / 7),
        ref.logsumexp_fenchel_young,
    ),
    ("kl", lambda L, q, t: L.kl_divergence(q, t), (LQ, P), ref.kl_divergence),
    (
        "kl_where",
        lambda L, q, t, w: L.kl_divergence(q, t, axis=0, where=w),
        (LQ, P, W),
        lambda q, t, w: ref.kl_divergence(q, t, 0, w),
    ),
    (
        "kl_log",
        lambda L, q, t: L.kl_divergence_with_log_targets(q, jnp.log(t)),
        (LQ, P),
        ref.kl_divergence,
    ),
    (
        "gkl",
        lambda L, q, t: L.generalized_kl_divergence(q, 2 * t),
        (LQ, P),
        lambda q, t: ref.generalized_kl_divergence(q, 2 * t),
    ),
    (
        "ranking",
        lambda L, x, y: L.ranking_softmax_loss(x, y),
        (X, REL),
        ref.ranking_softmax_loss,
    ),
    (
        "ranking_where",
        lambda L, x, y, w: L.ranking_softmax_loss(x, y, where=w),
        (X, REL, W),
        lambda x, y, w: ref.ranking_softmax_loss(x, y, w),
    ),
    (
        "ranking_none",
        lambda L, x, y, w, p: L.ranking_softmax_loss(
            x, y, where=w, weights=p, reduce_fn=None
        ),
        (X, REL, W, P),
        lambda x, y, w, p: ref.ranking_softmax_loss(x, y, w, p, None),
    ),
    (
        "ranking_sum",
        lambda L, x, y, w: L.ranking_softmax_loss(x, y, where=w, reduce_fn=jnp.sum),
        (X, REL, W),
        lambda x, y, w: ref.ranking_softmax_loss(x, y, w, reduce="sum"),
    ),
    ("ntxent", lambda L, e, y: L.ntxent(e, y), (E, EL), ref.ntxent),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "call", "args", "reference"), CASES, ids=IDS)
def test_losses_classification_eager_matches_float64_reference(
    name, call, args, reference
):
    out = call(G, *args)
    assert out.dtype == jnp.float32, name
    np.testing.assert_allclose(out, reference(*args), rtol=2e-5, atol=2e-5)


@pytest.mark.usefixtures("standard_promotion")
@pytest.mark.parametrize(("name", "call", "args", "reference"), CASES, ids=IDS)
def test_losses_classification_jit_matches_reference_and_optax_value_and_grad(
    name, call, args, reference
):
    def value_and_grad(losses, *a):
        total = lambda first, *rest: jnp.sum(call(losses, first, *rest))
        return call(losses, *a), jax.grad(total)(*a)

    both = jax.jit(lambda *a: (value_and_grad(G, *a), value_and_grad(optax.losses, *a)))
    ours, theirs = both(*args)
    assert ours[0].dtype == jnp.float32, name
    np.testing.assert_allclose(ours[0], reference(*args), rtol=2e-5, atol=2e-5)
    chex.assert_trees_all_close(ours[0], theirs[0], rtol=1e-6, atol=2e-6)
    chex.assert_trees_all_close(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


NAMES = sorted(G._CLASSIFICATION)


@pytest.mark.parametrize("name", NAMES)
def test_losses_classification_signature_is_optax(name):
    ours = inspect.signature(getattr(G, name)).parameters
    theirs = inspect.signature(getattr(optax.losses, name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


@pytest.mark.parametrize("name", NAMES)
def test_losses_classification_top_level_alias_iff_optax_has_one(name):
    assert hasattr(gradtx, name) == hasattr(optax, name)
    if hasattr(gradtx, name):
        assert getattr(gradtx, name) is getattr(G, name)


def test_losses_names_cover_optax_classification_names():
    assert set(NAMES) <= set(dir(optax.losses))
    assert set(NAMES) <= set(G.__all__)
