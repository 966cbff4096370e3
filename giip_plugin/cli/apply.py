"""``giip apply REF.h5 INPUT... -o OUTPUT``: annotate every atom of saved trajectories.

Frames are streamed (one in memory at a time, or a bounded window with ``--scheduler``), each
atom gets its class, diffusion coordinates and distance to the nearest reference environment,
and the frames are written with their input columns plus these to a LAMMPS text dump or an
extxyz file (chosen by the output's extension). Dump columns: ``d_giip_class``,
``d2_giip_dc[1] .. d2_giip_dc[k]``, ``d_giip_ref_distance`` (the names the LAMMPS hook writes, kept
by OVITO, ASE's dump reader and LAMMPS' read_dump); extxyz: ``giip_class``, ``giip_dc`` (n x k),
``giip_ref_distance``. The output is written atomically: an interrupted or failed run leaves
no partial file.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import CLIError
from .interpret import check_inputs


def add_parser(sub):
    p = sub.add_parser(
        "apply",
        help="classify and map every atom of trajectories against a reference map",
        description=__doc__,
    )
    p.add_argument("reference", metavar="REF.h5", help="reference map made by 'giip build', or a softness model made by "
                   "'giip softness train' (column d_softness)")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="LAMMPS dumps, extxyz, ASE trajectories, ...")
    p.add_argument("-o", "--output", required=True, help="output file: .dump/.lammpstrj (LAMMPS text dump) or .xyz/.extxyz")
    p.add_argument("--frames", default=None, metavar="START:STOP:STEP", help="frames of each input to analyse (Python slice)")
    p.add_argument("--type-names", default=None, metavar="1=Ni,2=Nb",
                   help="names of numeric LAMMPS types (default: the names stored in the reference)")
    p.add_argument("--dim", type=int, choices=(2, 3), default=None, help="force 2D or 3D (default: detected)")
    p.add_argument("--device", default=None, help="compute device: cpu, cuda (default: cuda when available)")
    p.add_argument("--exact", action="store_true",
                   help="the exhaustive exact rotation search for every (atom, reference) pair; by default a coarse "
                        "search of every pair is refined by the exact search for the nearest references of each atom "
                        "(the same classes and nearest distances as the exhaustive search on every atom measured, "
                        "coordinates within far less than 1%% of their range; see benchmarks/RESULTS.md)")
    p.add_argument("--n-classes", type=int, default=None, metavar="K",
                   help="classes from the map's complete-linkage tree cut at K classes (e.g. 20 for colour), each atom "
                        "given the class of its nearest training environment (default: the map's own classes)")
    p.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)  # the former name of the default
    p.add_argument("--prefix", default="giip", metavar="NAME",
                   help="name in the added columns (d_NAME_class, d2_NAME_dc[k], d_NAME_ref_distance; default giip), "
                        "to keep the columns of several references apart")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address: spread frames over a Dask cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def _analyse_frame(analyzer, frame):
    """The frame's :class:`AnalysisResult`; its warnings name the frame."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyzer.analyze(frame.atoms)
    for w in caught:
        warnings.warn(f"{frame.source} frame {frame.index}: {w.message}", w.category, stacklevel=2)
    return res


def _check_frame(frame, ref):
    dim = ref if isinstance(ref, int) else ref.dim
    if frame.dim != dim:
        raise CLIError(
            f"{frame.source} frame {frame.index} is {frame.dim}D but the reference is {dim}D"
            + (" (declare it with --dim 2)" if dim == 2 else "")
        )


def check_type_names_against_reference(type_names: dict, ref) -> None:
    """Warn when ``--type-names`` names a type otherwise than the reference does, or names
    species that the reference does not know."""
    import warnings

    stored = {int(k): str(v) for k, v in (ref.type_names or {}).items()}
    differ = {t: (n, stored[t]) for t, n in type_names.items() if t in stored and stored[t] != n}
    if differ:
        text = ", ".join(f"type {t} = {n} (the reference: {r})" for t, (n, r) in sorted(differ.items()))
        warnings.warn(f"--type-names contradicts the reference's type names: {text}; the input's types are "
                      "read as you named them", UserWarning, stacklevel=2)
    known = tuple(getattr(ref, "species", ()) or ())
    if known:
        unknown = sorted(set(type_names.values()) - set(known))
        if unknown:
            warnings.warn(f"--type-names names species {unknown} that the reference does not know "
                          f"(it has {list(known)})", UserWarning, stacklevel=2)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..analysis import GIIPAnalyzer
    from ..analysis.columns import check_prefix
    from ..io import AnnotatedWriter, iter_frames, writer_format
    from ..io.atomic import check_output
    from ..io.frames import expand_paths
    from ..species import parse_type_names, reference_type_numbers
    from ..validation import check_device

    # everything that can fail is checked before the output is touched
    if not os.path.exists(args.reference):
        raise CLIError(f"reference file not found: {args.reference} (make one with 'giip build')")
    check_inputs(args.inputs)
    inputs = expand_paths(args.inputs)
    check_output(args.output, inputs + [args.reference])
    check_device(args.device)
    check_prefix(args.prefix)
    writer_format(args.output)
    if args.fast:
        print("giip apply: warning: --fast is now the default (--exact gives the exhaustive search)", file=sys.stderr)
    from ..softness import is_softness_file

    if is_softness_file(args.reference):  # a softness model: one column, d_softness
        from ..analysis import SoftnessAnalyzer

        if args.n_classes is not None:
            raise CLIError("--n-classes is for reference maps; a softness model has no classes")
        analyzer = SoftnessAnalyzer(args.reference)
        ref = analyzer.model
        dim_default = ref.features.dim
        if args.scheduler:
            raise CLIError("--scheduler is for reference maps; a softness model is applied locally")
    else:
        try:
            analyzer = GIIPAnalyzer(args.reference, device=args.device, progress=not args.no_progress,
                                    exact=args.exact, n_classes=args.n_classes)
        except ValueError as exc:
            if args.n_classes is None:
                raise
            raise CLIError(f"--n-classes: {exc}") from exc
        ref = analyzer.reference
        dim_default = ref.dim
    if args.type_names:
        type_names = parse_type_names(args.type_names)
        check_type_names_against_reference(type_names, ref)
    else:
        type_names = dict(ref.type_names or {})
    dim = args.dim if args.dim is not None else dim_default
    frames = iter_frames(inputs, frames=args.frames, type_names=type_names or None, dim=dim)
    bar = tqdm(unit="frame", desc="giip apply", disable=args.no_progress, file=sys.stderr)
    n_frames = n_atoms = 0
    with AnnotatedWriter(args.output, type_names=type_names or reference_type_numbers(ref)) as writer:
        # both results name their own columns (AnalysisResult, SoftnessResult)
        columns = (lambda r, p: r.dump_columns(p)) if writer.format == "lammps-dump" else (lambda r, p: r.as_arrays(p))
        if args.scheduler:
            results = _run_dask(args.scheduler, analyzer, frames, ref)
        else:
            results = ((f, _analyse_frame(analyzer, f)) for f in _checked(frames, ref, dim_default))
        for frame, res in results:
            if not args.scheduler and getattr(analyzer, "search_report", None) is not None:
                tqdm.write(f"giip apply: {frame.source} frame {frame.index}: {analyzer.search_report.line()}",
                           file=sys.stderr)
            writer.write(frame, columns(res, args.prefix))
            n_frames += 1
            n_atoms += frame.natoms
            bar.update(1)
        bar.close()
        if n_frames == 0:  # raised inside the writer: the output is left as it was
            raise CLIError(f"no frames were selected from the inputs (check --frames); {args.output} was not written")
    print(f"giip apply: wrote {n_frames} frame(s), {n_atoms} atoms, to {args.output}", file=sys.stderr)
    return 0


def _checked(frames, ref, dim=None):
    for f in frames:
        _check_frame(f, ref if dim is None else dim)
        yield f


def _run_dask(address, analyzer, frames, ref, window: int | None = None):
    """Analyse frames on a Dask cluster, yielding ``(frame, arrays)`` in input order with a
    bounded number of frames in flight."""
    from collections import deque

    from dask.distributed import Client

    client = Client(address)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = window or 2 * n_workers
        ref_future = client.scatter(analyzer.reference, broadcast=True)
        pending = deque()
        for frame in _checked(frames, ref):
            fut = client.submit(_remote_analyse, ref_future, frame.atoms, analyzer.exact, pure=False)
            pending.append((frame, fut))
            if len(pending) >= window:
                f0, fut0 = pending.popleft()
                yield f0, fut0.result()
        while pending:
            f0, fut0 = pending.popleft()
            yield f0, fut0.result()
    finally:
        client.close()


def _remote_analyse(reference, atoms, exact=False):
    from ..analysis import GIIPAnalyzer

    return GIIPAnalyzer(reference, exact=exact).analyze(atoms)
