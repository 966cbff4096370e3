"""``giip softness train TRAJ... -o SOFT.h5``: train a softness model (Cubuk et al.) from LAMMPS
trajectories.

Rearrangements are found by ``p_hop`` over a window (default 10 time units, the thesis's; give
``--dt`` and the dump interval is read from the timesteps, or ``--window-frames``) with the
threshold ``--p-c`` (default 0.2, Kob-Andersen in Lennard-Jones units), or by ``D2min`` over a
lag (``--labels d2min``, OVITO's atomic strain modifier). The model is a linear SVM per centre
species on standardised structure functions, C chosen by 5-fold cross-validation; the command
reports the cross-validated accuracy and, on the held-out last frames, the fraction of
rearranging particles with S > 0. Apply it with ``giip apply SOFT.h5 DUMP -o OUT`` (column
``d_softness``); ``giip info SOFT.h5`` shows it.
"""
from __future__ import annotations

import os
import sys
import time

from . import CLIError


def add_parser(sub):
    p = sub.add_parser("softness", help="train a softness model from trajectories (giip softness train)",
                       description=__doc__)
    ss = p.add_subparsers(dest="softness_command", metavar="ACTION")
    t = ss.add_parser("train", help="train a softness model", description=__doc__)
    t.add_argument("traj", nargs="+", metavar="TRAJ", help="LAMMPS dumps of consecutive frames (id type xu yu zu ...)")
    t.add_argument("-o", "--output", required=True, metavar="SOFT.h5")
    t.add_argument("--type-names", metavar="1=A,2=B", help="species names of numeric LAMMPS types")
    t.add_argument("--frames", metavar="START:STOP:STEP", help="frames of each trajectory (default all)")
    t.add_argument("--centers", metavar="NAMES", help="species to train a hyperplane for (default: every species)")
    g = t.add_argument_group("rearrangements")
    g.add_argument("--labels", choices=("phop", "d2min"), default="phop", help="p_hop (default) or D2min")
    g.add_argument("--p-c", type=float, default=0.2, help="p_hop threshold (default 0.2, length^2)")
    g.add_argument("--window", type=float, default=10.0, help="p_hop window in time units (default 10)")
    g.add_argument("--dt", type=float, default=None, help="MD time step (time units per step), to convert --window")
    g.add_argument("--window-frames", type=int, default=None, help="p_hop window in frames (instead of --window/--dt)")
    g.add_argument("--quiet", default=None, metavar="TIME|tau_alpha",
                   help="quiet (non-rearranging) training particles: p_hop < p_c for this time around the frame "
                        "(default one window; time units, with --dt), or tau_alpha: the structural relaxation "
                        "time measured on the trajectories (F_s(k, t) = 1/e, see --fs-k)")
    g.add_argument("--fs-k", type=float, default=None, metavar="K",
                   help="wave number of F_s for --quiet tau_alpha (default 7.25 / --length, the first peak of "
                        "S(k) of Kob-Andersen A particles; for another system its own first peak)")
    g.add_argument("--quiet-frames", type=int, default=None, help="the same in frames (instead of --quiet/--dt)")
    g.add_argument("--quiet-side", choices=("both", "before"), default="both",
                   help="both: quiet over [t - quiet, t + quiet] (default); before: over [t - quiet, t], the "
                        "published protocol's hard particles (no rearrangement in tau_alpha before the frame)")
    g.add_argument("--lag", type=int, default=None, help="D2min lag in frames (--labels d2min)")
    g.add_argument("--d2min-cutoff", type=float, default=1.5, help="D2min neighbour cutoff (default 1.5)")
    g.add_argument("--d2min-threshold", type=float, default=None, help="D2min above which a particle rearranges")
    g = t.add_argument_group("features and training")
    g.add_argument("--length", type=float, default=1.0, help="length unit of the structure functions (sigma_AA; default 1)")
    g.add_argument("--no-angular", action="store_true", help="radial structure functions only")
    g.add_argument("--angular", choices=("grid", "published"), default=None,
                   help="angular functions: grid (default; 66 over all pairs of neighbours) or published (the 22 "
                        "(xi, lambda, zeta) of a public implementation of Schoenholz et al. 2016, one set per pair of "
                        "neighbour species: 66 for two species)")
    g.add_argument("--features", choices=("sf", "giip", "both"), default="sf",
                   help="structure functions (default), the diffusion coordinates of a GIIP map (--reference), or both")
    g.add_argument("--reference", metavar="REF.h5", help="the GIIP map of --features giip/both")
    g.add_argument("--n-per-class", type=int, default=6000, help="rearranging and quiet training particles per species")
    g.add_argument("--held-out", type=float, default=0.3, help="fraction of the last frames held out (default 0.3)")
    g.add_argument("--held-out-frames", type=int, default=10,
                   help="held-out figures from every particle of at most this many held-out frames per trajectory "
                        "(default 10)")
    g.add_argument("--max-frames", type=int, default=40,
                   help="training samples from at most this many evenly spaced frames per trajectory (default 40)")
    g.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--debug", action="store_true", help="show tracebacks")
    t.set_defaults(func=run_train)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _log(msg):
    print(f"giip softness: {msg}", file=sys.stderr, flush=True)


def run_train(args) -> int:
    import numpy as np

    from ..io.atomic import check_output
    from ..io.frames import expand_paths
    from ..species import parse_type_names
    from ..softness import DEFAULT_ANGULAR, DEFAULT_FS_K, PUBLISHED_ANGULAR, StructureFunctions, Trajectory, d2min, train

    if args.no_angular and args.angular:
        raise CLIError(f"--no-angular and --angular {args.angular}: choose one (radial functions only, or that "
                       "angular set)")
    if args.held_out_frames < 1:
        raise CLIError(f"--held-out-frames must be at least 1, got {args.held_out_frames}")
    inputs = expand_paths(args.traj)
    for path in inputs:
        if not os.path.exists(path):
            raise CLIError(f"trajectory not found: {path}")
    outdir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(outdir):
        raise CLIError(f"the output folder {outdir} does not exist")
    check_output(args.output, inputs)
    if args.features != "sf" and not args.reference:
        raise CLIError(f"--features {args.features} needs --reference REF.h5 (a GIIP map of the same system)")
    if args.reference and not os.path.exists(args.reference):
        raise CLIError(f"reference map not found: {args.reference}")
    if args.labels == "d2min" and (args.quiet is not None or args.quiet_frames is not None
                                   or args.quiet_side != "both"):
        raise CLIError("--quiet, --quiet-frames and --quiet-side choose the quiet particles of p_hop labels; with "
                       "--labels d2min a particle is quiet when D2min stays below --d2min-threshold over the lag")
    if args.labels == "d2min" and (args.lag is None or args.d2min_threshold is None):
        raise CLIError("--labels d2min needs --lag N (frames) and --d2min-threshold X")
    if args.labels == "phop" and args.window_frames is None and args.dt is None:
        raise CLIError("give --dt (the MD time step, to turn --window into frames) or --window-frames")
    type_names = parse_type_names(args.type_names) if args.type_names else None
    t0 = time.time()
    trajs = [Trajectory.read(p, type_names=type_names, frames=args.frames, progress=not args.no_progress)
             for p in inputs]
    species = sorted({s for tr in trajs for s in np.unique(tr.species).tolist()})
    if type_names:
        species = [type_names[k] for k in sorted(type_names) if type_names[k] in species] + \
                  [s for s in species if s not in type_names.values()]
    centers = tuple(c for c in (args.centers or "").replace(",", " ").split() if c) or None
    dim = trajs[0].frames[0].dim
    angular = {"angular": (), "angular_species": False} if args.no_angular else \
        {"angular": PUBLISHED_ANGULAR, "angular_species": True} if args.angular == "published" else \
        {"angular": DEFAULT_ANGULAR, "angular_species": False}
    feats = StructureFunctions(tuple(species), length=args.length, dim=dim, **angular)
    if args.features != "sf":
        from ..softness import FeatureSet, MapCoordinates

        try:
            coords = MapCoordinates.of(args.reference)
        except ValueError as e:
            raise CLIError(f"--reference: {e}") from None
        if set(species) - set(coords.species) or coords.dim != dim:
            raise CLIError(f"--reference: the map is {coords.dim}D with species {list(coords.species)}; the "
                           f"trajectories are {dim}D with {species}")
        if args.features == "giip":
            feats = coords
        else:
            feats = FeatureSet((StructureFunctions(coords.species, length=args.length, dim=dim, **angular), coords))
    if args.labels == "phop":
        interval = trajs[0].frame_interval()
        if args.window_frames is not None:
            w = int(args.window_frames)
        else:
            if interval <= 0:
                raise CLIError("the trajectory has one frame: p_hop needs a run of frames")
            w = int(round(args.window / (args.dt * interval)))
            w += w % 2
        tau_a = None
        if args.quiet_frames is not None:
            q = int(args.quiet_frames)
        elif args.quiet is not None:
            if args.dt is None or interval <= 0:
                raise CLIError("--quiet is a time: give --dt too, or --quiet-frames")
            if args.quiet == "tau_alpha":
                tau_a = _tau_alpha(trajs, centers, args.fs_k or DEFAULT_FS_K / args.length, args.dt)
                q = int(round(tau_a / (args.dt * interval)))
            else:
                try:
                    q = int(round(float(args.quiet) / (args.dt * interval)))
                except ValueError:
                    raise CLIError(f"--quiet takes a time or tau_alpha, got {args.quiet!r}") from None
        else:
            q = w
        if q < 0:
            raise CLIError(f"--quiet/--quiet-frames must not be negative, got {q} frames")
        info = {"method": "p_hop", "p_c": float(args.p_c), "window_frames": int(w),
                "window_time": float(w * interval * args.dt) if args.dt else None, "frame_interval_steps": interval,
                "quiet_frames": q, "quiet_side": args.quiet_side}
        if tau_a is not None:
            info["tau_alpha"] = float(tau_a)
        _log(f"p_hop window {w} frames, p_c = {args.p_c:g}; quiet: p_hop < p_c over {q} frames "
             f"{'on both sides of' if args.quiet_side == 'both' else 'before'} the frame")
        try:
            model, report = train(trajs, feats, window=w, p_c=args.p_c, quiet=q, quiet_side=args.quiet_side,
                                  centers=centers, n_per_class=args.n_per_class,
                                  held_out=args.held_out, seed=args.seed, progress=not args.no_progress, log=_log,
                                  labels_info=info, max_frames=args.max_frames, held_out_frames=args.held_out_frames,
                                  provenance=_prov(args, inputs, type_names))
        except ValueError as e:
            raise CLIError(str(e)) from None
    else:
        from ..softness.training import train_on_labels

        labs = [d2min(p, args.lag, args.d2min_cutoff, frames=args.frames) for p in inputs]
        info = {"method": "D2min", "lag_frames": int(args.lag), "cutoff": float(args.d2min_cutoff),
                "threshold": float(args.d2min_threshold)}
        model, report = train_on_labels(trajs, feats, labs, args.lag, args.d2min_threshold, centers=centers,
                                        n_per_class=args.n_per_class, held_out=args.held_out, seed=args.seed,
                                        max_frames=args.max_frames, held_out_frames=args.held_out_frames,
                                        progress=not args.no_progress, log=_log, labels_info=info,
                                        provenance=_prov(args, inputs, type_names))
    for c, r in report.items():
        _log(f"held out, species {c}: {100 * r['rearranging_positive']:.1f} % of {r['n_rearranging']} rearranging "
             f"particles have S > 0; {100 * r['quiet_negative']:.1f} % of {r['n_quiet']} quiet ones S < 0")
    model.save(args.output)
    _log(f"wrote {args.output} in {time.time() - t0:.1f} s; see 'giip info {args.output}'")
    return 0


def _tau_alpha(trajs, centers, k, dt):
    """The mean over the trajectories of the relaxation time of the centre particles (CLIError when
    a trajectory is too short to measure it)."""
    import numpy as np

    from ..softness import tau_alpha

    taus = []
    for n, tr in enumerate(trajs):
        which = np.isin(tr.species, list(centers)) if centers else np.ones(len(tr.species), dtype=bool)
        tau, _, fs = tau_alpha(tr.positions[:, which], dt * tr.frame_interval(), k)
        if not np.isfinite(tau):
            raise CLIError(f"trajectory {n}: F_s(k = {k:g}) is still {fs[-1]:.2f} (above 1/e) after half the run, so "
                           "tau_alpha cannot be measured: a longer run, or --quiet TIME")
        taus.append(tau)
    tau = float(np.mean(taus))
    _log(f"tau_alpha (F_s(k = {k:g}, t) = 1/e): " + ", ".join(f"{t:.3g}" for t in taus) + f"; quiet over {tau:.3g}")
    return tau


def _prov(args, inputs, type_names):
    import datetime

    from . import rebuild_command

    command = rebuild_command(args, ["giip", "softness", "train"], args.traj, args.output,
                              skip=("traj", "output", "softness_command"))
    return {"command_line": command, "input_files": [os.path.abspath(p) for p in inputs],
            "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "type_names": {str(k): v for k, v in (type_names or {}).items()}}
