# SPDX-License-Identifier: Apache-2.0
"""SOAP: validation, the first step, identity fallback, and beating Adam where the
curvature is a rotated Kronecker product (the float64 reference runs through the
registry, tests/_registry_torch.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

NAN = float("nan")


@pytest.mark.parametrize("name", ["scale_by_soap", "soap"])
@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("precondition_frequency", 0),
        ("precondition_frequency", 2.5),
        ("precondition_frequency", True),
        ("max_precond_dim", -1),
        ("max_precond_dim", 10.0),
        ("b1", 1.0),
        ("shampoo_beta", NAN),
    ],
)
def test_bad_value_raises_naming_function_argument_and_value(name, arg, value):
    args = (0.1,) if name == "soap" else ()
    with pytest.raises(gradtx.HyperparameterError) as info:
        getattr(gradtx, name)(*args, **{arg: value})
    message = str(info.value)
    assert message.startswith(f"gradtx.{name}: {arg} ")
    assert repr(value) in message


def _grads(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(n)]


def test_first_step_only_builds_the_eigenbasis():
    tx = gradtx.scale_by_soap(shampoo_beta=0.5)
    (g,) = _grads((5, 3), 1)
    u, state = tx.update(g, tx.init(g))
    assert not np.any(np.asarray(u))
    assert int(state.count) == 1
    np.testing.assert_array_equal(state.mu, 0)
    np.testing.assert_allclose(state.gg_left, 0.5 * g @ g.T, rtol=1e-6)
    for gg, q in ((state.gg_left, state.q_left), (state.gg_right, state.q_right)):
        d = q.T @ gg @ q  # diagonal, eigenvalues decreasing, q orthogonal
        np.testing.assert_allclose(q.T @ q, np.eye(len(q)), atol=1e-5)
        np.testing.assert_allclose(d - np.diag(np.diag(d)), 0, atol=1e-5)
        assert np.all(np.diff(np.diag(d)) <= 1e-6)


def test_axes_longer_than_max_precond_dim_keep_the_identity_basis():
    tx = gradtx.scale_by_soap(max_precond_dim=4)
    params = {"m": jnp.zeros((6, 4)), "t": jnp.zeros((2, 3, 4)), "v": jnp.zeros(3)}
    state = tx.init(params)
    shapes = lambda tree: {k: v.shape for k, v in tree.items()}
    # Leaves of 3 or more axes are seen as (rows, last axis): (2*3, 4) here.
    assert shapes(state.gg_left) == {"m": (0, 0), "t": (0, 0), "v": (0, 0)}
    assert shapes(state.gg_right) == {"m": (4, 4), "t": (4, 4), "v": (0, 0)}


def test_without_preconditioned_axes_it_is_adam_one_step_late():
    # max_precond_dim=0: every basis is the identity, so SOAP is Adam (same
    # formula when eps=0) that skips its first call.
    soap = gradtx.scale_by_soap(b1=0.9, b2=0.99, eps=0.0, max_precond_dim=0)
    adam = gradtx.scale_by_adam(b1=0.9, b2=0.99, eps=0.0)
    grads = _grads((4, 3), 6)
    s, a = soap.init(grads[0]), adam.init(grads[0])
    _, s = soap.update(grads[0], s)
    for g in grads[1:]:
        us, s = soap.update(g, s)
        ua, a = adam.update(g, a)
        np.testing.assert_allclose(us, ua, rtol=1e-5)


def _kronecker_problem(n=8, cond=1e3, seed=0):
    """0.5 ||A W B - C||²: Hessian (B Bᵀ) ⊗ (Aᵀ A), ill-conditioned and rotated."""
    rng = np.random.default_rng(seed)

    def factor():
        u, _ = np.linalg.qr(rng.standard_normal((n, n)))
        return u @ np.diag(np.geomspace(1.0, cond**-0.5, n)) @ u.T

    a, b = factor(), factor()
    c = a @ rng.standard_normal((n, n)) @ b
    a, b, c = (jnp.asarray(x, jnp.float32) for x in (a, b, c))
    return lambda w: 0.5 * jnp.sum((a @ w @ b - c) ** 2)


def _best_final_loss(make, loss, lrs, steps=200):
    @jax.jit
    def run(lr):
        tx = make(lr)
        w = jnp.zeros((8, 8))

        def body(carry, _):
            w, state = carry
            u, state = tx.update(jax.grad(loss)(w), state, w)
            return (gradtx.apply_updates(w, u), state), None

        (w, _), _ = jax.lax.scan(body, (w, tx.init(w)), None, length=steps)
        return loss(w)

    return min(float(run(jnp.float32(lr))) for lr in lrs)


def test_soap_beats_adam_on_an_ill_conditioned_kronecker_problem():
    loss = _kronecker_problem()
    lrs = [3e-3, 1e-2, 3e-2, 1e-1]
    start = float(loss(jnp.zeros((8, 8))))
    adam = _best_final_loss(lambda lr: gradtx.adam(lr, b1=0.95, b2=0.95), loss, lrs)
    soap = _best_final_loss(lambda lr: gradtx.soap(lr, weight_decay=0.0), loss, lrs)
    # Measured: start 1.47, Adam 4.6e-4, SOAP 6.3e-5 (each at its best lr).
    assert soap < start / 1e4
    assert soap < adam / 4, (soap, adam, start)


def test_updates_rotate_with_the_gradients(x64):
    # SOAP's basis follows the gradients' row and column spaces: feeding U G Vᵀ
    # (U, V orthogonal) gives U u Vᵀ, which no diagonal preconditioner does.
    rng = np.random.default_rng(3)
    u_rot, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    v_rot, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    tx = gradtx.scale_by_soap(precondition_frequency=2)
    update = jax.jit(tx.update)
    grads = [jnp.asarray(rng.standard_normal((5, 4))) for _ in range(6)]
    s, s_rot = tx.init(grads[0]), tx.init(grads[0])
    for g in grads:
        u, s = update(g, s)
        u_r, s_rot = update(u_rot @ g @ v_rot.T, s_rot)
        np.testing.assert_allclose(u_r, u_rot @ u @ v_rot.T, atol=1e-9)
    assert np.max(np.abs(u)) > 0.1
