#!/usr/bin/env python
"""Agreement of the fast path with the exhaustive computation on every Ni centre of a whole frame.

    python benchmarks/whole_frame_agreement.py REF.h5 [--frame DUMP] [--cache DIR] [--chunk 64]
                                               [--report-only]

Issue 4's criterion, over the whole 13,500-atom NiNb frame rather than a sample: the fast path
(``distance_rows(fast=True)``, what ``transform(fast=True)`` maps) against the exhaustive exact
rows (6,750 Ni x n_train rotation searches; about 1.5 hours on 2 cores for 2,000 references).

Long and resumable: the fast rows are computed once, then the exact rows in chunks of ``--chunk``
atoms, each saved to ``--cache`` as it completes. The atoms are taken in a random order (``--seed``),
so that the chunks done so far are a uniform random sample of the frame: interrupt at any time
(Ctrl-C) and the report covers what was computed; run again to go on. ``--report-only`` prints the
report of the chunks on disk without computing more.

Report: classes equal; diffusion coordinates' error in % of their range over the training set
(max, percentiles, atoms above 1%); the nearest-reference distance (``giip_ref_distance``); the rank
of each atom's exact nearest reference in its fast row (0: found).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "ninb")


def _save(path: str, array: np.ndarray) -> None:
    tmp = path + ".part.npy"
    np.save(tmp, array)
    os.replace(tmp, path)  # a chunk on disk is always complete


def report(ref, fast_rows: np.ndarray, exact_rows: np.ndarray) -> list[str]:
    fast = ref.transform_from_distances(fast_rows)
    truth = ref.transform_from_distances(exact_rows)
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    err = np.abs(fast.coordinates - truth.coordinates) / span * 100  # (n, k) % of range
    worst = err.max(1)
    dd = fast.ref_distance - truth.ref_distance
    n = len(exact_rows)
    nearest = np.argmin(exact_rows, axis=1)
    rank = np.sum(fast_rows < fast_rows[np.arange(n), nearest][:, None], axis=1)
    pct = np.percentile(worst, [50, 99, 99.9])
    return [
        f"atoms compared             : {n}",
        f"classes equal              : {np.mean(fast.classes == truth.classes):.3%} "
        f"({np.sum(fast.classes != truth.classes)} differ)",
        f"coordinates, max error     : {worst.max():.3f}% of range "
        f"(per coordinate: {', '.join(f'{v:.3f}%' for v in err.max(0))})",
        f"coordinates, percentiles   : median {pct[0]:.3f}%, p99 {pct[1]:.3f}%, p99.9 {pct[2]:.3f}%",
        f"atoms above 1% / 0.5%      : {np.sum(worst > 1)} / {np.sum(worst > 0.5)}",
        f"ref distance, exact        : {np.mean(np.abs(dd) <= 1e-6):.3%} of atoms; "
        f"max excess {dd.max():.4f} (distances {truth.ref_distance.min():.3f}-{truth.ref_distance.max():.3f})",
        f"exact nearest's fast rank  : {np.bincount(rank).tolist()} atoms at rank 0, 1, ... "
        "(rank >= refine: not refined, its distance too large)",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("--frame", default=os.path.join(DATA, "quench10M.dump"))
    p.add_argument("--cache", default=None, help="folder for the rows (default: REF_wholeframe/)")
    p.add_argument("--chunk", type=int, default=64, help="atoms per saved chunk of exact rows (default 64)")
    p.add_argument("--seed", type=int, default=0, help="order of the atoms (default 0)")
    p.add_argument("--report-only", action="store_true", help="report on the chunks on disk, compute nothing")
    args = p.parse_args(argv)

    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(args.reference)
    cache = args.cache or os.path.splitext(args.reference)[0] + "_wholeframe"
    os.makedirs(cache, exist_ok=True)
    atoms = next(iter_frames(args.frame, type_names=ref.type_names or {1: "Ni", 2: "Nb"})).atoms
    ni = np.flatnonzero(np.isin(atoms.arrays["species"], list(ref.centers or ["Ni"])))
    order = np.random.default_rng(args.seed).permutation(len(ni))
    chunks = [order[a:a + args.chunk] for a in range(0, len(order), args.chunk)]
    print(f"{len(ni)} centres x {ref.n_train} references; {len(chunks)} chunks of {args.chunk} in {cache}",
          flush=True)

    envs = None if args.report_only else ref.compute_environments(atoms, indices=ni)
    fast_path = os.path.join(cache, "fast_rows.npy")
    if os.path.exists(fast_path):
        fast_rows = np.load(fast_path)
    elif args.report_only:
        print("no fast rows yet: run without --report-only", file=sys.stderr)
        return 1
    else:
        t0 = time.perf_counter()
        fast_rows = np.concatenate([ref.distance_rows(envs.subset(np.arange(a, min(len(ni), a + 256))), fast=True)
                                    for a in range(0, len(ni), 256)])
        print(f"fast rows of the whole frame: {time.perf_counter() - t0:.1f} s", flush=True)
        _save(fast_path, fast_rows)

    def chunk_path(k):
        return os.path.join(cache, f"exact_{args.seed}_{args.chunk}_{k:04d}.npy")

    if not args.report_only:
        todo = [k for k in range(len(chunks)) if not os.path.exists(chunk_path(k))]
        t0, done = time.perf_counter(), 0
        try:
            for k in todo:
                _save(chunk_path(k), ref.distance_rows(envs.subset(chunks[k])))
                done += 1
                rate = (time.perf_counter() - t0) / done
                print(f"chunk {k + 1}/{len(chunks)}: {rate:.1f} s per chunk, "
                      f"{(len(todo) - done) * rate / 60:.1f} min left", flush=True)
        except KeyboardInterrupt:
            print("interrupted: the chunks saved so far are reported", flush=True)

    have = [k for k in range(len(chunks)) if os.path.exists(chunk_path(k))]
    if not have:
        print("no exact rows yet", file=sys.stderr)
        return 1
    idx = np.concatenate([chunks[k] for k in have])
    exact_rows = np.concatenate([np.load(chunk_path(k)) for k in have])
    print(f"\n{args.frame}: {len(have)} of {len(chunks)} chunks")
    print("\n".join(report(ref, fast_rows[idx], exact_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
