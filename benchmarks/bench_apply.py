#!/usr/bin/env python
"""Benchmark: applying a reference map to a 13,500-atom NiNb frame, exact and fast, against SOAP.

    python benchmarks/bench_apply.py --reference REF.h5 [--frame DUMP] [--atoms 40] [--whole-frame]

Without ``--reference`` a reference is built first with the paper's parameters (``--n-train``
training environments of quench100K.dump; sigma 1, cutoff 3-4 A, sign species, O(3), eps 1.5).

Measured, on ``--atoms`` random Ni centres of the frame:

* the exhaustive exact path (every analysed Ni atom against every training environment), whose
  time is extrapolated to all 6,750 centres;
* the fast path (``transform(fast=True)``: coarse searches for every pair, exact ones for the
  nearest few of each atom: 2 from 1,500 training environments on, else 4) on the same atoms,
  with its agreement with the exhaustive path: classes, nearest distance, and the coordinates'
  error in % of their range over the training set; with the baseline of the same path on the
  PyTorch coarse search (``GIIP_NO_FUSED=1``), where the reference is large enough for the fused
  kernel (kernels/fused.py) to run;
* with ``--whole-frame``, the fast path on every Ni centre of the frame (measured, not
  extrapolated);
* for scale, dscribe's SOAP descriptor of the whole frame (what a user would otherwise compute; it
  is a descriptor only: no classes, no map). Prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "ninb")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", help="reference map (default: build one)")
    p.add_argument("--n-train", type=int, default=200, help="training environments when building (default 200)")
    p.add_argument("--frame", default=os.path.join(DATA, "quench10M.dump"))
    p.add_argument("--atoms", type=int, default=40, help="Ni centres analysed exhaustively and fast (default 40)")
    p.add_argument("--whole-frame", action="store_true", help="also run the fast path on every Ni centre of the frame")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-soap", action="store_true")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from giip_plugin.analysis import GIIPAnalyzer
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap
    from giip_plugin.reference.refmap import fast_settings

    if args.reference:
        ref = ReferenceMap.load(args.reference)
        t_build = None
    else:
        t0 = time.perf_counter()
        ref = ReferenceMap.from_files([os.path.join(DATA, "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0,
                                      encoding="sign", centers=["Ni"], type_names="1=Ni,2=Nb", n_train=args.n_train,
                                      epsilon=1.5, progress=True)
        t_build = time.perf_counter() - t0
    frame = next(iter_frames(args.frame, type_names=ref.type_names or {1: "Ni", 2: "Nb"}))
    atoms = frame.atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    rng = np.random.default_rng(args.seed)
    sub = np.sort(rng.choice(ni, size=min(args.atoms, len(ni)), replace=False))
    an = GIIPAnalyzer(ref)
    t0 = time.perf_counter()
    res = an.analyze(atoms, indices=sub)
    t_exact = time.perf_counter() - t0
    pairs = len(sub) * ref.n_train
    per_pair = t_exact / pairs
    rows = [("GIIP exact (this project)", f"{len(sub)} Ni x {ref.n_train} refs", pairs, t_exact,
             per_pair * len(ni) * ref.n_train, per_pair * len(ni) * 2000)]
    # baseline: the fast path with the PyTorch coarse search (the fused kernel turned off)
    os.environ["GIIP_NO_FUSED"] = "1"
    try:
        t0 = time.perf_counter()
        GIIPAnalyzer(ref, fast=True).analyze(atoms, indices=sub)
        t_torch = time.perf_counter() - t0
    finally:
        del os.environ["GIIP_NO_FUSED"]
    rows.append(("GIIP fast, PyTorch coarse search (baseline)", f"{len(sub)} Ni x {ref.n_train} refs", pairs, t_torch,
                 t_torch / pairs * len(ni) * ref.n_train, t_torch / pairs * len(ni) * 2000))
    fast = GIIPAnalyzer(ref, fast=True)
    fast.analyze(atoms, indices=sub[:1])  # compiles the fused kernel (first use) or loads it from the cache
    t0 = time.perf_counter()
    res_f = fast.analyze(atoms, indices=sub)
    t_fast = time.perf_counter() - t0
    per_pair_f = t_fast / pairs
    rows.append((f"GIIP fast (coarse + exact {fast_settings(ref.n_train).refine} nearest)",
                 f"{len(sub)} Ni x {ref.n_train} refs", pairs, t_fast,
                 per_pair_f * len(ni) * ref.n_train, per_pair_f * len(ni) * 2000))
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    err = np.abs(res_f.coordinates[sub] - res.coordinates[sub]) / span
    agree = (f"fast vs exhaustive on {len(sub)} atoms: classes {np.mean(res_f.classes[sub] == res.classes[sub]):.1%} equal; "
             f"nearest distance max |diff| {np.max(np.abs(res_f.ref_distance[sub] - res.ref_distance[sub])):.1e}; "
             f"coordinates max error {100 * err.max():.3f}% of their range (training set), "
             f"atoms with every coordinate within 1%: {np.mean(np.all(err <= 0.01, axis=1)):.1%}")
    if args.whole_frame:
        t0 = time.perf_counter()
        whole = GIIPAnalyzer(ref, fast=True, progress=True).analyze(atoms)
        t_whole = time.perf_counter() - t0
        rows.append(("GIIP fast, whole frame (measured)", f"{int(whole.analysed.sum())} Ni x {ref.n_train} refs",
                     int(whole.analysed.sum()) * ref.n_train, t_whole, t_whole, t_whole * 2000 / ref.n_train))
    if not args.skip_soap:
        try:
            from dscribe.descriptors import SOAP

            soap = SOAP(species=["Ni", "Nb"], r_cut=4.0, n_max=8, l_max=6, sigma=1.0, periodic=True)
            a2 = atoms.copy()
            a2.set_chemical_symbols(list(atoms.arrays["species"]))
            t0 = time.perf_counter()
            X = soap.create(a2, centers=ni.tolist(), n_jobs=torch.get_num_threads())
            t_soap = time.perf_counter() - t0
            rows.append((f"dscribe SOAP n_max 8 l_max 6 ({X.shape[1]} features)", f"{len(ni)} Ni (whole frame)",
                         None, t_soap, t_soap, t_soap))
        except ImportError:
            print("dscribe is not installed: pip install dscribe", file=sys.stderr)
    print(f"frame: {args.frame} ({len(atoms)} atoms, {len(ni)} Ni centres); torch threads {torch.get_num_threads()}")
    if t_build is not None:
        print(f"reference built in {t_build:.1f} s ({ref.n_train} training environments)")
    print(f"{'method':48s} {'measured on':26s} {'pairs':>9s} {'seconds':>9s} {'whole frame, this ref (s)':>26s} {'whole frame, 2000 refs (s)':>27s}")
    for name, what, n, t, full, full2000 in rows:
        print(f"{name:48s} {what:26s} {n if n is not None else '-':>9} {t:9.2f} {full:26.1f} {full2000:27.1f}")
    print(f"exact path: {1e3 * per_pair:.3f} ms per (atom, reference) pair; fast path: {1e3 * per_pair_f:.3f} ms; "
          f"classes found {np.bincount(res.classes[sub], minlength=ref.n_classes).tolist()}")
    print(agree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
