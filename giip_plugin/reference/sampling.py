"""Choosing the training environments from trajectory frames, in two streaming passes.

Pass 1 (:func:`scan_frames`) reads every frame once and keeps only counts (atoms and centre atoms
per frame, the species seen) and, for a selection by a per-atom column, the running candidates.
The choice is made from those (:func:`even_quotas`, :func:`choose_even`, :func:`choose_by_column`).
Pass 2 (:func:`collect_environments`) reads the frames again and computes environments only for the
chosen atoms (``LocalEnvironments.compute(atoms, indices=...)``), so memory stays bounded by one
frame plus the training set.

Two ways to choose (centre atoms only):

* **even** (``n_train``): the training environments are spread as evenly as possible over all
  frames of all files, i.e. every frame gets the same quota (``n_train / n_frames``, the remainder
  given to randomly chosen frames; a frame with fewer centres than its quota gives all of them and
  the rest goes to the other frames), and the atoms of a frame are drawn at random without
  replacement. Everything is seeded (``seed``), so a selection is reproducible.
  If ``n_train`` exceeds the number of centres, every centre is taken and a ``UserWarning`` says so
  (the file records both numbers).
* **by column** (``select_by``, ``select_lowest``, ``select_highest``): the centres with the lowest
  ``N1`` and the highest ``N2`` values of a per-atom column (e.g. a LAMMPS ``c_pe`` potential energy),
  over all frames, as the paper did (100 lowest + 4,900 highest energies). Ties are broken by the
  order of the atoms in the input. If ``N1 + N2`` exceeds the number of centres, all are taken with a
  warning.

Each chosen environment keeps its provenance: file index, frame index in that file, atom index in
the frame, LAMMPS id (``-1`` when the input has none) and timestep (``-1`` when unknown).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..environments import EnvironmentSet, species_names

__all__ = [
    "FrameScan",
    "TrainingSample",
    "scan_frames",
    "even_quotas",
    "choose_even",
    "choose_by_column",
    "collect_environments",
]


@dataclass
class FrameScan:
    """What pass 1 learned about the frames."""

    sources: list = field(default_factory=list)  # distinct input files, in order of appearance
    file_index: list = field(default_factory=list)  # per frame
    frame_index: list = field(default_factory=list)  # per frame (index within its file)
    timestep: list = field(default_factory=list)
    n_atoms: list = field(default_factory=list)
    n_centers: list = field(default_factory=list)
    species: list = field(default_factory=list)  # species names, in order of first appearance
    dims: set = field(default_factory=set)
    columns: set = field(default_factory=set)  # per-atom arrays present in every frame
    # selection by a column: (value, frame_seq, ordinal) of the current candidates
    low: tuple | None = None
    high: tuple | None = None

    @property
    def n_frames(self) -> int:
        return len(self.n_centers)

    @property
    def total_centers(self) -> int:
        return int(np.sum(self.n_centers)) if self.n_centers else 0


@dataclass
class TrainingSample:
    """The chosen atoms: ``per_frame[frame_seq] = sorted ordinals among that frame's centres``."""

    per_frame: dict
    n_available: int
    method: dict


def _center_mask(names: np.ndarray, centers) -> np.ndarray:
    if centers is None:
        return np.ones(len(names), dtype=bool)
    return np.isin(names, list(centers))


def _keep_extreme(cur, vals, seq, lowest: bool, k: int):
    """Merge new candidates into the k lowest (or highest) so far; ties by input order."""
    if k <= 0:
        return None
    ords = np.arange(len(vals), dtype=np.int64)
    seqs = np.full(len(vals), seq, dtype=np.int64)
    if cur is not None:
        vals = np.concatenate([cur[0], vals])
        seqs = np.concatenate([cur[1], seqs])
        ords = np.concatenate([cur[2], ords])
    key = vals if lowest else -vals
    order = np.lexsort((ords, seqs, key))[:k]
    return vals[order], seqs[order], ords[order]


def scan_frames(frames, centers=None, select_by: str | None = None, select_lowest: int = 0,
                select_highest: int = 0) -> FrameScan:
    """Pass 1: counts per frame, species seen, and the candidates of a column selection."""
    scan = FrameScan()
    first_columns = None
    for seq, fr in enumerate(frames):
        src = str(fr.source)
        if src not in scan.sources:
            scan.sources.append(src)
        names = species_names(fr.atoms)
        for s in dict.fromkeys(names.tolist()):
            if s not in scan.species:
                scan.species.append(s)
        mask = _center_mask(names, centers)
        scan.file_index.append(scan.sources.index(src))
        scan.frame_index.append(int(fr.index))
        scan.timestep.append(-1 if fr.timestep is None else int(fr.timestep))
        scan.n_atoms.append(len(fr.atoms))
        scan.n_centers.append(int(mask.sum()))
        scan.dims.add(int(fr.dim))
        cols = set(fr.atoms.arrays)
        first_columns = cols if first_columns is None else first_columns & cols
        if select_by is not None:
            if select_by not in fr.atoms.arrays:
                extra = sorted(c for c in fr.atoms.arrays if c not in ("numbers", "positions"))
                raise ValueError(
                    f"{src}: frame {fr.index} has no per-atom column {select_by!r} to select training "
                    f"atoms by; its columns are {extra}"
                )
            v = np.asarray(fr.atoms.arrays[select_by])
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.number):
                raise ValueError(f"column {select_by!r} must hold one number per atom")
            v = v[mask].astype(float)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{src}: frame {fr.index}: column {select_by!r} has NaN or infinite values")
            scan.low = _keep_extreme(scan.low, v, seq, True, int(select_lowest))
            scan.high = _keep_extreme(scan.high, v, seq, False, int(select_highest))
    scan.columns = first_columns or set()
    if scan.n_frames == 0:
        raise ValueError("the training input holds no frames (check the files and --frames)")
    if len(scan.dims) > 1:
        raise ValueError(f"the training frames mix dimensions {sorted(scan.dims)}; declare --dim or split them")
    if scan.total_centers == 0:
        raise ValueError(
            f"no atoms of the centre species {list(centers)} in the training frames; they have species "
            f"{sorted(scan.species)} (check --centers and --type-names)"
        )
    return scan


def even_quotas(counts, n_total: int, rng: np.random.Generator) -> np.ndarray:
    """Water-filling: ``min(count, level)`` per frame, the remainder to random frames with room."""
    counts = np.asarray(counts, dtype=np.int64)
    n_total = int(min(n_total, counts.sum()))
    if n_total <= 0:
        return np.zeros(len(counts), dtype=np.int64)
    # largest level L with sum(min(c, L)) <= n_total
    lo, hi = 0, int(counts.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(counts, mid).sum() <= n_total:
            lo = mid
        else:
            hi = mid - 1
    q = np.minimum(counts, lo)
    rest = n_total - int(q.sum())
    if rest:
        room = np.flatnonzero(counts > q)
        q[rng.choice(room, size=rest, replace=False)] += 1
    return q


def choose_even(scan: FrameScan, n_train: int | None, seed: int = 0, warn: bool = True) -> TrainingSample:
    """Evenly over frames, random within a frame (see the module docstring). ``n_train=None``:
    every centre; more than there are: all of them (with a warning, unless ``warn=False``)."""
    total = scan.total_centers
    rng = np.random.default_rng(seed)
    if n_train is None:
        n_train = total
    n_train = int(n_train)
    if n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train}")
    if n_train > total and warn:
        warnings.warn(
            f"asked for {n_train} training environments but the input has only {total} centre atoms; "
            "taking all of them",
            UserWarning,
            stacklevel=3,
        )
    n_train = min(n_train, total) if not warn else n_train
    q = even_quotas(scan.n_centers, n_train, rng)
    per_frame = {}
    for seq, (c, k) in enumerate(zip(scan.n_centers, q)):
        if k:
            per_frame[seq] = np.sort(rng.choice(c, size=int(k), replace=False)).astype(np.int64)
    return TrainingSample(per_frame, total, {"method": "even", "n_train_requested": n_train, "seed": int(seed),
                                             "n_available": total})


def choose_by_column(scan: FrameScan, column: str, lowest: int, highest: int) -> TrainingSample:
    """The lowest ``lowest`` and highest ``highest`` values of ``column`` (union), centres only."""
    total = scan.total_centers
    lowest, highest = int(lowest), int(highest)
    if lowest < 0 or highest < 0 or lowest + highest < 1:
        raise ValueError("--select-by needs --select-lowest and/or --select-highest with a positive total")
    if lowest + highest > total:
        warnings.warn(
            f"asked for {lowest} lowest + {highest} highest {column!r} values but the input has only "
            f"{total} centre atoms; taking all of them",
            UserWarning,
            stacklevel=3,
        )
    picks = set()
    for cand in (scan.low, scan.high):
        if cand is not None:
            picks.update(zip(cand[1].tolist(), cand[2].tolist()))
    per_frame: dict = {}
    for seq, o in picks:
        per_frame.setdefault(seq, []).append(o)
    per_frame = {s: np.array(sorted(v), dtype=np.int64) for s, v in per_frame.items()}
    info = {"method": "column", "column": column, "lowest": lowest, "highest": highest, "n_available": total}
    if scan.low is not None and len(scan.low[0]):
        info["lowest_range"] = [float(scan.low[0].min()), float(scan.low[0].max())]
    if scan.high is not None and len(scan.high[0]):
        info["highest_range"] = [float(scan.high[0].min()), float(scan.high[0].max())]
    return TrainingSample(per_frame, total, info)


def collect_environments(frames, scan: FrameScan, sample: TrainingSample, local_envs, centers=None):
    """Pass 2: environments of the chosen atoms, and their provenance arrays.

    Returns ``(EnvironmentSet, provenance)`` with ``provenance`` a dict of per-environment arrays
    ``file_index, frame_index, atom_index, atom_id, timestep`` (in the order of the environments).
    """
    sets = []
    prov = {k: [] for k in ("file_index", "frame_index", "atom_index", "atom_id", "timestep")}
    seen = 0
    for seq, fr in enumerate(frames):
        seen = seq + 1
        if seq >= scan.n_frames or len(fr.atoms) != scan.n_atoms[seq] or fr.index != scan.frame_index[seq]:
            raise ValueError(
                f"{fr.source}: the frames changed between the two reading passes (was the file being "
                "written?); rerun when the trajectory is complete"
            )
        ords = sample.per_frame.get(seq)
        if ords is None or not len(ords):
            continue
        names = species_names(fr.atoms)
        cidx = np.flatnonzero(_center_mask(names, centers))
        if len(cidx) != scan.n_centers[seq]:
            raise ValueError(f"{fr.source}: frame {fr.index} changed between the two reading passes")
        idx = cidx[ords]
        sets.append(local_envs.compute(fr.atoms, indices=idx))
        ids = fr.atoms.arrays.get("id")
        prov["file_index"].append(np.full(len(idx), scan.file_index[seq]))
        prov["frame_index"].append(np.full(len(idx), scan.frame_index[seq]))
        prov["atom_index"].append(idx)
        prov["atom_id"].append(np.asarray(ids)[idx].astype(np.int64) if ids is not None else np.full(len(idx), -1))
        prov["timestep"].append(np.full(len(idx), scan.timestep[seq]))
    if seen != scan.n_frames:
        raise ValueError("the number of frames changed between the two reading passes; rerun when the "
                         "trajectory is complete")
    if not sets:
        raise ValueError("no training environment was chosen")
    envs = EnvironmentSet.concatenate(sets)
    prov = {k: np.concatenate(v).astype(np.int64) for k, v in prov.items()}
    return envs, prov
