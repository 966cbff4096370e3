"""Single pairs of environments: the distance, the optimal rotation and the inner product.

Where the compiled search covers the setting (3D or 2D, one common sigma, O(3), SO(3), O(2),
SO(2), on the CPU in double precision: the defaults), a pair is searched on a
:class:`~.problem.SearchProblem` in numpy and C, without importing PyTorch: the first distance of
a fresh process then costs the radial basis and the grid tables of its band limit (well under a
second), and a further pair about a millisecond. Every other setting runs the
:class:`~.engine.DistanceEngine` (PyTorch).
"""
from __future__ import annotations

import numpy as np

from ..environments.environment_set import EnvironmentSet
from ..validation import check_environment, check_sigma
from .overlap import overlap_fixed
from .problem import SearchProblem


def _single_env(pos, w, sig, name):
    pos, w = check_environment(pos, w, name)
    env = (pos, w) if sig is None else (pos, w, np.asarray(sig, dtype=float).reshape(-1))
    return EnvironmentSet.from_list([env])


def _double(dtype) -> bool:
    """Whether ``dtype`` names double precision, as the engine reads it (``_resolve_dtype``),
    without importing PyTorch to compare with ``torch.float64``."""
    return dtype is None or dtype is np.float64 or str(dtype) in ("float64", "double", "torch.float64")


def _compiled_problem(A, B, sigma, group, device, dtype):
    """The :class:`SearchProblem` of the pair when the compiled search runs it (CPU, double
    precision, a setting the kernel covers, ``GIIP_NO_FUSED`` unset: :func:`.fused.applies`), else
    ``None``."""
    if not (device is None or str(device) == "cpu") or not _double(dtype):
        return None
    from . import fused

    problem = SearchProblem(A, B, sigma=sigma, group=group)
    return problem if fused.applies(problem) else None


def distance(pos_a: np.ndarray, w_a: np.ndarray, pos_b: np.ndarray, w_b: np.ndarray, *, sigma: float,
             group: str | None = "O3", sigmas_a: np.ndarray | None = None, sigmas_b: np.ndarray | None = None,
             return_rotation: bool = False, device=None, dtype=None) -> float | tuple[float, np.ndarray]:
    """Orientation-invariant GIIP distance between two local environments (design.md, section 2).

    Parameters
    ----------
    pos_a, pos_b : array, shape (n, d)
        Neighbour positions relative to the centre (d = 2 or 3), in length units.
    w_a, w_b : array, shape (n,) or (n, channels)
        Weights (channels for vector species encodings).
    sigma : float
        Common Gaussian width, in the units of the positions (and the width of atoms without a
        per-atom sigma).
    group : {"O3", "SO3", "O2", "SO2", None}
        Orientations searched (None: fixed orientation).
    sigmas_a, sigmas_b : array, shape (n,), optional
        Per-atom widths.
    return_rotation : bool
        Also return the orthogonal matrix ``R`` with ``<A, R B>`` maximal.
    device, dtype
        PyTorch device and precision. ``None`` (default): the CPU in double precision (a single
        pair gains nothing from a GPU), by the compiled search where it covers the setting;
        ``"cuda"`` / ``"auto"`` / ``"float32"``: the PyTorch search there.

    Returns
    -------
    float or (float, array of shape (d, d))
        The distance in atoms of difference (one missing atom ~ 1), or ``(distance, R)``.
    """
    A = _single_env(pos_a, w_a, sigmas_a, "environment A")
    B = _single_env(pos_b, w_b, sigmas_b, "environment B")
    problem = _compiled_problem(A, B, sigma, group, device, dtype)
    if problem is not None:
        from . import fused

        res = fused.search_pairs(problem, [0], [0], exact=True, workers=1, return_rotation=return_rotation)
    else:
        from .engine import DistanceEngine

        eng = DistanceEngine(A, B, sigma=sigma, group=group, device="cpu" if device is None else device, dtype=dtype)
        res = eng.distances([0], [0], return_rotation=return_rotation)
    if return_rotation:
        return float(res[0][0]), res[1][0]
    return float(res[0])


def optimal_rotation(pos_a, w_a, pos_b, w_b, *, sigma, group="O3", **kw):
    """The orthogonal matrix ``R`` maximising ``<A, R B>`` (rows of ``pos_b @ R.T`` align with A)."""
    return distance(pos_a, w_a, pos_b, w_b, sigma=sigma, group=group, return_rotation=True, **kw)[1]


def inner_product(pos_a, w_a, pos_b, w_b, *, sigma, sigmas_a=None, sigmas_b=None):
    """GIIP inner product ``<A, B>`` at fixed orientation."""
    A = _single_env(pos_a, w_a, sigmas_a, "environment A")
    B = _single_env(pos_b, w_b, sigmas_b, "environment B")
    if A.n_channels != B.n_channels:
        raise ValueError(f"environments have {A.n_channels} and {B.n_channels} weight channels")
    sigma = check_sigma(sigma)
    t = lambda S: [None if x is None else np.asarray(x, dtype=float)[None] for x in (S.positions, S.weights, S.sigmas)]
    pa, wa, sa = t(A)
    pb, wb, sb = t(B)
    return float(overlap_fixed(pa, wa, sa, pb, wb, sb, sigma)[0])
