# SPDX-License-Identifier: Apache-2.0
"""References: gradtx.torch (torch.optim's formulas) and SOAP.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.
"""

from __future__ import annotations

import math

import numpy as np
from _reference import AddDecayedWeights, Chain, scale_by_learning_rate
from _reference_base import Reference, hp, increment, tmap


def _view(shape):
    """SOAP's 2-D view of a leaf: leading axes merged into rows; None for 0/1-D."""
    return (math.prod(shape[:-1]), shape[-1]) if len(shape) >= 2 else None


def _eigenbasis(gg):
    """Eigenvectors by decreasing eigenvalue (the reference's `flip(eigh)`), with
    the sign of each column fixed by its largest entry (the basis is only defined
    up to signs; SOAP's update does not depend on them)."""
    _, q = np.linalg.eigh(gg)
    q = q[:, ::-1]
    biggest = q[np.argmax(np.abs(q), axis=0), np.arange(q.shape[1])]
    return q * np.where(biggest < 0, -1.0, 1.0)


def _power_step(gg, q):
    """Vyas et al.'s `get_orthogonal_matrix_QR`: sort the columns by estimated
    eigenvalue, one power iteration, QR (signs fixed by R's diagonal)."""
    order = np.argsort(-np.diag(q.T @ gg @ q), kind="stable")
    q_new, r = np.linalg.qr(gg @ q[:, order])
    return q_new * np.where(np.diag(r) < 0, -1.0, 1.0), order


class ScaleBySoap(Reference):
    """SOAP (Vyas et al., 2024, Algorithm 3 and the authors' reference code).

    Step 1 only accumulates L = E[G Gᵀ], R = E[Gᵀ G] and takes their eigenbases
    (no update); then Adam on the rotated gradient with
    u = Q_L [(Q_Lᵀ m Q_R) / (sqrt(v) + eps)] Q_Rᵀ sqrt(1-b2^t)/(1-b1^t), and a QR
    power-iteration refresh of the bases (with v permuted alike) every
    `precondition_frequency` Adam steps, after the update.
    """

    def __init__(
        self,
        b1=0.95,
        b2=0.95,
        shampoo_beta=None,
        eps=1e-8,
        precondition_frequency=10,
        max_precond_dim=10000,
    ):
        self.b1, self.b2, self.eps = hp(b1), hp(b2), hp(eps)
        self.sb = self.b2 if shampoo_beta is None else hp(shampoo_beta)
        self.freq, self.max_dim = precondition_frequency, max_precond_dim

    def _sides(self, p):
        view = _view(np.shape(p))
        if view is None:
            return 0, 0
        return tuple(n if n <= self.max_dim else 0 for n in view)

    def init(self, params):
        left = tmap(lambda p: np.zeros((self._sides(p)[0],) * 2), params)
        right = tmap(lambda p: np.zeros((self._sides(p)[1],) * 2), params)
        zeros = tmap(lambda p: np.zeros(np.shape(p)), params)
        return {
            "count": 0,
            "mu": zeros,
            "nu": dict(zeros),
            "gg_left": left,
            "gg_right": right,
            "q_left": dict(left),
            "q_right": dict(right),
        }

    def update(self, grads, state, params=None):
        del params
        first = state["count"] == 0
        count = increment(state["count"])
        t = max(count - 1, 1)
        refresh = count - 1 > 0 and (count - 1) % self.freq == 0
        scale = math.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        new = {k: dict(v) for k, v in state.items() if k != "count"}
        updates = {}
        for k, g in grads.items():
            shape = _view(g.shape) or g.shape
            g2 = g.reshape(shape)
            ql, qr = state["q_left"][k], state["q_right"][k]

            def rotate(x, back=False, ql=ql, qr=qr):
                if ql.size:
                    x = ql @ x if back else ql.T @ x
                if qr.size:
                    x = x @ qr.T if back else x @ qr
                return x

            m = state["mu"][k].reshape(shape)
            v = state["nu"][k].reshape(shape)
            if first:
                updates[k] = np.zeros(g.shape)
            else:
                m = self.b1 * m + (1 - self.b1) * g2
                v = self.b2 * v + (1 - self.b2) * rotate(g2) ** 2
                u = rotate(rotate(m) / (np.sqrt(v) + self.eps), back=True)
                updates[k] = (scale * u).reshape(g.shape)
            ggl, ggr = state["gg_left"][k], state["gg_right"][k]
            if ggl.size:
                ggl = self.sb * ggl + (1 - self.sb) * g2 @ g2.T
            if ggr.size:
                ggr = self.sb * ggr + (1 - self.sb) * g2.T @ g2
            if first:
                ql = _eigenbasis(ggl) if ggl.size else ql
                qr = _eigenbasis(ggr) if ggr.size else qr
            elif refresh:
                if ggl.size:
                    ql, order = _power_step(ggl, ql)
                    v = v[order, :]
                if ggr.size:
                    qr, order = _power_step(ggr, qr)
                    v = v[:, order]
            new["mu"][k], new["nu"][k] = m.reshape(g.shape), v.reshape(g.shape)
            new["gg_left"][k], new["gg_right"][k] = ggl, ggr
            new["q_left"][k], new["q_right"][k] = ql, qr
        return updates, {"count": count, **new}


scale_by_soap = ScaleBySoap


def soap(learning_rate, weight_decay=0.01, mask=None, **kwargs):
    return Chain(
        ScaleBySoap(**kwargs),
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
