"""Diffusion map of the training set and Nystrom extension of new points (steps 3 and 5 of docs/design.md, section 3).

Given the symmetric matrix ``D`` of orientation-invariant distances between training points:

1. kernel ``W_ij = exp(-D_ij^2 / (2 eps^2))``;
2. density normalisation ``W~ = P^-1 W P^-1`` with ``P_ii = sum_j W_ij``;
3. Markov normalisation ``M = Dm^-1 W~`` with ``Dm_ii = sum_j W~_ij`` (stored as ``Dvec``);
4. eigenpairs of the symmetric conjugate ``S = Dm^-1/2 W~ Dm^-1/2`` (scipy's symmetric
   eigensolvers: LAPACK ``eigh`` or ARPACK ``eigsh``); eigenvectors of ``M`` are
   ``psi = Dm^-1/2 v`` with the same eigenvalues. The largest eigenvalue is 1 with a constant
   ``psi`` (the trivial pair); it is dropped.

Conventions of the stored result (:class:`DiffusionMap`):

* ``eigenvalues`` sorted in decreasing order (trivial one removed). Small negative eigenvalues are
  expected, because ``exp(-d^2 / 2 eps^2)`` is not a positive-definite kernel for the GIIP distance;
  they are kept and counted in ``n_negative``.
* ``eigenvectors[:, i] = psi_i`` evaluated at the training points, normalised so that
  ``sum_j Dvec_j psi_i(x_j)^2 = sum_j Dvec_j``, i.e. unit root-mean-square under the stationary
  distribution ``pi_j = Dvec_j / sum(Dvec)`` of the Markov chain (with this scaling the trivial
  eigenvector would be exactly 1). Eigenvectors are pi-orthogonal to each other and have pi-mean 0.
* Sign: the component of largest magnitude of each eigenvector is positive (first such index on
  exact ties).
* Diffusion coordinates at time ``t`` are ``eigenvalues**t * psi``; :meth:`DiffusionMap.transform`
  returns the ``psi`` values (``t = 0``) for new points, on the same scale as ``eigenvectors``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from .clustering import validate_distance_matrix, validate_distance_rows

__all__ = ["DiffusionMap", "auto_epsilon"]

# exp(x) is below the smallest normal float64 for x < this: a kernel row whose largest entry is
# smaller has "underflowed" (and is all zeros in plain arithmetic well before 2x this).
_LOG_TINY = float(np.log(np.finfo(float).tiny))  # about -708.4
_ROW_BLOCK = 1024


def auto_epsilon(D, k: int = 10, factor: float = 1.0) -> tuple[float, dict]:
    """Data-driven kernel scale: ``eps = factor * median_i d_k(i)``.

    ``d_k(i)`` is the distance from training point ``i`` to its ``k``-th nearest *other* training
    point (``k`` is capped at ``n - 1``), so with ``factor = 1`` a typical point has about ``k``
    neighbours within one ``eps`` and the kernel graph is locally well connected. If that median is
    0 (many duplicates) the median of the positive ``d_k`` is used.

    Why not the Berry-Giannakis-Harlim / Coifman "maximum log-log slope of sum_ij W_ij(eps)" rule:
    on curved data it is attracted to the scale of the curvature, not of the sampling. For points on
    a circle of radius R the slope ``2z (1 - I1(z)/I0(z))`` (``z = R^2/eps^2``) peaks at 1.22 for
    ``eps ~ 0.76 R``, well above its small-scale value 1, so the rule picks an eps comparable to the
    radius. The k-nearest-neighbour median tracks the sampling density instead.

    This is a starting point, not a guarantee: if the training set holds rare environments far from
    the rest (defects), they are weakly connected at this scale, and eigenvectors localise on them
    (see the warning of :meth:`DiffusionMap.fit` and ``info["n_isolated"]``); a larger ``factor``
    smooths more. Whatever the choice, it is recorded.

    Returns ``(eps, info)`` where ``info`` records the method, ``k``, ``factor``, the median and the
    10/50/90 % quantiles of ``d_k``, and ``n_isolated``, the number of points whose nearest
    neighbour is farther than ``3 eps``.
    """
    D = np.asarray(D, dtype=float)
    n = D.shape[0]
    if isinstance(k, (bool, np.bool_)) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    if n < 2:
        raise ValueError("epsilon='auto' needs at least two training points")
    k_used = int(min(int(k), n - 1))
    dk = np.empty(n)
    d1 = np.empty(n)
    for a in range(0, n, _ROW_BLOCK):
        blk = D[a : a + _ROW_BLOCK]
        # the sorted row is [0 (self), d_1, d_2, ...]: index k is the k-th other point
        part = np.partition(blk, sorted({1, k_used}), axis=1)
        dk[a : a + len(blk)] = part[:, k_used]
        d1[a : a + len(blk)] = part[:, 1]
    med = float(np.median(dk))
    if med <= 0:
        pos = dk[dk > 0]
        if len(pos) == 0:
            raise ValueError("cannot choose epsilon automatically: all training points coincide")
        med = float(np.median(pos))
    eps = float(factor) * med
    q10, q50, q90 = np.quantile(dk, [0.1, 0.5, 0.9])
    info = {
        "method": "knn_median",
        "formula": "eps = factor * median_i(distance to k-th nearest other training point)",
        "k": k_used,
        "factor": float(factor),
        "knn_median": med,
        "knn_quantiles_10_50_90": (float(q10), float(q50), float(q90)),
        "epsilon": eps,
        # points whose nearest neighbour is beyond 3 eps (kernel weight < 0.011): nearly isolated
        # in the kernel graph; many of them mean eps is too small for the data
        "n_isolated": int(np.sum(d1 > 3.0 * eps)),
    }
    return eps, info


def _check_epsilon(epsilon) -> float:
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise ValueError(f"epsilon must be a positive number or 'auto', got {epsilon!r}") from None
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon!r}")
    return eps


def _scale_symmetric_inplace(A: np.ndarray, s: np.ndarray) -> None:
    """``A_ij *= s_i * s_j`` by row blocks; exact symmetry of ``A`` is preserved."""
    for a in range(0, A.shape[0], _ROW_BLOCK):
        A[a : a + _ROW_BLOCK] *= s[a : a + _ROW_BLOCK, None] * s[None, :]


@dataclass
class DiffusionMap:
    """A fitted diffusion map (see the module docstring for the conventions).

    Build it with :meth:`fit`; it can also be rebuilt from stored arrays with the constructor
    (``epsilon``, ``eigenvalues``, ``eigenvectors``, ``P``, ``Dvec`` are all :meth:`transform` needs).

    Attributes
    ----------
    epsilon : float
        Kernel scale (same units as the distances).
    eigenvalues : ndarray (k,)
        Non-trivial eigenvalues of ``M``, decreasing.
    eigenvectors : ndarray (n_train, k)
        ``psi_i`` at the training points (normalisation and sign in the module docstring).
    P : ndarray (n_train,)
        Density normalisation ``P_jj = sum_l W_jl`` of the training points.
    Dvec : ndarray (n_train,)
        Markov normalisation ``Dm_jj = sum_l W~_jl``.
    epsilon_info : dict
        How ``epsilon`` was chosen (``{"method": "given"}`` or :func:`auto_epsilon`'s record).
    n_negative : int
        Number of negative eigenvalues among those kept.
    trivial_eigenvalue : float
        The dropped top eigenvalue (1 up to rounding).
    eig_residual : float
        ``max_i ||S v_i - lambda_i v_i||`` of the computed eigenpairs (accuracy check).
    solver : str
        ``"dense"`` (LAPACK eigh) or ``"arpack"`` (eigsh).
    """

    epsilon: float
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    P: np.ndarray
    Dvec: np.ndarray
    epsilon_info: dict = field(default_factory=dict)
    n_negative: int = 0
    trivial_eigenvalue: float = 1.0
    eig_residual: float = float("nan")
    solver: str = ""

    def __post_init__(self):
        self.epsilon = _check_epsilon(self.epsilon)
        self.eigenvalues = np.asarray(self.eigenvalues, dtype=float).reshape(-1)
        self.eigenvectors = np.asarray(self.eigenvectors, dtype=float)
        self.P = np.asarray(self.P, dtype=float).reshape(-1)
        self.Dvec = np.asarray(self.Dvec, dtype=float).reshape(-1)
        n = len(self.P)
        if self.eigenvectors.ndim != 2 or self.eigenvectors.shape != (n, len(self.eigenvalues)):
            raise ValueError(
                f"eigenvectors must have shape (n_train, n_eigenpairs) = ({n}, {len(self.eigenvalues)}), "
                f"got {self.eigenvectors.shape}"
            )
        if len(self.Dvec) != n:
            raise ValueError("P and Dvec must have the same length (n_train)")
        if not (np.all(self.P > 0) and np.all(np.isfinite(self.P))):
            raise ValueError("P must be positive and finite")
        self.n_negative = int(np.sum(self.eigenvalues < 0))

    @property
    def n_train(self) -> int:
        return len(self.P)

    @property
    def n_eigenpairs(self) -> int:
        return len(self.eigenvalues)

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        D,
        epsilon="auto",
        n_eigenpairs: int | None = 20,
        *,
        solver: str = "auto",
        knn: int = 10,
        epsilon_factor: float = 1.0,
        seed: int = 0,
    ) -> "DiffusionMap":
        """Diffusion map of the training distance matrix ``D`` (n x n, symmetric, zero diagonal).

        Parameters
        ----------
        epsilon : float or "auto"
            Kernel scale. ``"auto"``: :func:`auto_epsilon` with ``k = knn`` and
            ``factor = epsilon_factor``; the choice is recorded in ``epsilon_info``.
        n_eigenpairs : int or None
            Number of non-trivial eigenpairs to keep (capped at ``n - 1``); ``None`` keeps all.
        solver : "auto", "dense" or "arpack"
            ``"dense"``: ``scipy.linalg.eigh`` (only the top eigenpairs via ``subset_by_index``).
            ``"arpack"``: ``scipy.sparse.linalg.eigsh(which="LA")``, a deterministic start vector
            from ``seed``. ``"auto"``: dense for ``n <= 2000`` or when more than a fifth of the
            spectrum is requested, else ARPACK with a dense fallback if it does not converge.

        Warns (``RuntimeWarning``) when the second eigenvalue is numerically 1: the kernel graph
        is disconnected at this ``epsilon`` (increase it).
        """
        D = validate_distance_matrix(D)
        n = D.shape[0]
        if n < 2:
            raise ValueError("a diffusion map needs at least two training points")
        if isinstance(epsilon, str):
            if epsilon != "auto":
                raise ValueError(f"epsilon must be a positive number or 'auto', got {epsilon!r}")
            eps, info = auto_epsilon(D, k=knn, factor=epsilon_factor)
        else:
            eps = _check_epsilon(epsilon)
            info = {"method": "given", "epsilon": eps}
        if n_eigenpairs is None:
            k_keep = n - 1
        else:
            if isinstance(n_eigenpairs, (bool, np.bool_)) or int(n_eigenpairs) != n_eigenpairs or n_eigenpairs < 1:
                raise ValueError(f"n_eigenpairs must be a positive integer or None, got {n_eigenpairs!r}")
            k_keep = min(int(n_eigenpairs), n - 1)
        k_total = k_keep + 1
        if solver not in ("auto", "dense", "arpack"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'arpack', got {solver!r}")

        # kernel, density and Markov normalisations (one n x n work array, exactly symmetric)
        S = np.square(D)
        S *= -1.0 / (2.0 * eps * eps)
        np.exp(S, out=S)
        P = S.sum(axis=1)  # >= 1: W_ii = 1
        _scale_symmetric_inplace(S, 1.0 / P)  # W~
        Dvec = S.sum(axis=1)  # >= 1 / P_i^2 > 0
        _scale_symmetric_inplace(S, 1.0 / np.sqrt(Dvec))  # S = Dm^-1/2 W~ Dm^-1/2

        use = solver
        if use == "auto":
            use = "dense" if (n <= 2000 or k_total > n // 5) else "arpack"
        if use == "arpack" and k_total >= n:
            use = "dense"
        vals = vecs = None
        if use == "arpack":
            rng = np.random.default_rng(seed)
            try:
                vals, vecs = scipy.sparse.linalg.eigsh(
                    S, k=k_total, which="LA", v0=rng.standard_normal(n), tol=0.0
                )
            except scipy.sparse.linalg.ArpackNoConvergence:
                if solver == "arpack":
                    raise
                use = "dense"
        if use == "dense":
            subset = None if k_total >= n else [n - k_total, n - 1]
            vals, vecs = scipy.linalg.eigh(S, subset_by_index=subset, check_finite=False)
        order = np.argsort(vals)[::-1]
        vals = vals[order]
        vecs = vecs[:, order]
        resid = float(np.max(np.linalg.norm(S @ vecs - vecs * vals, axis=0)))
        del S

        trivial = float(vals[0])
        if abs(trivial - 1.0) > 1e-8:
            warnings.warn(
                f"top eigenvalue of the diffusion operator is {trivial!r}, expected 1",
                RuntimeWarning,
                stacklevel=2,
            )
        vals = vals[1:]
        vecs = vecs[:, 1:]
        if len(vals) and vals[0] > 1.0 - 1e-9:
            n_unit = int(np.sum(vals > 1.0 - 1e-9)) + 1
            warnings.warn(
                f"eigenvalue 1 appears {n_unit} times: the kernel graph is disconnected at "
                f"epsilon={eps:.4g} (groups of points farther apart than ~38 eps from each other "
                "do not interact); increase epsilon",
                RuntimeWarning,
                stacklevel=2,
            )

        psi = vecs / np.sqrt(Dvec)[:, None]
        psi *= np.sqrt(Dvec.sum())  # sum_j Dvec_j psi_j^2 = sum_j Dvec_j
        if psi.shape[1]:
            big = np.argmax(np.abs(psi), axis=0)
            signs = np.sign(psi[big, np.arange(psi.shape[1])])
            signs[signs == 0] = 1.0
            psi *= signs
        return cls(
            epsilon=eps,
            eigenvalues=vals,
            eigenvectors=psi,
            P=P,
            Dvec=Dvec,
            epsilon_info=info,
            trivial_eigenvalue=trivial,
            eig_residual=resid,
            solver=use,
        )

    # -- extension ----------------------------------------------------------------------------
    def log_kernel_mass(self, D_new) -> np.ndarray:
        """``log p_x = log sum_j exp(-d_j^2 / 2 eps^2)`` for each row of ``D_new`` (computed stably).

        A diagnostic of how well a new point is covered by the training set: about ``log P_jj`` of
        its neighbours for an in-distribution point, very negative far from all training data.
        """
        D_new = validate_distance_rows(D_new, self.n_train, allow_inf=True)
        a = np.square(D_new) * (-1.0 / (2.0 * self.epsilon**2))
        amax = a.max(axis=1)
        with np.errstate(invalid="ignore"):
            out = amax + np.log(np.exp(a - amax[:, None]).sum(axis=1))
        out[~np.isfinite(amax)] = -np.inf
        return out

    def transform(self, D_new, *, far: str = "nan", batch_size: int = 2048) -> np.ndarray:
        """Nystrom extension: ``psi`` values of new points from their distances to the training set.

        For a new point with distance row ``d`` (to every training point, in training order):
        ``k_j = exp(-d_j^2 / 2 eps^2)``, ``p_x = sum_j k_j``, ``k~_j = k_j / (p_x P_jj)``,
        ``m_j = k~_j / sum_l k~_l`` and ``phi_i(x) = (1 / lambda_i) sum_j m_j psi_i(x_j)``.
        Since ``p_x`` cancels, ``m = softmax(-d^2 / 2 eps^2 - log P)``, which is computed with the
        log-sum-exp shift (no underflow for any finite ``d``). The row of a training point reproduces
        its own ``psi`` (``M psi = lambda psi``) to rounding.

        ``far`` decides what a point gets when its plain kernel row underflows, i.e. every distance
        exceeds ``sqrt(2 * 708.4) eps ~ 37.6 eps`` (or every distance is ``inf``): ``"nan"``
        (default) returns NaN coordinates for it; ``"extend"`` returns the stable limit (dominated
        by the nearest training points, amplified by ``1 / lambda``; rows of all-``inf`` distances
        are NaN either way). Coordinates with ``lambda_i <= 0`` are ill-conditioned (division by a
        tiny or negative eigenvalue); they are returned as computed.

        Returns an array of shape ``(n_new, n_eigenpairs)`` (a 1-D ``D_new`` is one point).
        """
        if far not in ("nan", "extend"):
            raise ValueError(f"far must be 'nan' or 'extend', got {far!r}")
        if int(batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        D_new = validate_distance_rows(D_new, self.n_train, allow_inf=True)
        out = np.empty((D_new.shape[0], self.n_eigenpairs))
        log_p = np.log(self.P)
        inv_lam = 1.0 / self.eigenvalues if self.n_eigenpairs else self.eigenvalues
        c = -1.0 / (2.0 * self.epsilon**2)
        for a in range(0, D_new.shape[0], int(batch_size)):
            d = D_new[a : a + int(batch_size)]
            m = np.square(d)  # log k, then log m, then m: one array, in place
            m *= c
            kmax = m.max(axis=1)
            m -= log_p[None, :]
            lmax = m.max(axis=1)
            bad = ~np.isfinite(lmax)
            if far == "nan":
                bad |= kmax < _LOG_TINY
            lmax[~np.isfinite(lmax)] = 0.0
            with np.errstate(invalid="ignore", divide="ignore"):
                m -= lmax[:, None]
                np.exp(m, out=m)
                blk = (m @ self.eigenvectors) * (inv_lam[None, :] / m.sum(axis=1, keepdims=True))
            blk[bad] = np.nan
            out[a : a + len(d)] = blk
        return out
