"""Which particles rearrange: ``p_hop`` (Candelier et al. 2010, as the softness thesis uses it) and
``D2min`` (Falk and Langer; OVITO's atomic strain modifier).

``p_hop(i, t)`` compares the positions of particle ``i`` in the window ``A = [t - W/2, t]`` with
those in ``B = [t, t + W/2]``:
``p_hop = sqrt( <(r - <r>_B)^2>_A  <(r - <r>_A)^2>_B )`` (``<.>_A`` the average over the frames of
``A``). It is large when the particle sits in one cage during ``A`` and in another during ``B``.
The thesis (Kob-Andersen, Lennard-Jones units): ``W = 10 tau`` and a rearrangement where
``p_hop > p_c = 0.2 sigma^2``.

Positions must be unwrapped (:class:`Trajectory` reads ``xu yu zu``, or ``x y z`` with image flags
``ix iy iz``, or unwraps wrapped positions by the minimum image between consecutive frames).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["p_hop", "Trajectory", "d2min", "tau_alpha", "DEFAULT_P_C", "DEFAULT_WINDOW", "DEFAULT_FS_K"]

DEFAULT_P_C = 0.2  # sigma^2 (the thesis, Kob-Andersen)
DEFAULT_WINDOW = 10.0  # tau
DEFAULT_FS_K = 7.25  # 1 / sigma: the first peak of S(k) of the Kob-Andersen A particles


def p_hop(positions, window: int) -> np.ndarray:
    """``p_hop`` of every particle at every frame ``t`` with a full window around it.

    Parameters
    ----------
    positions : (T, N, dim) unwrapped positions of consecutive, equally spaced frames.
    window : int
        Frames in the whole window ``W`` (even, >= 2): ``A`` is frames ``t - W/2 .. t``, ``B`` is
        ``t .. t + W/2`` (both include ``t``).

    Returns
    -------
    (T - W, N) array: row ``k`` is frame ``t = k + W/2``.
    """
    X = np.asarray(positions, dtype=float)
    if X.ndim != 3:
        raise ValueError(f"positions must have shape (frames, particles, dim), got {X.shape}")
    w = int(window)
    if w < 2 or w % 2:
        raise ValueError(f"the p_hop window must be an even number of frames >= 2, got {window}")
    T = X.shape[0]
    if T <= w:
        raise ValueError(f"the trajectory has {T} frames, too short for a p_hop window of {w} frames: it needs "
                         f"at least {w + 1} (more frames, or a shorter --window)")
    h = w // 2
    # cumulative sums of r and |r|^2 over frames give every window's mean and mean square at once
    c1 = np.concatenate([np.zeros((1,) + X.shape[1:]), np.cumsum(X, axis=0)])
    c2 = np.concatenate([np.zeros((1, X.shape[1])), np.cumsum(np.einsum("tnd,tnd->tn", X, X), axis=0)])
    t = np.arange(h, T - h)
    n = h + 1

    def mean(a, b):  # frames a..b-1
        return (c1[b] - c1[a]) / n, (c2[b] - c2[a]) / n

    mA, sA = mean(t - h, t + 1)
    mB, sB = mean(t, t + h + 1)
    # <(r - m)^2>_window = <r^2> - 2 <r>.m + m^2
    qA = sA - 2 * np.einsum("tnd,tnd->tn", mA, mB) + np.einsum("tnd,tnd->tn", mB, mB)
    qB = sB - 2 * np.einsum("tnd,tnd->tn", mB, mA) + np.einsum("tnd,tnd->tn", mA, mA)
    return np.sqrt(np.clip(qA, 0, None) * np.clip(qB, 0, None))


def tau_alpha(positions, frame_time: float, k: float = DEFAULT_FS_K, n_lags: int = 40):
    """The structural relaxation time: where the self-intermediate scattering function
    ``F_s(k, t) = <cos(k . dr(t))>`` falls to 1/e (averaged over particles, the axes and up to 50
    time origins; log F_s interpolated linearly in log t between the lags around 1/e).

    Parameters
    ----------
    positions : (T, N, dim) unwrapped positions of the particles to average over.
    frame_time : time between frames.
    k : wave number (1 / length), usually the first peak of S(k) (7.25 / sigma for Kob-Andersen).

    Returns
    -------
    ``(tau_alpha, times, F_s)``; ``tau_alpha`` is NaN when ``F_s`` stays above 1/e up to half the
    trajectory (too short a run to measure it).
    """
    X = np.asarray(positions, dtype=float)
    if X.ndim != 3 or len(X) < 3:
        raise ValueError(f"tau_alpha needs positions of shape (frames >= 3, particles, dim), got {X.shape}")
    if not (k > 0 and frame_time > 0):
        raise ValueError(f"tau_alpha needs k > 0 and frame_time > 0, got k = {k}, frame_time = {frame_time}")
    T = len(X)
    lags = np.unique(np.round(np.geomspace(1, max(T // 2, 1), int(n_lags))).astype(int))
    fs = np.empty(len(lags))
    for j, lag in enumerate(lags):
        origins = np.arange(0, T - lag, max(1, (T - lag) // 50))
        fs[j] = np.mean(np.cos(k * (X[origins + lag] - X[origins])))
    times = lags * float(frame_time)
    below = np.flatnonzero(fs < np.exp(-1))
    if not len(below):
        return float("nan"), times, fs
    j = below[0]
    if j == 0:
        return float(times[0]), times, fs
    x0, x1 = np.log(lags[j - 1]), np.log(lags[j])
    y0, y1 = np.log(fs[j - 1]), np.log(max(fs[j], 1e-300))
    return float(np.exp(x0 + (-1 - y0) * (x1 - x0) / (y1 - y0)) * frame_time), times, fs


@dataclass
class Trajectory:
    """Consecutive frames of one run, particles in the order of their ids.

    ``frames`` (the :class:`~giip_plugin.io.Frame` objects, atoms sorted by id), ``positions``
    ``(T, N, 3)`` unwrapped, ``timesteps`` ``(T,)``, ``ids`` ``(N,)``, ``species`` ``(N,)``.
    """

    frames: list
    positions: np.ndarray
    timesteps: np.ndarray
    ids: np.ndarray
    species: np.ndarray

    @classmethod
    def read(cls, path, *, type_names=None, frames=None, progress: bool = False) -> "Trajectory":
        from ..io import iter_frames, parse_frames

        out, unwrapped, ids0 = [], [], None
        it = iter_frames([os.fspath(path)], frames=parse_frames(frames), type_names=type_names)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, unit="frame", desc=f"reading {os.path.basename(os.fspath(path))}")
        for fr in it:
            a = fr.atoms
            if "id" not in a.arrays:
                raise ValueError(f"{path}: the frames have no 'id' column; p_hop follows particles by id "
                                 "(dump custom ... id type xu yu zu)")
            order = np.argsort(a.arrays["id"], kind="stable")
            ids = a.arrays["id"][order]
            if ids0 is None:
                ids0 = ids
            elif not np.array_equal(ids, ids0):
                raise ValueError(f"{path} frame {fr.index}: the particles differ from the first frame's")
            a = a[order]
            fr.atoms = a
            out.append(fr)
            unwrapped.append(_unwrapped(fr, order))
        if not out:
            raise ValueError(f"{path}: no frames")
        pos = np.stack([p for p, _ in unwrapped])
        if not unwrapped[0][1]:
            pos = _unwrap_minimum_image(pos, out[0].atoms.get_cell()[:], out[0].atoms.get_pbc())
        steps = np.array([f.timestep for f in out], dtype=np.int64)
        if len(steps) > 2 and len(set(np.diff(steps).tolist())) > 1:
            raise ValueError(f"{path}: the frames are not equally spaced in time (timesteps {steps[:5].tolist()} ...); "
                             "p_hop needs a dump written every N steps")
        return cls(out, pos, steps, ids0, np.asarray(out[0].species).astype(str))

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def frame_interval(self) -> int:
        return int(self.timesteps[1] - self.timesteps[0]) if len(self.timesteps) > 1 else 0


def _unwrapped(fr, order):
    """``(positions, unwrapped)`` of one frame (atoms already sorted by id): the unwrapped columns
    when the dump has them, else ``x y z`` plus the image flags, else the positions as they are
    (``unwrapped`` False)."""
    a = fr.atoms
    cols = set(fr.columns)
    cell = np.asarray(a.get_cell()[:])
    if {"xu", "yu", "zu"} <= cols:
        if "xu" in fr.raw:  # the positions are x y z; the unwrapped columns kept as read
            return np.column_stack([fr.raw[c][order] for c in ("xu", "yu", "zu")]), True
        return np.asarray(a.positions, dtype=float), True
    if {"xsu", "ysu", "zsu"} <= cols:
        if "xsu" in fr.raw:
            return fr.origin + np.column_stack([fr.raw[c][order] for c in ("xsu", "ysu", "zsu")]) @ cell, True
        return np.asarray(a.positions, dtype=float), True
    if all(k in a.arrays for k in ("ix", "iy", "iz")):
        img = np.column_stack([a.arrays[k] for k in ("ix", "iy", "iz")])
        return np.asarray(a.positions, dtype=float) + img @ cell, True
    return np.asarray(a.positions, dtype=float), False


def _unwrap_minimum_image(pos, cell, pbc) -> np.ndarray:
    """Unwrap wrapped positions: each step between consecutive frames by the minimum image
    (valid while no particle moves half a box length between two frames)."""
    cell = np.asarray(cell, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        return pos
    inv = np.linalg.inv(cell)
    step = np.diff(pos, axis=0)
    frac = step @ inv
    frac[..., pbc] -= np.round(frac[..., pbc])
    step = frac @ cell
    return np.concatenate([pos[:1], pos[:1] + np.cumsum(step, axis=0)])


def d2min(path, lag: int, cutoff: float, *, frames=None) -> np.ndarray:
    """``D2min`` of every particle between frame ``t - lag`` and frame ``t``, from OVITO's atomic
    strain modifier (``output_nonaffine_squared_displacements``), for the frames ``t = lag ..``
    of the dump ``path``. Returns ``(n_frames - lag, N)``, particles in the order of their ids."""
    from ovito.io import import_file
    from ovito.modifiers import AtomicStrainModifier

    lag = int(lag)
    if lag < 1:
        raise ValueError(f"the D2min lag must be at least one frame, got {lag}")
    pipe = import_file(os.fspath(path), multiple_frames=True)  # every frame of the one file, always scanned
    n = pipe.source.num_frames
    if n <= lag:
        raise ValueError(f"{path} has {n} frames, too few for a D2min lag of {lag} frames")
    mod = AtomicStrainModifier(cutoff=float(cutoff), output_nonaffine_squared_displacements=True,
                               use_frame_offset=True, frame_offset=-lag)
    pipe.modifiers.append(mod)
    out = []
    for t in range(lag, n):
        data = pipe.compute(t)
        ids = np.asarray(data.particles["Particle Identifier"])
        d2 = np.asarray(data.particles["Nonaffine Squared Displacement"])
        out.append(d2[np.argsort(ids, kind="stable")])
    return np.stack(out)
