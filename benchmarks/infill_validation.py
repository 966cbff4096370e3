#!/usr/bin/env python
"""Infilling on real motifs: one atom removed from held-out NiNb environments, filled in by the
generative model, and compared with the original by the GIIP distance.

    python benchmarks/infill_validation.py [--work DIR] [--count 40] [--epochs 300]

The map and the model are those of ``generative_validation.py``'s NiNb part (the paper's sample
quench1M and parameters, a map of 300 training environments, a model of every Ni atom of the
sample with the map's settings, every neighbour within 4 A), cached in ``--work`` (the same folder
serves both scripts). For each of ``--count``
held-out motifs (never seen in training), one neighbour inside the full-weight shell (r < 3 A,
where one missing atom costs about 1 in GIIP units) is removed at random and
:func:`giip_plugin.generate.infill` adds one atom back. Printed: the GIIP distance to the
original motif of

* the motif with the atom missing (the cost of doing nothing, about 1);
* the infilled motif;
* the removed atom put back at its true radius and species but in a random direction (a baseline
  that knows more than the model is told);

and how often the added atom has the removed one's species and lies within 0.5 A of it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from generative_validation import log, map_model, ninb_build  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=os.path.join(HERE, "out", "generative"))
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the per-motif figures here")
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    from giip_plugin.generate import infill
    from giip_plugin.generate.motifs import Motifs

    model, ref, motifs = map_model(args.work, "ninb", ninb_build, args.epochs, source="frames")
    r_full = float(ref.environments.r_inner)
    rng = np.random.default_rng(args.seed)
    names = motifs.species_names
    rows = []
    t0 = time.time()
    held = model.held_out[: args.count]
    for n_done, i in enumerate(held):
        orig = motifs.subset([int(i)])
        pres = np.flatnonzero(orig.present[0])
        X, s = orig.positions[0][pres], orig.species[0][pres]
        inner = np.flatnonzero(np.linalg.norm(X, axis=1) < r_full)
        if len(inner) == 0:
            continue
        k = int(rng.choice(inner))
        keep = np.delete(np.arange(len(X)), k)
        known = Motifs.from_points(X[keep], [names[j] for j in s[keep]], names, model.n)
        filled = infill(model, known, missing=1, seed=args.seed + n_done)
        u = rng.normal(size=X.shape[1])
        guess = np.vstack([X[keep], u / np.linalg.norm(u) * np.linalg.norm(X[k])])
        rand = Motifs.from_points(guess, [names[j] for j in np.concatenate([s[keep], [s[k]]])], names, model.n)
        d = model.giip_distances(Motifs.concatenate([known, filled.motif, rand]),
                                 Motifs.concatenate([orig, orig, orig]))
        rows.append({"motif": int(i), "removed_radius": float(np.linalg.norm(X[k])), "missing": float(d[0]),
                     "infilled": float(d[1]), "random_direction": float(d[2]),
                     "species_right": bool(len(filled.added_species) and filled.added_species[0] == s[k]),
                     "position_error": float(np.linalg.norm(filled.added[0] - X[k])) if len(filled.added) else None,
                     "residual": float(filled.residual)})
        if (n_done + 1) % 10 == 0:
            log(f"{n_done + 1} of {len(held)} motifs ({time.time() - t0:.0f} s)")
    if not rows:
        raise SystemExit("no held-out motif has a neighbour inside the full-weight shell")
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in ("missing", "infilled", "random_direction")}
    err = np.array([np.nan if r["position_error"] is None else r["position_error"] for r in rows])
    print(f"NiNb: {len(rows)} held-out motifs, one atom (r < {r_full:g} A) removed and filled in; "
          f"{time.time() - t0:.0f} s")
    print("| motif | GIIP distance to the original: median | 10 % | 90 % |")
    print("|---|---|---|---|")
    for label, k in (("atom missing", "missing"), ("infilled by the model", "infilled"),
                     ("true radius and species, random direction", "random_direction")):
        q = np.percentile(col[k], [50, 10, 90])
        print(f"| {label} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} |")
    better = float(np.mean(col["infilled"] < col["missing"]))
    print(f"infilled nearer the original than the motif with the atom missing: {100 * better:.0f} % of motifs; "
          f"nearer than the random direction: {100 * np.mean(col['infilled'] < col['random_direction']):.0f} %")
    print(f"added atom of the removed one's species: {100 * np.mean([r['species_right'] for r in rows]):.0f} %; "
          f"within 0.5 A of it: {100 * np.nanmean(err < 0.5):.0f} % (median position error {np.nanmedian(err):.2f} A)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "r_full_weight": r_full}, fh, indent=1)


if __name__ == "__main__":
    main()
