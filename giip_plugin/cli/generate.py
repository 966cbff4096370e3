"""``giip generate``: a generative model of local motifs (Uhrin & Paulish), tied to the GIIP map.

  giip generate train [TRAJ...] -o GEN.h5 (--reference MAP.h5 | --r-inner A --r-outer B --sigma S ...)
  giip generate sample GEN.h5 -n 16 -o gen.xyz
  giip generate interpolate GEN.h5 A B --steps 8 -o path.xyz [--render path.png]
  giip generate infill GEN.h5 PARTIAL.xyz -o filled.xyz [--missing K]
  giip generate at GEN.h5 MAP.h5 --at dc1=0.01,dc2=-0.02 -n 4 -o at.xyz
  giip generate along GEN.h5 MAP.h5 --coord 1 --steps 5 -o along.png [--xyz along.xyz]

A motif is the N nearest neighbours of a centre within the cutoff (default N: the largest count,
so a motif is the whole GIIP environment). Motifs are written as extended XYZ, one frame per motif:
the centre at the origin first, then its neighbours; each frame's info holds its GIIP distance to
the nearest real (training) motif and, for ``at``/``along``, the map coordinates it obtained.
A or B of ``interpolate``: ``train:K`` (training motif K of the model) or ``FILE@I`` (atom I of a
structure file, 0-based). PARTIAL.xyz of ``infill``: the centre first, then the known neighbours.
"""
from __future__ import annotations

import os
import sys
import time

from . import CLIError

HELP = "generative model of motifs: train, sample, interpolate, infill, generate at a point of a map"


def add_parser(sub):
    p = sub.add_parser("generate", help=HELP, description=__doc__, formatter_class=_raw())
    ss = p.add_subparsers(dest="generate_command", metavar="ACTION")

    t = ss.add_parser("train", help="train a generative model", description=__doc__, formatter_class=_raw())
    t.add_argument("traj", nargs="*", metavar="TRAJ", help="structures or trajectories (or give --reference)")
    t.add_argument("-o", "--output", required=True, metavar="GEN.h5")
    t.add_argument("--reference", metavar="MAP.h5", help="the settings of this GIIP map; without TRAJ, train on its "
                   "training environments, with TRAJ on the motifs of their centre atoms (usually many more)")
    g = t.add_argument_group("motifs from trajectories (the options of giip build)")
    g.add_argument("--type-names", metavar="1=Ni,2=Nb")
    g.add_argument("--frames", metavar="START:STOP:STEP")
    g.add_argument("--r-inner", type=float)
    g.add_argument("--r-outer", type=float)
    g.add_argument("--sigma", type=float, help="GIIP width of the distance checks")
    g.add_argument("--species", choices=("none", "sign", "vector"), default="none")
    g.add_argument("--positive", metavar="NAME")
    g.add_argument("--centers", metavar="NAMES")
    g.add_argument("--group", choices=("O3", "SO3", "O2", "SO2"), help="default O3 (O2 in 2D)")
    g.add_argument("--element", metavar="SYMBOL", help="element of a one-species model's atoms in written files "
                   "(default: from the map's --type-names or the trajectories)")
    g.add_argument("--max-per-frame", type=int, default=2000, help="motifs taken from each frame at most (default 2000)")
    g = t.add_argument_group("model")
    g.add_argument("--neighbours", type=int, metavar="N", help="neighbour slots (default: the largest count)")
    g.add_argument("--latent", type=int, default=None,
                   help="latent dimension (default: 8 up to 8 neighbour slots, the seed's, and 2 more per further slot)")
    g.add_argument("--hidden", metavar="H1,H2", help="hidden widths (default: the seed's 28/36 and 18/36 of the input)")
    g.add_argument("--epochs", type=int, default=400)
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--beta", type=float, default=0.05, help="weight of the KL term (default 0.05)")
    g.add_argument("--order", choices=("prototype", "distance"), default="prototype",
                   help="the slots' canonical order: matched to a prototype motif (default) or by distance (the seed's)")
    g.add_argument("--augment", action="store_true",
                   help="feed the encoder randomly reordered copies (the seed's permutation augmentation) instead "
                        "of the canonical order")
    g.add_argument("--held-out", type=float, default=0.1, help="fraction of motifs held out (default 0.1)")
    g.add_argument("--seed", type=int, default=0)
    _common(t)
    t.set_defaults(func=run_train)

    s = ss.add_parser("sample", help="generate motifs from the prior", description=__doc__, formatter_class=_raw())
    s.add_argument("model", metavar="GEN.h5")
    s.add_argument("-n", "--count", type=int, default=16)
    s.add_argument("-o", "--output", required=True, metavar="OUT.xyz")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--min-distance", type=float, help="reject motifs with two atoms closer (default: the model's)")
    _common(s)
    s.set_defaults(func=run_sample)

    i = ss.add_parser("interpolate", help="motifs between two motifs", description=__doc__, formatter_class=_raw())
    i.add_argument("model", metavar="GEN.h5")
    i.add_argument("a", metavar="A", help="train:K or FILE@ATOM")
    i.add_argument("b", metavar="B", help="train:K or FILE@ATOM")
    i.add_argument("--steps", type=int, default=8)
    i.add_argument("-o", "--output", required=True, metavar="OUT.xyz")
    i.add_argument("--render", metavar="PNG", help="also render the motifs in a row (OVITO)")
    i.add_argument("--type-names", metavar="1=Ni,2=Nb")
    _common(i)
    i.set_defaults(func=run_interpolate)

    f = ss.add_parser("infill", help="fill in the missing atoms of a motif", description=__doc__,
                      formatter_class=_raw())
    f.add_argument("model", metavar="GEN.h5")
    f.add_argument("partial", metavar="PARTIAL.xyz", help="the centre first, then the known neighbours")
    f.add_argument("-o", "--output", required=True, metavar="OUT.xyz")
    f.add_argument("--missing", type=int, help="how many atoms to add (default: as the model decodes)")
    f.add_argument("--seed", type=int, default=0)
    _common(f)
    f.set_defaults(func=run_infill)

    a = ss.add_parser("at", help="motifs at a point of a map's diffusion space", description=__doc__,
                      formatter_class=_raw())
    a.add_argument("model", metavar="GEN.h5")
    a.add_argument("reference", metavar="MAP.h5")
    a.add_argument("--at", required=True, metavar="dc1=V,dc2=W", help="target coordinates (giip apply's numbering)")
    a.add_argument("-n", "--count", type=int, default=4)
    a.add_argument("-o", "--output", required=True, metavar="OUT.xyz")
    a.add_argument("--rounds", type=int, default=4)
    a.add_argument("--candidates", type=int, default=64, help="candidates decoded per round (default 64)")
    a.add_argument("--seed", type=int, default=0)
    _common(a)
    a.set_defaults(func=run_at)

    al = ss.add_parser("along", help="render motifs generated along one coordinate of a map",
                       description=__doc__, formatter_class=_raw())
    al.add_argument("model", metavar="GEN.h5")
    al.add_argument("reference", metavar="MAP.h5")
    al.add_argument("--coord", type=int, default=1, help="the coordinate (dcJ, default 1)")
    al.add_argument("--steps", type=int, default=5)
    al.add_argument("-o", "--output", required=True, metavar="OUT.png")
    al.add_argument("--xyz", metavar="OUT.xyz", help="also write the motifs")
    al.add_argument("--seed", type=int, default=0)
    _common(al)
    al.set_defaults(func=run_along)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def _common(p):
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _log(msg):
    print(f"giip generate: {msg}", file=sys.stderr, flush=True)


def _check_out(path, inputs=()):
    from ..io.atomic import check_output

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"the output folder {folder} does not exist")
    check_output(path, list(inputs))


def _load_model(path):
    from ..generate import MotifModel

    if not os.path.exists(path):
        raise CLIError(f"generative model not found: {path}")
    return MotifModel.load(path)


def _load_map(path):
    from ..reference import ReferenceMap

    if not os.path.exists(path):
        raise CLIError(f"reference map not found: {path}")
    return ReferenceMap.load(path)


# ---------------------------------------------------------------------------------------------- train
def run_train(args) -> int:
    import datetime

    import numpy as np

    from ..generate import training
    from . import rebuild_command

    _check_out(args.output, list(args.traj) + ([args.reference] if args.reference else []))
    for k in ("neighbours", "latent", "epochs", "batch_size", "max_per_frame"):
        v = getattr(args, k)
        if v is not None and v < 1:
            raise CLIError(f"--{k.replace('_', '-')} must be a positive integer, got {v}")
    hidden = None
    if args.hidden:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise CLIError(f"--hidden takes widths like 28,18, got {args.hidden!r}") from None
    prov = {"command": rebuild_command(args, ["giip", "generate", "train"], args.traj, args.output,
                                       skip=("traj", "output", "generate_command")),
            "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "seed": int(args.seed)}
    t0 = time.time()
    if args.reference:
        if args.r_inner is not None or args.r_outer is not None or args.sigma is not None or args.species != "none" \
                or args.centers or args.positive or args.group:
            raise CLIError("with --reference, the environment settings are the map's: give no --r-inner, --r-outer, "
                           "--sigma, --species, --positive, --centers or --group")
        ref = _load_map(args.reference)
        local, sigma, group = ref.environments, ref.sigma, ref.group
        try:
            if args.traj:
                training.check_map(ref)
                frames = _frames(args, ref.type_names)
                motifs = training.motifs_of_frames(frames, local, args.neighbours, max_per_frame=args.max_per_frame,
                                                   seed=args.seed, progress=not args.no_progress)
            else:
                motifs = training.motifs_of_reference(ref, args.neighbours)
        except ValueError as e:
            raise CLIError(str(e)) from None
        prov.update(reference=os.path.abspath(args.reference),
                    inputs=[os.path.abspath(args.reference)] + [os.path.abspath(p) for p in args.traj])
        prov.update(_element_of(ref.type_names.values() if ref.type_names else (), local))
    else:
        if not args.traj:
            raise CLIError("give trajectories (TRAJ...) or --reference MAP.h5")
        if args.r_inner is None or args.r_outer is None or args.sigma is None:
            raise CLIError("training from trajectories needs --r-inner, --r-outer and --sigma (as giip build)")
        local, frames, sigma, group, names = _local_and_frames(args)
        motifs = training.motifs_of_frames(frames, local, args.neighbours, max_per_frame=args.max_per_frame,
                                           seed=args.seed, progress=not args.no_progress)
        prov.update(inputs=[os.path.abspath(p) for p in args.traj])
        prov.update(_element_of(names, local))
    if args.element:
        prov["element"] = args.element
    dropped = int(np.sum(motifs.counts == motifs.n))
    _log(f"{len(motifs)} motifs of {motifs.n} neighbour slots (counts {int(motifs.counts.min())} .. "
         f"{int(motifs.counts.max())}{'; full: ' + str(dropped) if args.neighbours else ''})")
    try:
        model = training.train(motifs, local, sigma=sigma, group=group, latent=args.latent, hidden=hidden,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                               held_out=args.held_out, seed=args.seed, augment=args.augment, order=args.order,
                               progress=not args.no_progress, provenance=prov)
    except ValueError as e:
        raise CLIError(str(e)) from None
    h = model.history
    _log(f"held-out reconstruction: Gram RMS error {h['held_out_gram_rmse']:.3g}, GIIP distance median "
         f"{h['held_out_giip_median']:.3g} (90 %: {h['held_out_giip_p90']:.3g}), wrong species/presence "
         f"{100 * h['held_out_species_error']:.1f} % of slots")
    model.save(args.output)
    _log(f"wrote {args.output} in {time.time() - t0:.1f} s; see 'giip info {args.output}'")
    return 0


def _element_of(names, local) -> dict:
    """For a one-species model ("none" encoding): the element to write its atoms as."""
    names = sorted({str(n) for n in names})
    if local.encoding.mode == "none" and len(names) == 1:
        return {"element": names[0]}
    if local.centers and len(local.centers) == 1:
        return {"center": local.centers[0]}
    return {}


def _frames(args, default_type_names=None):
    """The frames of ``args.traj`` (``--frames``; species names from ``--type-names``, else
    ``default_type_names``)."""
    from ..io.frames import expand_paths, iter_frames, parse_frames
    from ..species import parse_type_names

    paths = expand_paths(args.traj)
    for p in paths:
        if not os.path.exists(p):
            raise CLIError(f"trajectory not found: {p}")
    type_names = parse_type_names(args.type_names) if args.type_names else (default_type_names or None)
    frames = list(iter_frames(paths, frames=parse_frames(args.frames) if args.frames else slice(None),
                              type_names=type_names))
    if not frames:
        raise CLIError("the trajectories hold no frames")
    return frames


def _local_and_frames(args):
    import numpy as np

    from ..environments.neighbors import species_names
    from ..reference.builder import _make_environments
    from ..species import parse_type_names

    frames = _frames(args)
    type_names = parse_type_names(args.type_names) if args.type_names else None
    names = sorted({s for fr in frames for s in np.unique(species_names(fr.atoms)).tolist()})
    dim = frames[0].dim
    centers = tuple(c for c in (args.centers or "").replace(",", " ").split() if c) or None
    try:  # the same settings as giip build makes from the same options
        local = _make_environments(args.r_inner, args.r_outer, args.species, args.positive, centers, None, dim,
                                   type_names, set(names))
    except ValueError as e:
        raise CLIError(str(e)) from None
    group = args.group or ("O3" if dim == 3 else "O2")
    return local, frames, float(args.sigma), group, names


# ---------------------------------------------------------------------------------------------- actions
def run_sample(args) -> int:
    import numpy as np

    _check_out(args.output, [args.model])
    if args.count < 1:
        raise CLIError(f"--count must be positive, got {args.count}")
    model = _load_model(args.model)
    try:
        motifs, z, acc = model.sample(args.count, seed=args.seed, min_distance=args.min_distance)
    except RuntimeError as e:
        raise CLIError(str(e)) from None
    k, d = model.nearest_real(motifs)
    model.write(args.output, motifs, [{"giip_nearest_real": float(d[i]), "nearest_training": int(k[i]),
                                               "z": " ".join(f"{x:.4g}" for x in z[i])} for i in range(len(z))])
    _log(f"{len(motifs)} motifs ({100 * acc:.0f} % of the draws valid); GIIP distance to the nearest real motif: "
         f"median {float(np.median(d)):.3g}; wrote {args.output}")
    return 0


def _motif_arg(model, text, type_names=None):
    import numpy as np

    if text.startswith("train:"):
        try:
            k = int(text[6:])
        except ValueError:
            raise CLIError(f"train:K takes an integer K, got {text!r}") from None
        if not 0 <= k < len(model.training):
            raise CLIError(f"the model has {len(model.training)} training motifs (0 .. {len(model.training) - 1})")
        return model.training.subset([k])
    path, sep, idx = text.rpartition("@")
    if not sep or not idx.isdigit():
        raise CLIError(f"a motif is train:K or FILE@ATOM, got {text!r}")
    if not os.path.exists(path):
        raise CLIError(f"structure not found: {path}")
    from ..io.frames import iter_frames

    frame = next(iter(iter_frames([path], frames=slice(0, 1), type_names=type_names)))
    i = int(idx)
    if i >= len(frame.atoms):
        raise CLIError(f"{path} has {len(frame.atoms)} atoms; atom {i} does not exist")
    try:
        return model.motifs_of(frame.atoms, indices=np.array([i]))
    except ValueError as e:
        raise CLIError(str(e)) from None


def run_interpolate(args) -> int:
    from ..interpret.render import render_motifs
    from ..species import parse_type_names

    _check_out(args.output, [args.model])
    model = _load_model(args.model)
    tn = parse_type_names(args.type_names) if args.type_names else None
    a, b = _motif_arg(model, args.a, tn), _motif_arg(model, args.b, tn)
    try:
        motifs, t = model.interpolate(a, b, args.steps)
    except ValueError as e:
        raise CLIError(str(e)) from None
    k, d = model.nearest_real(motifs)
    model.write(args.output, motifs, [{"t": float(t[i]), "giip_nearest_real": float(d[i])}
                                              for i in range(len(t))])
    if args.render:
        render_motifs(model, motifs, args.render)
    _log(f"{len(motifs)} motifs from {args.a} to {args.b}; wrote {args.output}" +
         (f" and {args.render}" if args.render else ""))
    return 0


def run_infill(args) -> int:
    import ase.io
    import numpy as np

    from ..generate import Motifs, infill

    _check_out(args.output, [args.model, args.partial])
    model = _load_model(args.model)
    if not os.path.exists(args.partial):
        raise CLIError(f"partial motif not found: {args.partial}")
    try:
        atoms = ase.io.read(args.partial, index=0)
    except Exception as e:  # ase raises several kinds for unreadable files
        raise CLIError(f"cannot read the partial motif {args.partial}: {e} (give an xyz file: the centre first, "
                       "then the known neighbours)") from None
    if len(atoms) < 2:
        raise CLIError(f"{args.partial} must hold the centre and at least one known neighbour")
    names = atoms.arrays.get("species", np.array(atoms.get_chemical_symbols()))[1:]
    if model.species_names == ("X",):
        names = np.array(["X"] * (len(atoms) - 1))
    pos = atoms.positions[1:] - atoms.positions[0]
    try:
        known = Motifs.from_points(pos[:, : model.dim], names, model.species_names, model.n)
        res = infill(model, known, missing=args.missing, seed=args.seed)
    except ValueError as e:
        raise CLIError(str(e)) from None
    model.write(args.output, res.motif, [{"added": len(res.added), "gram_residual": res.residual}])
    _log(f"added {len(res.added)} atoms to the {len(pos)} known ones (Gram misfit of the known atoms "
         f"{res.residual:.3g}); wrote {args.output}")
    return 0


def run_at(args) -> int:
    from ..generate.search import at_coordinates, parse_target

    _check_out(args.output, [args.model, args.reference])
    model, ref = _load_model(args.model), _load_map(args.reference)
    try:
        target = parse_target(args.at, ref.n_coords)
        res = at_coordinates(model, ref, target, args.count, rounds=args.rounds, candidates=args.candidates,
                             seed=args.seed, progress=not args.no_progress)
    except (ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    rows = [{"target": args.at, "error": float(res.error[i]), "giip_nearest_reference": float(res.ref_distance[i]),
             **{f"dc{j + 1}": float(res.coordinates[i, j]) for j in range(res.coordinates.shape[1])}}
            for i in range(len(res.error))]
    model.write(args.output, res.motifs, rows)
    for i, r in enumerate(rows):
        got = ", ".join(f"dc{j + 1} = {res.coordinates[i, j]:.4g}" for j in sorted(target))
        _log(f"motif {i}: {got} (error {r['error']:.3g} training spreads; nearest reference at "
             f"{r['giip_nearest_reference']:.3g})")
    _log(f"{res.evaluated} candidates placed on the map; wrote {args.output}")
    return 0


def run_along(args) -> int:
    _check_out(args.output, [args.model, args.reference])
    model, ref = _load_model(args.model), _load_map(args.reference)
    if not 1 <= args.coord <= ref.n_coords:
        raise CLIError(f"the map has {ref.n_coords} selected coordinates (dc1 .. dc{ref.n_coords})")
    if args.steps < 2:
        raise CLIError("--steps must be at least 2")
    from ..generate.search import along
    from ..interpret.render import render_motifs

    try:
        motifs, values, found = along(model, ref, args.coord - 1, args.steps, seed=args.seed,
                                      progress=not args.no_progress)
    except (ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    render_motifs(model, motifs, args.output)
    if args.xyz:
        model.write(args.xyz, motifs, [{f"target_dc{args.coord}": float(v),
                                                f"dc{args.coord}": float(f.coordinates[0, args.coord - 1])}
                                               for v, f in zip(values, found)])
    got = ", ".join(f"{v:.3g}->{f.coordinates[0, args.coord - 1]:.3g}" for v, f in zip(values, found))
    _log(f"dc{args.coord} requested -> obtained: {got}; wrote {args.output}")
    return 0
