"""Infilling: the missing atoms of an incomplete motif, from the generative model.

Given the atoms that are known (positions relative to the centre, species), find the latent
vector whose decoded motif contains them: for several starts (the encoding of the incomplete motif
itself and draws from the unit Gaussian), alternate (1) decoding and matching the known atoms to
decoded slots (:func:`~giip_plugin.generate.gram.synchronise` with ``match``: Procrustes and the
Hungarian algorithm) and (2) gradient steps on the latent vector (PyTorch, Adam) that bring the
matched part of the decoded Gram matrix onto the Gram matrix of the known atoms (rotation-free)
and the matched slots' species onto the known species, with a small pull towards the prior. The
answer keeps the known atoms where they are and adds the decoded atoms that no known atom matched,
rotated into the frame of the known atoms.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .gram import positions_from_gram, synchronise, untriu
from .motifs import Motifs

__all__ = ["infill", "Infilled"]


class Infilled(NamedTuple):
    motif: Motifs  # the known atoms and the filled-in ones (one motif)
    added: np.ndarray  # (k, dim) positions of the filled-in atoms
    added_species: np.ndarray  # (k,) their species indices
    residual: float  # RMS misfit of the known atoms' Gram matrix (length^2)
    z: np.ndarray  # the latent vector


def _raw(model, z):
    """Decoder outputs in slot order: Gram matrices (length^2) and species logits (torch tensors)."""
    import torch

    g, s = model.network().decode(z)
    mean, scale = (torch.as_tensor(v) for v in model.scaling._vectors())
    return g * scale + mean, s


def infill(model, known: Motifs, *, missing: int | None = None, starts: int = 12, rounds: int = 6,
           steps: int = 40, lr: float = 0.05, prior: float = 1e-3, seed: int = 0) -> Infilled:
    """Fill in the missing neighbours of the single motif ``known`` (its present atoms are the
    known ones). ``missing``: how many atoms to add (default: as many as the model decodes).
    Returns an :class:`Infilled`."""
    import torch

    if len(known) != 1:
        raise ValueError("infill one motif at a time")
    model.check_motifs(known)
    pres = known.present[0]
    Xk, sk = known.positions[0][pres], known.species[0][pres]
    m = len(Xk)
    if m == 0:
        raise ValueError("no known atoms to infill around; use sample() to generate a whole motif")
    if missing is not None and not 0 <= missing <= model.n - m:
        raise ValueError(f"{m} known atoms and {missing} missing ones do not fit the model's {model.n} slots")
    Gk = torch.as_tensor(Xk @ Xk.T)
    K = model.n_classes
    rng = np.random.default_rng(seed)
    z0 = np.vstack([model.encode(known), rng.standard_normal((max(starts - 1, 0), model.latent))])
    net = model.network()
    for p in net.parameters():
        p.requires_grad_(False)
    z = torch.tensor(z0, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    ce = torch.nn.CrossEntropyLoss()
    iu = np.triu_indices(m)

    def matches():
        with torch.no_grad():
            G, s = _raw(model, z)
        G, cls = G.numpy(), s.numpy().argmax(2)
        out = []
        for b in range(len(z0)):
            present = np.flatnonzero(cls[b] != K - 1)
            if len(present) < m:  # too few decoded atoms: match against every slot
                present = np.arange(model.n)
            Gb = untriu(G[b][None], model.n)[0][np.ix_(present, present)]
            Xb = positions_from_gram(Gb[None], model.dim)[0]
            _, _, (a, kk) = synchronise(Xb, Xk, match=True)
            slot = np.empty(m, dtype=np.int64)
            slot[kk] = present[a]
            out.append(slot)
        return np.array(out)

    for _ in range(rounds):
        slots = torch.as_tensor(matches())  # (B, m): decoded slot of each known atom
        for _ in range(steps):
            G, s = _raw(model, z)
            Gfull = _sym(G, model.n)
            Gm = torch.stack([Gfull[b][slots[b]][:, slots[b]] for b in range(len(z0))])
            misfit = ((Gm - Gk) ** 2)[:, iu[0], iu[1]].mean(1)
            spc = torch.stack([ce(s[b][slots[b]], torch.as_tensor(sk)) for b in range(len(z0))])
            loss = (misfit + spc + prior * (z ** 2).sum(1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    slots = matches()
    with torch.no_grad():
        G, s = _raw(model, z)
        Gfull = _sym(G, model.n).numpy()
    cls = s.detach().numpy().argmax(2)
    best = None
    for b in range(len(z0)):
        Gm = Gfull[b][np.ix_(slots[b], slots[b])]
        res = float(np.sqrt(np.mean((Gm - Xk @ Xk.T)[iu] ** 2)))
        extra = [j for j in np.flatnonzero(cls[b] != K - 1) if j not in set(slots[b].tolist())]
        if missing is not None:
            order = np.argsort(-s.detach().numpy()[b, :, : K - 1].max(1) + s.detach().numpy()[b, :, K - 1])
            extra = [j for j in order if j not in set(slots[b].tolist())][:missing]
        if best is None or res < best[0]:
            best = (res, b, extra)
    res, b, extra = best
    keep = np.concatenate([slots[b], np.asarray(extra, dtype=np.int64)])
    Xb = positions_from_gram(Gfull[b][np.ix_(keep, keep)][None], model.dim)[0]
    _, Q, _ = synchronise(Xb[:m], Xk)  # the decoded frame onto the known atoms' frame
    added = (Xb @ Q)[m:]
    added_species = np.array([int(np.argmax(s.detach().numpy()[b, j, : K - 1])) for j in extra], dtype=np.int64)
    names = known.species_names
    motif = Motifs.from_points(np.vstack([Xk, added]), [names[i] for i in np.concatenate([sk, added_species])],
                               names, model.n)
    return Infilled(motif, added, added_species, res, z.detach().numpy()[b].copy())


def _sym(g_triu, n):
    import torch

    i, j = np.triu_indices(n)
    G = torch.zeros((g_triu.shape[0], n, n), dtype=g_triu.dtype)
    G[:, i, j] = g_triu
    G[:, j, i] = g_triu
    return G
