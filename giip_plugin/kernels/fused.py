"""The rotation search compiled for the CPU (``fused_kernel.c``): the exact search and the coarse one.

The PyTorch implementation (:mod:`.search`) runs the algorithm on large batched tensors, where the
per-pair arrays are tiny and the time goes into memory traffic and kernel launches. Here one
compiled call does a list of pairs, ``LANES`` pairs side by side in the innermost loops (SIMD
lanes), with the same algorithm and tolerances:

1. **Grid** (single precision, as in :func:`.search.grid_candidates_3d_coef`): the coupling
   ``G^l = C_A^l^T conj(C_B^l)`` from the harmonic coefficients (:mod:`.radial`); for every beta of
   the Euler grid, ``H = sum_l d^l(beta) G^l`` split into even and odd l (proper rotations and
   rotoinversions from one transform: ``f = f_even +- f_odd``), then the two real Fourier sums
   over ``m'`` (gamma) and ``m`` (alpha), each evaluated for the angles ``x`` and ``x + pi`` at
   once. The starts: the best ``candidates`` local maxima of each parity among the ``grid_pool``
   largest grid values (the best grid point when ``candidates == 1``).
2. **Newton polish** (double precision, on the exact sum of Gaussians): saddle-free Newton steps
   (the Newton step where the Hessian is negative definite, from its Cholesky factor; elsewhere the
   eigen-decomposition with |eigenvalues|, as :func:`.search.polish`), a 0.3 rad trust radius, a
   step that lowers the overlap is halved. **Exact mode** (:func:`search_pairs` ``exact=True``, the
   default of :class:`~giip_plugin.kernels.DistanceEngine` on the CPU): until a step is below 1e-7 rad
   (at most ``max_iter`` steps), dropping a start that provably cannot beat the best value of its
   pair (the rule of :func:`.search.polish`); lanes whose start is finished take the next one.
   **Coarse mode** (the default path's search of every pair): ``max_iter`` steps from each start,
   and the grid sums only the radial terms above :data:`GRID_TOL` of the largest. Every value is the
   overlap at an actual rotation, so the distances are upper bounds of the exact ones.

The Gaussians use a vectorisable ``exp`` (``x = n ln2 + r``, a degree-12 Taylor polynomial of
``exp(r)``, times ``2^n`` built in the exponent bits; relative error below 1e-13 for ``x`` in
[-200, 0], checked in the tests).

**Building.** ``pip install`` compiles the kernel (``setup.py``: a setuptools extension, loaded here
with :mod:`ctypes`, flags in :mod:`.build_info`); its build identity (source and CPU) is compiled
in and checked before it is loaded. Where it is missing or of another source or CPU, the kernel is
compiled by the system's C compiler (``$CC``, else ``cc``) the first time it is needed (about a
second) into ``$GIIP_CACHE_DIR`` (default ``~/.cache/giip-plugin``), one library per source,
compiler and CPU. Without a working compiler every search keeps the PyTorch implementation, with
one warning naming the fix. Calls are plain C through :mod:`ctypes`, which releases the GIL, so
threads run calls on disjoint lists of pairs in parallel.

**2D** (``giip_search_2d``): the overlap is a function of one angle. The grid evaluates it exactly
(not its band-limited Fourier series, as :func:`.search.grid_candidates_2d` does) at the same
``2 ceil(4 (L + 1))`` angles; the ``candidates`` best local maxima of each parity start 1D Newton
ascents with the same steps, trust radius, backtracking and tolerance (exact mode) or ``max_iter``
steps (coarse mode). About ten times the PyTorch implementation's speed on 2D LJ first shells.

Covered: 3D and 2D with one common sigma, the groups O(3) / SO(3) / O(2) / SO(2), none / sign /
vector species, on the CPU in double precision. Per-atom sigmas, single precision, a fixed
orientation and CUDA use the PyTorch implementation of the same algorithm.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import config
from .radial import RadialBasis

from . import build_info
from .build_info import CFLAGS, LDFLAGS, SOURCE

LANES = 16  # pairs side by side in the innermost loops (B in fused_kernel.c)
_BUILD_LOCK = threading.Lock()
GRID_TOL = 1e-5  # relative size of the radial terms the grid neglects (it only locates basins)

_I64P, _F64P, _F32P = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_float)


class _Args(ctypes.Structure):
    """The ``Args`` struct of fused_kernel.c (same order)."""

    _fields_ = [("qa", ctypes.c_int64), ("C", ctypes.c_int64), ("Kc", ctypes.c_int64), ("pa", _F64P), ("wa", _F64P),
                ("self_a", _F64P), ("cnt_a", _I64P), ("ca_r", _F32P), ("ca_i", _F32P),
                ("qb", ctypes.c_int64), ("pb", _F64P), ("wb", _F64P), ("self_b", _F64P), ("cnt_b", _I64P),
                ("cb_r", _F32P), ("cb_i", _F32P), ("kap", ctypes.c_double), ("L", ctypes.c_int64),
                ("D", ctypes.c_int64), ("n_beta", ctypes.c_int64), ("N", ctypes.c_int64), ("g_offa", _I64P),
                ("g_offb", _I64P), ("g_w", _I64P), ("g_k", _I64P), ("g_t", _I64P), ("dval", _F32P), ("cw", _F32P),
                ("sw", _F32P), ("cal", _F32P), ("sal", _F32P), ("rgrid", _F64P), ("parities", ctypes.c_int64),
                ("max_iter", ctypes.c_int64), ("K", ctypes.c_int64), ("pool", ctypes.c_int64), ("tol", ctypes.c_double),
                ("window", ctypes.c_double)]


class _Args2D(ctypes.Structure):
    """The ``Args2D`` struct of fused_kernel.c (same order)."""

    _fields_ = [("qa", ctypes.c_int64), ("qb", ctypes.c_int64), ("C", ctypes.c_int64), ("pa", _F64P), ("wa", _F64P),
                ("self_a", _F64P), ("cnt_a", _I64P), ("pb", _F64P), ("wb", _F64P), ("self_b", _F64P),
                ("cnt_b", _I64P), ("kap", ctypes.c_double), ("N", ctypes.c_int64), ("parities", ctypes.c_int64),
                ("max_iter", ctypes.c_int64), ("K", ctypes.c_int64), ("tol", ctypes.c_double)]


def _cache_dir() -> Path:
    return config.cache_dir()


_FAILURE: list = []  # the error of a build that failed (not retried in this process)


@lru_cache(maxsize=1)
def library():
    """The compiled kernel (ctypes library): the one built by ``pip install`` when its identity
    (source and CPU, :mod:`.build_info`) matches, else one compiled at first use into the cache.
    Raises RuntimeError, naming the fix, when it cannot be built (and again on later calls, without
    retrying)."""
    lib = _installed()
    if lib is not None:
        return _declare(lib)
    if _FAILURE:
        raise _FAILURE[0]
    try:
        return _declare(_build())
    except RuntimeError as exc:
        _FAILURE.append(exc)
        raise


def installed_library() -> Path | None:
    """The library built by ``pip install``, if there is one."""
    if config.installed_kernel_disabled():
        return None
    found = sorted(p for p in SOURCE.parent.glob(build_info.INSTALLED_NAME + ".*") if p.suffix in (".so", ".pyd", ".dylib"))
    return found[0] if found else None


def _installed():
    """The library built by ``pip install`` when its identity (this source, this CPU) matches."""
    path = installed_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        lib.giip_identity.restype = ctypes.c_char_p
        recorded = lib.giip_identity().decode()
    except (OSError, AttributeError):
        return None
    return lib if recorded == build_info.identity() else None


def _declare(lib):
    lib.giip_search.argtypes = [ctypes.POINTER(_Args), ctypes.c_int64, _I64P, _I64P, _F64P, _F64P]
    lib.giip_search.restype = ctypes.c_int
    lib.giip_search_2d.argtypes = [ctypes.POINTER(_Args2D), ctypes.c_int64, _I64P, _I64P, _F64P, _F64P]
    lib.giip_search_2d.restype = ctypes.c_int
    for name in ("giip_exp_neg", "giip_exp_neg2"):
        getattr(lib, name).argtypes = [ctypes.c_double]
        getattr(lib, name).restype = ctypes.c_double
    return lib


def _build():
    cc = shlex.split(config.c_compiler())
    source = SOURCE.read_bytes()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"the compiled rotation search needs a C compiler ({' '.join(cc)!r}: {exc}); install one "
                           "(e.g. apt-get install gcc) or set CC; the PyTorch search is used meanwhile") from exc
    # one library per source, flags, CPU (build_info.identity) and compiler
    key = hashlib.sha256(f"{build_info.identity(source)}\0{version}".encode()).hexdigest()[:16]
    target = _cache_dir() / f"fused_kernel-{key}{'.dll' if os.name == 'nt' else '.so'}"
    with _BUILD_LOCK:
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            except OSError as exc:
                raise RuntimeError(f"cannot write the compiled rotation search into {target.parent} ({exc}); set "
                                   "GIIP_CACHE_DIR to a writable folder; the PyTorch search is used meanwhile") from exc
            os.close(fd)
            obj = tmp[:-3] + ".o"
            try:
                for cmd in ([*cc, *CFLAGS, "-c", "-o", obj, str(SOURCE)], [*cc, *LDFLAGS, "-o", tmp, obj, "-lm"]):
                    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                    if res.returncode != 0:
                        raise RuntimeError(f"compiling {SOURCE.name} with {' '.join(cc)!r} failed:\n"
                                           f"{res.stderr.strip()[-2000:]}\n(set CC to another compiler; the PyTorch "
                                           "search is used meanwhile)")
                os.replace(tmp, target)  # atomic: concurrent builds leave one complete file
            finally:
                for path in (tmp, obj):
                    if os.path.exists(path):
                        os.unlink(path)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise RuntimeError(f"cannot load the compiled rotation search {target} ({exc}); delete it to rebuild it; "
                           "the PyTorch search is used meanwhile") from exc
    return lib


_WARNED = []


def available() -> bool:
    """Whether the fused kernel can run (it compiles, or is already compiled). Warns once if not."""
    try:
        library()
    except RuntimeError as exc:
        if not _WARNED:
            _WARNED.append(1)
            warnings.warn(f"compiled search: {exc}", RuntimeWarning, stacklevel=2)
        return False
    return True


def exp_neg(x: float, variant: int = 1) -> float:
    """The kernel's ``exp`` for ``x <= 0`` (for tests; ``variant=2``: the one of the 2D search)."""
    lib = library()
    return (lib.giip_exp_neg if variant == 1 else lib.giip_exp_neg2)(float(x))


# ---------------------------------------------------------------------------------------------
# host side: tables, per-set arrays, and the call in chunks of atoms
@lru_cache(maxsize=8)
def _grid_tables(L: int):
    """Tables of the grid stage for band limit ``L`` (see ``grid_block`` in fused_kernel.c): Wigner values, the
    Fourier factors over gamma (``m' > 0`` counted twice: f is real) and alpha, and the rotation of
    every grid point (the grid of :class:`~.search.SO3Grid`, not oversampled)."""
    from .special import euler_zyz, so3_grid_geometry, wigner_small_d_table

    N, n_beta, betas = so3_grid_geometry(L)
    ang = 2 * np.pi * np.arange(N) / N
    two = np.where(np.arange(L + 1) == 0, 1.0, 2.0)[:, None]
    mm = np.outer(np.arange(L + 1), ang)
    bi, ai, gi = np.meshgrid(np.arange(n_beta), np.arange(N), np.arange(N), indexing="ij")
    f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
    return {"dtab": wigner_small_d_table(L, tuple(betas.tolist())), "cw": f32(two * np.cos(mm)),
            "sw": f32(two * np.sin(mm)), "cal": f32(np.cos(mm)), "sal": f32(np.sin(mm)),
            "rgrid": np.ascontiguousarray(euler_zyz(ang[ai], betas[bi], ang[gi]).reshape(-1, 9))}


@lru_cache(maxsize=16)
def _coupling_index(L: int, sizes: tuple, used: tuple | None = None):
    """Entries ``(l, m, m' >= 0)`` of the coupling: coefficient offsets, strides, radial counts,
    target rows of ``H`` (parity of l, m, m') and the Wigner values per beta. ``sizes``: radial
    terms per l of the coefficients; ``used``: how many of them (the largest) the grid sums."""
    tables = _grid_tables(L)
    used = sizes if used is None else [min(u, s) for u, s in zip(used, sizes)]
    M, L1 = 2 * L + 1, L + 1
    off = np.concatenate([[0], np.cumsum([sizes[l] * (2 * l + 1) for l in range(L1)])[:-1]])
    ga, gb, gw, gk, gt, dv = [], [], [], [], [], []
    for l in range(L1):
        for mi in range(2 * l + 1):
            for mp in range(l + 1):
                ga.append(off[l] + mi)
                gb.append(off[l] + l + mp)
                gw.append(2 * l + 1)
                gk.append(used[l])
                gt.append(((l % 2) * M + (L - l + mi)) * L1 + mp)
                dv.append(tables["dtab"][:, l, L - l + mi, L + mp])
    order = np.argsort(gt, kind="stable")  # by row of H: the compiled kernel sums each row in registers
    i64 = lambda x: np.asarray(x, dtype=np.int64)[order]
    out = (i64(ga), i64(gb), i64(gw), i64(gk), i64(gt), np.ascontiguousarray(np.stack(dv, 1)[:, order], dtype=np.float32))
    for x in out:  # cached and shared by every call: read only
        x.flags.writeable = False
    return out


def _side(S, sigma: float, basis):
    """Numpy arrays of one side of a 3D search: those of :func:`_padded_side`, and the harmonic
    coefficients of ``basis`` flattened to real and imaginary single-precision parts (the grid only
    locates basins)."""
    from .radial import harmonic_coefficients

    side = dict(_padded_side(S, sigma))
    coefficients = harmonic_coefficients(side["p"], side["w"], basis)
    flat = np.concatenate([c.reshape(len(c), -1) for c in coefficients], 1).astype(np.complex64)
    side["re"], side["im"] = np.ascontiguousarray(flat.real), np.ascontiguousarray(flat.imag)
    side["sizes"] = [c.shape[1] for c in coefficients]
    return side


def _sides(problem):
    """Both sides of a search (:func:`_side`), memoised per set and band limit."""
    from .problem import memo

    b = problem.basis
    key = ("compiled", problem.sigma, b.kappa, b.r_max, b.L, b.tol)
    A = memo(problem.A, key, lambda: _side(problem.A, problem.sigma, b))
    B_ = A if problem.B is problem.A else memo(problem.B, key, lambda: _side(problem.B, problem.sigma, b))
    return A, B_


def check_covered(engine):
    """Raise ValueError unless the compiled kernel covers the search of ``engine`` (a
    :class:`~.problem.SearchProblem`, or the :class:`~.engine.DistanceEngine` that extends it;
    RuntimeError when the kernel cannot be compiled)."""
    if engine.device_type != "cpu" or not engine.double:
        raise ValueError("the compiled search runs on the CPU in double precision")
    if engine.dim == 2:
        if engine.group not in ("O2", "SO2"):
            raise ValueError(f"the compiled search covers the groups O2 and SO2 in 2D, not {engine.group!r}")
        if engine.A.sigmas is not None or engine.B.sigmas is not None:
            raise ValueError("the compiled search covers 2D environments with one common sigma")
    else:
        if engine.group not in ("O3", "SO3"):
            raise ValueError(f"the compiled search covers the groups O3 and SO3 in 3D, not {engine.group!r}")
        if not engine._coef:
            raise ValueError("the compiled search covers 3D environments with one common sigma")
        if engine.settings.oversample != 1.0:
            raise ValueError("the compiled search runs on a grid that is not oversampled")
    library()


def _call_in_ranges(fn, args, ia, ib, out, rot, threads: int, pairs_per_call: int, progress):
    """``fn(args, n, ia, ib, out, rot)`` of the kernel over ranges of the pairs, on ``threads``
    threads (ctypes releases the GIL); ``out`` / ``rot`` (or None) filled in place."""
    n = len(ia)

    def run(call):
        s, e = call
        status = fn(ctypes.byref(args), e - s, ia[s:].ctypes.data_as(_I64P), ib[s:].ctypes.data_as(_I64P),
                    out[s:].ctypes.data_as(_F64P), rot[s:].ctypes.data_as(_F64P) if rot is not None else None)
        if status != 0:
            raise MemoryError("the compiled search could not allocate its work space")
        return e - s

    size = int(max(16, min(pairs_per_call, -(-n // (4 * threads)))))
    for _, done in config.run_in_threads(run, [(s, min(n, s + size)) for s in range(0, n, size)], threads):
        if progress is not None:
            progress.update(done)


def _search_pairs_2d(engine, ia, ib, *, exact: bool, workers=None, progress=None, return_rotation=False,
                     pairs_per_call: int = 512):
    """:func:`search_pairs` of a 2D engine: the grid of ``2 ceil(4 (L + 1))`` angles evaluated
    exactly, the ``settings.candidates`` best local maxima per parity polished by 1D Newton steps
    (to 1e-7 rad, at most ``max_iter``; ``exact=False``: ``max_iter`` steps)."""
    n = len(ia)
    keep = []
    f64 = lambda x: _pointer(keep, x, np.float64, _F64P)
    i64 = lambda x: _pointer(keep, x, np.int64, _I64P)
    a, b = _padded_side(engine.A, engine.sigma), _padded_side(engine.B, engine.sigma)
    st = engine.settings
    from .special import GRID_OVERSAMPLE_2D

    N = int(2 * np.ceil(GRID_OVERSAMPLE_2D * (engine.L + 1)))
    args = _Args2D(a["p"].shape[1], b["p"].shape[1], a["w"].shape[2], f64(a["p"]), f64(a["w"]), f64(a["self"]),
                   i64(a["n"]), f64(b["p"]), f64(b["w"]), f64(b["self"]), i64(b["n"]),
                   1.0 / (2.0 * engine.sigma * engine.sigma), N, 2 if engine.group == "O2" else 1,
                   int(st.max_iter), int(st.candidates), 1e-7 if exact else 0.0)
    assert a["w"].shape[2] == b["w"].shape[2]
    out = np.empty(n)
    rots = np.empty((n, 4)) if return_rotation else None
    ia_c, ib_c = np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(ib, dtype=np.int64)
    threads = max(1, int(workers) if workers else config.workers())
    _call_in_ranges(library().giip_search_2d, args, ia_c, ib_c, out, rots, threads, pairs_per_call, progress)
    if return_rotation:
        return out, rots.reshape(n, 2, 2)
    return out


def _padded_side(S, sigma):
    """Numpy arrays of one side of a search (a set at width ``sigma``; memoised per set and sigma):
    padded positions and weights, neighbour counts, self overlaps."""
    from .problem import memo, self_overlaps

    def make():
        p, w, _ = S.padded()
        side = {"p": p, "w": w, "n": np.asarray(S.counts, np.int64), "self": self_overlaps(S, sigma)}
        return {k: np.ascontiguousarray(v) for k, v in side.items()}

    return memo(S, ("padded", float(sigma)), make)


def _pointer(keep, x, dtype, ptype):
    x = np.ascontiguousarray(x, dtype=dtype)
    keep.append(x)
    return x.ctypes.data_as(ptype)


def search_pairs(engine, ia, ib, *, exact: bool, workers=None, progress=None, return_rotation=False,
                 pairs_per_call: int = 256):
    """Distances of the pairs ``(engine.A[ia[k]], engine.B[ib[k]])`` by the compiled search.

    ``exact=True``: the engine's search to convergence (``settings.candidates`` starts per parity
    among the ``grid_pool`` largest grid values, Newton steps until a step is below 1e-7 rad or the
    start cannot beat the best value of its pair; the same algorithm and tolerances as
    :func:`.search.polish`). ``exact=False``: the coarse search of the default path (``max_iter``
    Newton steps from each start; the grid sums only the radial terms above :data:`GRID_TOL`).
    Every value is an overlap at an actual rotation, so distances are never below the exact ones.

    ``workers``: threads (default: the entry point's, :func:`giip_plugin.config.workers`);
    ``progress``: a tqdm bar, advanced by pairs. Ctrl-C stops it after the calls under way.
    Pairs that share no weight channel get their exact distance without a search
    (:meth:`~giip_plugin.kernels.DistanceEngine.skipping_disjoint`).
    Returns distances (and rotations ``(n, 3, 3)`` mapping B onto A with ``return_rotation``)."""
    check_covered(engine)
    ia = np.asarray(ia, dtype=np.int64).reshape(-1)
    ib = np.asarray(ib, dtype=np.int64).reshape(-1)
    if len(ib) != len(ia):
        raise ValueError("index arrays of the pairs must have the same length")
    for name, idx, size in (("ia", ia, len(engine.A)), ("ib", ib, len(engine.B))):
        if len(idx) and (idx.min() < 0 or idx.max() >= size):  # the kernel would read outside its arrays
            raise IndexError(f"{name} holds indices outside 0..{size - 1}")
    run = lambda a, b: _searched_pairs(engine, a, b, exact=exact, workers=workers, progress=progress,
                                       return_rotation=return_rotation, pairs_per_call=pairs_per_call)
    return engine.skipping_disjoint(ia, ib, run, return_rotation, progress)


def _searched_pairs(engine, ia, ib, *, exact, workers, progress, return_rotation, pairs_per_call):
    n = len(ia)
    d = engine.dim
    out = np.empty(n)
    rots = np.empty((n, d, d)) if return_rotation else None
    if n == 0:
        return (out, rots) if return_rotation else out
    if d == 2:
        return _search_pairs_2d(engine, ia, ib, exact=exact, workers=workers, progress=progress,
                                return_rotation=return_rotation)
    L = engine.L
    atoms, ref = _sides(engine)
    tables = _grid_tables(L)
    b = engine.basis
    used = RadialBasis.get(b.kappa, b.r_max, b.L, GRID_TOL).sizes if not exact else None
    ga, gb, gw, gk, gt, dval = _coupling_index(L, tuple(ref["sizes"]), None if used is None else tuple(used))
    # pairs sorted by neighbour counts (lanes side by side pad to similar sizes), those of one atom together
    order = np.lexsort((ref["n"][ib], ia, atoms["n"][ia]))
    ia_s, ib_s = np.ascontiguousarray(ia[order]), np.ascontiguousarray(ib[order])
    threads = max(1, int(workers) if workers else config.workers())
    keep = []
    f64 = lambda x: _pointer(keep, x, np.float64, _F64P)
    f32 = lambda x: _pointer(keep, x, np.float32, _F32P)
    i64 = lambda x: _pointer(keep, x, np.int64, _I64P)
    st = engine.settings
    args = _Args(atoms["p"].shape[1], atoms["w"].shape[2], atoms["re"].shape[1], f64(atoms["p"]), f64(atoms["w"]),
                 f64(atoms["self"]), i64(atoms["n"]), f32(atoms["re"]), f32(atoms["im"]),
                 ref["p"].shape[1], f64(ref["p"]), f64(ref["w"]), f64(ref["self"]), i64(ref["n"]), f32(ref["re"]),
                 f32(ref["im"]), 1.0 / (2.0 * engine.sigma * engine.sigma), L, len(ga), dval.shape[0],
                 tables["cw"].shape[1], i64(ga), i64(gb), i64(gw), i64(gk), i64(gt), f32(dval), f32(tables["cw"]),
                 f32(tables["sw"]), f32(tables["cal"]), f32(tables["sal"]), f64(tables["rgrid"]),
                 2 if engine.group == "O3" else 1, int(st.max_iter), int(st.candidates), int(engine.grid_pool),
                 1e-7 if exact else 0.0, 0.0 if exact else float(engine.grid_window))
    assert args.N % 2 == 0 and atoms["w"].shape[2] == ref["w"].shape[2] and atoms["re"].shape[1] == ref["re"].shape[1]
    res = np.empty(n)
    res_rot = np.empty((n, 9)) if return_rotation else None
    _call_in_ranges(library().giip_search, args, ia_s, ib_s, res, res_rot, threads, pairs_per_call, progress)
    out[order] = res
    if return_rotation:
        rots[order] = res_rot.reshape(n, 3, 3)
        return out, rots
    return out


def coarse_distance_rows(engine, *, workers=None, progress=None) -> np.ndarray:
    """Coarse distances ``(len(engine.A), len(engine.B))`` of every pair (:func:`search_pairs` with
    ``exact=False``): upper bounds of the exact distances."""
    nA, nB = len(engine.A), len(engine.B)
    ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
    return search_pairs(engine, ia, ib, exact=False, workers=workers, progress=progress).reshape(nA, nB)


def applies(engine) -> bool:
    """Whether the search of ``engine`` (a :class:`~giip_plugin.kernels.DistanceEngine`) runs
    compiled: a search it covers (CPU in double precision, 3D with one common sigma, O(3) or SO(3),
    a grid that is not oversampled), the kernel compiled (else a warning, once), and
    ``GIIP_NO_FUSED`` unset in the environment (``GIIP_NO_FUSED=1`` keeps the PyTorch path, for
    comparisons)."""
    if config.fused_disabled():
        return False
    try:
        check_covered(engine)
    except ValueError:
        return False
    except RuntimeError:
        return available()
    return True
