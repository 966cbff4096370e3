"""``giip compare REF.h5 --a A... --b B... -o DIR``: how two ensembles of structures differ.

For two sets of frames (e.g. the fastest and the slowest quench of a glass) it draws the smoothed
densities of their analysed atoms in the plane of two selected diffusion coordinates and their
difference B - A (the paper's Fig. 3c), and prints the class populations of each set side by
side:

  DIR/density_difference.png   density of A, density of B, and B - A (red: more frequent in B)
  DIR/class_populations.png    % of the analysed atoms of each set in each class

The densities are Gaussian kernel estimates with one bandwidth for both sets (Scott's rule on
the pooled points unless --bandwidth is given), each normalised to 1, so the difference
integrates to 0; half its L1 norm (printed) is the fraction of atoms that would have to move to
turn one distribution into the other.

Inputs are 'giip apply' output (read as they are) or plain trajectories (analysed here;
--max-atoms N for a random subset of N centre atoms per frame). Coordinates are numbered as
the giip_dc columns: dcJ is the J-th selected coordinate. Default plane: dc2, dc3 (the two
after the leading one, as in the paper), or dc1, dc2 for a map with two coordinates.

Example:
  giip compare ninb.h5 --a fast_giip.dump --b slow_giip.dump --labels fast,slow -o cmp/
"""
from __future__ import annotations

import os
import sys

from . import CLIError
from .interpret import add_input_options, add_json_option, check_inputs, collect, write_json
from .report import load_reference, parse_pair

HELP = "compare two sets of frames: difference of densities in a plane of coordinates, class populations"


def add_parser(subparsers):
    import argparse

    p = subparsers.add_parser("compare", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", metavar="REF.h5", help="reference file written by 'giip build'")
    p.add_argument("--a", dest="set_a", nargs="+", required=True, metavar="FILE", help="frames of the first set (A)")
    p.add_argument("--b", dest="set_b", nargs="+", required=True, metavar="FILE", help="frames of the second set (B)")
    p.add_argument("--labels", default="A,B", metavar="NAME_A,NAME_B", help="names of the sets (default A,B)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the figures (created)")
    p.add_argument("--plane", default=None, metavar="I,J", help="plane of dcI and dcJ (default 2,3)")
    p.add_argument("--bins", type=int, default=120, help="grid points per axis (default 120)")
    p.add_argument("--bandwidth", default=None, metavar="H[,H2]",
                   help="kernel bandwidth along each axis (default: Scott's rule on both sets)")
    add_input_options(p)
    add_json_option(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def _bandwidth(text):
    if text is None:
        return None
    try:
        v = [float(x) for x in str(text).split(",")]
    except ValueError:
        raise CLIError(f"--bandwidth expects one or two positive numbers, got {text!r}") from None
    if len(v) not in (1, 2) or min(v) <= 0:
        raise CLIError(f"--bandwidth expects one or two positive numbers, got {text!r}")
    return v if len(v) == 2 else v * 2


def run(args) -> int:
    from ..interpret import class_populations, density_difference
    from ..interpret.figures import coordinate_labels, fig_density_difference, fig_populations

    ref = load_reference(args.reference)
    check_inputs(args.set_a + args.set_b)
    labels = [s.strip() for s in args.labels.split(",")]
    if len(labels) != 2 or not all(labels):
        raise CLIError(f"--labels expects two names like fast,slow, got {args.labels!r}")
    if ref.n_coords < 2:
        raise CLIError(f"the map has {ref.n_coords} selected coordinate(s); a plane needs two")
    plane = parse_pair(args.plane, "--plane") if args.plane else ((2, 3) if ref.n_coords >= 3 else (1, 2))
    if max(plane) > ref.n_coords:
        raise CLIError(f"--plane {args.plane}: the map has {ref.n_coords} selected coordinates (dc1..dc{ref.n_coords})")
    if args.bins < 8:
        raise CLIError("--bins must be at least 8")
    h = _bandwidth(args.bandwidth)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CLIError(f"{args.output} exists and is not a folder")
    say = (lambda m: None) if args.no_progress else (lambda m: print(f"giip compare: {m}", file=sys.stderr))
    out = sys.stderr if args.json == "-" else sys.stdout  # stdout is for the JSON then
    echo = lambda *a: print(*a, file=out)  # noqa: E731
    args.no_voronoi = True  # not needed here
    sa = collect(args, ref, args.set_a, log=say)
    sb = collect(args, ref, args.set_b, log=say)
    i, j = plane[0] - 1, plane[1] - 1
    dd = density_difference(sa.coordinates[:, [i, j]], sb.coordinates[:, [i, j]], bins=args.bins, bandwidth=h)
    pops = class_populations([sa.classes, sb.classes], ref.n_classes, labels)
    clab = coordinate_labels(ref)
    os.makedirs(args.output, exist_ok=True)
    f1 = fig_density_difference(dd, os.path.join(args.output, "density_difference.png"), labels=labels,
                                axes=(clab[i], clab[j]))
    f2 = fig_populations(pops, os.path.join(args.output, "class_populations.png"),
                         title=f"Class populations: {labels[0]} vs {labels[1]}")
    s = dd.summary()
    echo(f"{labels[0]}: {len(sa)} analysed atoms from {len(sa.sources)} frame(s); "
          f"{labels[1]}: {len(sb)} from {len(sb.sources)}")
    echo(f"plane (dc{plane[0]}, dc{plane[1]}), bandwidth {s['bandwidth'][0]:.4g} x {s['bandwidth'][1]:.4g}; "
          f"integrals {s['integral_a']:.4f} / {s['integral_b']:.4f}, of the difference {s['integral_difference']:.2e}; "
          f"half L1 distance {s['l1_half']:.4f}")
    echo(f"largest excess of {labels[1]} at ({s['max_b_over_a_at'][0]:.3g}, {s['max_b_over_a_at'][1]:.3g}), "
          f"of {labels[0]} at ({s['max_a_over_b_at'][0]:.3g}, {s['max_a_over_b_at'][1]:.3g})")
    echo("class populations (count, % of the set; change = B - A in percentage points):")
    echo(pops.format())
    print(f"wrote {f1}\nwrote {f2}", file=sys.stderr)
    if args.json:
        write_json(args.json, {"reference": args.reference, "labels": labels, "plane": list(plane),
                               "density": s, "populations": pops.to_dict(), "figures": [f1, f2]})
    return 0
