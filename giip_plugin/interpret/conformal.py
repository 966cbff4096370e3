"""Conformal autoencoder: which part of a map the named physical quantities do not explain
(Hardin, MRS talk 2021, backup slides).

An autoencoder on the kept diffusion coordinates ``d`` of the analysed atoms, whose latent space
splits into ``p_hat``, trained to predict named per-atom quantities ``p`` (e.g. the Ni fraction of
the neighbours and the Voronoi volume), and a remainder ``lambda`` that carries no information
about them. With ``z = (p_hat, lambda) = E(d)`` and the decoder ``D``, the loss is

    ||D(z) - d||^2 + ||p_hat - p||^2 + alpha ||d lambda' / d p_hat||^2 + beta ||d lambda' / d lambda - I||^2

where ``lambda'`` is the remainder of ``E(D(z))``: moving ``p_hat`` through the decoder and back
must not move the remainder (its Jacobian block is 0), and the remainder must map onto itself (its
Jacobian block is the identity). One choice of ours: the decoder is given the named quantities
``p`` themselves (with ``lambda``) rather than ``p_hat``, in training and in the reported
reconstruction error; otherwise the remainder's information hid in deviations of ``p_hat`` from
``p`` too small to show in its r^2 (measured on synthetic data: a 1-dimensional remainder unrelated
to the hidden factor reconstructed 98 % of the variance). Everything is trained on standardised data (zero mean, unit
variance per column), so the reconstruction error is a fraction of the variance of ``d``.

:func:`conformal_scan` trains one autoencoder per number of remainder dimensions (0, 1, ...); the
reconstruction error against that number says how many parameters the map has beyond the named
quantities (:attr:`ConformalScan.n_unexplained`: the fewest remainder dimensions whose held-out
reconstruction error is below ``tolerance``, 5 % of the variance by default, or close to the best
one reached). Deterministic for a given seed (PyTorch's global random state is left as it was).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConformalResult", "ConformalScan", "fit_conformal", "conformal_scan", "MIN_ATOMS"]

#: fewer analysed atoms than this cannot train and validate the autoencoder
MIN_ATOMS = 50


@dataclass
class ConformalResult:
    """One trained conformal autoencoder.

    ``n_rest``: remainder dimensions; ``reconstruction_error``: held-out mean squared error of
    ``D(E(d))`` in standardised units (a fraction of the variance of ``d``); ``r2``: held-out r^2 of
    ``p_hat`` against each named quantity (original units); ``remainder``: ``(n_atoms, n_rest)``,
    the remainder of every atom (standardised latent units); ``history``: train and validation
    loss per epoch; ``epochs``: epochs run (early stopping); ``state``: the model's weights.
    """

    n_rest: int
    named: list
    reconstruction_error: float
    r2: dict
    remainder: np.ndarray
    p_hat: np.ndarray
    history: dict
    epochs: int
    state: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {"n_rest": self.n_rest, "named": list(self.named), "reconstruction_error": self.reconstruction_error,
                "r2": dict(self.r2), "epochs": self.epochs}


@dataclass
class ConformalScan:
    """:func:`conformal_scan`: one :class:`ConformalResult` per number of remainder dimensions."""

    results: list
    tolerance: float

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.reconstruction_error for r in self.results])

    @property
    def n_unexplained(self) -> int:
        """Fewest remainder dimensions whose held-out reconstruction error is at most ``tolerance``
        (a fraction of the variance of the coordinates), or within ``tolerance`` of the best as a
        share of the drop from no remainder to the best (for data that no model reconstructs to
        that level)."""
        e = self.errors
        best, first = float(e.min()), float(e[0])
        limit = max(self.tolerance, best + self.tolerance * max(first - best, 0.0))
        return int(self.results[int(np.flatnonzero(e <= limit + 1e-12)[0])].n_rest)

    @property
    def chosen(self) -> ConformalResult:
        return next(r for r in self.results if r.n_rest == self.n_unexplained)

    def remainder_r2(self, quantities: dict) -> dict:
        """``{remainder dimension: {quantity: r^2}}`` of the chosen model: squared correlation of
        each remainder coordinate with each quantity (what the remainder might be)."""
        return remainder_r2(self.chosen.remainder, quantities)

    def to_dict(self) -> dict:
        return {"n_unexplained": self.n_unexplained, "tolerance": self.tolerance,
                "reconstruction_error": {str(r.n_rest): r.reconstruction_error for r in self.results},
                "models": [r.to_dict() for r in self.results]}


def remainder_r2(remainder: np.ndarray, quantities: dict) -> dict:
    """Squared correlation of each remainder column with each quantity (NaN where undefined)."""
    out = {}
    for j in range(remainder.shape[1]):
        x = remainder[:, j]
        row = {}
        for name, v in quantities.items():
            v = np.asarray(v, dtype=float)
            ok = np.isfinite(v) & np.isfinite(x)
            if ok.sum() < 3 or np.std(v[ok]) == 0 or np.std(x[ok]) == 0:
                row[name] = float("nan")
            else:
                row[name] = float(np.corrcoef(x[ok], v[ok])[0, 1] ** 2)
        out[f"rest{j + 1}"] = row
    return out


def _standardise(a: np.ndarray):
    mu = a.mean(axis=0)
    sd = a.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (a - mu) / sd, mu, sd


def _check(d, p, named):
    d = np.asarray(d, dtype=float)
    p = np.asarray(p, dtype=float)
    if d.ndim != 2 or p.ndim != 2 or len(d) != len(p):
        raise ValueError(f"coordinates (n, k) and quantities (n, m) must have one row per atom, got {d.shape} "
                         f"and {p.shape}")
    if p.shape[1] < 1:
        raise ValueError("name at least one quantity for the conformal autoencoder")
    if len(named) != p.shape[1]:
        raise ValueError(f"{len(named)} names for {p.shape[1]} quantities")
    ok = np.all(np.isfinite(d), axis=1) & np.all(np.isfinite(p), axis=1)
    if ok.sum() < MIN_ATOMS:
        raise ValueError(f"the conformal autoencoder needs at least {MIN_ATOMS} analysed atoms with every named "
                         f"quantity, got {int(ok.sum())}; analyse more atoms or frames")
    return d, p, ok


def _mlp(n_in, hidden, n_out):
    import torch

    layers, k = [], n_in
    for h in hidden:
        layers += [torch.nn.Linear(k, h), torch.nn.Tanh()]
        k = h
    layers.append(torch.nn.Linear(k, n_out))
    return torch.nn.Sequential(*layers)


def fit_conformal(d, p, named, n_rest: int, *, alpha: float = 1.0, beta: float = 1.0, hidden=(64, 64),
                  epochs: int = 300, batch_size: int = 128, lr: float = 5e-3, patience: int = 40,
                  val_fraction: float = 0.2, jacobian_rows: int = 64, seed: int = 0,
                  progress: bool = False) -> ConformalResult:
    """Train one conformal autoencoder (see the module docstring).

    Parameters
    ----------
    d : array (n, k)
        Diffusion coordinates of the atoms.
    p : array (n, m)
        The named quantities of the same atoms.
    named : list of str
        Names of the columns of ``p``.
    n_rest : int
        Remainder dimensions of the latent space.
    alpha, beta : float
        Weights of the two Jacobian terms.
    hidden, epochs, batch_size, lr, patience, val_fraction, seed, progress
        Network widths (tanh), at most ``epochs`` passes of Adam, early stopping after ``patience``
        epochs without a better validation loss (the best weights are kept), the held-out share,
        the seed of the split, the initial weights and the batches, a progress bar.
    jacobian_rows : int
        The Jacobian terms of each batch are estimated on its first ``jacobian_rows`` atoms (the
        batches are shuffled), which keeps an epoch cheap.
    """
    import warnings

    with warnings.catch_warnings():
        # PyTorch's forward-mode AD loads its decompositions through torch.jit.script once, which
        # PyTorch itself deprecates: not the user's concern
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        return _fit(d, p, named, n_rest, alpha=alpha, beta=beta, hidden=hidden, epochs=epochs, batch_size=batch_size,
                    lr=lr, patience=patience, val_fraction=val_fraction, jacobian_rows=jacobian_rows, seed=seed,
                    progress=progress)


def _fit(d, p, named, n_rest, *, alpha, beta, hidden, epochs, batch_size, lr, patience, val_fraction,
         jacobian_rows, seed, progress) -> ConformalResult:
    import torch

    d, p, ok = _check(d, p, named)
    n_rest = int(n_rest)
    if n_rest < 0:
        raise ValueError("n_rest must be >= 0")
    rows = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows)
    n_val = max(1, int(round(val_fraction * len(perm))))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    ds, d_mu, d_sd = _standardise(d[train])
    ps, p_mu, p_sd = _standardise(p[train])
    m, k = p.shape[1], d.shape[1]
    tt = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)  # noqa: E731
    D_tr, P_tr = tt(ds), tt(ps)
    D_va, P_va = tt((d[val] - d_mu) / d_sd), tt((p[val] - p_mu) / p_sd)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        enc = _mlp(k, hidden, m + n_rest).double()
        dec = _mlp(m + n_rest, hidden, k).double()
        params = list(enc.parameters()) + list(dec.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        eye = torch.eye(n_rest, dtype=torch.float64)

        def lam_again(z):  # the remainder of E(D(z)), for one latent vector
            return enc(dec(z))[m:]

        def losses(x, y):
            z = enc(x)
            # the decoder gets the named quantities themselves with the remainder: information
            # about the remainder cannot hide in small deviations of p_hat from p
            zd = torch.cat([y, z[:, m:]], dim=1)
            rec = ((dec(zd) - x) ** 2).mean()
            pred = ((z[:, :m] - y) ** 2).mean()
            total = rec + pred
            if n_rest:  # the Jacobian terms, estimated on at most jacobian_rows latent points
                zj = zd[:jacobian_rows]
                J = torch.func.vmap(torch.func.jacfwd(lam_again))(zj)  # (B, n_rest, m + n_rest)
                total = total + alpha * (J[:, :, :m] ** 2).mean() + beta * ((J[:, :, m:] - eye) ** 2).mean()
            return total, rec

        gen = torch.Generator().manual_seed(int(seed))
        best, best_state, since, hist = float("inf"), None, 0, {"train": [], "validation": []}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, unit="epoch", desc=f"conformal autoencoder ({n_rest} remainder)")
        run = 0
        try:
            for epoch in range(int(epochs)):
                run = epoch + 1
                order = torch.randperm(len(D_tr), generator=gen)
                total_tr = 0.0
                for s in range(0, len(order), batch_size):
                    idx = order[s:s + batch_size]
                    opt.zero_grad()
                    loss, _ = losses(D_tr[idx], P_tr[idx])
                    loss.backward()
                    opt.step()
                    total_tr += float(loss.detach()) * len(idx)
                vloss = float(losses(D_va, P_va)[0].detach())
                hist["train"].append(total_tr / len(D_tr))
                hist["validation"].append(vloss)
                if bar is not None:
                    bar.update(1)
                if vloss < best - 1e-9:
                    best, since = vloss, 0
                    best_state = {f"enc.{k_}": v.detach().clone() for k_, v in enc.state_dict().items()}
                    best_state.update({f"dec.{k_}": v.detach().clone() for k_, v in dec.state_dict().items()})
                else:
                    since += 1
                    if since >= patience:
                        break
        finally:
            if bar is not None:
                bar.close()
        enc.load_state_dict({k_[4:]: v for k_, v in best_state.items() if k_.startswith("enc.")})
        dec.load_state_dict({k_[4:]: v for k_, v in best_state.items() if k_.startswith("dec.")})
        with torch.no_grad():
            z_va = enc(D_va)
            rec_err = float(((dec(torch.cat([P_va, z_va[:, m:]], dim=1)) - D_va) ** 2).mean())
            p_hat_va = z_va[:, :m].numpy() * p_sd + p_mu
            z_all = np.full((len(d), m + n_rest), np.nan)
            z_all[rows] = enc(tt((d[rows] - d_mu) / d_sd)).numpy()
    r2 = {}
    for j, name in enumerate(named):
        y = p[val, j]
        sst = float(np.sum((y - y.mean()) ** 2))
        r2[name] = float(1.0 - np.sum((p_hat_va[:, j] - y) ** 2) / sst) if sst > 0 else float("nan")
    p_hat = z_all[:, :m] * p_sd + p_mu
    return ConformalResult(n_rest, list(named), rec_err, r2, z_all[:, m:], p_hat, hist, run,
                           {k_: v.numpy() for k_, v in best_state.items()})


def conformal_scan(d, p, named, max_rest: int = 3, *, tolerance: float = 0.05, progress: bool = False,
                   **kwargs) -> ConformalScan:
    """One autoencoder for each number of remainder dimensions 0 .. ``max_rest`` (options of
    :func:`fit_conformal`); see :attr:`ConformalScan.n_unexplained`."""
    if int(max_rest) < 0:
        raise ValueError("max_rest must be >= 0")
    results = [fit_conformal(d, p, named, r, progress=progress, **kwargs) for r in range(int(max_rest) + 1)]
    return ConformalScan(results, float(tolerance))
