"""``giip report REF.h5 -o DIR``: PNG figures of a reference map.

* ``eigenvalues_r2.png``: eigenvalue against the local-linear-regression r^2 of the leading
  diffusion coordinates, kept (parsimonious) ones marked (the paper's Fig. 1b / 2b);
* ``training_plane.png``: the training environments in the plane of two selected coordinates
  (``--coords``, default 1,2), coloured by class;
* ``cluster_error.png``: largest class diameter against the number of classes, the chosen one marked;
* ``exemplars.png``: the medoid environment of each class, drawn in 3D (in the plane for 2D maps);
* with ``--generator GEN.h5`` (``giip generate train --reference REF.h5``): ``generated_dc1.png``,
  ``generated_dc2.png``: motifs generated at evenly spaced values of each of the first two
  selected coordinates (5th to 95th percentile of the training set), rendered with OVITO.

Coordinates are numbered as the ``d2_giip_dc[1..k]`` columns of ``giip apply``: dcJ is the J-th
selected (parsimonious) coordinate; the figures also give its eigenvector number (psiI).
"""
from __future__ import annotations

import os
import sys

from . import CLIError

HELP = "PNG figures of a reference map: eigenvalues vs r^2, training set by class, cluster error, exemplars"


def add_parser(subparsers):
    p = subparsers.add_parser("report", help=HELP, description=__doc__,
                              formatter_class=_raw_formatter())
    p.add_argument("reference", metavar="REF.h5", help="reference file written by 'giip build'")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNG files (created)")
    p.add_argument("--coords", default="1,2", metavar="I,J",
                   help="selected coordinates of the training-set plane (default 1,2)")
    p.add_argument("--n-leading", type=int, default=20, metavar="N",
                   help="leading coordinates in the eigenvalue / r^2 figure (default 20)")
    p.add_argument("--max-classes", type=int, default=24, metavar="N",
                   help="most classes drawn in the exemplar figure (default 24)")
    p.add_argument("--criterion", choices=("llr", "paper"), default="llr",
                   help="paper: also the eigenvalue figure in the paper's convention (polynomial-regression r^2 on "
                        "the preceding coordinates, near 1 = redundant) and the coordinates that criterion keeps, "
                        "printed beside the map's (local linear regression) selection")
    p.add_argument("--generator", metavar="GEN.h5",
                   help="a generative model of this map: also render motifs generated along dc1 and dc2")
    p.add_argument("--generated-steps", type=int, default=5, metavar="N",
                   help="motifs per coordinate with --generator (default 5)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def _raw_formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def parse_pair(text, what="--coords"):
    """``"2,3"`` -> ``(2, 3)`` (1-based), with a clear error."""
    try:
        parts = [int(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise CLIError(f"{what} expects two coordinate numbers like 1,2, got {text!r}") from None
    if len(parts) != 2:
        raise CLIError(f"{what} expects two coordinate numbers like 1,2, got {text!r}")
    if parts[0] == parts[1]:
        raise CLIError(f"{what}: the two coordinates must differ, got {text!r}")
    if min(parts) < 1:
        raise CLIError(f"{what}: coordinates are numbered from 1 (dc1), got {text!r}")
    return tuple(parts)


def load_reference(path):
    from ..reference import ReferenceMap

    if not os.path.exists(path):
        raise CLIError(f"reference file not found: {path} (make one with 'giip build')")
    return ReferenceMap.load(path)


def run(args) -> int:
    from ..interpret.figures import write_report

    ref = load_reference(args.reference)
    coords = parse_pair(args.coords)
    if ref.n_coords >= 2 and max(coords) > ref.n_coords:
        raise CLIError(f"--coords {args.coords}: the map has {ref.n_coords} selected coordinates (dc1..dc{ref.n_coords})")
    if args.n_leading < 1 or args.max_classes < 1:
        raise CLIError("--n-leading and --max-classes must be at least 1")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CLIError(f"{args.output} exists and is not a folder")
    gen = None
    if args.generator:
        from ..generate import MotifModel
        from ..generate.search import check_model_fits_map

        if not os.path.exists(args.generator):
            raise CLIError(f"generative model not found: {args.generator}")
        if args.generated_steps < 2:
            raise CLIError("--generated-steps must be at least 2")
        gen = MotifModel.load(args.generator)
        try:
            check_model_fits_map(gen, ref)
        except ValueError as e:
            raise CLIError(f"--generator: {e}") from None
    paths = write_report(ref, args.output, coords=coords, n_leading=args.n_leading, max_classes=args.max_classes,
                         criterion=args.criterion)
    if args.criterion == "paper":
        r2, sel = ref.paper_criterion()
        print("giip report: coordinates kept, local linear regression (the map's): "
              + ", ".join(str(i + 1) for i in ref.selected) + "; the paper's polynomial-regression criterion: "
              + ", ".join(str(i + 1) for i in sel), file=sys.stderr)
    if gen is not None:
        from ..generate.search import along
        from ..interpret.render import render_motifs

        for j in range(min(2, ref.n_coords)):
            motifs, values, found = along(gen, ref, j, args.generated_steps)
            path = os.path.join(args.output, f"generated_dc{j + 1}.png")
            render_motifs(gen, motifs, path)
            got = ", ".join(f"{v:.3g}->{f.coordinates[0, j]:.3g}" for v, f in zip(values, found))
            print(f"giip report: dc{j + 1} requested -> obtained: {got}", file=sys.stderr)
            paths.append(path)
    if ref.n_coords < 2:
        print("giip report: the map has fewer than 2 selected coordinates: no training-set plane", file=sys.stderr)
    for p in paths:
        print(p)
    return 0
