"""Benchmark: building a NiNb reference map with the compiled rotation search (the default).

Builds a reference of ``--n-train`` Ni-centred environments of ``tests/data/ninb/quench100K.dump``
with the paper's parameters (sign species, weight 1 below 3 A, spline to 0 at 4 A, sigma 1 A, O(3))
through ``ReferenceMap.from_files`` (what ``giip build`` runs), and times it. The training distance
matrix is then checked against the PyTorch reference implementation of the same search
(``giip build --exact``) on ``--check-pairs`` random entries (the whole matrix on PyTorch takes
about 2,000 s for 2,000 environments): no entry may be larger than PyTorch's by more than 1e-9.

    python benchmarks/bench_build.py [--n-train 2000] [--check-pairs 20000] [--workers 2] [-o REF.h5]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "tests" / "data" / "ninb" / "quench100K.dump"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--check-pairs", type=int, default=20000)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("-o", "--output", help="also save the reference map here")
    args = p.parse_args()
    if args.output:  # the folder of the saved map (before the build, not after it)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    from giip_plugin.kernels import DistanceEngine
    from giip_plugin.reference import ReferenceMap

    t0 = time.perf_counter()
    ref = ReferenceMap.from_files([str(DUMP)], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign", positive="Ni",
                                  centers=["Ni"], type_names="1=Ni,2=Nb", n_train=args.n_train, n_workers=args.workers,
                                  progress=False)
    build_s = time.perf_counter() - t0
    if args.output:
        ref.save(args.output)
    n = ref.n_train
    rng = np.random.default_rng(0)
    iu = np.triu_indices(n, k=1)
    pick = rng.choice(len(iu[0]), min(args.check_pairs, len(iu[0])), replace=False)
    ia, ib = iu[0][pick], iu[1][pick]
    eng = DistanceEngine(ref.training, sigma=ref.sigma, group=ref.group, compiled=False)
    t0 = time.perf_counter()
    torch_d = eng.distances(ia, ib)
    torch_s = time.perf_counter() - t0
    diff = ref.distances[ia, ib] - torch_d
    n_pairs = n * (n - 1) // 2
    print(f"NiNb reference, {n} environments ({n_pairs} distances), {args.workers} threads")
    print("| path | time (s) | pairs/s |")
    print("|---|---|---|")
    print(f"| build, compiled search (default) | {build_s:.1f} | {n_pairs / build_s:.0f} (whole build) |")
    print(f"| PyTorch reference search, {len(ia)} random entries | {torch_s:.1f} | {len(ia) / torch_s:.0f} |")
    print(f"| PyTorch estimate for the whole matrix | {n_pairs / (len(ia) / torch_s):.0f} | |")
    print(f"compiled - PyTorch on {len(ia)} entries: max {diff.max():.2e}, min {diff.min():.2e}; "
          f"entries larger by more than 1e-9: {int(np.sum(diff > 1e-9))}")


if __name__ == "__main__":
    main()
