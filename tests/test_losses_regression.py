"""Regression, cosine, CTC and Dice losses: float64 references, optax parity, edges."""

import inspect
import math

import _reference_losses_regression as ref
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import losses

ELEMENTWISE = ("squared_error", "l2_loss", "huber_loss", "log_cosh")
NAMES = (
    *ELEMENTWISE,
    "cosine_similarity",
    "cosine_distance",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_loss",
    "binary_dice_loss",
    "multiclass_generalized_dice_loss",
)


def _optax(name, *args, **kw):
    """Calls `optax.losses.<name>`, jitted (fewer compiles than eager op by op), with
    the standard promotion rules it relies on."""
    fn = getattr(optax.losses, name)
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        return jax.jit(lambda *a: fn(*a, **kw))(*args)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _close(got, want, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


# --- API surface -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_losses_signature_matches_optax(name):
    ours = inspect.signature(getattr(losses, name)).parameters
    theirs = inspect.signature(getattr(optax.losses, name)).parameters
    assert list(ours) == list(theirs)
    for key, param in theirs.items():
        assert ours[key].kind == param.kind, key
        assert ours[key].default == param.default, key


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_losses_top_level_alias_is_the_same_object_where_optax_has_one(name):
    assert name in losses.__all__
    assert hasattr(gradtx, name) == hasattr(optax, name)
    if hasattr(optax, name):
        assert getattr(gradtx, name) is getattr(losses, name)


# --- elementwise regression losses ---------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE, ids=ELEMENTWISE)
@pytest.mark.parametrize("with_targets", [True, False], ids=["targets", "zeros"])
def test_elementwise_losses_match_float64_reference(name, with_targets, jit):
    rng = _rng(1)
    p = rng.normal(size=(3, 5)) * 4.0
    p[0, :3] = [0.0, 1e-3, 300.0]  # zero, tiny, and past cosh's float32 overflow
    t = rng.normal(size=(3, 5)) if with_targets else None
    fn = jit(getattr(losses, name))
    args = (jnp.asarray(p, jnp.float32),)
    args += () if t is None else (jnp.asarray(t, jnp.float32),)
    p32 = np.asarray(args[0], np.float64)  # the reference sees the same float32 inputs
    t32 = None if t is None else np.asarray(args[1], np.float64)
    _close(fn(*args), getattr(ref, name)(p32, t32), rtol=2e-6, atol=0.0)


@pytest.mark.parametrize("name", ELEMENTWISE, ids=ELEMENTWISE)
def test_elementwise_losses_match_optax(name, jit):
    rng = _rng(2)
    p = jnp.asarray(rng.normal(size=(4, 6)) * 3.0, jnp.float32)
    t = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    ours = jit(getattr(losses, name))
    # log_cosh: optax loses small values to cancellation (see the next test).
    atol = 1e-6 if name == "log_cosh" else 0.0
    _close(ours(p, t), np.asarray(_optax(name, p, t)), rtol=1e-6, atol=atol)
    _close(ours(p), np.asarray(_optax(name, p)), rtol=1e-6, atol=atol)


def test_huber_loss_delta_and_gradient_is_clipped_l2_gradient(jit):
    x = jnp.array([-5.0, -0.2, 0.0, 0.2, 5.0])
    _close(
        jit(losses.huber_loss)(x, delta=0.5), ref.huber_loss(np.asarray(x), None, 0.5)
    )
    grad = jax.jit(jax.grad(lambda v: jnp.sum(losses.huber_loss(v, delta=0.5))))(x)
    _close(grad, np.clip(np.asarray(x), -0.5, 0.5), atol=0.0)


def test_log_cosh_keeps_precision_for_small_arguments_and_gradient_is_tanh():
    x = jnp.array([1e-6, 1e-4, 3e-2, 50.0, 1e4, -1e4], jnp.float32)
    _close(
        losses.log_cosh(x), ref.log_cosh(np.asarray(x, np.float64)), rtol=1e-6, atol=0
    )
    assert float(_optax("log_cosh", x)[1]) == 0.0  # optax's cancellation
    grad_at = jax.jit(jax.grad(lambda v: jnp.sum(losses.log_cosh(v))))
    grad = grad_at(x)
    _close(grad, np.tanh(np.asarray(x, np.float64)), rtol=1e-6, atol=1e-7)
    assert float(grad_at(jnp.zeros(1, jnp.float32))[0]) == 0.0


@pytest.mark.parametrize("name", ELEMENTWISE, ids=ELEMENTWISE)
def test_elementwise_losses_dtypes_and_targets(name):
    fn = getattr(losses, name)
    p16 = jnp.array([0.5, -2.0], jnp.bfloat16)
    assert fn(p16).dtype == jnp.bfloat16
    assert fn(p16, jnp.array([1, 0])).dtype == jnp.bfloat16  # integer targets
    # Targets broadcast against predictions (optax raises for squared_error).
    out = fn(jnp.ones((2, 3)), jnp.zeros((3,)).reshape(1, 3))
    assert out.shape == (2, 3)
    with pytest.raises(TypeError, match=f"losses.{name}: predictions"):
        fn(jnp.array([1, 2]))


def test_huber_loss_rejects_a_non_positive_delta():
    with pytest.raises(gradtx.HyperparameterError, match=r"huber_loss: delta.*-1\.0"):
        losses.huber_loss(jnp.ones(2), delta=-1.0)


# --- cosine similarity -------------------------------------------------------------

COSINE_CASES = {
    "last_axis": {},
    "epsilon": {"epsilon": 0.5},
    "axis0": {"axis": 0},
    "all_axes": {"axis": None},
    "tuple_axes": {"axis": (0, 1)},
    "where": {"where": np.array([[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 0, 0]], bool)},
}


@pytest.mark.parametrize("kw", COSINE_CASES.values(), ids=COSINE_CASES.keys())
def test_cosine_similarity_and_distance_match_reference(kw, jit):
    rng = _rng(3)
    p = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(3, 4)) * 1e-2, jnp.float32)
    want = ref.cosine_similarity(np.asarray(p), np.asarray(t), **kw)
    sim = jit(lambda a, b: losses.cosine_similarity(a, b, **kw))(p, t)
    dist = jit(lambda a, b: losses.cosine_distance(a, b, **kw))(p, t)
    _close(sim, want)
    _close(dist, 1.0 - want)


def test_cosine_losses_match_optax():
    rng = _rng(3)
    p = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(3, 4)) * 1e-2, jnp.float32)
    for kw in COSINE_CASES.values():
        want = np.asarray(_optax("cosine_similarity", p, t, **kw))
        _close(losses.cosine_similarity(p, t, **kw), want, rtol=1e-6)
    want = np.asarray(_optax("cosine_distance", p, t, epsilon=0.5))
    _close(losses.cosine_distance(p, t, epsilon=0.5), want, rtol=1e-6)


def test_cosine_similarity_zero_vectors_epsilon_and_masked_rows():
    p = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    t = jnp.array([[1.0, 0.0], [6.0, 8.0]])
    assert np.isnan(losses.cosine_similarity(p, t)[0])  # 0/0, as optax
    _close(losses.cosine_similarity(p, t, epsilon=1e-8), [0.0, 1.0])
    sim = lambda a: jnp.sum(losses.cosine_similarity(a, t, epsilon=1e-8))
    grad = jax.jit(jax.grad(sim))(p)
    assert np.all(np.isfinite(grad))
    _close(grad[0], [1e4, 0.0], rtol=1e-5)  # 1 / sqrt(epsilon)
    where = jnp.array([[False, False], [True, True]])
    _close(losses.cosine_similarity(p, t, where=where), [0.0, 1.0])
    # Broadcasting: one target vector against a batch.
    _close(losses.cosine_similarity(p[1:], jnp.array([4.0, -3.0])), [0.0])


def test_cosine_losses_reject_bad_arguments():
    with pytest.raises(gradtx.HyperparameterError, match=r"cosine_distance: epsilon"):
        losses.cosine_distance(jnp.ones(2), jnp.ones(2), epsilon=-1.0)
    with pytest.raises(TypeError, match=r"cosine_similarity: targets"):
        losses.cosine_similarity(jnp.ones(2), jnp.array([1, 2]))


# --- CTC ---------------------------------------------------------------------------


def _ctc_batch(seed, b, t, k, n, *, scale=2.0):
    rng = _rng(seed)
    logits = rng.normal(size=(b, t, k)) * scale
    labels = rng.integers(0, k, size=(b, n))
    label_lengths = rng.integers(0, n + 1, size=b)
    frame_lengths = rng.integers(1, t + 1, size=b)
    label_pad = (np.arange(n)[None] >= label_lengths[:, None]).astype(np.float32)
    frame_pad = (np.arange(t)[None] >= frame_lengths[:, None]).astype(np.float32)
    return logits, frame_pad, labels, label_pad, frame_lengths, label_lengths


def _ctc_args(batch):
    logits, frame_pad, labels, label_pad = batch[:4]
    return (
        jnp.asarray(logits, jnp.float32),
        jnp.asarray(frame_pad),
        jnp.asarray(labels, jnp.int32),
        jnp.asarray(label_pad),
    )


@pytest.mark.parametrize("blank", [0, 2], ids=["blank0", "blank2"])
def test_ctc_loss_matches_brute_force_sum_over_alignments(blank, jit):
    batch = _ctc_batch(4, b=6, t=5, k=3, n=3)
    batch[2][batch[2] == blank] = 1  # labels never name the blank here
    logits32 = np.asarray(_ctc_args(batch)[0], np.float64)
    labels, frames, lengths = batch[2], batch[4], batch[5]
    want = [
        ref.ctc_brute_force(logits32[i, : frames[i]], labels[i, : lengths[i]], blank)
        for i in range(6)
    ]
    loss = jit(lambda *a: losses.ctc_loss(*a, blank_id=blank))(*_ctc_args(batch))
    feasible = np.isfinite(want)
    assert feasible.sum() >= 3  # the seed gives several reachable label sequences
    _close(np.asarray(loss)[feasible], np.asarray(want)[feasible], rtol=2e-6, atol=0)
    # No alignment fits: the loss is of the order of -log_epsilon, not inf.
    assert np.all(np.asarray(loss)[~feasible] > 1e4)


def test_ctc_forward_probs_match_dynamic_programming_reference(jit):
    batch = _ctc_batch(5, b=4, t=12, k=5, n=6)
    batch[2][0, 1:3] = 3  # a repeated label needs a blank in between
    loss, a_blank, a_label = jit(losses.ctc_loss_with_forward_probs)(*_ctc_args(batch))
    assert a_blank.shape == (12, 4, 7)
    assert a_label.shape == (12, 4, 6)
    logits32 = np.asarray(_ctc_args(batch)[0], np.float64)
    for i in range(4):
        frames, n = batch[4][i], batch[5][i]
        want, ref_b, ref_l = ref.ctc_forward(logits32[i, :frames], batch[2][i, :n])
        if not np.isfinite(want):  # too few frames: about -log_epsilon, not inf
            assert float(loss[i]) > 1e4
            continue
        _close(loss[i], want, rtol=2e-6)
        # Rows before the last: reachable states match, unreachable ones are ~log(0).
        rows = min(frames, 11)
        for got, want_rows in ((a_blank[:rows, i], ref_b), (a_label[:rows, i], ref_l)):
            got = np.asarray(got)[:, : want_rows.shape[1]]
            ok = np.isfinite(want_rows[:rows])
            _close(got[ok], want_rows[:rows][ok], rtol=2e-6)
            assert np.all(got[~ok] < -5e4)
        # Padded frames hold the alphas; the last row holds "n labels emitted".
        for t in range(frames, 12):
            np.testing.assert_array_equal(a_label[t, i], a_label[frames - 1, i])
        _close(a_blank[-1, i, n], -want, rtol=2e-6)


def test_ctc_matches_optax_including_forward_probs():
    blank = 3
    batch = _ctc_batch(6, b=5, t=10, k=4, n=5, scale=3.0)
    batch[2][1, :2] = blank  # labels equal to the blank id: same numbers as optax
    args = _ctc_args(batch)
    ours = losses.ctc_loss_with_forward_probs(*args, blank_id=blank)
    theirs = _optax("ctc_loss_with_forward_probs", *args, blank_id=blank)
    for got, want in zip(ours, theirs, strict=True):
        _close(got, np.asarray(want), rtol=1e-6, atol=1e-5)
    _close(losses.ctc_loss(*args, blank_id=blank), np.asarray(theirs[0]), rtol=1e-6)


def test_ctc_gradient_is_finite_zero_on_padded_frames_and_matches_optax():
    args = _ctc_args(_ctc_batch(7, b=4, t=8, k=4, n=4, scale=20.0))  # large logits
    grad = jax.jit(jax.grad(lambda z: jnp.sum(losses.ctc_loss(z, *args[1:]))))(args[0])
    optax_loss = lambda z: jnp.sum(_optax("ctc_loss", z, *args[1:]))
    want = jax.jit(jax.grad(optax_loss))(args[0])
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[np.asarray(args[1]) > 0] == 0.0)
    _close(np.asarray(grad).sum(-1), 0.0, atol=1e-5)  # softmax gradients sum to 0
    _close(grad, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_ctc_bfloat16_logits_run_in_float32_and_keep_their_dtype():
    args = _ctc_args(_ctc_batch(10, b=3, t=40, k=6, n=8))
    logits16 = args[0].astype(jnp.bfloat16)
    loss, a_blank, a_label = losses.ctc_loss_with_forward_probs(logits16, *args[1:])
    assert {loss.dtype, a_blank.dtype, a_label.dtype} == {jnp.dtype(jnp.bfloat16)}
    want = losses.ctc_loss(logits16.astype(jnp.float32), *args[1:])
    _close(loss, np.asarray(want), rtol=5e-3, atol=0)  # one bf16 rounding at the end


def test_ctc_all_labels_padded_is_minus_sum_of_blank_log_probs():
    logits = jnp.asarray(_rng(8).normal(size=(1, 4, 3)), jnp.float32)
    loss = losses.ctc_loss(
        logits, jnp.zeros((1, 4)), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2))
    )
    logp = ref._log_softmax(np.asarray(logits, np.float64))
    _close(loss, [-logp[0, :, 0].sum()], rtol=1e-6)


def test_ctc_rejects_bad_arguments():
    args = _ctc_args(_ctc_batch(9, b=2, t=3, k=3, n=2))
    with pytest.raises(
        gradtx.HyperparameterError, match=r"ctc_loss: blank_id.*\[0, 3\)"
    ):
        losses.ctc_loss(*args, blank_id=3)
    with pytest.raises(gradtx.HyperparameterError, match=r"log_epsilon.*0\.5"):
        losses.ctc_loss_with_forward_probs(*args, log_epsilon=0.5)
    with pytest.raises(ValueError, match=r"ctc_loss: logit_paddings must have shape"):
        losses.ctc_loss(args[0], args[1][:, :2], args[2], args[3])
    with pytest.raises(TypeError, match=r"labels must be an integer array"):
        losses.ctc_loss(args[0], args[1], args[2].astype(jnp.float32), args[3])


# --- Dice ----------------------------------------------------------------------------

DICE_CASES = {
    "default": {},
    "none": {"reduction": "none"},
    "sum_tversky": {"reduction": "sum", "alpha": 0.3, "beta": 0.7},
    "weights_ignore_bg": {"class_weights": [1.0, 2.0, 3.0], "ignore_background": True},
    "no_smooth_axis": {"smooth": 0.0, "axis": (0, 1, 2)},
}


def _segmentation(seed, shape=(2, 4, 5, 3)):
    rng = _rng(seed)
    logits = jnp.asarray(rng.normal(size=shape) * 2.0, jnp.float32)
    classes = rng.integers(0, shape[-1], size=shape[:-1])
    return logits, jnp.asarray(np.eye(shape[-1])[classes], jnp.float32)


@pytest.mark.parametrize("kw", DICE_CASES.values(), ids=DICE_CASES.keys())
def test_dice_loss_matches_reference(kw, jit):
    p, t = _segmentation(10)
    got = jit(lambda a, b: losses.dice_loss(a, b, **kw))(p, t)
    _close(got, ref.dice(np.asarray(p), np.asarray(t), **kw), rtol=2e-6)


def test_dice_losses_match_optax():
    p, t = _segmentation(10)
    for kw in DICE_CASES.values():
        if "class_weights" in kw:
            kw = {**kw, "class_weights": jnp.asarray(kw["class_weights"])}
        want = np.asarray(_optax("dice_loss", p, t, **kw))
        _close(losses.dice_loss(p, t, **kw), want, rtol=1e-6)
    for shape in [(2, 7, 1), (2, 7)]:  # a sigmoid channel; no spatial axis
        q, u = _segmentation(11, shape)
        want = np.asarray(_optax("dice_loss", q, u, reduction="none"))
        _close(losses.dice_loss(q, u, reduction="none"), want, rtol=1e-6)
    want = np.asarray(_optax("binary_dice_loss", q, u))  # last shape: (2, 7)
    _close(losses.binary_dice_loss(q, u), want, rtol=1e-6)
    u = t.at[..., 2].set(0.0).at[..., 0].set(1.0 - t[..., 1])  # class 2 is absent
    for kw in GENERALIZED_CASES:
        want = np.asarray(_optax("multiclass_generalized_dice_loss", p, u, **kw))
        _close(losses.multiclass_generalized_dice_loss(p, u, **kw), want, rtol=1e-6)


DICE_SHAPES = [(6, 3), (3,), (2, 7, 1), (2, 7)]
GENERALIZED_CASES = [{}, {"ignore_background": True}, {"smooth": 0.2}]


@pytest.mark.parametrize("shape", DICE_SHAPES, ids=str)
def test_dice_loss_shapes_binary_channel_and_gradient(shape):
    p, t = _segmentation(11, shape)
    got = losses.dice_loss(p, t, reduction="none")
    _close(got, ref.dice(np.asarray(p), np.asarray(t), reduction="none"), rtol=2e-6)
    grad = jax.jit(jax.grad(lambda z: jnp.sum(losses.dice_loss(z, t))))(p * 100.0)
    assert np.all(np.isfinite(grad))


def test_dice_loss_probabilities_are_checked_only_when_concrete():
    p, t = _segmentation(12)
    probs = jax.nn.softmax(p)
    want = ref.dice(np.asarray(probs), np.asarray(t), apply_softmax=False)
    _close(losses.dice_loss(probs, t, apply_softmax=False), want, rtol=2e-6)
    # Under jit the sums cannot be checked (optax 0.2.8 raises a tracer error).
    _close(jax.jit(lambda a: losses.dice_loss(a, t, apply_softmax=False))(probs), want)
    with pytest.raises(ValueError, match=r"dice_loss: with apply_softmax=False"):
        losses.dice_loss(p, t, apply_softmax=False)


def test_binary_dice_loss_sigmoid_and_probabilities(jit):
    rng = _rng(13)
    logits = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
    mask = jnp.asarray(rng.random((3, 8)) < 0.4, jnp.float32)
    want = ref.dice(np.asarray(logits)[..., None], np.asarray(mask)[..., None])
    _close(jit(losses.binary_dice_loss)(logits, mask), want, rtol=2e-6)
    _close(losses.binary_dice_loss(logits[..., None], mask[..., None]), want, rtol=2e-6)
    # Foreground probabilities need not sum to 1 (optax 0.2.8 raises here).
    probs = jax.nn.sigmoid(logits)
    _close(losses.binary_dice_loss(probs, mask, apply_sigmoid=False), want, rtol=2e-6)


@pytest.mark.parametrize("kw", GENERALIZED_CASES, ids=str)
def test_generalized_dice_matches_reference(kw, jit):
    p, t = _segmentation(14)
    t = t.at[..., 2].set(0.0).at[..., 0].set(1.0 - t[..., 1])  # class 2 is absent
    got = jit(lambda a, b: losses.multiclass_generalized_dice_loss(a, b, **kw))(p, t)
    assert got.shape == ()
    _close(got, ref.generalized_dice(np.asarray(p), np.asarray(t), **kw), rtol=2e-6)
    gdl = lambda z: losses.multiclass_generalized_dice_loss(z, t, **kw)
    grad = jax.jit(jax.grad(gdl))(p)
    assert np.all(np.isfinite(grad))


def test_generalized_dice_weight_floor_for_a_nearly_absent_class():
    # Class 1's squared mass (4e-8) is of the order of the 1e-7 floor in the weights.
    p, t = _segmentation(16, (2, 6, 3))
    t = t * jnp.array([[[1.0, 5e-5, 0.0]]])  # and class 2 absent
    got = losses.multiclass_generalized_dice_loss(p, t)
    _close(got, ref.generalized_dice(np.asarray(p), np.asarray(t)), rtol=2e-6)
    want = _optax("multiclass_generalized_dice_loss", p, t)
    _close(got, np.asarray(want), rtol=1e-6)


def test_dice_losses_reject_bad_arguments():
    p, t = _segmentation(15)
    with pytest.raises(gradtx.HyperparameterError, match=r"reduction must be one of"):
        losses.dice_loss(p, t, reduction="avg")
    with pytest.raises(gradtx.HyperparameterError, match=r"dice_loss: smooth"):
        losses.dice_loss(p, t, smooth=-1.0)
    with pytest.raises(gradtx.HyperparameterError, match=r"binary_dice_loss: smooth"):
        losses.binary_dice_loss(p, t, smooth=-1.0)
    with pytest.raises(gradtx.HyperparameterError, match=r"dice_loss: beta"):
        losses.dice_loss(p, t, beta=math.inf)
    with pytest.raises(ValueError, match=r"class_weights must have shape \(3,\)"):
        losses.dice_loss(p, t, class_weights=jnp.ones(2))
    with pytest.raises(gradtx.HyperparameterError, match=r"ignore_background"):
        losses.dice_loss(p[..., :1], t[..., :1], ignore_background=True)
    with pytest.raises(ValueError, match=r"share a shape"):
        losses.dice_loss(p, t[..., :2])
