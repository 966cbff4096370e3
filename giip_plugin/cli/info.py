"""``giip info REF.h5``: what a reference file holds (parameters, training set, classes, the
eigenvalue / r / r^2 table with the selected coordinates marked, provenance)."""
from __future__ import annotations

import json

HELP = "show the parameters, classes and diffusion coordinates of a reference file"


def add_parser(subparsers):
    p = subparsers.add_parser("info", help=HELP, description=HELP + ".")
    p.add_argument("reference", metavar="REF.h5", help="reference file written by 'giip build' (or a softness model "
                   "written by 'giip softness train', or a generative model by 'giip generate train')")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..reference import ReferenceMap
    from ..softness import SoftnessModel, is_softness_file

    if is_softness_file(args.reference):
        model = SoftnessModel.load(args.reference)
        if args.json:
            print(json.dumps({"file": args.reference, "kind": "softness", "features": model.features.to_dict(),
                              "centers": list(model.centers), "C": model.C, "cv_accuracy": model.cv_accuracy,
                              "n_train": model.n_train, "labels": model.labels, "provenance": model.provenance},
                             indent=1, default=_default))
        else:
            print(f"file: {args.reference}")
            print(model.describe())
        return 0
    from ..generate import MotifModel, is_generative_file

    if is_generative_file(args.reference):
        gen = MotifModel.load(args.reference)
        if args.json:
            print(json.dumps({"file": args.reference, "kind": "generative", "n": gen.n, "latent": gen.latent,
                              "hidden": list(gen.hidden), "species": list(gen.species_names),
                              "environments": gen.environments.to_dict(), "sigma": gen.sigma,
                              "history": {k: v for k, v in gen.history.items() if not isinstance(v, list)},
                              "provenance": gen.provenance}, indent=1, default=_default))
        else:
            print(f"file: {args.reference}")
            print(gen.describe())
        return 0
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
