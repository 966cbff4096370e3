"""GIIP inner products at fixed orientation, batched (numpy arrays or PyTorch tensors, :mod:`.xp`).

For two environments A (positions ``a_i``, weights ``w_i``, widths ``s_i``) and B the L2 inner
product of their densities (each Gaussian normalised to unit L2 norm) is

    <A, B> = sum_ij (w_i . w_j) g_ij exp(-|a_i - b_j|^2 / (2 S_ij)),   S_ij = s_i^2 + s_j^2,

with ``g_ij = (2 s_i s_j / S_ij)^(d/2)`` in d dimensions (``2 sqrt(2) (s_i s_j / S_ij)^(3/2)`` in
3D, ``2 s_i s_j / S_ij`` in 2D; both are 1 for equal widths, where the exponent becomes
``-|a_i - b_j|^2 / (4 sigma^2)``). The weight dot product sums over species channels.
"""
from __future__ import annotations

from . import xp as _xp


def pair_terms(wa, wb, sa, sb, sigma: float, dim: int):
    """Prefactors ``W_ij = (w_i . w_j) g_ij`` and ``kappa_ij = 1 / S_ij`` for batched pairs.

    ``wa (P, na, C)``, ``wb (P, nb, C)``, ``sa (P, na)`` / ``sb (P, nb)`` per-atom widths or
    ``None`` for the common ``sigma``. Returns ``W (P, na, nb)`` and ``kappa`` (a tensor
    broadcastable to it).
    """
    xp = _xp.namespace(wa)
    W = xp.matmul(wa, xp.swapaxes(wb, -1, -2))
    if sa is None and sb is None:
        return W, _xp.full(xp, W, (1, 1, 1), 1.0 / (2.0 * sigma * sigma))
    if sa is None:
        sa = _xp.full(xp, W, wa.shape[:-1], sigma)
    if sb is None:
        sb = _xp.full(xp, W, wb.shape[:-1], sigma)
    s2a, s2b = sa[..., :, None] ** 2, sb[..., None, :] ** 2
    S = s2a + s2b
    g = (2.0 * sa[..., :, None] * sb[..., None, :] / S) ** (dim / 2.0)
    return W * g, 1.0 / S


def overlap_fixed(pa, wa, sa, pb, wb, sb, sigma: float):
    """``<A, B>`` at fixed orientation for batched pairs: ``pa (P, na, d)`` ... -> ``(P,)``."""
    W, kappa = pair_terms(wa, wb, sa, sb, sigma, pa.shape[-1])
    d2 = ((pa[..., :, None, :] - pb[..., None, :, :]) ** 2).sum(-1)
    return (W * _xp.namespace(pa).exp(-0.5 * kappa * d2)).sum((-1, -2))


def self_overlap(p, w, s, sigma: float):
    """``<A, A>`` for a batch of environments ``p (B, n, d)`` -> ``(B,)``."""
    return overlap_fixed(p, w, s, p, w, s, sigma)
