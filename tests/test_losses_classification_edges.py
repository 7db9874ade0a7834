"""gradtx.losses classification edge cases: -inf logits, masks, labels, bad args."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import HyperparameterError
from gradtx import losses as G
from tests import _reference_losses_classification as ref

NEG = -jnp.inf
# Row 0 masks class 1 with a -inf logit; row 1 is ordinary.
LOGITS = jnp.array([[1.0, NEG, 0.5], [0.2, 0.3, 0.1]])
LABELS = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.3, 0.7]])


@pytest.mark.parametrize(
    "loss",
    [G.softmax_cross_entropy, G.safe_softmax_cross_entropy, G.poly_loss_cross_entropy],
    ids=["sce", "safe_sce", "poly"],
)
def test_losses_neg_inf_logit_with_zero_label_is_finite_in_value_and_derivatives(loss):
    out = loss(LOGITS, LABELS)
    chex.assert_tree_all_finite(out)
    if loss is not G.poly_loss_cross_entropy:
        expected = ref.softmax_cross_entropy(np.asarray(LOGITS), np.asarray(LABELS))
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    total = lambda x, y: jnp.sum(loss(x, y))
    chex.assert_tree_all_finite(
        jax.jit(jax.grad(total, argnums=(0, 1)))(LOGITS, LABELS)
    )
    # Forward mode too (optax's safe_softmax_cross_entropy gives NaN here).
    chex.assert_tree_all_finite(jax.jit(jax.jacfwd(loss))(LOGITS, LABELS))


@pytest.mark.usefixtures("standard_promotion")
def test_losses_softmax_cross_entropy_differs_from_optax_only_where_optax_is_nan():
    ours = G.softmax_cross_entropy(LOGITS, LABELS)
    theirs = optax.losses.softmax_cross_entropy(LOGITS, LABELS)
    assert np.isnan(theirs[0])  # the documented difference
    assert np.isfinite(ours[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6)
    np.testing.assert_allclose(
        ours, optax.losses.safe_softmax_cross_entropy(LOGITS, LABELS), rtol=1e-6
    )
    grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(f(x, LABELS))))(LOGITS)
    chex.assert_trees_all_close(
        grad(G.softmax_cross_entropy), grad(optax.losses.softmax_cross_entropy)
    )


def test_losses_neg_inf_logit_with_positive_label_is_inf():
    out = G.softmax_cross_entropy(LOGITS, jnp.array([[0.0, 1.0, 0.0]] * 2))
    assert out[0] == jnp.inf


def test_losses_large_logits_stay_finite(jit):
    x = jnp.array([[1e4, -1e4, 0.0]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(jit(G.softmax_cross_entropy)(x, y), [2e4], rtol=1e-6)
    bce = jit(G.sigmoid_binary_cross_entropy)(x, y)
    np.testing.assert_allclose(bce, [[1e4, 1e4, np.log(2)]], rtol=1e-6)
    focal = jit(lambda a, b: G.sigmoid_focal_loss(a, b, gamma=0.5))(x, 1 - y)
    np.testing.assert_allclose(focal, ref.sigmoid_focal_loss(x, 1 - y, None, 0.5))
    grads = jax.grad(lambda a: jnp.sum(G.sigmoid_focal_loss(a, 1 - y, gamma=0.5)))(x)
    chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize(
    "where",
    [jnp.array([True, False]), jnp.array([[True, True, False], [False] * 3])],
    ids=["rows", "elements"],
)
def test_losses_fully_masked_example_gives_zero_and_zero_gradient(where):
    x = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, -2.0]])
    losses = [
        lambda a: G.softmax_cross_entropy(a, LABELS, where=where),
        lambda a: G.softmax_cross_entropy_with_integer_labels(
            a, jnp.array([0, 2]), where=where
        ),
    ]
    if where.ndim == 2:
        losses.append(lambda a: G.poly_loss_cross_entropy(a, LABELS, where=where))
    for loss in losses:
        out = loss(x)
        assert out[1] == 0
        grad = jax.jit(jax.grad(lambda a, f=loss: jnp.sum(f(a))))(x)
        chex.assert_tree_all_finite(grad)
        np.testing.assert_array_equal(grad[1], 0)


def test_losses_integer_labels_must_have_an_integer_dtype():
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        G.softmax_cross_entropy_with_integer_labels(LOGITS, jnp.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        G.softmax_cross_entropy(jnp.array([[1, 2]]), jnp.array([[1, 0]]))


@pytest.mark.parametrize(
    ("loss", "labels"),
    [
        (G.softmax_cross_entropy_with_integer_labels, [0, 3]),
        (G.softmax_cross_entropy_with_integer_labels, [-1, 0]),
        (G.multiclass_hinge_loss, [0, 3]),
        (G.multiclass_perceptron_loss, [-2, 0]),
        (G.multiclass_sparsemax_loss, [0, 7]),
    ],
    ids=["int_high", "int_negative", "hinge", "perceptron", "sparsemax"],
)
def test_losses_concrete_out_of_range_labels_raise(loss, labels):
    bad = next(v for v in labels if not 0 <= v < 3)
    with pytest.raises(
        HyperparameterError, match=rf"{loss.__name__}: labels .*\[0, 3\).*{bad}"
    ):
        loss(jnp.zeros((2, 3)), jnp.array(labels))


def test_losses_masked_examples_may_hold_placeholder_labels():
    labels = jnp.array([1, -1])
    out = G.softmax_cross_entropy_with_integer_labels(
        LOGITS, labels, where=jnp.array([True, False])
    )
    np.testing.assert_array_equal(out[1], 0)
    # A traced mask cannot say which labels count: concrete labels go unchecked.
    masked = jax.jit(
        lambda w: G.softmax_cross_entropy_with_integer_labels(
            LOGITS, np.array([1, -1], np.int32), where=w
        )
    )(jnp.array([True, False]))
    np.testing.assert_array_equal(masked, out)
    # Under jit the labels are traced and not checked (optax gives NaN for them too).
    traced = jax.jit(G.softmax_cross_entropy_with_integer_labels)(LOGITS, labels)
    assert traced.shape == (2,)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: G.smooth_labels(LABELS, 1.5), "smooth_labels: alpha"),
        (lambda: G.sigmoid_focal_loss(LOGITS, LABELS, gamma=-1.0), "focal_loss: gamma"),
        (lambda: G.sigmoid_focal_loss(LOGITS, LABELS, alpha=2.0), "focal_loss: alpha"),
        (lambda: G.ntxent(LOGITS, jnp.array([0, 1]), 0.0), "ntxent: temperature"),
        (
            lambda: G.poly_loss_cross_entropy(LOGITS, LABELS, epsilon=jnp.inf),
            "poly_loss_cross_entropy: epsilon",
        ),
        (
            lambda: G.softmax_cross_entropy_with_integer_labels(
                LOGITS, jnp.array([0, 1]), axis=2
            ),
            "integer_labels: axis",
        ),
    ],
    ids=[
        "smooth_alpha",
        "focal_gamma",
        "focal_alpha",
        "temperature",
        "epsilon",
        "axis",
    ],
)
def test_losses_bad_concrete_arguments_raise_hyperparameter_error(call, match):
    with pytest.raises(HyperparameterError, match=match):
        call()


def test_losses_shape_mismatches_raise_value_error():
    with pytest.raises(ValueError, match=r"perceptron_loss: .*same shape"):
        G.perceptron_loss(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"ntxent: .*leading dimension"):
        G.ntxent(jnp.zeros((3, 2)), jnp.zeros(2, jnp.int32))
    with pytest.raises(TypeError, match="max_fun must be callable"):
        G.make_fenchel_young_loss(3.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ours", "log_t", "log_q"),
    [
        (G.kl_divergence, False, [0.0, NEG]),
        (G.kl_divergence_with_log_targets, True, [0.0, NEG]),
        (G.generalized_kl_divergence, False, [0.0, NEG]),
    ],
    ids=["kl", "kl_log_targets", "generalized"],
)
def test_losses_zero_targets_contribute_zero_with_finite_gradients(ours, log_t, log_q):
    targets = jnp.array([1.0, 0.0])
    t = jnp.log(targets) if log_t else targets
    q = jnp.array(log_q)
    out = ours(q, t)
    assert out == 0  # optax: NaN (0 * inf) for the first two
    grads = jax.jit(jax.grad(ours, argnums=(0, 1)))(q, t)
    chex.assert_tree_all_finite(grads)


def test_losses_convex_kl_divergence_warns_and_equals_generalized():
    q, t = jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.5, 1.0])
    with pytest.warns(DeprecationWarning, match="generalized_kl_divergence"):
        out = G.convex_kl_divergence(q, t)
    np.testing.assert_array_equal(out, G.generalized_kl_divergence(q, t))


def test_losses_ranking_with_no_valid_list_is_zero_with_zero_gradient():
    x, y = jnp.array([[1.0, 2.0], [0.5, NEG]]), jnp.array([[1.0, 0.0], [1.0, 0.0]])
    where = jnp.zeros((2, 2), bool)
    loss = lambda a: G.ranking_softmax_loss(a, y, where=where)
    assert loss(x) == 0
    np.testing.assert_array_equal(jax.jit(jax.grad(loss))(x), 0)
    # An unmasked -inf item with label 0 adds nothing (optax: NaN).
    assert np.isfinite(G.ranking_softmax_loss(x, y))


def test_losses_ntxent_without_positive_pairs_is_zero_with_zero_gradient():
    emb = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = jnp.array([0, 1, 2])
    assert G.ntxent(emb, labels) == 0  # optax: NaN
    np.testing.assert_array_equal(jax.jit(jax.grad(G.ntxent))(emb, labels), 0)


def test_losses_ntxent_zero_embedding_and_no_negatives_stay_finite():
    emb = jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])
    for labels in (jnp.array([0, 0, 1]), jnp.array([0, 0, 0])):
        out, grad = jax.jit(jax.value_and_grad(G.ntxent))(emb, labels)
        chex.assert_tree_all_finite((out, grad))
        np.testing.assert_allclose(
            out, ref.ntxent(np.asarray(emb), np.asarray(labels)), rtol=1e-5, atol=1e-6
        )


def test_losses_multiclass_sparsemax_gradient_is_sparsemax_minus_one_hot():
    scores = jnp.array([[1.0, 0.8, -1.0], [0.0, 0.0, 3.0]])
    labels = jnp.array([1, 0])
    loss = lambda s: jnp.sum(G.multiclass_sparsemax_loss(s, labels))
    grad = jax.jit(jax.grad(loss))(scores)
    expected = np.stack([ref.sparsemax(np.asarray(s, np.float64)) for s in scores])
    expected -= np.eye(3)[np.asarray(labels)]
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert G.multiclass_sparsemax_loss(jnp.array([[5.0, 0.0]]), jnp.array([0]))[0] == 0


def test_losses_fenchel_young_passes_extra_arguments_to_max_fun():
    def scaled_logsumexp(s, scale, *, shift=0.0):
        return jax.nn.logsumexp(scale * s) / scale + shift

    loss = G.make_fenchel_young_loss(scaled_logsumexp)
    s, t = jnp.ones((2, 3, 4)), jnp.full((2, 3, 4), 0.25)
    out = loss(s, t, 2.0, shift=1.0)
    np.testing.assert_allclose(out, np.full((2, 3), np.log(4) / 2 + 1), rtol=1e-6)


@pytest.mark.parametrize(
    "loss",
    [G.softmax_cross_entropy, G.sigmoid_binary_cross_entropy, G.kl_divergence],
    ids=["sce", "bce", "kl"],
)
def test_losses_keep_bfloat16(loss):
    x = jnp.array([[0.1, -0.2, 0.3]], jnp.bfloat16)
    y = jnp.array([[0.2, 0.3, 0.5]], jnp.bfloat16)
    assert loss(x, y).dtype == jnp.bfloat16
