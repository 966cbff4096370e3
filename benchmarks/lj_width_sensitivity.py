#!/usr/bin/env python
"""Diagnosis (issue 21): how the number of complete-linkage classes of the 2D Lennard-Jones crystal
depends on the GIIP Gaussian width.

    python benchmarks/lj_width_sensitivity.py [--size 60,34,10,1000] [--sigmas 0.5,0.3536,0.3,0.25]

Runs ``lammps_examples/lj2d_dislocations.in`` at ``--size`` (NX,NY,NHALF,NSTEPS; default the reduced
3,721-atom crystal of ``reproduce_paper.py``; the paper's size is 140,73,10,30000) into ``--work``
(reused when there), selects the paper's training set (the lowest 0.5 % and highest 25 % of
``c_pe``, or ``--lowest``/``--highest`` atoms), and builds, for each width, the map with the
paper's other parameters (weight 1 below 1.3, spline to 0 at 1.75, O(2), eps 1, classes: the fewest
whose diameters are all <= 1). Prints a table of the class count and sizes per width.

The paper reports 13 classes at "sigma = 0.5". With this project's convention (each atom a Gaussian
``exp(-r^2 / (2 sigma^2))`` of unit L2 norm, so that one missing atom is a distance of 1) 0.5
gives 5. ``sigma / sqrt(2)`` (0.3536) is what 0.5 means if the paper's Gaussians are written
``exp(-r^2 / sigma^2)``. This script measures the sensitivity; it does not change the reproduction's
parameters.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="60,34,10,1000", metavar="NX,NY,NHALF,NSTEPS")
    p.add_argument("--sigmas", default="0.5,0.3536,0.3,0.25")
    p.add_argument("--lowest", type=int, default=None, help="training atoms of lowest c_pe (default 0.5 %%)")
    p.add_argument("--highest", type=int, default=None, help="training atoms of highest c_pe (default 25 %%)")
    p.add_argument("--work", default=str(HERE / "out" / "lj_width"))
    args = p.parse_args(argv)

    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    nx, ny, nhalf, nsteps = (int(v) for v in args.size.split(","))
    work = Path(args.work) / f"{nx}x{ny}_{nhalf}_{nsteps}"
    dump = work / "lj2d_dislocations.dump"
    if not dump.exists():
        sys.path.insert(0, str(ROOT / "lammps_examples"))
        from run_example import run_example

        print(f"LAMMPS: lj2d_dislocations.in, nx={nx} ny={ny} nhalf={nhalf} nsteps={nsteps}", flush=True)
        run_example("lj2d_dislocations", variables={"nx": nx, "ny": ny, "nhalf": nhalf, "nsteps": nsteps}, out=work)
    n = len(next(iter_frames(str(dump))).atoms)
    n1 = int(round(0.005 * n)) if args.lowest is None else args.lowest
    n2 = int(round(0.25 * n)) if args.highest is None else args.highest
    rows = []
    for s in (float(x) for x in args.sigmas.split(",")):
        t0 = time.perf_counter()
        ckpt = work / f"sigma{s:g}.h5"
        if ckpt.exists():
            ref = ReferenceMap.load(ckpt)
        else:
            ref = ReferenceMap.from_files([str(dump)], r_inner=1.3, r_outer=1.75, encoding="none", select_by="c_pe",
                                          select_lowest=n1, select_highest=n2, sigma=s, group="O2", epsilon=1.0,
                                          max_diameter=1.0, progress=True, checkpoint=str(ckpt) + ".partial")
            ref.save(ckpt)
        sizes = sorted(np.bincount(ref.labels).tolist(), reverse=True)
        rows.append((s, ref.n_train, ref.n_classes, sizes, time.perf_counter() - t0))
        print(f"sigma {s:g}: {ref.n_classes} classes", flush=True)
    print(f"crystal: {n} atoms ({args.size}); training: {n1} lowest + {n2} highest c_pe")
    print("| sigma | training environments | classes (diameter <= 1) | class sizes | seconds |")
    print("|---|---|---|---|---|")
    for s, nt, nc, sizes, sec in rows:
        print(f"| {s:g} | {nt} | {nc} | {', '.join(map(str, sizes))} | {sec:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
