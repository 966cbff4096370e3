"""``giip build TRAJ... -o REF.h5``: build a reference map from training trajectories.

Example (the NiNb glass of the paper)::

    giip build quench*.dump -o ninb.h5 --type-names 1=Ni,2=Nb --centers Ni --species sign \\
        --r-inner 3 --r-outer 4 --sigma 1 --n-train 1700 --epsilon 1.5

The training distance matrix is computed in blocks and checkpointed in ``REF.h5.partial/``: an
interrupted build (Ctrl-C, a killed job) resumes where it stopped when the same command is run
again. The checkpoint is removed once the reference file is written.
"""
from __future__ import annotations

import os
import sys
import time


from . import CLIError

HELP = "build a reference map (classes + diffusion map) from training trajectories"


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not v > 0:
        raise ValueError(f"{text!r} must be positive")
    return v


def add_parser(subparsers):
    import argparse

    p = subparsers.add_parser(
        "build",
        help=HELP,
        description=HELP + ". " + __doc__.split("\n\n", 1)[1].replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("traj", nargs="+", metavar="TRAJ",
                   help="training trajectories: LAMMPS text dumps, extxyz, ASE .traj, or anything ase.io reads")
    p.add_argument("-o", "--output", required=True, metavar="REF.h5", help="reference file to write")

    g = p.add_argument_group("input")
    g.add_argument("--type-names", metavar="1=Ni,2=Nb", help="species names of numeric LAMMPS types")
    g.add_argument("--frames", metavar="START:STOP:STEP", help="frames of each file to use (default all)")
    g.add_argument("--dim", type=int, choices=(2, 3), help="declare a 2D or 3D system (default: 2D when all z are equal)")

    g = p.add_argument_group("local environments")
    g.add_argument("--r-inner", type=float, required=True, help="weight 1 below this distance")
    g.add_argument("--r-outer", type=float, required=True, help="weights fall to 0 at this distance (cubic spline)")
    g.add_argument("--sigma", type=float, required=True, help="GIIP Gaussian width (units of the positions)")
    g.add_argument("--species-sigma", metavar="NAME=S,...",
                   help="per-species Gaussian widths (e.g. Ni=1.0,Nb=1.2; species not named use --sigma); "
                        "numeric types are read through --type-names")
    g.add_argument("--species", choices=("none", "sign", "vector"), default="none",
                   help="species encoding of neighbour weights (default none; sign: +1/-1 for a binary system)")
    g.add_argument("--positive", metavar="NAME",
                   help="the +1 species of --species sign (default: the first of --centers, else the first type name)")
    g.add_argument("--centers", metavar="NAMES", help="species (or numeric types named by --type-names) to centre environments on, comma "
                        "separated (default: all atoms)")
    g.add_argument("--group", choices=("O3", "SO3", "O2", "SO2"),
                   help="orientation group (default O3 in 3D, O2 in 2D; SO3/SO2 when chirality matters)")

    g = p.add_argument_group("metric")
    g.add_argument("--metric", choices=("giip", "soap"), default="giip",
                   help="distance between environments: giip (default, the GIIP distance) or soap (SOAP power "
                        "spectra of the same environments: same sigma, cutoffs and species; docs/soap_vs_giip.md)")
    g.add_argument("--soap-n-max", type=int, metavar="N", help="with --metric soap: radial basis functions (default 8)")
    g.add_argument("--soap-l-max", type=int, metavar="L", help="with --metric soap: largest angular channel (default 6)")

    g = p.add_argument_group("training atoms")
    g.add_argument("--n-train", type=int, metavar="N",
                   help="training environments, spread evenly over all files and frames (default 1000; "
                        "more than available takes all, with a warning)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the training sample (default 0)")
    g.add_argument("--select-by", metavar="COLUMN",
                   help="instead of --n-train: pick training atoms by a per-atom column (e.g. c_pe), over all frames")
    g.add_argument("--select-lowest", type=int, default=0, metavar="N1", help="with --select-by: the N1 lowest values")
    g.add_argument("--select-highest", type=int, default=0, metavar="N2", help="with --select-by: the N2 highest values")

    g = p.add_argument_group("classes and diffusion map")
    ex = g.add_mutually_exclusive_group()
    ex.add_argument("--classes", type=int, metavar="N", help="number of complete-linkage classes")
    ex.add_argument("--max-diameter", type=float, metavar="D",
                    help="fewest classes whose every class has diameter <= D (atoms of difference). "
                         "Default without --classes/--max-diameter: the knee of the cluster-error curve")
    g.add_argument("--epsilon", default="auto", metavar="E|auto",
                   help="diffusion-map kernel scale (default auto: median distance to the 10th nearest "
                        "training environment; the choice is printed and stored)")
    g.add_argument("--n-coords", default="auto", metavar="K|auto",
                   help="diffusion coordinates to keep (default auto: the non-harmonic ones among the first 10, "
                        "local linear regression r >= 0.3)")
    g.add_argument("--n-eigenpairs", type=int, default=20, help="eigenpairs computed (default 20)")

    g = p.add_argument_group("computation")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786): run the distance blocks on that cluster; "
                        "default: locally, all cores, no cluster")
    g.add_argument("--workers", type=int, metavar="N", help="threads of the local computation (default: all cores)")
    g.add_argument("--block-size", type=int, metavar="B", help="rows per checkpointed block (default 64)")
    g.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default REF.h5.partial)")
    g.add_argument("--restart", action="store_true", help="discard an existing checkpoint and start afresh")
    g.add_argument("--device", default=None, help="torch device: cpu, cuda (default: cuda when available)")
    g.add_argument("--exact", action="store_true",
                   help="run the PyTorch reference implementation of the rotation search instead of the compiled one "
                        "(the same algorithm and answers, about ten times slower; a cross-check)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def _parse_auto(text, kind, name):
    if text is None or str(text).strip().lower() == "auto":
        return "auto"
    try:
        v = kind(text)
    except ValueError:
        raise CLIError(f"--{name} must be 'auto' or a {'number' if kind is float else 'positive integer'}, got {text!r}") from None
    if not v > 0:
        raise CLIError(f"--{name} must be positive, got {text!r}")
    return v


def _command_line(args) -> str:
    """The command, rebuilt from the parsed options (:func:`giip_plugin.cli.rebuild_command`)."""
    from . import rebuild_command

    return rebuild_command(args, ["giip", "build"], args.traj, args.output, skip=("traj", "output", "restart"),
                           zero_is_unset=("select_lowest", "select_highest"))


def _log(msg):
    print(f"giip build: {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ..io import parse_type_names
    from ..reference import ReferenceMap

    from ..environments.cutoff import check_cutoffs
    from ..io.atomic import check_output
    from ..io.frames import expand_paths
    from ..validation import check_device, check_sigma

    out = args.output
    outdir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(outdir):
        raise CLIError(f"the output folder {outdir} does not exist")
    if args.r_inner is None or args.r_outer is None:
        raise CLIError("give --r-inner and --r-outer")
    # every option is checked before any input is read
    for path in args.traj:
        if not os.path.exists(path) and not any(ch in path for ch in "*?["):
            raise CLIError(f"training trajectory not found: {path}")
    check_output(out, expand_paths(args.traj))
    try:
        check_sigma(args.sigma)
    except ValueError as e:
        raise CLIError(f"--sigma: {e}") from None
    check_cutoffs(args.r_inner, args.r_outer)
    check_device(args.device)
    if args.block_size is not None and args.block_size < 1:
        raise CLIError(f"--block-size must be a positive number of rows, got {args.block_size}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be a positive number of threads, got {args.workers}")
    epsilon = _parse_auto(args.epsilon, float, "epsilon")
    n_coords = _parse_auto(args.n_coords, int, "n-coords")
    type_names = parse_type_names(args.type_names) if args.type_names else None
    centers = tuple(c for c in (args.centers or "").replace(",", " ").split() if c) or None
    species_sigma = _parse_species_sigma(args.species_sigma, type_names) if args.species_sigma else None
    if args.select_by is None and (args.select_lowest or args.select_highest):
        raise CLIError("--select-lowest/--select-highest need --select-by COLUMN")
    if args.select_by is not None and args.n_train is not None:
        raise CLIError("choose the training atoms with --n-train or with --select-by, not both")
    if args.select_by is not None and args.select_lowest + args.select_highest < 1:
        raise CLIError("--select-by needs --select-lowest N1 and/or --select-highest N2")
    n_train = None if args.select_by is not None else (args.n_train if args.n_train is not None else 1000)
    if n_train is not None and n_train < 2:
        raise CLIError(f"--n-train must be at least 2, got {n_train}")
    if args.classes is not None and args.classes < 1:
        raise CLIError("--classes must be a positive integer")
    if args.max_diameter is not None and args.max_diameter < 0:
        raise CLIError("--max-diameter must be >= 0")
    _check_metric_options(args)
    checkpoint = args.checkpoint or (os.path.abspath(out) + ".partial")
    command_line = _command_line(args)
    t0 = time.time()
    # warnings are printed as 'giip build: warning: ...' by giip_plugin.cli.main
    ref = ReferenceMap.from_files(
        args.traj,
        r_inner=args.r_inner, r_outer=args.r_outer, sigma=args.sigma, encoding=args.species,
        species_sigma=species_sigma,
        positive=args.positive, centers=centers, type_names=type_names, frames=args.frames, dim=args.dim,
        group=args.group or "auto", n_train=n_train, seed=args.seed, select_by=args.select_by,
        select_lowest=args.select_lowest, select_highest=args.select_highest,
        n_classes=args.classes, max_diameter=args.max_diameter, epsilon=epsilon, n_coords=n_coords,
        n_eigenpairs=args.n_eigenpairs, checkpoint=checkpoint, restart=args.restart,
        scheduler=args.scheduler, block_size=args.block_size, n_workers=args.workers, device=args.device,
        progress=not args.no_progress, command_line=command_line, log=_log, reference_search=args.exact,
        metric=args.metric, soap_n_max=args.soap_n_max, soap_l_max=args.soap_l_max,
    )
    info = ref.diffusion.epsilon_info
    if info.get("method") != "given":
        _log(f"epsilon = {ref.epsilon:.4g} chosen automatically ({info.get('method')}: median distance to the "
             f"{info.get('k')}-th nearest training environment x {info.get('factor', 1):g}); "
             "pass --epsilon to fix it")
    cs = ref.class_selection
    _log(f"{ref.n_classes} classes ({cs['method']} = {cs['value']}), largest diameter {cs['largest_diameter']:.3f}; "
         f"sizes {ref.classes.sizes.tolist()[:20]}{' ...' if ref.n_classes > 20 else ''}")
    _log(f"diffusion coordinates kept: {(ref.selected + 1).tolist()} of {len(ref.eigenvalues)} "
         f"({ref.diffusion.n_negative} negative eigenvalues)")
    ref.save(out)
    _log(f"wrote {out} ({ref.n_train} training environments) in {time.time() - t0:.1f} s; "
         f"see 'giip info {out}'")
    return 0


def _check_metric_options(args):
    """The metric's options, checked before any input is read."""
    if args.metric != "soap":
        if args.soap_n_max is not None or args.soap_l_max is not None:
            raise CLIError("--soap-n-max / --soap-l-max are options of --metric soap")
        return
    from ..reference.soap import SOAPSettings

    try:
        SOAPSettings(n_max=8 if args.soap_n_max is None else args.soap_n_max,
                     l_max=6 if args.soap_l_max is None else args.soap_l_max)
    except ValueError as e:
        raise CLIError(f"--soap-n-max / --soap-l-max: {e}") from None
    if args.species_sigma:
        raise CLIError("--metric soap has one Gaussian width for every species: --species-sigma cannot be represented "
                       "(drop it, or use --metric giip)")
    if args.group in ("SO3", "SO2"):
        raise CLIError(f"--metric soap: the SOAP power spectrum is invariant under reflections too, so --group "
                       f"{args.group} cannot be represented (use --group {args.group[1:]} or --metric giip)")
    if args.exact:
        raise CLIError("--exact chooses the GIIP rotation search; the SOAP metric has no search")
    if args.scheduler:
        raise CLIError("--scheduler distributes the GIIP distance computation; a SOAP map is one matrix product "
                       "(drop --scheduler)")


def _parse_species_sigma(text, type_names):
    """``"Ni=1.0,Nb=1.2"`` -> ``{"Ni": 1.0, "Nb": 1.2}`` (numeric types named through type_names)."""
    out = {}
    for item in str(text).replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CLIError(f"--species-sigma: '{item}' is not NAME=SIGMA (e.g. Ni=1.0,Nb=1.2)")
        try:
            s = float(value)
        except ValueError:
            raise CLIError(f"--species-sigma: the width of {name} must be a number, got '{value.strip()}'") from None
        if not (s > 0 and s < float("inf")):
            raise CLIError(f"--species-sigma: the width of {name} must be positive, got {s:g}")
        if type_names and name.isdigit() and int(name) in type_names:
            name = type_names[int(name)]
        out[name] = s
    if not out:
        raise CLIError("--species-sigma is empty (e.g. Ni=1.0,Nb=1.2)")
    return out
