"""Public GIIP distance API: exact orientation-invariant distances, single and batched.

``d(A, B)^2 = <A, A> + <B, B> - 2 max_R <A, R B>``, the maximum taken over the chosen group
(O(3) by default: rotations and rotoinversions; SO(3); O(2); SO(2); or ``None`` for a fixed
orientation). Units are "atoms of difference": one missing atom gives about 1.
"""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import torch

from .. import config
from ..environments.environment_set import EnvironmentSet
from .overlap import overlap_fixed, pair_terms
from .problem import SearchProblem, memo, self_overlaps
from .radial import harmonic_coefficients
from .search import grid_candidates_2d, grid_candidates_3d, grid_candidates_3d_coef, polish
from .special import GRID_OVERSAMPLE_2D, spherical_harmonics
from .settings import SearchSettings
from ..validation import check_device


def resolve_device(device) -> torch.device:
    """The torch device of a ``device`` setting (``None`` / ``"auto"``: CUDA when PyTorch sees a
    GPU, else the CPU); a clear error for CUDA asked for where there is none."""
    device = check_device(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use device='cpu'")
    return device


def _resolve_dtype(dtype):
    if dtype in (None, "float64", "double", torch.float64, np.float64):
        return torch.float64
    if dtype in ("float32", "float", "single", torch.float32, np.float32):
        return torch.float32
    raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")


_MIN_SPLIT = 64  # smallest chunk that an out-of-memory error halves further (below: the error stands)


def gpu_chunk_pairs(free_bytes: int, L: int, parities: int, candidates: int, n_pairs_of_atoms: int, dim: int = 3,
                    oversample: float = 1.0, fraction: float = 0.25, cap: int = 1 << 17) -> int:
    """Pairs per chunk on a GPU: ``fraction`` of ``free_bytes`` over an estimate of one pair's
    working set, between 256 and ``cap``. The estimate: the grid stage (coupling, the Fourier
    transforms' inputs and outputs, the pool of largest values: about 32 bytes per grid point and
    parity; ``(2L+2)^2 (L+1)`` points in 3D, ``8 (L+1) oversample`` in 2D) and the Newton polish
    (about 16 arrays of ``na * nb`` doubles per start, ``parities * candidates`` starts)."""
    if dim == 3:
        n = int(2 * math.ceil(oversample * (L + 1)))
        grid = n * n * int(math.ceil(oversample * (L + 1)))
    else:
        grid = int(2 * math.ceil(GRID_OVERSAMPLE_2D * (L + 1)))
    per_pair = 32 * grid * parities + 128 * parities * candidates * max(1, n_pairs_of_atoms) + 4096
    return int(max(256, min(cap, fraction * free_bytes // per_pair)))


class DistanceEngine(SearchProblem):
    """Batched computation of invariant GIIP distances between environments of two sets.

    A :class:`~giip_plugin.kernels.problem.SearchProblem` with the padded tensors of each set on
    the compute device; evaluates any list of pairs ``(ia, ib)`` in chunks: ``distances(ia, ib)``.
    All tools of the project go through it.
    """

    def __init__(self, A: EnvironmentSet, B: EnvironmentSet | None = None, *, sigma: float, group="O3",
                 device=None, dtype=None, settings: SearchSettings | None = None, chunk_pairs: int | None = None,
                 l_max: int | None = None, grid_pool: int = 48, grid_window: float = 0.0,
                 compiled: bool | None = None):
        """``l_max``, ``grid_pool`` and ``grid_window``: the coarse search (see :class:`SearchProblem`).

        ``compiled``: run the search in the compiled kernel (:mod:`.fused`: the same algorithm,
        about ten times faster on the CPU). ``None`` (default): wherever it covers the search (CPU in
        double precision, 3D or 2D with one common sigma, O(3), SO(3), O(2) or SO(2)) and ``GIIP_NO_FUSED`` is unset;
        ``False``: the PyTorch implementation (the reference, and the path of every other setting
        and of CUDA); ``True``: the compiled kernel or an error saying why not."""
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        self.device_type, self.double = self.device.type, self.dtype == torch.float64
        super().__init__(A, B, sigma=sigma, group=group, settings=settings, l_max=l_max, grid_pool=grid_pool,
                         grid_window=grid_window)
        from . import fused

        if compiled is None:
            self.compiled = fused.applies(self)
        elif compiled:
            fused.check_covered(self)
            self.compiled = True
        else:
            self.compiled = False
        width = lambda counts: max(1, int(counts.max()) if len(counts) else 1)  # of the padded arrays
        nmax = width(self._counts_a) * width(self._counts_b)
        if chunk_pairs:
            self.chunk = int(chunk_pairs)
        elif self.device.type == "cuda":
            # a GPU wants few, large launches: as many pairs as a quarter of its free memory holds
            free, _total = torch.cuda.mem_get_info(self.device)
            self.chunk = gpu_chunk_pairs(free, self.L, 2 if self.group in ("O3", "O2") else 1,
                                         self.settings.candidates, nmax, self.dim, self.settings.oversample)
        else:
            per_pair = nmax * (self.L + 1) * 64 + (2 * self.L + 2) ** 3 * 48
            # ~64 pairs for NiNb first shells: small chunks keep the working set in cache (measured)
            self.chunk = int(max(8, min(512, 9.5e7 // max(per_pair, 1))))

    # the tensors of the PyTorch search, made when it first runs (the compiled search reads the
    # numpy arrays of its sides, fused._sides)
    @functools.cached_property
    def _pa(self):
        return self._side(self.A)

    @functools.cached_property
    def _pb(self):
        return self._pa if self.B is self.A else self._side(self.B)

    @functools.cached_property
    def _ca(self):
        return self._coefficients(self.A, self._pa, self.basis)

    @functools.cached_property
    def _cb(self):
        return self._ca if self.B is self.A else self._coefficients(self.B, self._pb, self.basis)

    def _side(self, S: EnvironmentSet):
        return memo(S, ("tensors", str(self.device), self.dtype, self.sigma), lambda: self._tensors(S))

    def _coefficients(self, S: EnvironmentSet, side, basis):
        # the grid only locates basins (the polish is exact): single precision is ample there (its
        # rounding, ~1e-7, is far below band_tol) and about twice as fast
        key = ("coefficients", str(self.device), self.dtype, basis.kappa, basis.r_max, basis.L, basis.tol)
        return memo(S, key, lambda: [c.to(torch.complex64) for c in harmonic_coefficients(side["p"], side["w"], basis)])

    def _tensors(self, S: EnvironmentSet):
        p, w, s = S.padded()
        t = lambda x: None if x is None else torch.as_tensor(x, dtype=self.dtype, device=self.device)
        out = {"p": t(p), "w": t(w), "s": t(s), "self": t(np.array(self_overlaps(S, self.sigma)))}
        out["r"] = torch.linalg.norm(out["p"], dim=-1)
        return out

    # -------------------------------------------------------------------------------------
    def max_overlap(self, ia, ib, return_rotation=False):
        """``max_R <A_ia, R B_ib>`` for index arrays (and the optimal R, mapping B onto A)."""
        ia_np, ib_np = np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)
        ia = torch.as_tensor(ia_np, device=self.device)
        ib = torch.as_tensor(ib_np, device=self.device)
        pa, pb = self._pa, self._pb
        # trim the padding to the largest neighbour count of this chunk (padding sits at the end)
        na = max(1, int(self._counts_a[ia_np].max())) if len(ia_np) else 1
        nb = max(1, int(self._counts_b[ib_np].max())) if len(ib_np) else 1
        a, b = pa["p"][ia, :na], pb["p"][ib, :nb]
        wa, wb = pa["w"][ia, :na], pb["w"][ib, :nb]
        sa = None if pa["s"] is None else pa["s"][ia, :na]
        sb = None if pb["s"] is None else pb["s"][ib, :nb]
        W, kappa = pair_terms(wa, wb, sa, sb, self.sigma, self.dim)
        P = len(ia)
        if self.group is None:
            f = overlap_fixed(a, wa, sa, b, wb, sb, self.sigma)
            R = torch.eye(self.dim, dtype=self.dtype, device=self.device).expand(P, -1, -1)
            return (f, R) if return_rotation else f
        parities = 2 if self.group in ("O3", "O2") else 1
        K = self.settings.candidates
        ra, rb = pa["r"][ia, :na], pb["r"][ib, :nb]
        cdt = torch.complex128 if self.dtype == torch.float64 else torch.complex64
        if self._coef:
            Ca = [c[ia] for c in self._ca]
            Cb = [c[ib] for c in self._cb]
            R0, vals = grid_candidates_3d_coef(Ca, Cb, self.L, parities, K, self.settings.oversample,
                                               out_dtype=self.dtype, pool=self.grid_pool)
            if self.grid_window > 0:  # the compiled kernel's rule: a start far below the best one is not polished
                top = vals.argmax(1)
                lo = vals.max(1).values - self.grid_window * 0.5 * (pa["self"][ia] + pb["self"][ib]).to(vals.dtype)
                R0 = torch.where((vals < lo[:, None])[..., None, None], R0[torch.arange(P), top][:, None], R0)
        elif self.dim == 3:
            Ya = spherical_harmonics(a, self.L)
            Yb = spherical_harmonics(b, self.L)
            R0, _ = grid_candidates_3d(ra, Ya, rb, Yb, W, kappa, self.L, parities, K, self.settings.oversample)
        else:
            n = torch.arange(self.L + 1, device=self.device, dtype=self.dtype)
            ang_a = torch.atan2(a[..., 1], a[..., 0])[..., None] * n  # e^{i n phi} of every neighbour
            ang_b = torch.atan2(b[..., 1], b[..., 0])[..., None] * n
            Ea = torch.polar(torch.ones_like(ang_a), ang_a).to(cdt)
            Eb = torch.polar(torch.ones_like(ang_b), ang_b).to(cdt)
            R0, _ = grid_candidates_2d(ra, Ea, rb, Eb, W, kappa, self.L, parities, K)
        f, R = polish(a, b, W, kappa, R0, max_iter=self.settings.max_iter)
        best = f.argmax(1)
        fbest = f.gather(1, best[:, None])[:, 0]
        if return_rotation:
            Rbest = R[torch.arange(P, device=self.device), best]
            return fbest, Rbest
        return fbest

    def _chunk_split(self, ia, ib, return_rotation):
        """:meth:`_chunk`, halved (recursively) where the device runs out of memory: a GPU's chunk
        size is an estimate from its free memory (:func:`gpu_chunk_pairs`), which other programs
        can take meanwhile. Every pair is computed on its own, so the split changes no result
        beyond rounding. The halved size is kept for the later chunks."""
        try:
            return self._chunk(ia, ib, return_rotation)
        except torch.OutOfMemoryError:
            if len(ia) <= _MIN_SPLIT:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(ia) // 2
            self.chunk = max(_MIN_SPLIT, min(self.chunk, half))
            lo = self._chunk_split(ia[:half], ib[:half], return_rotation)
            hi = self._chunk_split(ia[half:], ib[half:], return_rotation)
            return np.concatenate([lo[0], hi[0]]), (np.concatenate([lo[1], hi[1]]) if return_rotation else None)

    def _chunk(self, ia, ib, return_rotation):
        res = self.max_overlap(ia, ib, return_rotation)
        f, R = res if return_rotation else (res, None)
        dev = self.device
        d2 = self._pa["self"][torch.as_tensor(ia, device=dev)] + self._pb["self"][torch.as_tensor(ib, device=dev)] - 2 * f
        d = torch.sqrt(d2.clamp_min(0.0)).cpu().numpy()
        return d, (R.cpu().numpy() if return_rotation else None)

    def distances(self, ia, ib, return_rotation=False, progress=None, workers=None):
        """Invariant distances of the pairs ``(A[ia[k]], B[ib[k]])`` as a numpy array.

        On the CPU, chunks of pairs run on ``workers`` threads (default: the entry point's setting,
        :func:`giip_plugin.config.compute_threads`, else all cores); the entry point gives PyTorch
        one intra-op thread: the operations on one chunk are too small for intra-op threading,
        whose spinning threads also collapse when other programs load the cores (measured: 3.5x
        slower than one thread on a busy 2-core machine).
        """
        ia = np.asarray(ia, dtype=np.int64).reshape(-1)
        ib = np.asarray(ib, dtype=np.int64).reshape(-1)
        if len(ia) != len(ib):
            raise ValueError("index arrays of the pairs must have the same length")
        if self.compiled:
            from . import fused

            return fused.search_pairs(self, ia, ib, exact=True, workers=workers, progress=progress,
                                      return_rotation=return_rotation)
        return self.skipping_disjoint(ia, ib, lambda a, b: self._searched(a, b, return_rotation, progress, workers),
                                      return_rotation, progress)

    def _searched(self, ia, ib, return_rotation, progress, workers):
        """:meth:`distances` by the PyTorch search, in threaded chunks."""
        out = np.empty(len(ia))
        rots = np.empty((len(ia), self.dim, self.dim)) if return_rotation else None
        # pairs sorted by neighbour counts, so that each chunk is padded to nearly its own size
        order = np.lexsort((self._counts_b[ib], self._counts_a[ia])) if len(ia) > self.chunk else np.arange(len(ia))
        ia, ib = ia[order], ib[order]
        chunk = self.chunk  # (a chunk split for memory lowers self.chunk for later calls, not this loop)
        starts = list(range(0, len(ia), chunk))
        if workers is None:  # set by the entry point (giip_plugin.config.compute_threads)
            workers = config.workers() if self.device.type == "cpu" else 1
        workers = max(1, min(int(workers), len(starts)))

        def store(s, res):
            dst = order[s : s + chunk]
            out[dst] = res[0]
            if return_rotation:
                rots[dst] = res[1]
            if progress is not None:
                progress.update(len(dst))

        self._pa, self._pb  # the tensors made once, before the threads
        if self._coef:
            self._ca, self._cb
        run = lambda s: self._chunk_split(ia[s : s + chunk], ib[s : s + chunk], return_rotation)
        # called directly (not from an entry point), this call is its own entry point
        own = workers > 1 and not config.inside_compute_threads()
        with config.compute_threads(workers) if own else contextlib.nullcontext():
            for s, res in config.run_in_threads(run, starts, workers):
                store(s, res)
        return (out, rots) if return_rotation else out


def _as_set(envs) -> EnvironmentSet:
    if isinstance(envs, EnvironmentSet):
        return envs
    return EnvironmentSet.from_list(list(envs))


def pairwise_distances(envs_a, envs_b=None, *, sigma: float, group: str | None = "O3", device=None, dtype=None,
                       progress: bool = False, settings: SearchSettings | None = None) -> np.ndarray:
    """Matrix of invariant distances (the batched path).

    Parameters
    ----------
    envs_a, envs_b : EnvironmentSet or list of (pos, w) / (pos, w, sigmas) tuples
        With ``envs_b=None`` the symmetric matrix of ``envs_a`` with itself is computed from its
        upper triangle (zero diagonal).
    sigma : float
        Gaussian width, in the units of the positions.
    group : {"O3", "SO3", "O2", "SO2", None}
        Orientations searched.
    device, dtype
        PyTorch device and precision.
    progress : bool
        A progress bar.
    settings : SearchSettings, optional
        Tuning of the rotation search (the defaults are exact on the tests and benchmarks).

    Returns
    -------
    array, shape (len(envs_a), len(envs_b))
        Distances in atoms of difference.
    """
    A = _as_set(envs_a)
    symmetric = envs_b is None
    B = A if symmetric else _as_set(envs_b)
    eng = DistanceEngine(A, None if symmetric else B, sigma=sigma, group=group, device=device, dtype=dtype, settings=settings)
    nA, nB = len(A), len(B)
    if symmetric:
        ia, ib = np.triu_indices(nA, k=1)
    else:
        ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ia), unit="pair", desc="GIIP distances")
    try:
        with config.compute_threads():  # an entry point: PyTorch threads set here (config.py)
            d = eng.distances(ia, ib, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    out = np.zeros((nA, nB))
    out[ia, ib] = d
    if symmetric:
        out[ib, ia] = d
    return out
