#!/usr/bin/env python
"""A long, resumable Kob-Andersen run (``ka_glass.in``) for low temperatures such as the thesis's 0.47.

At T = 0.47 the structural relaxation of the Kob-Andersen glass former is about 100 times slower
than at 0.6, so the run takes hours on 2 cores.  This driver runs it in chunks and can be stopped
at any time (Ctrl-C, a killed session) and started again with the same command: it carries on
from the last finished chunk.

1. set-up: ``ka_glass.in`` itself (lattice, melt, quench to T) with a short hold and no production,
   saved as a LAMMPS restart file;
2. ageing at T (NVT, Tdamp 0.5 tau) for ``--age-steps`` in chunks;
3. production at T (NVT, Tdamp 10 tau, as in ``ka_glass.in``) for ``--prod-steps`` in chunks, with
   a dump of ``id type xu yu zu`` every ``--dump-every`` steps: ``OUT/ka_glass_T<T>.dump``.

After every chunk the driver writes a restart file and ``OUT/state.json`` (the stage, the step and
the size of the dump at that point); a resumed run truncates the dump to that size, so a chunk cut
off half-way leaves no partial or duplicated frame.

    python lammps_examples/ka_glass_long.py --T 0.47 --out out/ka047 --omp 2
    python lammps_examples/ka_glass_long.py --T 0.47 --out out/ka047 --omp 2   # resumes

A run with 10,000 tau of ageing and 2,000 tau of production (40 minutes on 2 cores; the potential
energy after each chunk is kept in state.json, whose plateau benchmarks/softness_ka.py reports):

    python lammps_examples/ka_glass_long.py --T 0.47 --out out/ka047eq --omp 2 \
        --age-steps 2000000 --prod-steps 400000 --dump-every 200 --chunk 20000

A tiny check: ``--n 4 --age-steps 400 --prod-steps 400 --chunk 200 --dump-every 50``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from giip_plugin.lammps_support import load_lammps
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, str(HERE.parent))
    from giip_plugin.lammps_support import load_lammps


STAGES = ("age", "prod", "finished")


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _lammps(out: Path, omp: int):
    lammps = load_lammps()
    args = ["-log", "none", "-echo", "none", "-screen", "none"]
    if omp > 0:
        args += ["-sf", "omp", "-pk", "omp", str(omp)]
    lmp = lammps.lammps(cmdargs=args)
    lmp.command(f"log {out / 'log.lammps'} append")
    return lmp


def run(ns) -> dict:
    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(c.isspace() for c in str(out)):
        raise SystemExit(f"the output folder {out} contains whitespace, which LAMMPS inputs cannot handle")
    state_path, restart = out / "state.json", out / "ka_long.restart"
    dump = out / f"ka_glass_T{ns.T}.dump"
    params = {"T": ns.T, "n": ns.n, "seed": ns.seed, "dt": ns.dt, "melt_steps": ns.melt_steps,
              "quench_steps": ns.quench_steps, "age_steps": ns.age_steps, "prod_steps": ns.prod_steps,
              "dump_every": ns.dump_every}
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None and state["params"] != params:
        raise SystemExit(f"{out} holds a run with other settings ({state['params']}); use another --out "
                         "or the same settings to resume it")
    if state is not None and state["stage"] == "finished":
        print(f"{out} holds a finished run", flush=True)
        return {"dump": str(dump), "state": state}
    lmp = _lammps(out, ns.omp)
    t0 = time.perf_counter()
    try:
        if state is None:
            variables = {"n": ns.n, "T": ns.T, "dt": ns.dt, "seed": ns.seed, "melt_steps": ns.melt_steps,
                         "equil_steps": ns.quench_steps, "prod_steps": 0, "dump_every": 1,
                         "outdir": str(out / "setup")}
            (out / "setup").mkdir(exist_ok=True)
            for k, v in variables.items():
                lmp.command(f"variable {k} index {v}")
            lmp.file(str(HERE / "ka_glass.in"))
            lmp.command(f"write_restart {restart}.new")
            os.replace(f"{restart}.new", restart)
            state = {"params": params, "stage": "age", "done": 0, "dump_bytes": 0}
            _write_json(state_path, state)
            print(f"set-up done ({time.perf_counter() - t0:.0f} s)", flush=True)
        else:
            lmp.command(f"read_restart {restart}")
            lmp.command("neighbor 0.3 bin")
            lmp.command("neigh_modify every 1 delay 0 check yes")
            print(f"resuming: {state['stage']} {state['done']} steps done", flush=True)
        lmp.command("thermo 5000")
        lmp.command("thermo_style custom step temp pe press density")
        for stage, total, tdamp in (("age", ns.age_steps, 0.5), ("prod", ns.prod_steps, 10.0)):
            if STAGES.index(state["stage"]) > STAGES.index(stage):
                continue
            if state["stage"] != stage:
                state.update(stage=stage, done=0, dump_bytes=0)
            lmp.command(f"fix md all nvt temp {ns.T} {ns.T} {tdamp}")
            if stage == "prod":
                if state["done"] == 0:
                    lmp.command("reset_timestep 0")
                    dump.unlink(missing_ok=True)
                elif dump.exists():
                    with open(dump, "r+b") as fh:  # drop whatever a cut-off chunk had written
                        fh.truncate(state["dump_bytes"])
                step = int(lmp.get_thermo("step"))
                lmp.command(f"dump traj all custom {ns.dump_every} {dump} id type xu yu zu")
                lmp.command("dump_modify traj sort id append yes" + (f" delay {step + 1}" if step else ""))
            while state["done"] < total:
                n = min(ns.chunk, total - state["done"])
                lmp.command(f"run {n}")
                lmp.command(f"write_restart {restart}.new")
                os.replace(f"{restart}.new", restart)
                state["done"] += n
                state["dump_bytes"] = dump.stat().st_size if stage == "prod" else 0
                # the potential energy per particle after each chunk: a drift during ageing shows a
                # glass still relaxing, a plateau one that has equilibrated
                pe = float(lmp.get_thermo("pe"))
                state.setdefault("pe", []).append([stage, state["done"], pe])
                _write_json(state_path, state)
                print(f"{stage}: {state['done']}/{total} steps  T={lmp.get_thermo('temp'):.3f}  pe={pe:.4f}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if stage == "prod":
                lmp.command("undump traj")
            lmp.command("unfix md")
        state["stage"] = "finished"
        _write_json(state_path, state)
    finally:
        lmp.close()
    return {"dump": str(dump), "state": state}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=float, default=0.47, help="temperature (LJ units; default 0.47)")
    ap.add_argument("--n", type=int, default=10, help="fcc cells per side: 4 n^3 particles (default 10)")
    ap.add_argument("--seed", type=int, default=24680)
    ap.add_argument("--dt", type=float, default=0.005)
    ap.add_argument("--melt-steps", type=int, default=10000)
    ap.add_argument("--quench-steps", type=int, default=20000, help="the quench (1/4) and first hold (3/4)")
    ap.add_argument("--age-steps", type=int, default=200000, help="ageing at T before production")
    ap.add_argument("--prod-steps", type=int, default=200000)
    ap.add_argument("--dump-every", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=10000, help="steps between restart files")
    ap.add_argument("--omp", type=int, default=0, help="OpenMP threads via -sf omp (0 = off)")
    ap.add_argument("--out", default="out/ka_long")
    ns = ap.parse_args(argv)
    if ns.prod_steps % ns.dump_every or ns.chunk % ns.dump_every:
        ap.error("--prod-steps and --chunk must be multiples of --dump-every")
    result = run(ns)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
