"""``giip interpret REF.h5 INPUT...``: what the diffusion coordinates mean physically.

Each selected diffusion coordinate (dc1 .. dck, as the giip_dc columns of 'giip apply') of the
analysed atoms is regressed on per-atom quantities, and a table of r^2 (least-squares line,
squared correlation) is printed:

  coordination      smooth coordination: sum of the cutoff weights of the neighbours, with the
                    reference's r_inner / r_outer
  frac_<species>    fraction of each species among the neighbours (same weights)
  voronoi_volume    Voronoi volume of the atom (OVITO; voronoi_area for 2D maps)
  voronoi_n5        (3D) number of pentagonal faces of the Voronoi cell (five-fold order)
  voronoi_icosahedral  (3D) 1 for a full icosahedron <0,0,12,0>, else 0
  <column>          every numeric per-atom column of the input, e.g. c_pe

Inputs written by 'giip apply' (columns d_giip_class, d2_giip_dc[1..k]) are read as they are, so the
expensive step is done once; other inputs are analysed here (--max-atoms N: a random subset of
N centre atoms per frame, to save time: each atom costs one exact distance per training
environment).

--plane I,J with --target Q also finds the direction in the plane of dcI and dcJ that correlates
best with Q (the gradient of the least-squares plane Q = a + b1 dcI + b2 dcJ; its r^2 is the
plane's) and the orthogonal direction (the paper's Fig. 1d); --render PNG colours the atoms of
the first frame by their projection on the orthogonal direction (OVITO).

Example:
  giip apply ref.h5 crystal.dump -o crystal_giip.dump
  giip interpret ref.h5 crystal_giip.dump --plane 1,2 --target coordination --figures figs/
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from . import CLIError
from .report import load_reference, parse_pair

HELP = "r^2 of each diffusion coordinate against physical quantities (coordination, species fractions, Voronoi volume, input columns)"


def add_input_options(p):
    p.add_argument("--frames", default=None, metavar="START:STOP:STEP", help="frames of each input (Python slice)")
    p.add_argument("--type-names", default=None, metavar="1=Ni,2=Nb",
                   help="names of numeric LAMMPS types (default: those stored in the reference)")
    p.add_argument("--dim", type=int, choices=(2, 3), default=None, help="force 2D or 3D (default: the reference's)")
    p.add_argument("--max-atoms", type=int, default=None, metavar="N",
                   help="at most N randomly chosen centre atoms per frame (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-atoms sample (default 0)")
    p.add_argument("--recompute", action="store_true",
                   help="ignore giip_* columns of the inputs and analyse the atoms again")
    p.add_argument("--device", default=None, help="compute device when analysing: cpu, cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parser(subparsers):
    import argparse

    p = subparsers.add_parser("interpret", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", metavar="REF.h5", help="reference file written by 'giip build'")
    p.add_argument("inputs", metavar="INPUT", nargs="+",
                   help="frames: 'giip apply' output (annotated) or plain trajectories (analysed here)")
    add_input_options(p)
    p.add_argument("--quantities", default=None, metavar="Q1,Q2",
                   help="only these quantities (names as in the table; default all)")
    p.add_argument("--no-voronoi", action="store_true", help="skip the Voronoi volumes (OVITO)")
    p.add_argument("--symmetry", default=None, metavar="G1,G2",
                   help="add the continuous symmetry measure of each atom's environment for these point groups "
                        "(C2..C6, D2h, D3h, T, Td, O, Oh, I, Ih; 1 = that symmetry), as quantities symmetry_G; about "
                        "0.1 s per atom and group: use --max-atoms")
    p.add_argument("--symmetry-sigma", type=float, default=0.5, metavar="S",
                   help="Gaussian width of the symmetry measure (default 0.5, in the structure's length units)")
    p.add_argument("--strain-reference", default=None, metavar="FILE",
                   help="add volumetric_strain and shear_strain, OVITO's atomic strain of every atom against "
                        "this reference configuration of the same atoms (e.g. the perfect lattice; matched by id)")
    p.add_argument("--strain-cutoff", type=float, default=None, metavar="C",
                   help="neighbour cutoff of the atomic strain (default: the map's r_outer)")
    p.add_argument("--symmetry-species", action="store_true",
                   help="the symmetry measure with the map's species weights (default: the positions alone)")
    p.add_argument("--plane", default=None, metavar="I,J", help="plane of dcI and dcJ for the best direction")
    p.add_argument("--target", default=None, metavar="Q",
                   help="quantity of the best direction (default coordination)")
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="write PNG figures: each quantity against its best coordinate, the best direction")
    p.add_argument("--render", default=None, metavar="PNG",
                   help="with --plane: render the first frame coloured by the orthogonal direction (OVITO)")
    g = p.add_argument_group("conformal autoencoder (which part of the map the named quantities do not explain)")
    g.add_argument("--conformal", default=None, metavar="Q1,Q2",
                   help="train conformal autoencoders on the coordinates with these named quantities (any "
                        "quantity of the table, e.g. frac_Ni,voronoi_volume) and 0 .. --max-rest remainder dimensions")
    g.add_argument("--max-rest", type=int, default=3, metavar="K", help="most remainder dimensions tried (default 3)")
    g.add_argument("--conformal-output", default=None, metavar="OUT.dump",
                   help="the frames with the remainder of every analysed atom as columns d2_giip_rest[1..k] "
                        "(.dump or .extxyz), for OVITO's Color coding")
    g.add_argument("--epochs", type=int, default=300, help="most training epochs per autoencoder (default 300)")
    add_json_option(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def check_inputs(paths):
    for path in paths:
        if not os.path.exists(path) and not any(ch in path for ch in "*?["):
            raise CLIError(f"input file not found: {path}")


def collect(args, ref, inputs, log=None):
    from ..interpret import collect_samples
    from ..io import parse_type_names

    if args.max_atoms is not None and args.max_atoms < 1:
        raise CLIError("--max-atoms must be at least 1")
    tn = parse_type_names(args.type_names) if args.type_names else None
    voronoi = not getattr(args, "no_voronoi", False)
    wanted = getattr(args, "quantities", None)
    if wanted and not any(q.strip().startswith("voronoi") for q in wanted.split(",")):
        voronoi = False  # not asked for: skip the tessellation
    symmetry = None
    if getattr(args, "symmetry", None):
        from ..interpret.symmetry import GROUPS

        groups = [g.strip() for g in args.symmetry.split(",") if g.strip()]
        bad = [g for g in groups if g not in GROUPS]
        if bad or not groups:
            raise CLIError(f"--symmetry: unknown point group(s) {', '.join(bad) or '(none)'}; known: {', '.join(GROUPS)}")
        if not args.symmetry_sigma > 0:
            raise CLIError("--symmetry-sigma must be positive")
        if ref.dim != 3:
            raise CLIError("--symmetry: the symmetry measure is for 3D environments; this reference is 2D")
        symmetry = {"groups": groups, "sigma": args.symmetry_sigma, "species": args.symmetry_species}
    strain = None
    if getattr(args, "strain_reference", None):
        if not os.path.exists(args.strain_reference):
            raise CLIError(f"--strain-reference: file not found: {args.strain_reference}")
        cutoff = args.strain_cutoff if args.strain_cutoff is not None else ref.environments.r_outer
        if not cutoff > 0:
            raise CLIError("--strain-cutoff must be positive")
        strain = {"reference": args.strain_reference, "cutoff": cutoff}
    elif getattr(args, "strain_cutoff", None) is not None:
        raise CLIError("--strain-cutoff needs --strain-reference (the configuration the strain is measured from)")
    return collect_samples(ref, inputs, frames=args.frames, type_names=tn, dim=args.dim,
                           max_atoms=args.max_atoms, seed=args.seed, recompute=args.recompute,
                           voronoi=voronoi, device=args.device,
                           progress=not args.no_progress, log=log, symmetry=symmetry, strain=strain)


def run(args) -> int:
    from ..interpret import best_direction, r2_table
    from ..interpret.figures import coordinate_labels, fig_direction, fig_quantity_scatter

    ref = load_reference(args.reference)
    check_inputs(args.inputs)
    plane = parse_pair(args.plane, "--plane") if args.plane else None
    if plane and max(plane) > ref.n_coords:
        raise CLIError(f"--plane {args.plane}: the map has {ref.n_coords} selected coordinates (dc1..dc{ref.n_coords})")
    if args.render and not plane:
        raise CLIError("--render needs --plane (and --target)")
    if args.target and not plane:
        raise CLIError("--target needs --plane I,J")
    say = (lambda m: None) if args.no_progress else (lambda m: print(f"giip interpret: {m}", file=sys.stderr))
    out = sys.stderr if args.json == "-" else sys.stdout  # stdout is for the JSON then
    echo = lambda *a: print(*a, file=out)  # noqa: E731
    samples = collect(args, ref, args.inputs, log=say)
    quantities = dict(samples.quantities)
    if args.quantities:
        wanted = [q.strip() for q in args.quantities.split(",") if q.strip()]
        unknown = [q for q in wanted if q not in quantities]
        if unknown:
            raise CLIError(f"unknown quantities {unknown}; available: {', '.join(quantities)}")
        quantities = {q: quantities[q] for q in wanted}
    labels = [f"dc{j + 1}" for j in range(ref.n_coords)]
    psi = [f"psi{int(i) + 1}" for i in ref.selected]
    table = r2_table(samples.coordinates, quantities, labels)
    how = "read from giip apply columns" if samples.annotated else "computed"
    echo(f"{len(samples)} analysed atoms from {len(samples.sources)} frame(s) (coordinates {how})")
    echo("r^2 of the least-squares line of each coordinate against each quantity:")
    echo(table.format(header_extra=psi))
    result = {"reference": args.reference, "inputs": list(args.inputs), "n_atoms": len(samples),
              "n_frames": len(samples.sources), "annotated": samples.annotated, "eigenvectors": psi,
              "table": table.to_dict()}
    direction = None
    if plane:
        target = args.target or "coordination"
        if target not in samples.quantities:
            raise CLIError(f"unknown --target {target!r}; available: {', '.join(samples.quantities)}")
        i, j = plane[0] - 1, plane[1] - 1
        xy = samples.coordinates[:, [i, j]]
        try:
            direction = best_direction(xy, samples.quantities[target])
        except ValueError as e:
            raise CLIError(f"best direction for {target}: {e}") from None
        echo(f"best direction for {target} in the plane (dc{plane[0]}, dc{plane[1]}): "
              f"{direction.angle_deg:.1f} deg from dc{plane[0]}, unit vector ({direction.direction[0]:.4f}, "
              f"{direction.direction[1]:.4f}), r^2 = {direction.r2:.4f} (dc{plane[0]} alone {direction.r2_axes[0]:.4f}, "
              f"dc{plane[1]} alone {direction.r2_axes[1]:.4f}); orthogonal direction r^2 = {direction.r2_orthogonal:.4f}")
        result["direction"] = {"plane": list(plane), "target": target, **direction.to_dict()}
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        clabels = coordinate_labels(ref)
        files = []
        for q in table.quantities:
            col, val = table.best(q)
            if not np.isfinite(val):
                continue
            k = labels.index(col)
            files.append(fig_quantity_scatter(samples.coordinates[:, k], samples.quantities[q],
                                              os.path.join(args.figures, f"r2_{q}.png"), xlabel=clabels[k], qlabel=q,
                                              r2=val, title=f"{q}: best coordinate {clabels[k]}"))
        if direction is not None:
            files.append(fig_direction(xy, samples.quantities[target], direction,
                                       os.path.join(args.figures, f"direction_{target}.png"),
                                       labels=(clabels[i], clabels[j]), qlabel=target))
        for f in files:
            print(f"wrote {f}", file=sys.stderr)
        result["figures"] = files
    if args.render:
        values, atoms = first_frame_values(args, ref, samples, direction.project_orthogonal(xy))
        from ..interpret.render import render_values

        path, lim = render_values(atoms, values, args.render)
        print(f"wrote {path} (first frame, colour = projection on the orthogonal direction, "
              f"{lim[0]:.3g} .. {lim[1]:.3g}; grey: not analysed)", file=sys.stderr)
        result["render"] = path
    if args.conformal:
        result["conformal"] = run_conformal(args, ref, samples, echo)
    if args.json:
        write_json(args.json, result)
    return 0


def run_conformal(args, ref, samples, echo) -> dict:
    """``--conformal``: the scan of remainder dimensions, its report, figures and per-atom output."""
    from ..interpret.conformal import MIN_ATOMS, conformal_scan

    named = [q.strip() for q in args.conformal.split(",") if q.strip()]
    unknown = [q for q in named if q not in samples.quantities]
    if not named or unknown:
        raise CLIError(f"--conformal: unknown quantities {unknown}; available: {', '.join(samples.quantities)}")
    if args.max_rest < 0 or args.max_rest > 10:
        raise CLIError("--max-rest must be between 0 and 10")
    if len(samples) < MIN_ATOMS:
        raise CLIError(f"--conformal needs at least {MIN_ATOMS} analysed atoms, got {len(samples)}")
    p = np.column_stack([samples.quantities[q] for q in named])
    try:
        scan = conformal_scan(samples.coordinates, p, named, args.max_rest, seed=args.seed, epochs=args.epochs,
                              progress=not args.no_progress)
    except ValueError as e:
        raise CLIError(f"--conformal: {e}") from None
    others = {k: v for k, v in samples.quantities.items() if k not in named}
    rest_r2 = scan.remainder_r2(others)
    echo(f"conformal autoencoder on {samples.coordinates.shape[1]} coordinates with the named quantities "
         f"{', '.join(named)}:")
    echo("  remainder dims   held-out reconstruction error (fraction of the variance)   r^2 of p_hat")
    for r in scan.results:
        echo(f"  {r.n_rest:14d}   {r.reconstruction_error:10.4f}   "
             + ", ".join(f"{k} {v:.3f}" for k, v in r.r2.items()))
    at_limit = scan.n_unexplained == args.max_rest and scan.chosen.reconstruction_error > scan.tolerance
    echo(f"  unexplained parameters beyond the named quantities: {scan.n_unexplained}"
         + (f" or more (the most tried, still above {scan.tolerance:g} of the variance; raise --max-rest)"
            if at_limit else ""))
    for dim, row in rest_r2.items():
        top = sorted(((v, k) for k, v in row.items() if np.isfinite(v)), reverse=True)[:5]
        echo(f"  {dim}: r^2 with " + (", ".join(f"{k} {v:.3f}" for v, k in top) or "no other quantity"))
    out = {**scan.to_dict(), "remainder_r2": rest_r2, "at_limit": bool(at_limit)}
    if args.figures:
        from ..interpret.figures import fig_conformal

        files = fig_conformal(scan, rest_r2, args.figures)
        for f in files:
            print(f"wrote {f}", file=sys.stderr)
        out["figures"] = files
    if args.conformal_output:
        out["output"] = write_remainder(args, ref, samples, scan.chosen.remainder, args.conformal_output)
        print(f"wrote {args.conformal_output} (columns d2_giip_rest[1..{scan.chosen.n_rest}])", file=sys.stderr)
    return out


def write_remainder(args, ref, samples, remainder, path):
    """The frames read, with the remainder of every analysed atom (NaN elsewhere) as d2_giip_rest[j]."""
    from ..io import AnnotatedWriter, iter_frames
    from ..io.atomic import check_output
    from ..species import parse_type_names, reference_type_numbers

    check_output(path, list(args.inputs) + [args.reference])
    tn = parse_type_names(args.type_names) if args.type_names else (dict(ref.type_names) or None)
    frames = iter_frames(args.inputs, frames=args.frames, type_names=tn, dim=args.dim or ref.dim)
    with AnnotatedWriter(path, type_names=tn or reference_type_numbers(ref)) as w:
        for k, frame in enumerate(frames):
            vals = np.full((len(frame.atoms), remainder.shape[1]), np.nan)
            m = samples.frame == k
            vals[samples.atom_index[m]] = remainder[m]
            if w.format == "lammps-dump":
                cols = {f"d2_giip_rest[{j + 1}]": vals[:, j] for j in range(vals.shape[1])}
            else:
                cols = {"giip_rest": vals}
            w.write(frame, cols)
    return path


def add_json_option(p):
    """``--json FILE``: the numbers of the command, written by :func:`write_json`."""
    p.add_argument("--json", default=None, metavar="FILE", help="write the numbers as JSON ('-' = stdout)")


def write_json(path, data) -> None:
    """The numbers of a command as JSON: to stdout for ``-``, else to the file ``path``."""
    text = json.dumps(data, indent=1)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as fh:
            fh.write(text + "\n")


def first_frame_values(args, ref, samples, values):
    """Per-atom array (NaN where not analysed) of the first frame read, and its atoms."""
    from ..io import iter_frames, parse_type_names

    tn = parse_type_names(args.type_names) if args.type_names else (dict(ref.type_names) or None)
    frame = next(iter_frames(args.inputs, frames=args.frames, type_names=tn, dim=args.dim or ref.dim))
    out = np.full(len(frame.atoms), np.nan)
    m = samples.frame == 0
    out[samples.atom_index[m]] = np.asarray(values)[m]
    return out, frame.atoms
