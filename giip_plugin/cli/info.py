"""``giip info REF.h5``: what a reference file holds (parameters, training set, classes, the
eigenvalue / r / r^2 table with the selected coordinates marked, provenance)."""
from __future__ import annotations

import json

HELP = "show the parameters, classes and diffusion coordinates of a reference file"


def add_parser(subparsers):
    p = subparsers.add_parser("info", help=HELP, description=HELP + ".")
    p.add_argument("reference", metavar="REF.h5", help="reference file written by 'giip build'")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..reference import ReferenceMap

    ref = ReferenceMap.load(args.reference)
    if args.json:
        s = ref.summary()
        s["file"] = args.reference
        print(json.dumps(s, indent=1, default=_default))
    else:
        print(f"file: {args.reference}")
        print(ref.describe())
    return 0


def _default(o):
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
