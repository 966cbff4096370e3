#!/usr/bin/env python
"""How accurate the searches of the default path are on real atoms, against exhaustive exact rows.

    python benchmarks/search_accuracy.py --reference REF.h5 tiers l_max=5,candidates=1,max_iter=1 ...
    python benchmarks/search_accuracy.py --reference REF.h5 candidates 6 8 12

Both compare with the exact rows of ``--atoms`` random Ni centres of ``--frame`` (computed once and
cached in ``--cache``).

``tiers``: a cheaper coarse search (``FastSettings`` fields of the map's default path replaced, as
``l_max=5,candidates=1,max_iter=1``) for every pair, the default coarse search for the fraction
``f`` of each row that the cheap search ranks nearest, and the exact search for the nearest (the
margin that finds every exact nearest): coordinates against those of the exact rows (benchmarks/RESULTS.md,
"Why far references cannot take a cheaper search").

``candidates``: exact rows with ``SearchSettings(candidates=c)`` for each c; pairs above the
smallest value that any of them (or the default coarse search) found, and the rate.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
DATA = os.path.join(HERE, "..", "tests", "data", "ninb")


def _setup(args):
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(args.reference)
    atoms = next(iter_frames(args.frame, type_names=ref.type_names or {1: "Ni", 2: "Nb"})).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    sub = np.sort(np.random.default_rng(args.seed).choice(ni, min(args.atoms, len(ni)), replace=False))
    envs = ref.compute_environments(atoms, indices=sub)
    os.makedirs(args.cache, exist_ok=True)
    key = f"exact_{os.path.basename(args.reference)}_{os.path.basename(args.frame)}_{args.atoms}_{args.seed}.npy"
    path = os.path.join(args.cache, key)
    if os.path.exists(path):
        exact = np.load(path)
    else:
        t0 = time.perf_counter()
        exact = ref.metric.rows(envs, ref.training, exact=True)
        np.save(path, exact)
        print(f"exact rows {exact.shape} in {time.perf_counter() - t0:.1f} s (cached in {path})", flush=True)
    return ref, envs, exact


def _timed_coarse(ref, envs, fs):
    m = ref.metric
    m.coarse_rows(envs.subset([0]), ref.training, fs)  # warm-up
    t0 = time.perf_counter()
    rows = m.coarse_rows(envs, ref.training, fs)
    return rows, rows.size / (time.perf_counter() - t0)


def tiers(args, ref, envs, exact):
    from giip_plugin.reference.metric import refine_mask

    base = ref.metric.coarse
    Rx = ref.transform_from_distances(exact)
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    full, v_full = _timed_coarse(ref, envs, base)
    print(f"default coarse search {base}: {v_full:.0f} pairs/s")
    print("| cheap search | pairs/s (cheap) | f | est. pairs/s | margin needed | classes equal | coordinates max / median error |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.specs:
        fields = dict(kv.split("=") for kv in spec.split(","))
        fs = base._replace(**{k: (float(v) if k in ("margin", "window") else int(v)) for k, v in fields.items()})
        cheap, v_cheap = _timed_coarse(ref, envs, fs)
        for frac in [float(x) for x in args.fractions.split(",")]:
            rows = cheap.copy()
            k = int(frac * rows.shape[1])
            if k:
                near = np.argpartition(cheap, k - 1, axis=1)[:, :k]
                r = np.repeat(np.arange(len(rows)), k)
                rows[r, near.ravel()] = full[r, near.ravel()]
            need = rows[np.arange(len(rows)), exact.argmin(1)] - rows.min(1)
            todo = refine_mask(rows, base._replace(margin=max(base.margin, float(need.max()) + 1e-6)))
            rows[todo] = np.minimum(rows[todo], exact[todo])
            R = ref.transform_from_distances(rows)
            err = np.abs(R.coordinates - Rx.coordinates) / span
            rate = 1.0 / (1.0 / v_cheap + frac / v_full)
            print(f"| {spec} | {v_cheap:.0f} | {frac:g} | {rate:.0f} | {need.max():.3f} | "
                  f"{np.mean(R.classes == Rx.classes):.1%} | {100 * err.max():.3f} % / {100 * np.median(err):.4f} % |",
                  flush=True)


def candidates(args, ref, envs, exact):
    from giip_plugin.kernels import DistanceEngine

    nA, nB = len(envs), ref.n_train
    ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
    coarse, _ = _timed_coarse(ref, envs, ref.metric.coarse)
    rows, rates = {}, {}
    for c in [int(x) for x in args.specs]:
        eng = DistanceEngine(envs, ref.training, sigma=ref.sigma, group=ref.group,
                             settings=replace(ref.metric.settings(), candidates=c))
        eng.distances(ia[:nB], ib[:nB])  # warm-up (tables of the band limit)
        t0 = time.perf_counter()
        rows[c] = eng.distances(ia, ib).reshape(nA, nB)
        rates[c] = rows[c].size / (time.perf_counter() - t0)
    best = np.minimum.reduce(list(rows.values()) + [coarse, exact])
    print(f"the map's own search: candidates {ref.metric.settings().candidates}; {nA} atoms x {nB} references")
    print("| candidates per parity | pairs above the best value found | largest excess | exact pairs/s |")
    print("|---|---|---|---|")
    for c, d in rows.items():
        print(f"| {c} | {int(np.sum(d > best + 1e-9))} | {float((d - best).max()):.2g} | {rates[c]:.0f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a GIIP reference map (e.g. bench_build.py's)")
    p.add_argument("--frame", default=os.path.join(DATA, "quench10M.dump"))
    p.add_argument("--atoms", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache", default=os.path.join(HERE, "out", "search_accuracy"))
    p.add_argument("--fractions", default="0,0.1,0.3", help="tiers: fractions f, comma-separated (default 0,0.1,0.3)")
    p.add_argument("mode", choices=("tiers", "candidates"))
    p.add_argument("specs", nargs="+", help="tiers: FastSettings replacements; candidates: counts")
    args = p.parse_args(argv)
    ref, envs, exact = _setup(args)
    (tiers if args.mode == "tiers" else candidates)(args, ref, envs, exact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
