"""Choosing a map's default path from the map itself (design.md, section 2.2).

The coarse search of the default path (:mod:`.metric`) was tuned on NiNb first shells; on other
systems (few neighbours, sharp Gaussians) it can miss the exact nearest reference or distort the
Nystrom coordinates. A map already holds the exact distances between its training environments, so
the coarse search can be measured on the map itself before it is used:

1. ``m = min(n, 400)`` training environments (seeded) are mapped leave-one-out (their own column
   removed) against the training set by each rung of :data:`~.metric.COARSE_LADDER`, cheapest
   first; the exact rows are the training matrix's.
2. The *gap* of a row is the coarse distance of its exact nearest reference above the row's coarse
   minimum; a *near miss* is a row with a gap (its coarse minimum is not the exact nearest). The
   refinement finds the exact nearest when the gap is within the margin. A gap is never larger
   than the coarse search's error at the exact nearest (the coarse minimum is at least the exact
   minimum), so a rung's margin is ``max(0.05, 3 x the largest gap, the largest coarse error on
   the near pairs)``, the near pairs being each sampled row's ``K_NEAR`` exact-nearest references
   (4,000 pairs for 400 rows): a sample of a few hundred rows cannot show a miss rate of 0.1 %
   itself, while the errors of its near pairs bound the gap of rows it did not see (a 6,800-
   environment NiNb map showed no gap on its sample, margin 0.05, and then missed the exact
   nearest of 1 atom in 60 of a frame by 0.025; its largest near-pair error was 0.17). A rung is
   rejected when more than 1 % of the rows are near misses or the largest gap exceeds 0.1 (a
   landscape the coarse search does not resolve).
3. The refinement is replayed with that margin (refined entries take the exact values) and the
   result compared with the exact rows: the rung is accepted when, besides 2., every sampled row
   has the exact nearest distance (1e-9) and class, and the coordinates are within the accuracy
   contract (largest error <= 1 % of the coordinate's range over the training set, median <= 0.1 %).
4. No rung accepted: the default path is the exhaustive exact search.

The result (:class:`DefaultPath`) is stored in the reference file with the version of this rule
(:data:`RULE`); a file written before calibration existed, or calibrated by an older rule, is
calibrated when it is first applied (the same seeded measurement; loading such a file warns).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .metric import COARSE_LADDER, FastSettings, GIIPMetric, refine_mask

__all__ = ["DefaultPath", "calibrate", "COORD_MAX", "COORD_MEDIAN", "MAX_GAP", "MAX_NEAR_MISSES",
           "MARGIN_FACTOR", "RULE", "outdated", "sample_size"]

K_NEAR = 10  # near pairs of a sampled row (reported): its K_NEAR exact-nearest references
MAX_NEAR_MISSES = 0.01  # largest fraction of sampled rows whose coarse minimum is not the exact nearest
MAX_GAP = 0.1  # largest gap a rung may show (its margin, MARGIN_FACTOR times that, refines the rest)
MARGIN_FACTOR = 3.0
COORD_MAX = 0.01  # largest coordinate error accepted on the sample, fraction of the range (the contract)
COORD_MEDIAN = 0.001  # median coordinate error accepted (the contract)
SAMPLE = 400  # training rows mapped leave-one-out (all of a smaller map)
# the version of the rule above, stored with each default path: 1, the margin from the gaps alone;
# 2, also the largest near-pair error. A map calibrated by an older rule is measured again at first
# use (reference/fileformat.py), as a map written before calibration existed. 3: the ladder's first
# rung leaves unpolished the starts far below a pair's best grid value (metric.COARSE_SETTINGS). 4: a
# last rung for sharp Gaussians (metric.SHARP_SETTINGS), after every rung of rule 3.
RULE = 4
# Rule 4 only appends a rung, so a map that accepted a rung under rule 3 gets the same choice now;
# only a rule-3 map left with the exhaustive search, or a map of an older rule, is measured again.
SAME_ACCEPTED_RUNG_SINCE = 3


def outdated(dp: "DefaultPath") -> bool:
    """Whether a stored default path must be measured again by this rule (see RULE above)."""
    if dp.rule >= RULE:
        return False
    return dp.rule < SAME_ACCEPTED_RUNG_SINCE or dp.coarse is None


def sample_size(n: int) -> int:
    """Training environments mapped leave-one-out by the calibration of an ``n``-environment map."""
    return int(min(n, SAMPLE))


@dataclass(frozen=True)
class DefaultPath:
    """What a map's default path runs: ``coarse`` (a :class:`~.metric.FastSettings` with the
    margin of the refinement) or ``None`` (the exhaustive exact search), with the measurement behind it:
    ``sample`` rows, and ``trials`` (one dict per rung tried: its settings, the largest gap,
    whether the nearest was exact for every row, the coordinate errors; no timings, so that a
    build is reproducible to the byte); ``rule``: the version of the calibration rule (:data:`RULE`)."""

    coarse: FastSettings | None
    sample: int
    trials: tuple = ()
    rule: int = RULE

    def to_dict(self) -> dict:
        return {"coarse": None if self.coarse is None else self.coarse._asdict(), "sample": int(self.sample),
                "trials": [dict(t) for t in self.trials], "rule": int(self.rule)}

    @classmethod
    def from_dict(cls, d: dict) -> "DefaultPath":
        """The default path stored in a file (``rule`` 1 where the file has none: written before it)."""
        c = d.get("coarse")
        return cls(None if c is None else FastSettings(**c), int(d.get("sample", 0)), tuple(d.get("trials", ())),
                   int(d.get("rule", 1)))

    def describe(self) -> str:
        if self.coarse is None:
            head = "the exhaustive exact search (no coarse search met the accuracy contract on this map)"
        else:
            c = self.coarse
            band = "the exact band limit" if c.l_max is None else f"band limit {c.l_max}"
            head = (f"coarse search ({band}, {c.candidates} starts per parity, {c.max_iter} Newton steps), "
                    f"then the exact search within {c.margin:.3g} of each atom's coarse nearest")
        if not self.trials:
            return head
        t = self.trials[-1]
        return (f"{head}; calibrated on {self.sample} training rows (last rung tried: {t['near_misses']} near "
                f"misses, nearest exact for {100 * t['nearest_exact']:.1f} %, coordinates off by "
                f"at most {100 * t['coord_max']:.3g} % of their range, median {100 * t['coord_median']:.3g} %)")


def _trial(ref, metric, fs: FastSettings, sample_envs, rows_exact, coords_exact, idx, span):
    t0 = time.perf_counter()
    n = len(idx)
    rows = np.arange(n)
    C = metric.coarse_rows(sample_envs, ref.training, fs)
    C[rows, idx] = np.inf
    k = int(min(K_NEAR, rows_exact.shape[1] - 1))
    near = np.argpartition(rows_exact, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((n, 0), dtype=np.int64)
    err = (C[rows[:, None], near] - rows_exact[rows[:, None], near]).ravel()
    p_far = float(np.mean(err > fs.margin / 2)) if err.size else 0.0
    first_exact = rows_exact.argmin(1)
    gap = C[rows, first_exact] - C.min(1)
    max_gap = float(gap.max()) if n else 0.0
    near_misses = int(np.sum(gap > 1e-9))
    max_error = float(err.max()) if err.size else 0.0  # bounds the gap of a row (module docstring)
    fs = fs._replace(margin=max(float(fs.margin), MARGIN_FACTOR * max_gap, max_error))
    todo = refine_mask(C, fs)
    todo[rows, idx] = False
    R = C.copy()
    R[todo] = np.minimum(C[todo], rows_exact[todo])
    near_r = R.argmin(1)
    ok = (np.abs(R[rows, near_r] - rows_exact[rows, first_exact]) <= 1e-9) & (
        ref.labels[near_r] == ref.labels[first_exact])
    ce, cx = ref.transform_from_distances(R).coordinates, coords_exact
    cerr = np.abs(ce - cx) / span
    cerr = np.where(np.isfinite(cerr), cerr, np.where(np.isnan(ce) & np.isnan(cx), 0.0, np.inf))
    coord_max = float(cerr.max()) if cerr.size else 0.0
    coord_median = float(np.median(cerr)) if cerr.size else 0.0
    accepted = (near_misses <= MAX_NEAR_MISSES * n and max_gap <= MAX_GAP and bool(np.all(ok))
                and coord_max <= COORD_MAX and coord_median <= COORD_MEDIAN)
    return {"settings": fs._asdict(), "pairs": int(err.size), "far_fraction": p_far,
            "max_error": max_error, "max_gap": max_gap,
            "near_misses": near_misses,
            "nearest_exact": float(np.mean(ok)) if n else 1.0, "coord_max": coord_max, "coord_median": coord_median,
            "refined_per_row": float(todo.sum() / max(n, 1)), "accepted": bool(accepted)}, fs, time.perf_counter() - t0


def calibrate(ref, *, seed: int = 0, sample: int | None = None, log=None) -> DefaultPath:
    """Measure each rung of :data:`~.metric.COARSE_LADDER` on ``ref`` (a GIIP
    :class:`~.refmap.ReferenceMap`) against its own training matrix and return the cheapest that
    meets the criteria of the module docstring, or the exhaustive exact search."""
    n = ref.n_train
    m = sample_size(n) if sample is None else int(min(max(sample, 1), n))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    sample_envs = ref.training.subset(idx)
    rows_exact = np.array(ref.distances[idx], dtype=float)
    rows_exact[np.arange(m), idx] = np.inf
    coords_exact = ref.transform_from_distances(rows_exact).coordinates  # the same for every rung
    coords = ref.coordinates
    span = (coords.max(0) - coords.min(0)) if coords.size else np.ones(0)
    span = np.where(span > 0, span, 1.0)
    metric = GIIPMetric(ref.sigma, ref.group, ref.search_settings)
    trials = []
    for fs in COARSE_LADDER:
        trial, tuned, seconds = _trial(ref, metric, fs, sample_envs, rows_exact, coords_exact, idx, span)
        trials.append(trial)
        if log:
            log(f"default path: coarse search {tuple(fs)[:4]}{f' window {fs.window:g}' if fs.window else ''} on {m} training rows: {trial['near_misses']} near misses "
                f"(largest gap {trial['max_gap']:.3g}), {100 * trial['far_fraction']:.3g} % of {trial['pairs']} near pairs "
                f"more than {fs.margin / 2:.3g} above exact, nearest exact {100 * trial['nearest_exact']:.1f} %, coordinates max {100 * trial['coord_max']:.3g} % "
                f"median {100 * trial['coord_median']:.3g} % of their range with margin {tuned.margin:.3g}, "
                f"{trial['refined_per_row']:.2f} exact searches per row ({seconds:.1f} s): "
                + ("used" if trial["accepted"] else "rejected"))
        if trial["accepted"]:
            return DefaultPath(tuned, m, tuple(trials))
    if log:
        log("default path: the exhaustive exact search (no coarse search met the accuracy contract)")
    return DefaultPath(None, m, tuple(trials))
