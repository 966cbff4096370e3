"""Motifs at a point of a reference map's diffusion space.

The map knows the diffusion coordinates of its training environments; the generative model knows
their latent vectors. A cross-entropy search in the latent space, scored by the map itself:
start from the latent vectors of the training environments nearest the target (in the requested
coordinates, each in units of its spread over the training set), around them and from the prior,
then draw candidates from a Gaussian around the best ones so far, decode them, place them on the map (:meth:`ReferenceMap.transform` with ``exact=True``: the
Nystrom extension of the exact distances) and keep the best; repeat. Invalid
candidates (atoms too close) never count. The answer reports, for each motif, the coordinates it
obtained, the error from the requested ones and its distance to the nearest training environment.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["at_coordinates", "AtCoordinates", "check_model_fits_map", "parse_target", "along"]


class AtCoordinates(NamedTuple):
    motifs: object  # Motifs
    z: np.ndarray  # (k, latent)
    coordinates: np.ndarray  # (k, n_coords) obtained (Nystrom) coordinates
    requested: dict  # {coordinate index (0-based, selected): value}
    error: np.ndarray  # (k,) distance from the target in the requested coordinates (training spreads)
    ref_distance: np.ndarray  # (k,) GIIP distance to the nearest training environment
    evaluated: int  # candidates placed on the map


def check_model_fits_map(model, ref) -> None:
    """A clear error unless ``model`` was trained on environments with ``ref``'s settings."""
    if ref.metric_name != "giip" or ref.environments is None:
        raise ValueError("generation at a point of a map needs a GIIP map built from structures")
    a, b = model.environments.to_dict(), ref.environments.to_dict()
    a.pop("centers", None)
    b.pop("centers", None)
    if a != b or abs(model.sigma - ref.sigma) > 1e-12 or (model.group or None) != (ref.group or None):
        raise ValueError("the generative model was trained with other environment settings than the map's "
                         f"(model: {a}, sigma {model.sigma:g}, {model.group}; map: {b}, sigma {ref.sigma:g}, "
                         f"{ref.group}); train it on the map: giip generate train --reference MAP.h5")
    biggest = int(ref.training.counts.max())
    if biggest > model.n:
        raise ValueError(f"the map's environments have up to {biggest} neighbours, the model's motifs {model.n}: a "
                         "motif would not be a whole environment; train with --neighbours "
                         f"{biggest} (or the default, which takes the largest count)")


def parse_target(text: str, n_coords: int) -> dict:
    """``"dc1=0.01,dc2=-0.02"`` to ``{0: 0.01, 1: -0.02}`` (coordinates numbered from 1 as ``giip apply``'s columns)."""
    out = {}
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.lower().startswith("dc") or not key[2:].isdigit():
            raise ValueError(f"a target is dcJ=VALUE (e.g. dc1=0.01,dc2=-0.02), got {item!r}")
        j = int(key[2:])
        if not 1 <= j <= n_coords:
            raise ValueError(f"the map has {n_coords} selected coordinates (dc1 .. dc{n_coords}); got {key}")
        try:
            out[j - 1] = float(value)
        except ValueError:
            raise ValueError(f"the value of {key} must be a number, got {value!r}") from None
    if not out:
        raise ValueError("no target coordinates given (e.g. dc1=0.01)")
    return out


def at_coordinates(model, ref, target: dict, count: int = 4, *, rounds: int = 4, candidates: int = 64,
                   elite: int = 8, seed: int = 0, progress: bool = False) -> AtCoordinates:
    """``count`` motifs whose map coordinates land near ``target`` (``{index: value}``, indices of
    the map's selected coordinates from 0), by the search described in the module docstring."""
    from .training import motifs_of_reference

    check_model_fits_map(model, ref)
    dims = np.array(sorted(target), dtype=np.int64)
    t = np.array([target[j] for j in dims], dtype=float)
    C_real = ref.coordinates
    if dims.max() >= C_real.shape[1]:
        raise ValueError(f"the map has {C_real.shape[1]} selected coordinates")
    spread = C_real[:, dims].std(0)
    spread[spread == 0] = 1.0
    score = lambda C: np.linalg.norm((C[:, dims] - t) / spread, axis=1)  # noqa: E731
    real = motifs_of_reference(ref, model.n)
    Z_real = model.encode(real)
    s_real = score(C_real)
    rng = np.random.default_rng(seed)
    order = np.argsort(s_real)[:elite]
    best_z, best_s = Z_real[order], s_real[order]  # the search keeps decoded candidates only
    pool_z, pool_s, pool_c, pool_d = [], [], [], []
    spread_z = np.maximum(Z_real.std(0), 1e-3)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=rounds, unit="round", desc="search at the target")
    for r in range(int(rounds)):
        mean = best_z.mean(0)
        sd = np.maximum(best_z.std(0), 0.15 * spread_z)
        Z = mean + sd * rng.standard_normal((candidates, model.latent))
        if r == 0:  # also the real environments' own latents, and draws from the prior
            Z = np.vstack([best_z, Z[: candidates // 2], rng.standard_normal((candidates - candidates // 2,
                                                                              model.latent))])
        motifs = model.decode(Z)
        ok = model.valid(motifs)
        if ok.any():
            res = ref.transform(model.to_environments(motifs.subset(np.flatnonzero(ok))), exact=True)
            pool_z.append(Z[ok])
            pool_s.append(score(res.coordinates))
            pool_c.append(res.coordinates)
            pool_d.append(res.ref_distance)
        if pool_z:
            allz, alls = np.concatenate(pool_z), np.concatenate(pool_s)
            top = np.argsort(alls)[:elite]
            best_z, best_s = allz[top], alls[top]
        if bar is not None:
            bar.set_postfix(best=f"{best_s.min():.3g}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if not pool_z:
        raise RuntimeError("no valid candidate motif was decoded near the target; train the model longer")
    allz, alls = np.concatenate(pool_z), np.concatenate(pool_s)
    allc, alld = np.concatenate(pool_c), np.concatenate(pool_d)
    top = np.argsort(alls)[:count]
    motifs = model.decode(allz[top])
    motifs = model.onto_nearest_real(motifs)
    return AtCoordinates(motifs, allz[top], allc[top], dict(target), alls[top], alld[top], len(allz))


def along(model, ref, coord: int, steps: int, *, seed: int = 0, progress: bool = False):
    """Motifs generated at ``steps`` values of the selected coordinate ``coord`` (0-based), from its
    5th to its 95th percentile over the map's training environments (the other coordinates free).
    Returns ``(motifs, values, [AtCoordinates per value])``."""
    from .motifs import Motifs

    lo, hi = np.percentile(ref.coordinates[:, coord], [5, 95])
    values = np.linspace(lo, hi, int(steps))
    found = [at_coordinates(model, ref, {coord: float(v)}, 1, seed=seed + i, progress=progress)
             for i, v in enumerate(values)]
    return Motifs.concatenate([f.motifs for f in found]), values, found
