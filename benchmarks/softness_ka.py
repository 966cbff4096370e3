#!/usr/bin/env python
"""Softness on the Kob-Andersen glass former: writes docs/softness.md and its figures.

    python benchmarks/softness_ka.py [--work DIR] [--n-per-class 2000] [--T 0.6]

1. Runs ``lammps_examples/ka_glass.in`` (4,000 particles, rho 1.2, T = 0.6, 200 tau of
   production dumped every 0.5 tau) unless its dump is in ``--work`` already.
2. Trains softness for the A particles (``p_hop`` window 10 tau, ``p_c = 0.2``, the first 70 % of
   the frames; 5-fold cross-validated C), with all structure functions and with the radial ones
   only, with the diffusion coordinates of a GIIP map of the same run, and with both; each with
   two sets of quiet training particles (``--protocols``): quiet within one window around the
   frame, and quiet over the structural relaxation time tau_alpha before it (the published
   protocol; tau_alpha from the self-intermediate scattering function of the same run).
3. On the held-out last 30 % of the frames: the fraction of rearranging A particles with
   S > 0 (the thesis: about 90 % at T = 0.47), of quiet ones with S < 0, and P_R(S), the
   fraction of particles rearranging against softness (the thesis: it rises roughly
   exponentially).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _long_run(work):
    """What ka_glass_long.py ran (its state.json): ageing and production in tau, and whether the
    potential energy still drifted over the second half of the ageing."""
    state = json.load(open(os.path.join(work, "state.json")))
    prm, dt = state["params"], state["params"]["dt"]
    run = {"age": prm["age_steps"] * dt, "prod": prm["prod_steps"] * dt, "every": prm["dump_every"] * dt}
    pe = np.array([[s, e] for st, s, e in state.get("pe", []) if st == "age"], dtype=float)
    if len(pe) >= 4:
        half = pe[pe[:, 0] > pe[-1, 0] / 2]
        slope = np.polyfit(half[:, 0] * dt, half[:, 1], 1)[0]
        drift = slope * (half[-1, 0] - half[0, 0]) * dt
        first = pe[pe[:, 0] <= pe[-1, 0] / 2, 1]
        run["ageing"] = (f"Potential energy per particle during the ageing: {first.mean():.4f} over its first half, "
                         f"{half[:, 1].mean():.4f} over its second, whose linear drift is {drift:+.4f} "
                         f"(chunk-to-chunk spread {half[:, 1].std():.4f}).")
        settled = abs(drift) < 2 * half[:, 1].std()
        run["caveat"] = ("the energy had stopped drifting during the second half of the ageing (drift within twice the "
                         "chunk-to-chunk spread), consistent with an equilibrated liquid; the thesis's trajectories are longer."
                         if settled else "the energy was still drifting at the end of the ageing: an aged glass, not "
                         "an equilibrated liquid as in the thesis; compare them with that caveat.")
    else:
        run["ageing"] = ("At T = 0.47 the structural relaxation time is of the order of 10^3 tau; this run did not "
                         "record its energy during the ageing.")
        run["caveat"] = "an aged glass whose equilibration was not recorded; compare them with that caveat."
    return run


class _Cached:
    """A feature source whose values per (frame, particles) are computed once and reused: the
    feature sets and protocols of this script score the same held-out frames (and often the same
    samples) again. Everything else is the wrapped source's own (names, ``to_dict``, ...)."""

    def __init__(self, inner):
        self._inner, self._memo = inner, {}

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def compute(self, atoms, indices=None, species=None, **kw):
        key = (id(atoms), None if indices is None else np.asarray(indices, dtype=np.int64).tobytes())
        if key not in self._memo:
            self._memo[key] = self._inner.compute(atoms, indices, species, **kw)
        return self._memo[key]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(HERE, "out", "ka"))
    p.add_argument("--T", default="0.6", help="0.6: ka_glass.in; another T: the dump of ka_glass_long.py in --work")
    p.add_argument("--n-per-class", type=int, default=2000)
    p.add_argument("--n-map", type=int, default=200, help="training environments of the GIIP map (default 200)")
    p.add_argument("--max-frames", type=int, default=40,
                   help="training samples from at most this many evenly spaced training frames (default 40)")
    p.add_argument("--held-out-frames", type=int, default=10,
                   help="held-out frames whose every A particle is scored (default 10)")
    p.add_argument("--protocols", default="window,tau_alpha",
                   help="quiet training particles, comma-separated: window (p_hop < p_c within one window before "
                        "and after) and/or tau_alpha (p_hop < p_c over the tau_alpha before the frame, the "
                        "published protocol's 'hard' particles); default both")
    p.add_argument("--feature-sets", choices=("all", "sf"), default="all",
                   help="all: structure functions, GIIP coordinates and both (default); sf: the structure functions "
                        "only (no GIIP map)")
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "softness.md"))
    p.add_argument("--figures", default=os.path.join(REPO, "docs", "figures"))
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    dump = os.path.join(args.work, f"ka_glass_T{args.T}.dump")
    if not os.path.exists(dump) and args.T != "0.6":
        sys.exit(f"{dump} not found: run python lammps_examples/ka_glass_long.py --T {args.T} --out {args.work} first")
    if not os.path.exists(dump):
        print("running the Kob-Andersen example", flush=True)
        subprocess.run([sys.executable, os.path.join(REPO, "lammps_examples", "run_example.py"), "ka_glass",
                        "--omp", "2", "--var", f"T={args.T}", "--out", args.work], check=True)

    from giip_plugin.softness import (PUBLISHED_ANGULAR, FeatureSet, MapCoordinates, StructureFunctions, Trajectory,
                                      tau_alpha, train)

    run = _long_run(args.work) if args.T != "0.6" else {}

    t0 = time.perf_counter()
    tr = Trajectory.read(dump, type_names={1: "A", 2: "B"}, progress=True)
    t_read = time.perf_counter() - t0
    A = tr.species == "A"
    msd = float(np.mean(np.sum((tr.positions[-1, A] - tr.positions[0, A]) ** 2, axis=1)))
    dt, interval = 0.005, tr.frame_interval()
    window = int(round(10.0 / (dt * interval)))
    window += window % 2
    protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not protocols or set(protocols) - {"window", "tau_alpha"}:
        sys.exit(f"--protocols: window and/or tau_alpha, got {args.protocols!r}")
    tau_a, fs_t, fs = tau_alpha(tr.positions[:, A], dt * interval)
    print(f"tau_alpha (F_s(7.25, t) = 1/e, A particles): {tau_a:.1f} tau", flush=True)
    quiet_of = {"window": (window, "both")}
    if "tau_alpha" in protocols:
        if not np.isfinite(tau_a):
            sys.exit("F_s stays above 1/e over half the run: tau_alpha is not measurable here; use --protocols window")
        quiet_of["tau_alpha"] = (int(round(tau_a / (dt * interval))), "before")
    # a GIIP map of the A particles' first shells (vector species, cutoff at the first minimum of g_AA)
    ref_path = os.path.join(args.work, "ka_giip.h5")
    if args.feature_sets == "all" and not os.path.exists(ref_path):
        from giip_plugin.reference import ReferenceMap

        t0 = time.perf_counter()
        ref = ReferenceMap.from_files([dump], r_inner=1.2, r_outer=1.5, sigma=0.2, encoding="vector", centers=("A",),
                                      type_names="1=A,2=B", n_train=args.n_map, frames="0:120:20", progress=False)
        ref.save(ref_path)
        print(f"GIIP map: {ref.n_train} environments, {ref.n_classes} classes, {ref.n_coords} coordinates, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    coords = _Cached(MapCoordinates.of(ref_path)) if args.feature_sets == "all" else None
    sf_all, sf_radial = _Cached(StructureFunctions(("A", "B"))), _Cached(StructureFunctions(("A", "B"), angular=()))
    sf_pub = _Cached(StructureFunctions(("A", "B"), angular=PUBLISHED_ANGULAR, angular_species=True))
    sources = {"radial and angular (162)": sf_all, "radial and published angular per species pair (162)": sf_pub,
               "radial only (96)": sf_radial}
    if coords is not None:
        sources[f"GIIP coordinates ({coords.n_coords})"] = coords
        sources[f"structure functions + GIIP coordinates ({sf_all.n_features + coords.n_coords})"] = \
            FeatureSet((sf_all, coords))
    main_protocol = protocols[-1]  # the figure and the P_R table: the last protocol given (tau_alpha by default)
    runs_of = {}
    for prot in protocols:
        q, side = quiet_of[prot]
        runs = runs_of[prot] = {}
        for name, sf in sources.items():
            t0 = time.perf_counter()
            model, report = train([tr], sf, window=window, p_c=0.2, quiet=q, quiet_side=side, centers=("A",),
                                  n_per_class=args.n_per_class, held_out=0.3, held_out_frames=args.held_out_frames,
                                  max_frames=args.max_frames, seed=0, progress=True,
                                  log=lambda m: print("  " + m, flush=True))
            runs[name] = (model, report["A"], time.perf_counter() - t0)
            print(f"[{prot}] {name}: CV accuracy {model.cv_accuracy[0]:.3f}, held out S>0 of rearranging "
                  f"{report['A']['rearranging_positive']:.3f}", flush=True)
    runs = runs_of[main_protocol]
    full_model = runs["radial and angular (162)"][0]
    full_model.save(os.path.join(args.work, "ka_softness.h5"))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.figures, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    for name, (model, rep, _) in runs.items():
        if "GIIP" in name and "+" not in name:
            continue  # a few coordinates: P_R over them is in the table
        S, up = rep["softness"], rep["rearranging"]
        edges = np.linspace(np.quantile(S, 0.005), np.quantile(S, 0.995), 21)
        which = np.digitize(S, edges) - 1
        mids, pr = [], []
        for b in range(len(edges) - 1):
            m = which == b
            if m.sum() >= 50 and up[m].any():  # bins with no rearranging particle have no point on a log scale
                mids.append(0.5 * (edges[b] + edges[b + 1]))
                pr.append(up[m].mean())
        axes[0].semilogy(mids, pr, "o-", label=name)
    axes[0].set_xlabel("softness S")
    axes[0].set_ylabel("P_R(S): fraction rearranging (bins of >= 50)")
    axes[0].legend(fontsize=8)
    model, rep, _ = runs["radial and angular (162)"]
    S, up = rep["softness"], rep["rearranging"]
    axes[1].hist(S[~up], bins=60, density=True, alpha=0.6, label="all other A particles")
    axes[1].hist(S[up], bins=60, density=True, alpha=0.6, label="rearranging (p_hop > 0.2)")
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set_xlabel("softness S")
    axes[1].set_ylabel("density")
    axes[1].legend(fontsize=8)
    axes[2].semilogx(fs_t, fs, "o-", ms=3)
    axes[2].axhline(np.exp(-1), color="k", lw=0.8, ls=":")
    if np.isfinite(tau_a):
        axes[2].axvline(tau_a, color="k", lw=0.8)
    axes[2].set_xlabel("t (tau)")
    axes[2].set_ylabel("F_s(k = 7.25, t), A particles")
    axes[2].set_title(f"tau_alpha = {tau_a:.0f} tau", fontsize=9)
    fig_name = "softness_ka.png" if args.T == "0.6" else f"softness_ka_T{args.T}.png"
    fig.savefig(os.path.join(args.figures, fig_name), dpi=110)
    plt.close(fig)

    n_rearr, n_quiet = (int(x) for x in runs["radial and angular (162)"][0].n_train[0])
    L = ["# Softness: validation on the Kob-Andersen glass former", "",
         "Written by `python benchmarks/softness_ka.py` (2 cores). Softness (Cubuk et al. 2015; Cubuk, thesis, "
         "Harvard 2016) is trained and applied by `giip softness train` / `giip apply SOFT.h5` "
         "(`giip_plugin/softness/`).", "",
         "## System and protocol", "",
         (f"- `lammps_examples/ka_glass.in`: Kob-Andersen 80:20, {len(A):,} particles, rho = 1.2, **T = {args.T}** "
          "(NVT), 200 tau of production dumped every 0.5 tau (401 frames, `id type xu yu zu`). The thesis works "
          "at T = 0.47, where the relaxation is about 100 times slower than here; that run is on its own page, "
          "[softness_T0.47.md](softness_T0.47.md)." if args.T == "0.6" else
          f"- `lammps_examples/ka_glass_long.py --T {args.T}` (resumable): Kob-Andersen 80:20, {len(A):,} particles, "
          f"rho = 1.2, quenched from T = 2 to **T = {args.T}** over 25 tau and held 75 tau, aged {run['age']:,.0f} "
          f"tau, then {run['prod']:,.0f} tau of production (NVT) dumped every {run['every']:g} tau "
          f"({len(tr.frames)} frames, `id type xu yu zu`). {run['ageing']} Mean squared displacement of the A "
          f"particles over the production: {msd:.2f} sigma^2 (a relaxed liquid: above about 1)."),
         f"- Rearrangements: `p_hop` over a window of 10 tau ({window} frames), `p_c = 0.2`. The structural relaxation "
         f"time of this run, where the A particles' self-intermediate scattering function F_s(k = 7.25, t) falls "
         f"to 1/e: **tau_alpha = {tau_a:.0f} tau**.",
         "- Quiet (non-rearranging) training particles, two protocols (`giip softness train --quiet TIME|tau_alpha "
         "--quiet-side both|before`): *window*, `p_hop < p_c` within one window (10 tau) before and after the "
         "frame (the command's default); *tau_alpha*, `p_hop < p_c` over the tau_alpha before the frame, the "
         "published protocol's 'hard' particles, which have not rearranged in a time tau_alpha preceding their "
         "structural characterisation (Schoenholz et al., Nat. Phys. 12, 469 (2016)). The held-out fraction of "
         "rearranging particles with S > 0 does not depend on this choice; the held-out quiet particles are "
         "those of the protocol.",
         "- Features: 48 radial functions per species (mu = 0.3 .. 5.0, L = 0.1) and 66 angular functions "
         "(neighbours within 2.0), in two variants: a grid of the thesis's size over all pairs of neighbours "
         "(xi = 1.0 .. 3.0, zeta = 1, 2, 4, lambda = +-1; the default of `giip softness train`), and the 22 "
         "(xi, lambda, zeta) of a public implementation of Schoenholz et al. 2016 (SoftnessML_api, Emory) with one "
         "set per pair of neighbour species, AA, AB, BB (`--angular published`). The thesis's own table was not "
         "found.",
         "- Training: A particles, " + "; ".join(
             f"{int(r['radial and angular (162)'][0].n_train[0][0])} rearranging + "
             f"{int(r['radial and angular (162)'][0].n_train[0][1])} quiet (particle, frame) samples with the "
             f"{pr_} protocol" for pr_, r in runs_of.items()) + f" (at most "
         f"{args.n_per_class} of each) from {args.max_frames} evenly spaced frames of the first 70 % (the thesis: "
         "6,000 + 6,000), standardised, linear SVM, C by 5-fold cross-validation.",
         f"- Reading the trajectory: {t_read:.0f} s.", "",
         f"## Results (held out: the last 30 % of the frames, every A particle of {args.held_out_frames} frames)", "",
         "| quiet protocol | features | C | cross-validated accuracy | rearranging with S > 0 | quiet with S < 0 | "
         "training time (s) |",
         "|---|---|---|---|---|---|---|"]
    for prot, rs in runs_of.items():
        for name, (model, rep, sec) in rs.items():
            L.append(f"| {prot} | {name} | {model.C[0]:g} | {model.cv_accuracy[0]:.3f} | "
                     f"{100 * rep['rearranging_positive']:.1f} % (of {rep['n_rearranging']}) | "
                     f"{100 * rep['quiet_negative']:.1f} % (of {rep['n_quiet']}) | {sec:.0f} |")
    rep0 = runs["radial and angular (162)"][1]
    n_up, frac = rep0["n_rearranging"], rep0["rearranging_positive"]
    L += ["", f"The held-out frames hold {n_up:,} rearranging A particles: the percentages of the rearranging column "
          f"carry a binomial standard error of about {100 * np.sqrt(frac * (1 - frac) / max(n_up, 1)):.1f} points "
          "(rearrangements of one particle in neighbouring frames are not independent, so somewhat more). "
          "Training times include computing the features; a feature set scored after another reuses "
          "the features already computed for the same frames and particles."]
    pr = runs["radial and angular (162)"][1]["P_R"]
    L += ["", f"P_R(S) by deciles of S (all structure functions, {main_protocol} protocol):", "",
          "| median S of the decile | " + " | ".join(f"{v:.2f}" for v in pr["S"]) + " |",
          "|---|" + "---|" * len(pr["S"]),
          "| P_R | " + " | ".join(f"{v:.4f}" for v in pr["P_R"]) + " |", "",
          f"![P_R(S) and the distributions of S](figures/{fig_name})", "",
          "Each model's S has its own scale (the signed distance to its hyperplane in its own standardised feature space, "
          "whose spread along the normal differs between feature sets): compare the slopes of log P_R across each curve's range, not "
          "the S values of different models.", "",
          "The thesis reports about 90 % of the rearranging particles at S > 0 at T = 0.47 (77 % from the first "
          "peaks of g_AA and g_AB alone). " + ("The figures above are measured at T = 0.6 on a shorter trajectory; "
                                               "compare them with that caveat." if args.T == "0.6" else
                                               f"The figures above are measured at T = {args.T}; "
                                               + run["caveat"]), "",
          "Which predicts rearrangements better: compare the rows of the table (the same labels, samples and "
          "held-out frames for every feature set). `giip softness train --features giip|both --reference REF.h5` "
          "trains the GIIP variants from the command line." + (
              "" if coords is not None else " This page was written with `--feature-sets sf`: the GIIP feature "
              "sets were not run."), ""]
    with open(args.doc, "w") as fh:
        fh.write("\n".join(L))
    json.dump({"tau_alpha": tau_a, "F_s": {"t": fs_t.tolist(), "F_s": fs.tolist()},
               "runs": {prot: {k: {"cv": float(m.cv_accuracy[0]), "C": float(m.C[0]),
                                   "positive": r["rearranging_positive"], "quiet_negative": r["quiet_negative"],
                                   "P_R": r["P_R"], "seconds": s} for k, (m, r, s) in rs.items()}
                        for prot, rs in runs_of.items()}},
              open(os.path.join(args.work, "softness_results.json"), "w"), indent=1)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
