#!/usr/bin/env python
"""Validation of the generative model of motifs: writes docs/generative.md and its figures.

    python benchmarks/generative_validation.py [--work DIR] [--epochs 300]

1. Amorphous Si (Stillinger-Weber, 512 atoms melt-quenched at 1e13 K/s with
   ``lammps_examples/asi_quench.in``, run here unless its dump is in ``--work``), in the seed's
   setting: the 8 nearest neighbours within 4 A, latent 8, encoder 36-28-18-8 (tanh), trained
   with the slots by distance (the seed's order), the same with the seed's permutation
   augmentation, and with the slots matched to a prototype motif (the default). Held-out reconstruction
   error; the GIIP distance (sigma 0.5 A, weight 1 below 3.6 A) of generated motifs to the nearest
   real (training) motif against that of held-out real motifs.
2. A GIIP map of the same a-Si (first shell: weight 1 below 2.7 A, 0 at 3.2 A; sigma 0.5 A) and a
   model of its training environments: motifs generated at 5 values of dc1 and of dc2, the
   requested against the obtained coordinates; a rendering along dc1 (OVITO).
3. NiNb (the paper's sample quench1M and parameters: Ni-centred, sign species, 3 / 4 A, sigma 1 A):
   a map of 300 training environments and a model of every Ni atom of the sample with the map's
   settings (every neighbour within 4 A: up to 20 slots; the default latent size); the same
   measures. Beside it, models of the map's 300 training environments only and of every Ni atom
   at latent 8, 16, 32 and 48 (held-out reconstruction only).

Every step is cached in ``--work`` (models, maps, a JSON of the figures); delete a file to redo it.
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
sys.path.insert(0, REPO)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def asi_dump(work):
    path = os.path.join(work, "asi", "asi_quench.dump")
    if not os.path.exists(path):
        log("running lammps_examples/asi_quench.in (about 17 minutes on one core)")
        subprocess.run([sys.executable, os.path.join(REPO, "lammps_examples", "run_example.py"), "asi_quench",
                        "--out", os.path.join(work, "asi")], check=True)
    return path


def cached_model(path, make):
    from giip_plugin.generate import MotifModel

    if os.path.exists(path):
        return MotifModel.load(path)
    t0 = time.time()
    model = make()
    model.history["train_seconds"] = time.time() - t0
    model.save(path)
    return model


def distance_figures(model, motifs, count=300, seed=0):
    """Generated motifs' GIIP distance to the nearest training motif, and held-out real motifs'."""
    train_idx = np.setdiff1d(np.arange(len(motifs)), model.held_out)
    real = motifs.subset(train_idx)
    _, d_held = model.nearest_real(motifs.subset(model.held_out[:count]), real)
    try:
        gen, _, acc = model.sample(count, seed=seed, synchronise=False)
    except RuntimeError as e:  # no valid motif decoded
        log(f"sampling failed: {e}")
        return {"acceptance": 0.0, "generated": [], "held_out": d_held.tolist()}
    _, d_gen = model.nearest_real(gen, real)
    return {"acceptance": acc, "generated": d_gen.tolist(), "held_out": d_held.tolist()}


def at_points(model, ref, steps=5, seed=0):
    from giip_plugin.generate.search import at_coordinates

    out = {}
    for j in range(min(2, ref.n_coords)):
        lo, hi = np.percentile(ref.coordinates[:, j], [5, 95])
        rows = []
        for i, v in enumerate(np.linspace(lo, hi, steps)):
            res = at_coordinates(model, ref, {j: float(v)}, 1, seed=seed + i)
            rows.append({"requested": float(v), "obtained": float(res.coordinates[0, j]),
                         "error_spreads": float(res.error[0]), "ref_distance": float(res.ref_distance[0])})
        out[f"dc{j + 1}"] = {"spread": float(ref.coordinates[:, j].std()), "rows": rows}
    return out


def summary_of(model):
    h = model.history
    return {k: h[k] for k in ("held_out_gram_rmse", "held_out_giip_median", "held_out_giip_p90",
                               "held_out_species_error", "epochs", "train_seconds") if k in h} | {
        "n": model.n, "latent": model.latent, "hidden": list(model.hidden), "n_motifs": len(model.training)}


def part_asi(work, epochs):
    from giip_plugin.environments import LocalEnvironments
    from giip_plugin.generate.training import motifs_of_frames, train
    from giip_plugin.io import iter_frames

    frames = list(iter_frames([asi_dump(work)]))[1:]  # the annealed frames (the first is the quench's end)
    local = LocalEnvironments(3.6, 4.0)
    motifs = motifs_of_frames(frames, local, 8)
    out = {"n_frames": len(frames), "n_atoms": len(frames[0].atoms)}
    for name, order, augment, latent in (("distance", "distance", False, 8), ("augmented", "distance", True, 8),
                                         ("prototype", "prototype", False, 8), ("prototype16", "prototype", False, 16)):
        model = cached_model(os.path.join(work, f"asi_seed_{name}.h5"), lambda: train(
            motifs, local, sigma=0.5, latent=latent, epochs=epochs, augment=augment, order=order, seed=0,
            provenance={"element": "Si"}))
        log(f"a-Si seed setting, {name}: {summary_of(model)}")
        out[name] = summary_of(model) | distance_figures(model, motifs)
    return out


def ninb_build():
    """The NiNb map of part 3: the paper's sample quench1M and parameters, 300 training environments."""
    from giip_plugin.reference import ReferenceMap

    ninb = os.path.join(REPO, "tests", "data", "ninb", "quench1M.dump")
    return ReferenceMap.from_files([ninb], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign", centers=["Ni"],
                                   type_names="1=Ni,2=Nb", n_train=300, epsilon=1.5, seed=0, progress=False)


NINB_DUMP = os.path.join(REPO, "tests", "data", "ninb", "quench1M.dump")


def map_model(work, tag, build, epochs, latent=None, source="map"):
    """``(model, ref, motifs)``: the map ``build()`` makes and a model of its environments, both
    cached in ``work``. ``source``: ``"map"``, the map's training environments; ``"frames"``, every
    centre atom of the NiNb sample (the map's settings: many more motifs). ``latent``: default
    the model's own default for the slot count."""
    from giip_plugin.generate.training import motifs_of_frames, motifs_of_reference, train
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    path = os.path.join(work, f"{tag}_map.h5")
    if not os.path.exists(path):
        t0 = time.time()
        build().save(path)
        log(f"{tag} map built in {time.time() - t0:.0f} s")
    ref = ReferenceMap.load(path)
    if source == "map":
        motifs, name = motifs_of_reference(ref), f"{tag}_gen"
    else:
        frames = list(iter_frames([NINB_DUMP], type_names={1: "Ni", 2: "Nb"}))
        motifs, name = motifs_of_frames(frames, ref.environments, max_per_frame=None), f"{tag}_frames_gen"
    name += "" if latent is None else f"_latent{latent}"
    model = cached_model(os.path.join(work, f"{name}.h5"), lambda: train(
        motifs, ref.environments, sigma=ref.sigma, group=ref.group, latent=latent, epochs=epochs, seed=0,
        provenance={"reference": path, **({"element": "Si"} if tag == "asi" else {"center": "Ni"})}))
    return model, ref, motifs


def part_map(work, tag, build, epochs, source="map"):
    model, ref, motifs = map_model(work, tag, build, epochs, source=source)
    log(f"{tag} map model: {summary_of(model)}")
    out = summary_of(model) | distance_figures(model, motifs) | {"n_coords": ref.n_coords, "n_train": ref.n_train}
    t0 = time.time()
    out["at"] = at_points(model, ref)
    out["at_seconds"] = time.time() - t0
    return out, model, ref


def part_ninb_sizes(work, epochs):
    """NiNb models of the same environments: of the map's 300 training environments only (the
    default latent), and of every Ni atom of the sample at latent 8, 16, 32 and 48."""
    out = {}
    model, _, motifs = map_model(work, "ninb", ninb_build, epochs, source="map")
    out["map_environments"] = summary_of(model)
    for latent in (8, 16, 32, 48):
        model, _, _ = map_model(work, "ninb", ninb_build, epochs, latent=latent, source="frames")
        log(f"NiNb, every Ni atom, latent {latent}: {summary_of(model)}")
        out[f"latent{latent}"] = summary_of(model)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(HERE, "out", "generative"))
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "generative.md"))
    p.add_argument("--figures", default=os.path.join(REPO, "docs", "figures"))
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.figures, exist_ok=True)
    cache = os.path.join(args.work, "results.json")
    res = json.load(open(cache)) if os.path.exists(cache) else {}

    def save():
        with open(cache, "w") as fh:
            json.dump(res, fh, indent=1)

    if "asi_seed" not in res:
        res["asi_seed"] = part_asi(args.work, args.epochs)
        save()
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    asi_frames = lambda: [f.atoms for f in list(iter_frames([asi_dump(args.work)]))[1::4]]  # noqa: E731
    asi_build = lambda: ReferenceMap.build(asi_frames(), sigma=0.5, r_inner=2.7, r_outer=3.2, n_train=500,  # noqa: E731
                                           seed=0, progress=False)
    renders = {}
    for tag, build in (("asi", asi_build), ("ninb", ninb_build)):
        if f"{tag}_map" in res:
            continue
        out, model, ref = part_map(args.work, tag, build, args.epochs, source="frames" if tag == "ninb" else "map")
        try:
            from giip_plugin.generate.search import along
            from giip_plugin.interpret.render import render_motifs

            motifs, _, _ = along(model, ref, 0, 5)
            png = os.path.join(args.figures, f"generated_{tag}_dc1.png")
            render_motifs(model, motifs, png)
            renders[tag] = png
        except ImportError as e:  # no OVITO
            log(f"no rendering: {e}")
        res[f"{tag}_map"] = out
        save()
    if "ninb_sizes" not in res:
        res["ninb_sizes"] = part_ninb_sizes(args.work, args.epochs)
        save()
    figure(res, os.path.join(args.figures, "generative.png"))
    write_doc(res, args.doc)
    log(f"wrote {args.doc}")


def figure(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("a-Si, 8 neighbours, distance order + augmentation (the seed)", res["asi_seed"]["augmented"]),
              ("a-Si, 8 neighbours, prototype order", res["asi_seed"]["prototype"]),
              ("NiNb, every Ni atom (prototype order)", res["ninb_map"])]
    for ax, (title, r) in zip(axes, panels):
        bins = np.linspace(0, max(r["generated"] + r["held_out"]) * 1.05, 30)
        ax.hist(r["held_out"], bins, alpha=0.6, label="held-out real", density=True)
        ax.hist(r["generated"], bins, alpha=0.6, label="generated", density=True)
        ax.set_xlabel("GIIP distance to the nearest training motif")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    ax = axes[3]
    for tag, mk in (("asi_map", "o"), ("ninb_map", "s")):
        for key, col in (("dc1", "C0"), ("dc2", "C3")):
            at = res[tag]["at"].get(key)
            if not at:
                continue
            rq = np.array([r["requested"] for r in at["rows"]]) / at["spread"]
            ob = np.array([r["obtained"] for r in at["rows"]]) / at["spread"]
            ax.plot(rq, ob, mk, color=col, mfc="none" if tag == "ninb_map" else col,
                    label=f"{'a-Si' if tag == 'asi_map' else 'NiNb'} {key}")
    lim = ax.get_xlim()
    ax.plot(lim, lim, "k:", lw=1)
    ax.set_xlabel("requested (training spreads)")
    ax.set_ylabel("obtained (Nystrom)")
    ax.set_title("generation at a point of the map", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _q(a):
    a = np.asarray(a)
    if len(a) == 0:
        return "none valid"
    return f"{np.median(a):.3f} / {np.percentile(a, 90):.3f}"


def write_doc(res, path):
    from giip_plugin.generate.vae import default_latent

    s = res["asi_seed"]
    L = ["# Generated environments: validation", "",
         "Written by `python benchmarks/generative_validation.py` (the numbers below are from its last run; "
         "the method: [design.md](design.md), section 3c).", "",
         "## What was run", "",
         f"- **Amorphous Si**: {s['n_atoms']} Si atoms, Stillinger-Weber, melt-quenched at 1e13 K/s and annealed "
         f"at 300 K (`lammps_examples/asi_quench.in`); {s['n_frames']} frames 1 ps apart. The seed's setting: the 8 "
         "nearest neighbours within 4 A, latent 8, encoder 36-28-18-8 (tanh). GIIP distances of these motifs: "
         "sigma 0.5 A, weight 1 below 3.6 A (falling to 0 at 4 A), O(3).",
         f"- **a-Si map**: first-shell environments (weight 1 below 2.7 A, 0 at 3.2 A; sigma 0.5 A), "
         f"{res['asi_map']['n_train']} training environments, {res['asi_map']['n_coords']} kept coordinates; a model "
         f"of its training environments ({res['asi_map']['n']} slots).",
         f"- **NiNb map**: the paper's sample quench1M and parameters, {res['ninb_map']['n_train']} training "
         f"environments, {res['ninb_map']['n_coords']} kept coordinates; a model of the environments of "
         f"every Ni atom of the sample ({res['ninb_map']['n_motifs']:,} motifs) with the map's settings (every "
         f"neighbour within 4 A: {res['ninb_map']['n']} slots, so that a motif is a whole environment; the default "
         f"latent size for that many slots, {res['ninb_map']['latent']}).",
         "", "## Reconstruction and generation", "",
         "Held-out motifs (10 %) encoded and decoded; GIIP distance in atoms of difference (one missing atom ~ 1). "
         "The last two columns: the GIIP distance to the nearest training motif of generated motifs and of "
         "held-out real ones (median / 90th percentile): generated motifs as close to real ones as real ones "
         "are to each other would give equal figures.", "",
         "| model | slots | latent | held-out Gram RMS error (A^2) | held-out GIIP distance median / 90 % | "
         "valid draws | generated: nearest real | held-out real: nearest real |",
         "|---|---|---|---|---|---|---|---|"]
    for name, r in (("a-Si, seed setting, distance order", s["distance"]),
                    ("a-Si, seed setting, distance order + permutation augmentation (the seed)", s["augmented"]),
                    ("a-Si, seed setting, prototype order (the default)", s["prototype"]),
                    ("a-Si, seed setting, prototype order, latent 16", s["prototype16"]),
                    ("a-Si map (first shell)", res["asi_map"]), ("NiNb map, every Ni atom", res["ninb_map"])):
        L.append(f"| {name} | {r['n']} | {r['latent']} | {r['held_out_gram_rmse']:.3f} | "
                 f"{r['held_out_giip_median']:.3f} / {r['held_out_giip_p90']:.3f} | {100 * r['acceptance']:.0f} % | "
                 f"{_q(r['generated'])} | {_q(r['held_out'])} |")
    z = res["ninb_sizes"]
    L += ["", "NiNb: how many motifs and how large a latent space (held-out 10 % of each model's own motifs; "
          "the wrong species or presence per slot):", "",
          "| motifs | latent | held-out Gram RMS error (A^2) | held-out GIIP distance median / 90 % | wrong slots | "
          "training time (s) |", "|---|---|---|---|---|---|"]
    for r in [z["map_environments"]] + [z[f"latent{k}"] for k in (8, 16, 32, 48)]:
        default = " (the default for its slots)" if r["latent"] == default_latent(r["n"]) else ""
        L.append(f"| {r['n_motifs']:,} | {r['latent']}{default} | {r['held_out_gram_rmse']:.3f} | "
                 f"{r['held_out_giip_median']:.3f} / {r['held_out_giip_p90']:.3f} | "
                 f"{100 * r['held_out_species_error']:.1f} % | {r.get('train_seconds', float('nan')):.0f} |")
    L += ["", "![distances](figures/generative.png)", "",
          "## Generation at a point of the map", "",
          "Targets at 5 evenly spaced values of dc1 and of dc2 (5th to 95th percentile of the training set; the other "
          "coordinates free); one motif each from the search of design.md 3c (4 rounds of 64 candidates, exact "
          "Nystrom coordinates). Error in units of the coordinate's spread over the training set.", "",
          "| map | coordinate | requested | obtained | error (spreads) | GIIP distance to the nearest reference |",
          "|---|---|---|---|---|---|"]
    for tag, name in (("asi_map", "a-Si"), ("ninb_map", "NiNb")):
        for key, at in res[tag]["at"].items():
            for r in at["rows"]:
                L.append(f"| {name} | {key} | {r['requested']:.4f} | {r['obtained']:.4f} | {r['error_spreads']:.3f} | "
                         f"{r['ref_distance']:.3f} |")
    for tag, name in (("asi_map", "a-Si"), ("ninb_map", "NiNb")):
        errs = [r["error_spreads"] for at in res[tag]["at"].values() for r in at["rows"]]
        L.append("")
        L.append(f"{name}: median error {np.median(errs):.3f} training spreads (largest {max(errs):.3f}); "
                 f"{res[tag]['at_seconds']:.0f} s for the {len(errs)} targets.")
    L += ["", "Motifs generated along dc1 (left to right: the 5th to the 95th percentile; the centre darkest), "
          "a-Si map and NiNb map:", "", "![a-Si](figures/generated_asi_dc1.png)", "",
          "![NiNb](figures/generated_ninb_dc1.png)", "", "## Reading", ""]
    reading = "(to be written from the figures above)\n"
    if os.path.exists(path):  # the reading is written by hand: a rerun keeps it
        old = open(path).read()
        if "## Reading\n" in old:
            reading = old.split("## Reading\n", 1)[1].lstrip("\n")
    L.append(reading)
    with open(path, "w") as fh:
        fh.write("\n".join(L))


if __name__ == "__main__":
    main()
