#!/usr/bin/env python
"""Reproduce the two test systems of Hardin et al. (2022), and the silica glass of the talk, with
giip-plugin and print the numbers.

    python benchmarks/reproduce_paper.py [--part ninb|lj|silica|all] [--stage annotate|analyse|all]
                                         [--work DIR] [--figures DIR] [options]

Every expensive step is cached in ``--work`` (default ``out/reproduce``): the reference maps, the
LAMMPS structure and the annotated dumps are reused when they exist, so ``--stage analyse`` reruns
only the (cheap) analysis. The numbers are printed and written to ``WORK/results.json``; the PNG
figures go to ``--figures`` (default ``WORK/figures``; ``docs/figures`` for the documentation).

1. Ni50Nb50 metallic glass (``--ninb-data``: the four samples of the paper; the paper's analysis
   parameters: Ni-centred environments, sign species +1 Ni / -1 Nb, weight 1 below 3 A, spline to
   0 at 4 A, sigma 1 A, O(3), eps 1.5).
   * reference: ``--ninb-train`` training environments spread evenly over the four samples
     (default 300, i.e. 75 per sample; the paper used 1,700 per sample) or ``--ninb-ref`` FILE;
   * annotation: the training atoms of each sample (exact: a training environment maps to itself)
     plus ``--ninb-atoms`` other Ni atoms chosen at random (default 1,500 per sample; the paper
     extended to 20,200 environments in all);
   * numbers: r^2 of every selected coordinate against the weighted Ni fraction of the
     neighbours, the coordination, the Voronoi volume (the paper: coordinate 1 vs Ni fraction,
     r^2 = 0.97); the slowest (quench10M) against the fastest (quench100K) quench in the plane of
     the two selected coordinates after the first (the paper: coordinates 2 and 3), and the class
     populations of the four samples; the tree cut at 20 classes for colour (populations, an
     OVITO slab rendering); the environments around the hull of that plane (``--ninb-hull``) with
     the GIIP symmetry measures of each hull region (tetrahedral, prismatic D3h, cyclic, ...)
     against random atoms, and the symmetry measures of the slow and fast quench
     (``--ninb-symmetry``).
2. 2D Lennard-Jones crystal with dislocations (``lammps_examples/lj2d_dislocations.in``), at a
   reduced size (``--lj-size NX,NY,NHALF,NSTEPS``, default 60,34,10,1000: 3,721 atoms; the paper
   19,548 atoms and 30,000 steps; a crystal this small loses its dislocations through the surfaces
   within a few thousand steps, so the run is shorter). Paper parameters: weight 1 below 1.3,
   spline to 0 at 1.75, sigma 0.5, O(2), eps 1.0, classes by ``--max-diameter 1.0``.
   * training set: the paper took the 100 lowest- and 4,900 highest-energy atoms of 19,548
     (0.5 % + 25 %). Here the same proportions of the smaller crystal are taken
     (``--lj-lowest-frac``, ``--lj-highest-frac``: 19 + 933 of 3,721 atoms); ``--lj-train N``
     draws N of them at random (cheaper); ``--lj-select-lowest/--lj-select-highest N1 N2`` takes
     the N1 lowest and N2 highest instead (as ``giip build --select-by c_pe``);
   * every atom is annotated (``--lj-atoms N`` for a random subset);
   * numbers: the number of classes with no two members more than 1 atom apart (paper 13), the
     direction in the plane of the first two selected coordinates that correlates best with the
     coordination number (paper r^2 = 0.93), and an OVITO rendering of the atoms coloured by the
     orthogonal direction (paper: the two-lobed strain fields of the dislocations).
3. Silica glass (the talk's third system): ``lammps_examples/silica_quench.in`` (Vashishta
   potential; ``--silica-size N,RATE``, default 6,50: 5,184 atoms quenched at 50 K/ps), a
   reference of ``--silica-train`` (5,000) Si- and O-centred first shells of the last frame
   (vector species, weight 1 below 2.0 A, spline to 0 at 2.3 A, sigma 0.6 A, O(3), the automatic
   epsilon, classes no wider than 1 atom), the rest of that frame annotated
   (``--silica-atoms``); numbers: the classes read as centre species x coordination (the talk: 5
   classes, 3297 / 1636 / 37 / 28 / 2), the tree cut at 5, and the r^2 of every coordinate
   against the Si-O-Si angle at the bridging oxygens.

Cost on 2 busy CPU cores (see docs/validation.md): NiNb reference of 300 environments ~20-30 min,
annotation of 1,500 atoms per sample ~40 min; LJ reference of 952 environments ~5 min, annotation of
3,721 atoms ~20 min (timings of this machine with the kernels of November 2026; see docs/validation.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NINB_SAMPLES = ("quench100K", "quench500K", "quench1M", "quench10M")  # fastest ... slowest (inferred)
NINB_RATES = {"quench100K": "1.7e13 K/s", "quench500K": "3.4e12 K/s", "quench1M": "1.7e12 K/s",
              "quench10M": "1.7e11 K/s"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_ninb_data():
    for cand in (ROOT.parent / "shared" / "data" / "ninb-glass-hardin2022", ROOT / "tests" / "data" / "ninb"):
        if all((cand / f"{s}.dump").exists() for s in NINB_SAMPLES):
            return cand
    return ROOT / "tests" / "data" / "ninb"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("ninb", "lj", "silica", "all"), default="all")
    p.add_argument("--stage", choices=("annotate", "analyse", "all"), default="all",
                   help="annotate: structures, references and annotated dumps (expensive, cached); "
                        "analyse: numbers and figures from them")
    p.add_argument("--work", default=str(ROOT / "out" / "reproduce"), help="cache folder (default out/reproduce)")
    p.add_argument("--figures", default=None, help="folder for the PNG figures (default WORK/figures)")
    p.add_argument("--tag", default="", help="tag in the figure names (lj2d_TAG_...) and results key, for variants")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact", action="store_true",
                   help="annotate with the exhaustive exact search (default: the refined coarse search of "
                        "ReferenceMap.transform)")
    p.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)  # the former name of the default
    g = p.add_argument_group("NiNb glass")
    g.add_argument("--ninb-data", default=str(default_ninb_data()), help="folder with quench*.dump")
    g.add_argument("--ninb-ref", default=None, help="existing reference file (default: build WORK/ninb_ref.h5)")
    g.add_argument("--ninb-train", type=int, default=300, help="training environments over the 4 samples")
    g.add_argument("--ninb-atoms", type=int, default=1500, help="extra random Ni atoms annotated per sample")
    g.add_argument("--ninb-symmetry", type=int, default=300,
                   help="Ni atoms of the fastest and of the slowest sample whose symmetry measures are computed "
                        "(0: none; about 1 s per atom)")
    g.add_argument("--ninb-hull", default="8,25,100", metavar="K,N,M",
                   help="exemplars around the hull of the dc2 x dc3 plane: K evenly spaced hull points, the "
                        "symmetry measures of the N atoms nearest each and of M random atoms as the baseline "
                        "(0: none; about 1 s per atom)")
    g.add_argument("--ninb-symmetry-weights", choices=("geometry", "sign"), default="geometry",
                   help="symmetry of the positions alone (every neighbour weight |w|: the paper's motifs are "
                        "geometric) or with the map's sign species (default geometry)")
    g.add_argument("--ninb-symmetry-sigma", type=float, default=0.5,
                   help="Gaussian width of the symmetry measure in A (default 0.5; at the map's 1 A a first shell "
                        "of ~14 neighbours at 2.5 A is a smeared sphere: every group scores 0.95-0.99)")
    g = p.add_argument_group("2D Lennard-Jones crystal")
    g.add_argument("--lj-size", default="60,34,10,1000", metavar="NX,NY,NHALF,NSTEPS")
    g.add_argument("--lj-train", type=int, default=None,
                   help="draw this many training environments at random from the selection (default: all of it)")
    g.add_argument("--lj-lowest-frac", type=float, default=100 / 19548)
    g.add_argument("--lj-highest-frac", type=float, default=4900 / 19548)
    g.add_argument("--lj-select-lowest", type=int, default=None, metavar="N1")
    g.add_argument("--lj-select-highest", type=int, default=None, metavar="N2")
    g.add_argument("--lj-window", default=None, metavar="X0,X1,Y0,Y1",
                   help="also annotate every atom in this window (fractions of the crystal's extent), drawn "
                        "enlarged (default window of the enlarged drawings: the middle half)")
    g.add_argument("--lj-ref", default=None, help="existing reference file (default: build WORK/lj2d_ref.h5)")
    g.add_argument("--lj-atoms", type=int, default=None,
                   help="annotate the training atoms (exact, free) and N other random atoms (default: every atom; "
                        "0: the training atoms only)")
    g = p.add_argument_group("Silica glass")
    g.add_argument("--silica-size", default="6,50", metavar="N,RATE",
                   help="beta-cristobalite cells per side (24 N^3 atoms; 6: 5,184) and quench rate in K/ps "
                        "(lammps_examples/silica_quench.in; default 6,50)")
    g.add_argument("--silica-train", type=int, default=5000, help="training environments (Si- and O-centred; the talk 5,000)")
    g.add_argument("--silica-ref", default=None, help="existing reference file (default: build WORK/silica_ref.h5)")
    g.add_argument("--silica-atoms", type=int, default=None,
                   help="annotate the training atoms (free) and N other random atoms (default: every atom)")
    return p


# --------------------------------------------------------------------------- shared helpers


def annotate(ref, frame, indices, path, *, extra_known=None, exact=False):
    """Analyse atoms ``indices`` of ``frame`` and write an annotated dump: giip_class, giip_dc1..k
    (selected coordinates), giip_ref_distance, giip_psi1..20 (all eigen-coordinates) and
    giip_nearest (the index of the nearest training environment: classes of other cuts of the
    tree), NaN / -1 for atoms not analysed. ``extra_known``: ``{atom index: (class, psi row,
    training index)}`` of training atoms (a training environment maps to itself: nearest = itself,
    Nystrom = its own eigenvector row).
    ``exact``: the exhaustive search of ``ReferenceMap.transform``."""
    from giip_plugin.io import AnnotatedWriter

    n = frame.natoms
    K = ref.diffusion.n_eigenpairs
    cls = np.full(n, -1, dtype=np.int64)
    psi = np.full((n, K), np.nan)
    dist = np.full(n, np.nan)
    near = np.full(n, -1, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices):
        envs = ref.compute_environments(frame.atoms, indices=indices, species=frame.species)
        ok = np.flatnonzero(envs.counts > 0)
        # in chunks of atoms, each saved as it completes: an interrupted annotation continues
        parts = Path(str(path) + ".parts")
        parts.mkdir(parents=True, exist_ok=True)
        for k, s in enumerate(range(0, len(ok), ANNOTATE_CHUNK)):
            sel = ok[s : s + ANNOTATE_CHUNK]
            part = parts / f"chunk{k:05d}.npz"
            if part.exists():
                with np.load(part) as z:
                    if np.array_equal(z["atoms"], indices[sel]) and z["psi"].shape[1] == K and "nearest" in z:
                        i = indices[sel]
                        cls[i], psi[i], dist[i], near[i] = z["classes"], z["psi"], z["dist"], z["nearest"]
                        continue
                log(f"annotate: {part} holds other atoms (another run): recomputed")
            log(f"annotate: atoms {s}-{s + len(sel) - 1} of {len(ok)} ({len(sel) * ref.n_train} distances)")
            res = ref.transform(envs.subset(sel), all_coordinates=True, progress=True, exact=exact)
            tmp = parts / f"chunk{k:05d}.tmp.npz"
            np.savez(tmp, atoms=indices[sel], classes=res.classes, psi=res.coordinates, dist=res.ref_distance,
                     nearest=res.nearest)
            os.replace(tmp, part)
            i = indices[sel]
            cls[i], psi[i], dist[i], near[i] = res.classes, res.coordinates, res.ref_distance, res.nearest
    for i, (c, row, r) in (extra_known or {}).items():
        cls[i], psi[i], dist[i], near[i] = c, row, 0.0, r
    with AnnotatedWriter(path) as w:
        w.write(frame, {"giip_class": cls, "giip_dc": psi[:, ref.selected], "giip_ref_distance": dist,
                        "giip_psi": psi, "giip_nearest": near})
    if len(indices):
        shutil.rmtree(str(path) + ".parts", ignore_errors=True)
    return path


ANNOTATE_CHUNK = 500  # atoms per saved chunk of an annotation


def read_all_psi(frame):
    k = 0
    while f"giip_psi{k + 1}" in frame.atoms.arrays:
        k += 1
    return np.column_stack([frame.atoms.arrays[f"giip_psi{j + 1}"] for j in range(k)])


FIGURE_TAG = ""  # --tag: inserted after the system prefix of the figure names


def copy_figure(src, figdir, name):
    os.makedirs(figdir, exist_ok=True)
    if FIGURE_TAG:
        head, _, tail = name.partition("_")
        name = f"{head}_{FIGURE_TAG}_{tail}"
    dst = os.path.join(figdir, name)
    shutil.copyfile(src, dst)
    return dst


# --------------------------------------------------------------------------- NiNb


def ninb_reference(args, work):
    from giip_plugin.reference import ReferenceMap

    if args.ninb_ref:
        return args.ninb_ref
    path = work / "ninb_ref.h5"
    if path.exists():
        return str(path)
    paths = [str(Path(args.ninb_data) / f"{s}.dump") for s in NINB_SAMPLES]
    log(f"NiNb: building a reference of {args.ninb_train} environments from {len(paths)} samples")
    ref = ReferenceMap.from_files(paths, r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign", positive="Ni",
                                  centers=["Ni"], type_names="1=Ni,2=Nb", group="O3", epsilon=1.5,
                                  n_train=args.ninb_train, seed=args.seed, progress=True,
                                  checkpoint=str(path) + ".partial")
    ref.save(path)
    return str(path)


def ninb_annotate(args, work, ref_path):
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ref_path)
    sources = [os.path.basename(s) for s in ref.provenance.get("sources") or []]
    tp = ref.training_provenance
    out = []
    rng = np.random.default_rng(args.seed + 17)
    for s in NINB_SAMPLES:
        path = work / f"ninb_{s}_giip.dump"
        out.append(str(path))
        if path.exists():
            continue
        frame = next(iter_frames(str(Path(args.ninb_data) / f"{s}.dump"), type_names=ref.type_names))
        known = {}
        if f"{s}.dump" in sources:
            fi = sources.index(f"{s}.dump")
            rows = np.flatnonzero(np.asarray(tp["file_index"]) == fi)
            for r in rows:
                known[int(tp["atom_index"][r])] = (int(ref.labels[r]), ref.diffusion.eigenvectors[r], int(r))
        ni = np.flatnonzero(frame.species == "Ni")
        pool = np.setdiff1d(ni, np.fromiter(known, dtype=np.int64, count=len(known)))
        pick = np.sort(rng.choice(pool, size=min(args.ninb_atoms, len(pool)), replace=False))
        log(f"NiNb {s}: {len(known)} training atoms + {len(pick)} random Ni atoms "
            f"({len(pick) * ref.n_train} distances)")
        t0 = time.time()
        annotate(ref, frame, pick, path, extra_known=known, exact=args.exact)
        log(f"NiNb {s}: annotated in {time.time() - t0:.0f} s -> {path}")
    return out


def ninb_analyse(args, work, ref_path, annotated, figdir):
    from giip_plugin.interpret import (Samples, class_populations, collect_samples, density_difference,
                                       difference_test, r2_table)
    from giip_plugin.interpret.figures import (coordinate_labels, fig_density_difference, fig_populations,
                                               fig_quantity_scatter, write_report)
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ref_path)
    res = {"reference": ref_path, "n_train": ref.n_train, "selected": (ref.selected + 1).tolist(),
           "eigenvalues": ref.eigenvalues[:10].tolist(), "llr_r2": ref.r2[:10].tolist(),
           "class_sizes": ref.classes.sizes.tolist(), "class_diameters": ref.classes.diameters.tolist()}
    paper_r2, paper_sel = ref.paper_criterion()
    res["paper_criterion"] = {"r2": paper_r2[:10].tolist(), "selected": (paper_sel + 1).tolist()}
    rep = work / "ninb_report"
    for f in write_report(ref, rep, coords=(2, 3), criterion="paper"):
        copy_figure(f, figdir, "ninb_" + os.path.basename(f))
    # training set alone: weighted Ni fraction straight from the sign weights
    t = ref.training
    w = t.weights[:, 0]
    pos = np.add.reduceat(np.where(w > 0, w, 0.0), t.offsets[:-1])
    tot = np.add.reduceat(np.abs(w), t.offsets[:-1])
    psi = ref.diffusion.eigenvectors
    res["training_r2_psi_vs_frac_Ni"] = [float(np.corrcoef(psi[:, k], pos / tot)[0, 1] ** 2) for k in range(10)]
    # all annotated atoms of the four samples
    per = {s: collect_samples(ref, [path], voronoi=True) for s, path in zip(NINB_SAMPLES, annotated)}
    allpsi = {s: read_all_psi(next(iter_frames(p, type_names=ref.type_names)))[per[s].atom_index]
              for s, p in zip(NINB_SAMPLES, annotated)}
    S = Samples.concatenate([per[s] for s in NINB_SAMPLES])
    P = np.concatenate([allpsi[s] for s in NINB_SAMPLES])
    is_train = np.concatenate([per[s].ref_distance == 0 for s in NINB_SAMPLES])
    labels = [f"dc{j + 1}" for j in range(ref.n_coords)]
    q = {k: v for k, v in S.quantities.items()}
    table = r2_table(S.coordinates, q, labels)
    table_ext = r2_table(S.coordinates[~is_train], {k: v[~is_train] for k, v in q.items()}, labels)
    res["n_atoms"] = len(S)
    res["n_extension"] = int((~is_train).sum())
    res["r2_table_all"] = table.to_dict()
    res["r2_table_extension"] = table_ext.to_dict()
    res["r2_dc1_frac_Ni_all"] = float(table.values[table.quantities.index("frac_Ni"), 0])
    res["r2_dc1_frac_Ni_extension"] = float(table_ext.values[table_ext.quantities.index("frac_Ni"), 0])
    res["r2_psi_vs_frac_Ni_all"] = [float(np.corrcoef(P[:, k], q["frac_Ni"])[0, 1] ** 2) for k in range(10)]
    print("\n=== NiNb glass ===")
    per_file = np.bincount(np.asarray(ref.training_provenance["file_index"]).clip(0)).tolist()
    print(f"reference: {ref.n_train} training environments ({per_file} per sample), {ref.n_classes} classes, "
          f"selected coordinates {res['selected']} (local linear regression), "
          f"{res['paper_criterion']['selected']} (the paper's polynomial-regression criterion); paper 1, 2, 3, 5, 6")
    print("eigenvalue, LLR r^2 (high = new), polynomial r^2 (near 1 = redundant) of psi1..psi10:")
    for k in range(min(10, len(ref.eigenvalues))):
        print(f"  psi{k + 1:<2d} {ref.eigenvalues[k]:8.4f} {ref.r2[k]:8.3f} {paper_r2[k]:8.3f}")
    print(f"annotated atoms: {len(S)} ({res['n_extension']} by Nystrom extension, {int(is_train.sum())} training)")
    print("r^2 of each selected coordinate against each quantity, all annotated atoms:")
    print(table.format(header_extra=[f"psi{int(i) + 1}" for i in ref.selected]))
    print(f"dc1 (psi1) vs Ni fraction of the neighbours: r^2 = {res['r2_dc1_frac_Ni_all']:.3f} (all), "
          f"{res['r2_dc1_frac_Ni_extension']:.3f} (extension atoms only), "
          f"{res['training_r2_psi_vs_frac_Ni'][0]:.3f} (training set); paper 0.97")
    clab = coordinate_labels(ref)
    f = fig_quantity_scatter(S.coordinates[:, 0], q["frac_Ni"], work / "ninb_dc1_fracNi.png", xlabel=clab[0],
                             qlabel="Ni fraction of the neighbours (weighted)", r2=res["r2_dc1_frac_Ni_all"],
                             title=f"NiNb: {len(S)} Ni environments, 4 samples")
    copy_figure(f, figdir, "ninb_dc1_fracNi.png")
    # slow against fast quench in the plane of the next two selected coordinates
    i, j = 1, 2
    fast, slow = per["quench100K"], per["quench10M"]
    dd = density_difference(fast.coordinates[:, [i, j]], slow.coordinates[:, [i, j]], bins=300)
    res["density_fast_slow"] = dd.summary()
    # is the difference more than sampling noise? shuffled quench labels and a bootstrap over atoms
    test = difference_test(fast.coordinates[:, [i, j]], slow.coordinates[:, [i, j]], n_shuffles=200, n_boot=200,
                           bins=60, seed=args.seed + 1)
    res["density_fast_slow"]["test"] = test.summary()
    f = fig_density_difference(dd, work / "ninb_density_slow_minus_fast.png", labels=("fast 1.7e13 K/s", "slow 1.7e11 K/s"),
                               axes=(clab[i], clab[j]))
    copy_figure(f, figdir, "ninb_density_slow_minus_fast.png")
    pops = class_populations([per[s].classes for s in NINB_SAMPLES], ref.n_classes,
                             [f"{s}" for s in NINB_SAMPLES])
    res["populations"] = pops.to_dict()
    f = fig_populations(pops, work / "ninb_class_populations.png",
                        title="NiNb class populations, fastest (quench100K) to slowest (quench10M) quench")
    copy_figure(f, figdir, "ninb_class_populations.png")
    # bootstrap the population differences fast -> slow (atoms resampled within each sample)
    rng = np.random.default_rng(args.seed)
    boot = []
    for _ in range(500):
        fa = np.bincount(rng.choice(fast.classes, len(fast.classes)), minlength=ref.n_classes) / len(fast.classes)
        sl = np.bincount(rng.choice(slow.classes, len(slow.classes)), minlength=ref.n_classes) / len(slow.classes)
        boot.append(sl - fa)
    res["population_change_slow_minus_fast_sd"] = np.std(boot, axis=0).tolist()
    # what the classes are: mean quantities per class, and five-fold (icosahedral) order per sample
    names = ["frac_Ni", "coordination", "voronoi_volume", "voronoi_n5", "voronoi_icosahedral"]
    per_class = {n: [float(np.nanmean(q[n][S.classes == k])) if np.any(S.classes == k) else None
                     for k in range(ref.n_classes)] for n in names}
    res["per_class_means"] = per_class
    res["per_sample_means"] = {s: {n: float(np.nanmean(per[s].quantities[n])) for n in names} for s in NINB_SAMPLES}
    print("mean quantities per class (all annotated atoms):")
    print("class  " + "  ".join(f"{n:>19}" for n in names))
    for k in range(ref.n_classes):
        print(f"{k:>5}  " + "  ".join(f"{per_class[n][k]:>19.3f}" for n in names))
    print("mean quantities per sample (annotated Ni atoms):")
    for s in NINB_SAMPLES:
        print(f"{s:>10}  " + "  ".join(f"{n} {res['per_sample_means'][s][n]:.3f}" for n in names))
    # the environments nearest to the largest excesses of each quench
    for key, at in (("slow_excess", dd.summary()["max_b_over_a_at"]), ("fast_excess", dd.summary()["max_a_over_b_at"])):
        d = np.hypot(S.coordinates[:, i] - at[0], S.coordinates[:, j] - at[1])
        near = np.argsort(d)[:25]
        res[key] = {"at": at, "mean_coordination": float(np.mean(q["coordination"][near])),
                    "mean_frac_Ni": float(np.mean(q["frac_Ni"][near])),
                    "mean_voronoi_volume": float(np.nanmean(q["voronoi_volume"][near])),
                    "classes": np.bincount(S.classes[near], minlength=ref.n_classes).tolist()}
    if args.ninb_symmetry > 0:
        res["symmetry"] = ninb_symmetry(args, ref, annotated, fast, slow, (i, j), res)
    lab20 = ninb_twenty(args, ref, annotated, per, work, figdir, res)
    if args.ninb_hull != "0":
        res["hull"] = ninb_hull(args, ref, annotated, per, S, (i, j), lab20, work, figdir)
    ds = res["density_fast_slow"]
    ts = ds["test"]
    print(f"slow (quench10M) - fast (quench100K) in the plane ({clab[i]}, {clab[j]}): half L1 distance "
          f"{ts['l1_half']:.3f} (labels shuffled: median {ts['null_l1_half_median']:.3f}, p = {ts['p_shuffle']:.3f} "
          f"of {ts['n_shuffles']} shuffles); bootstrap-stable regions hold {100 * ts['significant_mass_b_over_a']:.0f} % "
          f"(slow denser) and {100 * ts['significant_mass_a_over_b']:.0f} % (fast denser) of |difference|")
    print("class populations of the four samples (fastest to slowest):")
    print(pops.format())
    c2 = pops.chi2()
    print(f"chi-square test of equal populations over the four samples: {c2['statistic']:.1f} on {c2['dof']} "
          f"degrees of freedom, p = {c2['p']:.2g}")
    sd = res["population_change_slow_minus_fast_sd"]
    fr = pops.fractions
    print("change slowest - fastest (percentage points, bootstrap s.d.): " +
          ", ".join(f"class {k}: {100 * (fr[3, k] - fr[0, k]):+.1f} +- {100 * sd[k]:.1f}" for k in range(ref.n_classes)))
    return res


SYMMETRY_GROUPS = ("C2", "C3", "C4", "C5", "C6", "D2h", "Td", "I")
HULL_GROUPS = ("C2", "C3", "C4", "C5", "C6", "D2h", "D3h", "Td", "I")


def ninb_twenty(args, ref, annotated, per, work, figdir, res):
    """20 classes for colour: the tree cut at 20 classes, every annotated atom labelled through its
    nearest training environment (giip_nearest); their populations per sample, and the slowest
    sample rendered with OVITO in those colours. Returns the labels per sample."""
    from giip_plugin.interpret import class_populations
    from giip_plugin.interpret.render import render_values
    from giip_plugin.io import iter_frames

    K = min(20, ref.n_train)
    cut = ref.clustering.labels(n_classes=K)
    lab = {}
    for s, path in zip(NINB_SAMPLES, annotated):
        frame = next(iter_frames(path, type_names=ref.type_names))
        near = np.asarray(frame.atoms.arrays["giip_nearest"]).astype(np.int64).reshape(-1)
        idx = per[s].atom_index
        if np.any(near[idx] < 0) or not np.array_equal(ref.labels[near[idx]], per[s].classes):
            raise RuntimeError(f"{path}: giip_nearest does not give the annotated classes (an annotation from "
                               "an older run? delete it to recompute)")
        lab[s] = cut[near[idx]]
        if s == NINB_SAMPLES[-1]:  # the annotated Ni of a 6 A slab through the slowest sample, seen along z
            full = np.full(frame.natoms, -1)
            full[idx] = lab[s]
            z = frame.atoms.positions[:, 2]
            slab = (np.abs(z - np.median(z)) < 3.0) & (full >= 0)
            f, _ = render_values(frame.atoms[slab], full[slab], work / "ninb_20_classes.png", categorical=True,
                                 camera_dir=(0, 0, -1))
            copy_figure(f, figdir, "ninb_20_classes.png")
    pops = class_populations([lab[s] for s in NINB_SAMPLES], K, list(NINB_SAMPLES))
    c2 = pops.chi2()
    fr = pops.fractions
    res["twenty_classes"] = {"n_classes": K, "populations": pops.to_dict(), "chi2": c2,
                             "slow_minus_fast_points": (100 * (fr[-1] - fr[0])).tolist(),
                             "sizes_training": np.bincount(cut, minlength=K).tolist()}
    print(f"the tree cut at {K} classes (for colour; each atom through its nearest training environment): "
          f"chi-square over the four samples {c2['statistic']:.1f} on {c2['dof']} degrees of freedom, "
          f"p = {c2['p']:.2g}")
    return lab


def ninb_hull(args, ref, annotated, per, S, plane, lab20, work, figdir):
    """Environments around the hull of the plane (dc2, dc3): K points evenly spaced along the hull
    of all annotated atoms, the atom nearest each drawn around the plane (coloured by the 20
    classes), and, for the N atoms nearest each point, the symmetry measures of HULL_GROUPS
    against M random atoms (z = difference over its standard error), their mean coordination and
    Ni fraction, and the share of the slowest quench among the 1 % of atoms nearest the point."""
    from giip_plugin.interpret.figures import coordinate_labels, fig_hull_exemplars, hull_points
    from giip_plugin.interpret.symmetry import symmetry_measures
    from giip_plugin.io import iter_frames

    K, N, M = (int(v) for v in args.ninb_hull.split(","))
    i, j = plane
    xy = S.coordinates[:, [i, j]]
    sid = np.concatenate([np.full(len(per[s]), k) for k, s in enumerate(NINB_SAMPLES)])
    row_atom = np.concatenate([per[s].atom_index for s in NINB_SAMPLES])
    pts, poly = hull_points(xy, K)
    regions = [np.argsort(np.hypot(*(xy - p).T))[:N] for p in pts]
    base = np.random.default_rng(args.seed + 23).choice(len(xy), size=min(M, len(xy)), replace=False)
    rows = np.unique(np.concatenate(regions + [base]))
    frames = {k: next(iter_frames(p, type_names=ref.type_names)) for k, p in enumerate(annotated)}
    meas = {g: np.zeros(len(rows)) for g in HULL_GROUPS}
    envs_of = {}
    t0 = time.time()
    for k in np.unique(sid[rows]):
        sel = np.flatnonzero(sid[rows] == k)
        fr = frames[int(k)]
        envs = ref.compute_environments(fr.atoms, indices=row_atom[rows[sel]], species=fr.species)
        m = symmetry_measures(envs, sigma=args.ninb_symmetry_sigma, groups=HULL_GROUPS, species=False,
                              progress=True)
        for g in HULL_GROUPS:
            meas[g][sel] = m[g]
        for q, r in enumerate(rows[sel]):
            envs_of[int(r)] = envs[q]
    log(f"NiNb hull: symmetry measures of {len(rows)} atoms in {time.time() - t0:.0f} s")
    pos = {int(r): q for q, r in enumerate(rows)}
    bvals = {g: meas[g][[pos[int(r)] for r in base]] for g in HULL_GROUPS}
    q = S.quantities
    n_near = max(N, len(xy) // 100)
    out = {"points": pts.tolist(), "hull": poly.tolist(), "n_per_region": N, "n_baseline": len(base),
           "groups": list(HULL_GROUPS), "sigma": args.ninb_symmetry_sigma,
           "baseline": {g: float(bvals[g].mean()) for g in HULL_GROUPS}, "regions": []}
    titles, exemplars = [], []
    for k, (p, reg) in enumerate(zip(pts, regions)):
        vals = {g: meas[g][[pos[int(r)] for r in reg]] for g in HULL_GROUPS}
        z = {g: float((vals[g].mean() - bvals[g].mean()) /
                      np.sqrt(vals[g].var(ddof=1) / len(reg) + bvals[g].var(ddof=1) / len(base)))
             for g in HULL_GROUPS}
        top = max(z, key=z.get)
        near = np.argsort(np.hypot(*(xy - p).T))[:n_near]
        ex = int(reg[0])
        out["regions"].append({
            "point": p.tolist(), "mean": {g: float(vals[g].mean()) for g in HULL_GROUPS}, "z": z, "top_group": top,
            "coordination": float(q["coordination"][reg].mean()), "frac_Ni": float(q["frac_Ni"][reg].mean()),
            "share_slowest_of_fastest_and_slowest": float(np.mean(sid[near][np.isin(sid[near], [0, 3])] == 3)),
            "n_nearest_for_share": int(n_near),
            "classes20": np.bincount(np.concatenate([lab20[s] for s in NINB_SAMPLES])[reg], minlength=20).tolist(),
            "exemplar": {"sample": NINB_SAMPLES[int(sid[ex])], "atom": int(row_atom[ex]),
                         **{g: float(meas[g][pos[ex]]) for g in HULL_GROUPS}}})
        titles.append(f"{k}: {top} z = {z[top]:+.1f}")
        exemplars.append(envs_of[ex])
    clab = coordinate_labels(ref)
    allc = np.concatenate([lab20[s] for s in NINB_SAMPLES])
    f = fig_hull_exemplars(ref, xy, pts, exemplars, work / "ninb_hull_exemplars.png", labels=(clab[i], clab[j]),
                           titles=titles, colour=allc,
                           title=f"NiNb: {len(xy)} Ni atoms in ({clab[i]}, {clab[j]}), coloured by 20 classes; the "
                                 f"environment nearest each of {K} hull points, with its most raised symmetry")
    copy_figure(f, figdir, "ninb_hull_exemplars.png")
    # the share of the slowest quench in the whole plane, for comparison with each region's share
    both = np.isin(sid, [0, 3])
    out["share_slowest_overall"] = float(np.mean(sid[both] == 3))
    print(f"around the hull of ({clab[i]}, {clab[j]}): symmetry measures (positions, sigma "
          f"{args.ninb_symmetry_sigma:g} A) of the {N} atoms nearest each of {K} hull points against {len(base)} "
          f"random atoms (z); share of the slowest quench nearby (overall {out['share_slowest_overall']:.3f})")
    print("point  (x, y)            coord  frac_Ni  slow share  " + "  ".join(f"{g:>5}" for g in HULL_GROUPS))
    for k, r in enumerate(out["regions"]):
        print(f"{k:>5}  ({r['point'][0]:+.2f}, {r['point'][1]:+.2f})  {r['coordination']:6.2f}  {r['frac_Ni']:7.3f}  "
              f"{r['share_slowest_of_fastest_and_slowest']:10.3f}  " + "  ".join(f"{r['z'][g]:+5.1f}" for g in HULL_GROUPS))
    return out



def ninb_symmetry(args, ref, annotated, fast, slow, plane, res):
    """The continuous symmetry measure (interpret/symmetry.py) of ``--ninb-symmetry`` random Ni
    atoms of the fastest and the slowest sample: the mean per quench with a bootstrap error and a
    Welch test, the r^2 of each measure against the two plane coordinates, and the mean measure of
    the 25 sampled atoms nearest to each quench's largest excess in the plane."""
    from scipy.stats import ttest_ind

    from giip_plugin.interpret.symmetry import symmetry_measures
    from giip_plugin.io import iter_frames

    rng = np.random.default_rng(args.seed + 5)
    out = {"groups": list(SYMMETRY_GROUPS), "n_per_sample": int(args.ninb_symmetry),
           "weights": args.ninb_symmetry_weights, "sigma": args.ninb_symmetry_sigma}
    data = {}
    for name, smp, path in (("fast", fast, annotated[0]), ("slow", slow, annotated[-1])):
        frame = next(iter_frames(path, type_names=ref.type_names))
        pick = np.sort(rng.choice(len(smp.atom_index), size=min(args.ninb_symmetry, len(smp.atom_index)),
                                  replace=False))
        envs = ref.compute_environments(frame.atoms, indices=smp.atom_index[pick], species=frame.species)
        t0 = time.time()
        meas = symmetry_measures(envs, sigma=args.ninb_symmetry_sigma, groups=SYMMETRY_GROUPS, progress=True,
                                 species=args.ninb_symmetry_weights == "sign")
        log(f"NiNb symmetry measures of {len(pick)} {name}-quench atoms: {time.time() - t0:.0f} s")
        data[name] = (meas, smp.coordinates[pick][:, list(plane)])
    boot = np.random.default_rng(args.seed + 6)
    for g in SYMMETRY_GROUPS:
        a, b = data["fast"][0][g], data["slow"][0][g]
        diffs = [b[boot.integers(0, len(b), len(b))].mean() - a[boot.integers(0, len(a), len(a))].mean()
                 for _ in range(500)]
        xy = np.concatenate([data["fast"][1], data["slow"][1]])
        v = np.concatenate([a, b])
        r2 = [float(np.corrcoef(xy[:, k], v)[0, 1] ** 2) for k in range(2)]
        out[g] = {"fast_mean": float(a.mean()), "slow_mean": float(b.mean()), "slow_minus_fast": float(b.mean() - a.mean()),
                  "bootstrap_sd": float(np.std(diffs)), "welch_p": float(ttest_ind(b, a, equal_var=False).pvalue),
                  "r2_plane": r2}
        for key in ("slow_excess", "fast_excess"):
            at = res[key]["at"]
            near = np.argsort(np.hypot(xy[:, 0] - at[0], xy[:, 1] - at[1]))[:25]
            out[g][key + "_mean"] = float(v[near].mean())
    print(f"symmetry measures (GIIP, {args.ninb_symmetry_weights} weights, sigma {args.ninb_symmetry_sigma:g} A) of "
          f"{args.ninb_symmetry} Ni atoms per quench:")
    print("group   fast    slow   slow-fast (bootstrap sd, Welch p)   r^2 vs plane   at slow excess   at fast excess")
    for g in SYMMETRY_GROUPS:
        o = out[g]
        print(f"{g:>5}  {o['fast_mean']:.3f}  {o['slow_mean']:.3f}  {o['slow_minus_fast']:+.4f} ({o['bootstrap_sd']:.4f}, "
              f"p = {o['welch_p']:.2g})   {o['r2_plane'][0]:.3f} {o['r2_plane'][1]:.3f}        "
              f"{o['slow_excess_mean']:.3f}            {o['fast_excess_mean']:.3f}")
    return out


# --------------------------------------------------------------------------- 2D LJ


def lj_structure(args, work):
    nx, ny, nhalf, nsteps = (int(v) for v in args.lj_size.split(","))
    out = work / "lj2d"
    dump = out / "lj2d_dislocations.dump"
    if not dump.exists():
        sys.path.insert(0, str(ROOT / "lammps_examples"))
        from run_example import run_example

        log(f"LJ: LAMMPS run nx={nx} ny={ny} nhalf={nhalf} nsteps={nsteps}")
        run_example("lj2d_dislocations", variables={"nx": nx, "ny": ny, "nhalf": nhalf, "nsteps": nsteps},
                    out=out)
    reference = out / "lj2d_reference.dump"
    if not reference.exists():
        # a run made before the input wrote the strain reference: run it again (deterministic: the
        # same final frame, checked) and keep the reference of the perfect-lattice sites
        import filecmp

        sys.path.insert(0, str(ROOT / "lammps_examples"))
        from run_example import run_example

        again = out / "rerun_for_reference"
        log("LJ: LAMMPS run again for the strain reference (perfect-lattice sites)")
        run_example("lj2d_dislocations", variables={"nx": nx, "ny": ny, "nhalf": nhalf, "nsteps": nsteps},
                    out=again)
        if filecmp.cmp(again / "lj2d_dislocations.dump", dump, shallow=False):
            os.replace(again / "lj2d_reference.dump", reference)
        else:
            log("LJ: the second run's final frame differs from the first: no strain reference")
    return str(dump)


def lj_reference(args, work, dump):
    from giip_plugin.environments import LocalEnvironments, SpeciesEncoding
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    if args.lj_ref:
        return args.lj_ref
    path = work / "lj2d_ref.h5"
    if path.exists():
        return str(path)
    common = dict(sigma=0.5, group="O2", epsilon=1.0, max_diameter=1.0, progress=True,
                  checkpoint=str(path) + ".partial")
    if args.lj_select_lowest is not None or args.lj_select_highest is not None:
        log("LJ: building the reference (lowest/highest c_pe)")
        ref = ReferenceMap.from_files([dump], r_inner=1.3, r_outer=1.75, encoding="none", select_by="c_pe",
                                      select_lowest=args.lj_select_lowest or 0,
                                      select_highest=args.lj_select_highest or 0, **common)
    else:
        frame = next(iter_frames(dump))
        pe = frame.atoms.arrays["c_pe"]
        n = len(pe)
        n1 = int(round(args.lj_lowest_frac * n))
        n2 = int(round(args.lj_highest_frac * n))
    if args.lj_select_lowest is None and args.lj_select_highest is None and not args.lj_train:
        log(f"LJ: building the reference from the {n1} lowest + {n2} highest c_pe of {n} atoms")
        ref = ReferenceMap.from_files([dump], r_inner=1.3, r_outer=1.75, encoding="none", select_by="c_pe",
                                      select_lowest=n1, select_highest=n2, **common)
    elif args.lj_select_lowest is None and args.lj_select_highest is None:
        order = np.argsort(pe, kind="stable")
        pool_idx = np.concatenate([order[:n1], order[n - n2:]])
        le = LocalEnvironments(1.3, 1.75, SpeciesEncoding("none", tuple(sorted(set(frame.species.tolist())))), dim=2)
        pool = le.compute(frame.atoms, indices=pool_idx)
        log(f"LJ: building the reference: {args.lj_train} drawn from the {n1} lowest + {n2} highest c_pe of {n} atoms")
        ref = ReferenceMap.build(pool, environments=le, n_train=args.lj_train, seed=args.seed, **common)
        ref.provenance["selection"] = {"method": "random draw from the lowest/highest c_pe", "lowest": n1,
                                       "highest": n2, "n_available": n, "n_train_requested": args.lj_train,
                                       "seed": args.seed}
    ref.save(path)
    return str(path)


def annotate_frame(args, ref_path, dump, path, *, n_random=None, window=None, frame_index=0, name="LJ"):
    """Annotate one frame of ``dump`` (its ``frame_index``-th, -1: the last) into ``path``: every
    atom, or (``n_random`` not None) the training atoms of that frame with their own values (exact,
    free) and ``n_random`` other atoms at random, plus every atom inside ``window``."""
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    if path.exists():
        return str(path)
    ref = ReferenceMap.load(ref_path)
    frames = list(iter_frames(dump, type_names=ref.type_names))
    fi = frame_index % len(frames)
    frame = frames[fi]
    idx = np.arange(frame.natoms)
    known = {}
    if n_random is not None:
        # the training atoms of this frame carry their own values; plus a random subset of the others
        tp = ref.training_provenance
        ai = np.asarray(tp.get("atom_index", []))
        fr = np.asarray(tp.get("frame_index", np.zeros(len(ai), dtype=np.int64)))
        if len(ai) == ref.n_train and np.all(ai >= 0):
            known = {int(a): (int(ref.labels[r]), ref.diffusion.eigenvectors[r], r)
                     for r, a in enumerate(ai) if fr[r] == fi}
        rest = np.setdiff1d(idx, np.fromiter(known, dtype=np.int64, count=len(known)))
        idx = np.sort(np.random.default_rng(args.seed).choice(rest, size=min(n_random, len(rest)), replace=False))
        if window:
            inside = np.flatnonzero(window_mask(frame.atoms.positions, window))
            idx = np.union1d(idx, np.setdiff1d(inside, np.fromiter(known, dtype=np.int64, count=len(known))))
    log(f"{name}: annotating {len(idx)} atoms ({len(idx) * ref.n_train} distances) and {len(known)} training atoms")
    t0 = time.time()
    annotate(ref, frame, idx, path, extra_known=known, exact=args.exact)
    log(f"{name}: annotated in {time.time() - t0:.0f} s -> {path}")
    return str(path)


def lj_annotate(args, work, ref_path, dump):
    return annotate_frame(args, ref_path, dump, work / "lj2d_giip.dump", n_random=args.lj_atoms, window=args.lj_window)


def window_mask(positions, window):
    """Atoms inside ``window`` = "x0,x1,y0,y1", fractions of the bounding box of the atoms."""
    x0, x1, y0, y1 = (float(v) for v in str(window).split(","))
    lo, hi = positions[:, :2].min(axis=0), positions[:, :2].max(axis=0)
    f = (positions[:, :2] - lo) / (hi - lo)
    return (f[:, 0] >= x0) & (f[:, 0] <= x1) & (f[:, 1] >= y0) & (f[:, 1] <= y1)


def atomic_strain_of_frame(frame, strain) -> np.ndarray:
    """The volumetric strain of every atom of ``frame`` (OVITO, against ``strain["reference"]``)."""
    from giip_plugin.interpret.quantities import atomic_strain
    from giip_plugin.io import iter_frames

    reference = next(iter_frames(strain["reference"])).atoms
    return atomic_strain(frame.atoms, reference, float(strain["cutoff"]), frame.dim)["volumetric_strain"]


def lj_analyse(args, work, ref_path, annotated, figdir):
    from giip_plugin.interpret import best_direction, collect_samples, r2_table
    from giip_plugin.interpret.figures import coordinate_labels, fig_direction, fig_quantity_scatter, write_report
    from giip_plugin.interpret.render import render_values
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ref_path)
    res = {"reference": ref_path, "n_train": ref.n_train, "n_classes": ref.n_classes,
           "class_sizes": ref.classes.sizes.tolist(), "class_diameters": ref.classes.diameters.tolist(),
           "n_classes_for_max_diameter_1": int(ref.clustering.n_classes_for(1.0)),
           "selected": (ref.selected + 1).tolist(), "eigenvalues": ref.eigenvalues[:10].tolist(),
           "llr_r2": ref.r2[:10].tolist(), "training_selection": ref.provenance.get("selection")}
    paper_r2, paper_sel = ref.paper_criterion()
    res["paper_criterion"] = {"r2": paper_r2[:10].tolist(), "selected": (paper_sel + 1).tolist()}
    rep = work / "lj2d_report"
    for f in write_report(ref, rep, coords=(1, 2)):
        copy_figure(f, figdir, "lj2d_" + os.path.basename(f))
    strain_ref = work / "lj2d" / "lj2d_reference.dump"
    strain = {"reference": str(strain_ref), "cutoff": ref.environments.r_outer} if strain_ref.exists() else None
    S = collect_samples(ref, [annotated], voronoi=True, strain=strain)
    frame = next(iter_frames(annotated))
    P = read_all_psi(frame)[S.atom_index]
    labels = [f"dc{j + 1}" for j in range(ref.n_coords)]
    table = r2_table(S.coordinates, S.quantities, labels)
    res["n_atoms"] = len(S)
    res["r2_table"] = table.to_dict()
    clab = coordinate_labels(ref)
    coord = S.quantities["coordination"]
    d12 = best_direction(S.coordinates[:, :2], coord)
    dpsi12 = best_direction(P[:, :2], coord)
    res["direction_dc1_dc2_coordination"] = d12.to_dict()
    res["direction_psi1_psi2_coordination"] = dpsi12.to_dict()
    # without the free-surface atoms (coordination 3-4): coordination > 4.5
    interior = coord > 4.5
    res["direction_dc1_dc2_coordination_no_surface"] = best_direction(S.coordinates[interior, :2], coord[interior]).to_dict()
    print("\n=== 2D Lennard-Jones crystal ===")
    sel = res["training_selection"] or {}
    if sel.get("method") == "column":
        how = f"the {sel.get('lowest')} lowest + {sel.get('highest')} highest of column {sel.get('column')}"
    elif "lowest" in sel:
        how = f"drawn at random from the {sel.get('lowest')} lowest + {sel.get('highest')} highest c_pe"
    else:
        how = str(sel)
    print(f"{frame.natoms} atoms; reference of {ref.n_train} training environments ({how}); "
          f"selected coordinates {res['selected']}")
    print(f"classes with diameter <= 1 atom: {ref.n_classes} (sizes {ref.classes.sizes.tolist()}); paper: 13")
    print(f"eigenvalues {np.round(ref.eigenvalues[:8], 3).tolist()}; kept coordinates {res['selected']} (local linear "
          f"regression), {res['paper_criterion']['selected']} (the paper's polynomial criterion, r^2 "
          f"{np.round(paper_r2[:8], 3).tolist()})")
    print("r^2 of each selected coordinate against each quantity:")
    print(table.format(header_extra=[f"psi{int(i) + 1}" for i in ref.selected]))
    print(f"best direction for the coordination in the plane (dc1, dc2): {d12.angle_deg:.1f} deg, r^2 = {d12.r2:.3f} "
          f"(dc1 alone {d12.r2_axes[0]:.3f}); orthogonal r^2 = {d12.r2_orthogonal:.3f}; paper 0.93")
    print(f"  same in the plane (psi1, psi2) of the first two eigenvectors: r^2 = {dpsi12.r2:.3f}")
    print(f"  atoms with coordination > 4.5 only (no surface atoms): r^2 = "
          f"{res['direction_dc1_dc2_coordination_no_surface']['r2']:.3f}")
    f = fig_direction(S.coordinates[:, :2], coord, d12, work / "lj2d_direction_coordination.png",
                      labels=(clab[0], clab[1]), qlabel="coordination (smooth)",
                      title=f"2D LJ: best direction for coordination, $r^2$ = {d12.r2:.3f}")
    copy_figure(f, figdir, "lj2d_direction_coordination.png")
    f = fig_quantity_scatter(d12.project(S.coordinates[:, :2]), coord, work / "lj2d_projection_coordination.png",
                             xlabel="projection on the best direction", qlabel="coordination (smooth)", r2=d12.r2)
    copy_figure(f, figdir, "lj2d_projection_coordination.png")
    if strain is not None:
        # the orthogonal direction beta' against the atomic volumetric strain (OVITO's atomic strain
        # modifier against the perfect-lattice sites, neighbours within r_outer)
        vs = S.quantities["volumetric_strain"]
        ok = np.isfinite(vs)
        beta = d12.project_orthogonal(S.coordinates[:, :2])
        r2_beta = float(np.corrcoef(beta[ok], vs[ok])[0, 1] ** 2) if ok.sum() > 2 else float("nan")
        r2_beta_bulk = (float(np.corrcoef(beta[ok & interior], vs[ok & interior])[0, 1] ** 2)
                        if (ok & interior).sum() > 2 else float("nan"))
        dvs = best_direction(S.coordinates[ok, :2], vs[ok])
        res["volumetric_strain"] = {
            "cutoff": float(strain["cutoff"]), "atoms": int(ok.sum()), "r2_orthogonal_direction": r2_beta,
            "r2_orthogonal_direction_no_surface": r2_beta_bulk, "best_direction": dvs.to_dict(),
            "angle_from_coordination_direction_deg": float((dvs.angle_deg - d12.angle_deg + 180) % 360 - 180),
            "percentiles_1_50_99": np.percentile(vs[ok], [1, 50, 99]).tolist()}
        print(f"orthogonal direction (beta') against the atomic volumetric strain (OVITO, perfect-lattice "
              f"reference, cutoff {strain['cutoff']}): r^2 = {r2_beta:.3f} ({r2_beta_bulk:.3f} without the surface "
              f"atoms); the best direction for the strain: {dvs.angle_deg:.1f} deg, r^2 = {dvs.r2:.3f}, "
              f"{res['volumetric_strain']['angle_from_coordination_direction_deg']:.1f} deg from the coordination's")
        f = fig_quantity_scatter(beta[ok], vs[ok], work / "lj2d_orthogonal_volumetric_strain.png",
                                 xlabel="projection on the orthogonal direction", qlabel="atomic volumetric strain",
                                 r2=r2_beta)
        copy_figure(f, figdir, "lj2d_orthogonal_volumetric_strain.png")
        # the rendering colours every atom: reuse the analysed atoms' strain when they are all of
        # them (the default, every atom annotated), compute the frame's otherwise
        if len(S) == frame.natoms and np.array_equal(np.sort(S.atom_index), np.arange(frame.natoms)):
            strain_all = np.empty(frame.natoms)
            strain_all[S.atom_index] = vs
        else:
            strain_all = atomic_strain_of_frame(frame, strain)
        lo, hi = np.percentile(strain_all[np.isfinite(strain_all)], [1, 99])
        m = max(abs(lo), abs(hi))
        png, _ = render_values(frame.atoms, strain_all, work / "lj2d_volumetric_strain_ovito.png", limits=(-m, m),
                               size=(1400, 1400) if frame.natoms >= 10000 else (900, 900), radius=0.55)
        copy_figure(png, figdir, "lj2d_volumetric_strain_ovito.png")
        res["render_limits_lj2d_volumetric_strain_ovito"] = [float(-m), float(m)]
    size = (900, 900) if frame.natoms < 10000 else (1400, 1400)
    bulk = coord > 5.5  # colour scales from the bulk-like atoms (the surface atoms would saturate them)
    for name, direction, xy in (("lj2d_orthogonal_ovito.png", d12, S.coordinates[:, :2]),
                                ("lj2d_orthogonal_psi12_ovito.png", dpsi12, P[:, :2])):
        vals = direction.project_orthogonal(xy)
        lo, hi = np.percentile(vals[bulk], [1, 99])
        c = np.median(vals[bulk])
        m = max(hi - c, c - lo)
        ortho = np.full(frame.natoms, np.nan)
        ortho[S.atom_index] = vals
        png, _ = render_values(frame.atoms, ortho, work / name, limits=(c - m, c + m), size=size, radius=0.55)
        copy_figure(png, figdir, name)
        res[f"render_limits_{name[:-4]}"] = [float(c - m), float(c + m)]
        # the window with the dislocations (default: the middle of the crystal), enlarged
        inside = window_mask(frame.atoms.positions, args.lj_window or "0.25,0.75,0.25,0.75")
        zoom = work / name.replace("_ovito.png", "_zoom.png")
        render_values(frame.atoms[inside], ortho[inside], zoom, limits=(c - m, c + m), size=(900, 900), radius=0.55)
        copy_figure(zoom, figdir, os.path.basename(zoom))
    along = np.full(frame.natoms, np.nan)
    along[S.atom_index] = d12.project(S.coordinates[:, :2])
    png, _ = render_values(frame.atoms, along, work / "lj2d_best_ovito.png", size=size, radius=0.55,
                           symmetric=False, cmap="Viridis")
    copy_figure(png, figdir, "lj2d_best_ovito.png")
    return res


# --------------------------------------------------------------------------- silica

# First-shell environments of silica (chosen from the partial pair distributions of the quenched
# glass, not fitted to any result: Si-O bonds at 1.62 A with the first minimum of g_SiO near 2.3 A,
# the nearest O-O at 2.6 A and Si-Si at 3.1 A): weight 1 below 2.0 A, spline to 0 at 2.3 A, so a Si
# sees its O and an O its Si; sigma 0.6 A (0.37 of the bond, the paper's NiNb ratio 1 A / 2.7 A);
# vector species, O(3), the project's automatic epsilon, classes no wider than one atom (the
# paper's criterion for the 2D crystal).
SILICA = dict(r_inner=2.0, r_outer=2.3, sigma=0.6)
SILICA_TYPES = "1=Si,2=O"


def silica_structure(args, work):
    n, rate = args.silica_size.split(",")
    out = work / "silica"
    dump = out / "silica_quench.dump"
    if not dump.exists():
        sys.path.insert(0, str(ROOT / "lammps_examples"))
        from run_example import run_example

        log(f"silica: LAMMPS melt-quench n={n} rate={rate} K/ps ({24 * int(n) ** 3} atoms)")
        run_example("silica_quench", variables={"n": int(n), "rate": float(rate)}, out=out,
                    omp=args.threads or os.cpu_count() or 1)
    return str(dump)


def silica_reference(args, work, dump):
    from giip_plugin.reference import ReferenceMap

    if args.silica_ref:
        return args.silica_ref
    path = work / "silica_ref.h5"
    if path.exists():
        return str(path)
    log(f"silica: building a reference of {args.silica_train} Si- and O-centred environments (last frame)")
    ref = ReferenceMap.from_files([dump], encoding="vector", type_names=SILICA_TYPES, group="O3", frames="-1",
                                  n_train=args.silica_train, seed=args.seed, max_diameter=1.0, n_eigenpairs=30,
                                  progress=True, checkpoint=str(path) + ".partial", **SILICA)
    ref.save(path)
    return str(path)


def silica_annotate(args, work, ref_path, dump):
    return annotate_frame(args, ref_path, dump, work / "silica_giip.dump", n_random=args.silica_atoms,
                          frame_index=-1, name="silica")


def environment_kinds(species, coordination) -> np.ndarray:
    """``"Si4"``, ``"O2"``, ...: centre species and rounded (smooth) coordination."""
    return np.array([f"{s}{int(round(c))}" for s, c in zip(species, coordination)])


def r2_of_columns(X, q) -> list:
    """r^2 of ``q`` against each column of ``X`` (interpret.stats.r2: non-finite pairs dropped), 0
    where it is undefined (a constant column)."""
    from giip_plugin.interpret.stats import r2

    out = [r2(X[:, k], q) for k in range(X.shape[1])]
    return [v if np.isfinite(v) else 0.0 for v in out]


def silica_species_maps(ref, centre_names, kinds, angle, link: float = 6.0) -> dict:
    """A diffusion map per centre species from the sub-blocks of the reference's training matrix.

    Si- and O-centred first shells share no neighbour species, so their distance is
    sqrt(<A,A> + <B,B>) (about 2.4 atoms) against a kernel scale of a few hundredths: one map of
    both is a disconnected graph whose leading eigenvectors only say which component a point is in.
    For each species: the automatic epsilon of its sub-block, the components of its kernel graph
    (edges where the weight exp(-d^2 / 2 eps^2) exceeds exp(-link^2 / 2), i.e. d < link eps), the
    diffusion map of the largest component, its parsimonious coordinates, and the r^2 of each
    coordinate against the bond angle at the centre (Si-O-Si at an oxygen, O-Si-O at a silicon).
    No distance is computed again."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    from giip_plugin.reference.diffusion import DiffusionMap, auto_epsilon
    from giip_plugin.reference.regression import local_linear_regression_r2, select_parsimonious

    D = np.asarray(ref.distances)
    out = {}
    for sp in ("O", "Si"):
        idx = np.flatnonzero(centre_names == sp)
        if len(idx) < 10:
            continue
        Ds = D[np.ix_(idx, idx)]
        eps, _ = auto_epsilon(Ds)
        n_comp, comp = connected_components(csr_matrix(Ds < link * eps), directed=False)
        big = np.flatnonzero(comp == np.bincount(comp).argmax())
        sub = np.ix_(big, big)
        dmap = DiffusionMap.fit(Ds[sub], epsilon=eps, n_eigenpairs=20)
        llr = local_linear_regression_r2(dmap.eigenvectors, dmap.eigenvalues)
        sel = select_parsimonious(dmap.eigenvalues, llr.residuals)
        a = angle[idx][big]
        r2 = r2_of_columns(dmap.eigenvectors, a)
        best = int(np.argmax(r2))
        ks, cs = np.unique(kinds[idx][big], return_counts=True)
        out[sp] = {"n_environments": int(len(idx)), "epsilon": float(eps), "link": link,
                   "n_components": int(n_comp), "component_sizes": sorted(np.bincount(comp).tolist(), reverse=True)[:10],
                   "largest_component": int(len(big)), "component_kinds": {str(k): int(v) for k, v in zip(ks, cs)},
                   "eigenvalues": dmap.eigenvalues[:12].tolist(), "llr_r2": (llr.residuals[:12] ** 2).tolist(),
                   "selected": (np.asarray(sel) + 1).tolist(), "angle_r2_per_psi": r2, "best_psi": best + 1,
                   "best_r2": r2[best], "best_is_selected": bool(best in set(np.asarray(sel).tolist())),
                   "angle_mean": float(np.nanmean(a))}
    return out


def silica_analyse(args, work, ref_path, annotated, figdir):
    from giip_plugin.interpret import collect_samples
    from giip_plugin.interpret.figures import fig_quantity_scatter, write_report
    from giip_plugin.interpret.quantities import neighbour_quantities
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ref_path)
    # the annotated dump holds LAMMPS type numbers: read it with the reference's type names
    frame = next(iter_frames(annotated, type_names=ref.type_names))
    names = np.asarray(frame.species).astype(str)
    res = {"reference": ref_path, "n_atoms": frame.natoms, "n_train": ref.n_train, "parameters": SILICA,
           "epsilon": float(ref.diffusion.epsilon), "n_classes": ref.n_classes,
           "class_sizes": ref.classes.sizes.tolist(), "class_diameters": ref.classes.diameters.tolist(),
           "selected": (ref.selected + 1).tolist(), "eigenvalues": ref.eigenvalues[:12].tolist(),
           "llr_r2": ref.r2[:12].tolist()}
    paper_r2, paper_sel = ref.paper_criterion()
    res["paper_criterion"] = {"r2": paper_r2[:12].tolist(), "selected": (paper_sel + 1).tolist()}
    # what each class is: centre species x coordination of its training environments
    tp = ref.training_provenance
    ai = np.asarray(tp["atom_index"])
    q_train = neighbour_quantities(frame.atoms, ref.environments, ai, names, species=["Si", "O"])
    kinds_train = environment_kinds(names[ai], q_train["coordination"])
    res["kinds_train"] = {str(k): int(v) for k, v in zip(*np.unique(kinds_train, return_counts=True))}
    classes = []
    for c in range(ref.n_classes):
        m = ref.labels == c
        ks, cs = np.unique(kinds_train[m], return_counts=True)
        ang = q_train["bond_angle"][m]
        classes.append({"class": c, "size": int(m.sum()), "diameter": float(ref.classes.diameters[c]),
                        "kinds": {str(k): int(v) for k, v in zip(ks, cs)},
                        "mean_bond_angle": float(np.nanmean(ang)) if np.isfinite(ang).any() else None})
    res["classes"] = classes
    five = ref.clustering.labels(n_classes=5)
    res["five_classes"] = [{"size": int((five == c).sum()),
                            "kinds": {str(k): int(v) for k, v in zip(*np.unique(kinds_train[five == c], return_counts=True))}}
                           for c in range(5)]
    # the Si-O-Si angle at the bridging oxygens (O with two Si) against every eigen-coordinate
    S = collect_samples(ref, [annotated], voronoi=False)
    P = read_all_psi(frame)[S.atom_index]
    kinds = environment_kinds(names[S.atom_index], S.quantities["coordination"])
    bridging = kinds == "O2"
    ang = S.quantities["bond_angle"][bridging]
    if bridging.sum() < 3:
        raise ValueError(f"only {int(bridging.sum())} analysed bridging oxygens (kind O2; kinds found: "
                         f"{sorted(set(kinds.tolist()))}): too few for a correlation")
    ok = np.isfinite(ang)
    Pb, ang = P[bridging][ok], ang[ok]
    r2s = r2_of_columns(Pb, ang)
    best = int(np.argmax(r2s))
    res["si_o_si"] = {"bridging_oxygens": int(bridging.sum()), "angle_mean": float(ang.mean()),
                      "angle_percentiles_5_50_95": np.percentile(ang, [5, 50, 95]).tolist(),
                      "r2_per_psi": r2s, "best_psi": best + 1, "best_r2": r2s[best],
                      "best_is_selected": bool(best in set(ref.selected.tolist()))}
    res["species_maps"] = silica_species_maps(ref, names[ai], kinds_train, q_train["bond_angle"])
    si4 = kinds == "Si4"
    res["kinds_all"] = {str(k): int(v) for k, v in zip(*np.unique(kinds, return_counts=True))}
    res["o_si_o_angle_si4_mean"] = float(np.nanmean(S.quantities["bond_angle"][si4]))

    print("\n=== Silica glass (Vashishta) ===")
    print(f"{frame.natoms} atoms; reference of {ref.n_train} environments (kinds: {res['kinds_train']}); "
          f"epsilon {res['epsilon']:.3g}")
    print(f"complete-linkage classes no wider than 1 atom: {ref.n_classes} (sizes {ref.classes.sizes.tolist()}); "
          f"the talk: 5 (3297 / 1636 / 37 / 28 / 2)")
    for c in classes:
        print(f"  class {c['class']}: {c['size']} environments, diameter {c['diameter']:.2f}, kinds {c['kinds']}")
    print("the tree cut at 5 classes: " + "; ".join(f"{f['size']} {f['kinds']}" for f in res["five_classes"]))
    print(f"eigenvalues {np.round(ref.eigenvalues[:10], 3).tolist()}; kept {res['selected']} (local linear "
          f"regression), {res['paper_criterion']['selected']} (the paper's criterion)")
    print(f"Si-O-Si angle at {res['si_o_si']['bridging_oxygens']} bridging oxygens (mean {ang.mean():.1f} deg): "
          f"best coordinate psi{best + 1}, r^2 = {r2s[best]:.3f} "
          f"({'selected' if res['si_o_si']['best_is_selected'] else 'not selected'}); O-Si-O at Si4 "
          f"{res['o_si_o_angle_si4_mean']:.1f} deg")
    for sp, m in res["species_maps"].items():
        print(f"{sp}-centred map (sub-block of the same distances, {m['n_environments']} environments): "
              f"{m['n_components']} kernel-graph components at epsilon {m['epsilon']:.3g} (largest "
              f"{m['largest_component']} environments, kinds {m['component_kinds']}); its eigenvalues "
              f"{np.round(m['eigenvalues'][:6], 3).tolist()}, kept {m['selected']}; bond angle at the centre: "
              f"best psi{m['best_psi']} r^2 = {m['best_r2']:.3f} "
              f"({'selected' if m['best_is_selected'] else 'not selected'})")
    rep = work / "silica_report"
    for f in write_report(ref, rep, coords=(1, 2)):
        copy_figure(f, figdir, "silica_" + os.path.basename(f))
    f = fig_quantity_scatter(Pb[:, best], ang, work / "silica_psi_si_o_si.png", xlabel=f"psi{best + 1}",
                             qlabel="Si-O-Si angle (deg)", r2=r2s[best],
                             title=f"Silica: bridging oxygens, psi{best + 1} against the Si-O-Si angle")
    copy_figure(f, figdir, "silica_psi_si_o_si.png")
    return res


def main(argv=None):
    global FIGURE_TAG
    args = build_parser().parse_args(argv)
    FIGURE_TAG = args.tag
    key = f"_{args.tag}" if args.tag else ""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    figdir = Path(args.figures).resolve() if args.figures else work / "figures"
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    t0 = time.time()
    if args.part in ("ninb", "all"):
        ref = ninb_reference(args, work)
        ann = ninb_annotate(args, work, ref)
        if args.stage in ("analyse", "all"):
            results["ninb" + key] = ninb_analyse(args, work, ref, ann, figdir)
    if args.part in ("lj", "all"):
        dump = lj_structure(args, work)
        ref = lj_reference(args, work, dump)
        ann = lj_annotate(args, work, ref, dump)
        if args.stage in ("analyse", "all"):
            results["lj2d" + key] = lj_analyse(args, work, ref, ann, figdir)
    if args.part in ("silica", "all"):
        dump = silica_structure(args, work)
        ref = silica_reference(args, work, dump)
        ann = silica_annotate(args, work, ref, dump)
        if args.stage in ("analyse", "all"):
            results["silica" + key] = silica_analyse(args, work, ref, ann, figdir)
    results_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    log(f"done in {time.time() - t0:.0f} s; numbers in {results_path}, figures in {figdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
