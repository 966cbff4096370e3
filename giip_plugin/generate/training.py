"""Training the generative model: motifs from trajectories or from a reference map, the VAE fitted
with permutation augmentation, and the held-out reconstruction error (Gram matrix and GIIP distance)."""
from __future__ import annotations

import numpy as np

from ..environments import LocalEnvironments
from .gram import GramScaling, gram, triu
from .model import MotifModel, canonical_order, choose_prototype
from .motifs import Motifs
from .vae import build_network, default_hidden, default_latent, network_inputs, permuted_copies

__all__ = ["train", "check_map", "motifs_of_reference", "motifs_of_frames"]


def check_map(ref) -> None:
    """ValueError unless a generative model can use the map's settings (a GIIP map built from
    structures, one sigma)."""
    if ref.metric_name != "giip" or ref.environments is None:
        raise ValueError("a generative model needs a GIIP map built from structures (its environment settings); "
                         "this map has " + ("the SOAP metric" if ref.metric_name != "giip" else "no settings"))
    if ref.training.sigmas is not None:
        raise ValueError("maps with per-species sigmas are not supported by the generative model")


def motifs_of_reference(ref, n: int | None = None) -> Motifs:
    """The training environments of a reference map as motifs (default ``n``: the largest
    neighbour count, so that a motif is its environment)."""
    check_map(ref)
    return Motifs.from_environments(ref.training, ref.environments.encoding, n)


def motifs_of_frames(frames, local: LocalEnvironments, n: int | None = None, *, max_per_frame: int | None = None,
                     seed: int = 0, progress: bool = False) -> Motifs:
    """Motifs of the centre atoms of every frame (``max_per_frame``: a random subset of each)."""
    rng = np.random.default_rng(seed)
    envs_list = []
    it = frames
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(frames, desc="motifs", unit="frame")
    for fr in it:
        atoms = getattr(fr, "atoms", fr)
        idx = local.center_indices(atoms)
        if max_per_frame is not None and len(idx) > max_per_frame:
            idx = np.sort(rng.choice(idx, max_per_frame, replace=False))
        envs_list.append(local.compute(atoms, indices=idx))
    if not envs_list:
        raise ValueError("no frames to take motifs from")
    from ..environments import EnvironmentSet

    envs = EnvironmentSet.concatenate(envs_list)
    return Motifs.from_environments(envs, local.encoding, n)


def train(motifs: Motifs, environments: LocalEnvironments, *, sigma: float, group: str | None = "O3",
          latent: int | None = None, hidden=None, epochs: int = 400, batch_size: int = 128, lr: float = 2e-3,
          beta: float = 0.05, held_out: float = 0.1, seed: int = 0, augment: bool = False, order: str = "prototype",
          progress: bool = False,
          provenance: dict | None = None, giip_check: int = 500) -> MotifModel:
    """Fit the VAE (:mod:`.vae`) to ``motifs`` and return the :class:`MotifModel`.

    ``held_out``: the fraction of motifs kept out of training (random, ``seed``); the best epoch by
    held-out loss is kept. The held-out reconstruction error is measured as the RMS error of the
    Gram matrix (length^2) and the GIIP distance between each held-out motif and its decoding
    (width ``sigma``, ``group``; ``giip_check`` motifs at most). ``order``: the slots' canonical
    order (:func:`~.model.canonical_order`: ``"prototype"``, default, or the seed's ``"distance"``);
    ``augment``: the encoder reads randomly reordered copies (the seed's permutation augmentation)
    instead of the canonical order. ``latent``: the latent size (default
    :func:`~.vae.default_latent` of the slot count: 8 up to 8 slots, the seed's). ``Ctrl-C`` stops
    the training and keeps the best epoch so far.
    """
    import torch

    if len(motifs) < 10:
        raise ValueError(f"{len(motifs)} motifs are too few to train a generative model (at least 10)")
    if motifs.counts.max() == 0:
        raise ValueError("the motifs have no neighbours: check the cutoff")
    n, dim = motifs.n, motifs.dim
    latent = default_latent(n) if latent is None else int(latent)
    if latent < 1:
        raise ValueError(f"the latent size must be a positive integer, got {latent}")
    if dim != environments.dim:
        raise ValueError(f"the motifs are {dim}D, the environment settings {environments.dim}D")
    if not 0 < held_out < 0.9:
        raise ValueError(f"held_out must be a fraction between 0 and 0.9, got {held_out}")
    prototype = choose_prototype(motifs) if order == "prototype" else None
    motifs = canonical_order(motifs, order, prototype, progress=progress)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(motifs))
    n_val = max(1, int(round(held_out * len(motifs))))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    K = len(motifs.species_names) + 1
    feats = triu(gram(motifs.positions))
    scaling = GramScaling.fit(feats[tr], n)
    target_g = scaling.transform(feats)
    target_s = np.where(motifs.species < 0, K - 1, motifs.species)
    n_gram = n * (n + 1) // 2
    n_in = n_gram + n * K
    hidden = tuple(int(h) for h in (hidden or default_hidden(n_gram, latent)))
    pos_all, spc_all = motifs.positions, motifs.species

    history = {"train_loss": [], "held_out_loss": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        gen = torch.Generator().manual_seed(int(seed) + 1)
        net = build_network(n_in, n_gram, n, K, hidden, latent).double()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=25)
        ce = torch.nn.CrossEntropyLoss(reduction="none")
        tg_all, ts_all = torch.as_tensor(target_g), torch.as_tensor(target_s)

        def inputs_of(pos, spc):
            return torch.as_tensor(network_inputs(pos, spc, scaling, K))

        def loss_of(x, idx, sample=True):
            if sample:
                g, s, mu, logvar = net(x, generator=gen)
            else:
                mu, logvar = net.encode(x)
                g, s = net.decode(mu)
            rec = ((g - tg_all[idx]) ** 2).sum(1)
            spc = ce(s.reshape(-1, K), ts_all[idx].reshape(-1)).reshape(len(idx), n).sum(1)
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
            return rec.mean(), spc.mean(), kl.mean()

        x_val = inputs_of(pos_all[val], spc_all[val])
        best, best_state = np.inf, None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, unit="epoch", desc="generative model")
        try:
            for epoch in range(int(epochs)):
                net.train()
                if augment:  # the encoder sees a reordered copy
                    x = inputs_of(*permuted_copies(pos_all[tr], spc_all[tr], rng))
                elif epoch == 0:
                    x = inputs_of(pos_all[tr], spc_all[tr])
                shuffle = rng.permutation(len(tr))
                total = 0.0
                for b in range(0, len(tr), batch_size):
                    sel = shuffle[b: b + batch_size]
                    rec, sp, kl = loss_of(x[sel], tr[sel])
                    loss = rec + sp + beta * kl
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(sel)
                net.eval()
                with torch.no_grad():
                    rec, sp, kl = loss_of(x_val, val, sample=False)
                    vloss = float(rec + sp + beta * kl)
                sched.step(vloss)
                history["train_loss"].append(total / len(tr))
                history["held_out_loss"].append(vloss)
                if vloss < best:
                    best = vloss
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                if bar is not None:
                    bar.set_postfix(loss=f"{total / len(tr):.3g}", held_out=f"{vloss:.3g}")
                    bar.update(1)
        except KeyboardInterrupt:
            history["interrupted_at_epoch"] = len(history["train_loss"])
            if best_state is None:
                raise
        finally:
            if bar is not None:
                bar.close()
        net.load_state_dict(best_state)
    state = {k: v.numpy().copy() for k, v in best_state.items()}
    dmin = motifs.nearest_pair_distances()
    dmin = dmin[np.isfinite(dmin)]
    min_distance = 0.8 * float(np.percentile(dmin, 1)) if len(dmin) else 0.0
    model = MotifModel(environments, float(sigma), group, n, motifs.species_names, int(latent), hidden, scaling,
                       state, motifs, val, min_distance, float(beta), {}, dict(provenance or {}), order, prototype)
    history.update(held_out_errors(model, motifs.subset(val[:giip_check])))
    history["epochs"] = len(history["train_loss"])
    model.history = history
    return model


def held_out_errors(model: MotifModel, motifs: Motifs) -> dict:
    """Reconstruction of ``motifs`` by the model, slot by slot in the canonical order: the RMS error
    of the Gram matrix of the decoded positions, the fraction of slots with the wrong species (or
    presence); and the GIIP distance between each decoded motif and its original (median, 90th
    percentile, mean)."""
    canon = model.canonical(motifs)
    rec = model.decode(model.encode(canon), sort=False)
    G0, G1 = gram(canon.positions), gram(rec.positions)
    d = model.giip_distances(rec, canon)
    return {"held_out_gram_rmse": float(np.sqrt(np.mean((G0 - G1) ** 2))),
            "held_out_species_error": float(np.mean(rec.species != canon.species)),
            "held_out_giip_median": float(np.median(d)), "held_out_giip_p90": float(np.percentile(d, 90)),
            "held_out_giip_mean": float(np.mean(d))}
