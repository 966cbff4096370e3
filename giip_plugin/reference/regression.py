"""Parsimonious (non-harmonic) diffusion coordinates by local linear regression (step 4, docs/design.md section 3).

Method of Dsilva, Talmon, Coifman and Kevrekidis, "Parsimonious representation of nonlinear
dynamical systems through manifold learning: a chemotaxis case study" (Appl. Comput. Harmon. Anal.
44, 2018). Diffusion-map eigenvectors often repeat a direction already described: on a long strip
the second eigenvector is ``cos(2 pi x / L)``, a function of the first one ``cos(pi x / L)``.
For each coordinate ``psi_k`` (``k >= 1``, 0-based over the non-trivial eigenvectors) we fit it as a
*locally linear* function of the preceding coordinates ``Phi = (psi_0, ..., psi_{k-1})`` and report
the normalised leave-one-out error

    r_k = sqrt( sum_i (psi_k(i) - f_k(Phi(i)))^2 / sum_i psi_k(i)^2 ),

where ``f_k(Phi(i))`` is the weighted least-squares affine fit around ``Phi(i)`` using every other
point ``j != i`` with weight ``exp(-|Phi(i) - Phi(j)|^2 / h_k^2)``, and the bandwidth ``h_k`` is
``bandwidth_factor`` times the median pairwise distance in ``Phi`` (the authors' code uses
``median / 3``, i.e. ``bandwidth_factor = 1/3``). ``r_0 = 1`` by definition.
Small ``r_k`` (say below 0.1): ``psi_k`` is a harmonic of earlier coordinates; ``r_k`` near 1: a new
direction. (The original code divides by the standard deviation instead of the root-mean-square; the
two agree to within the small non-zero mean of ``psi_k``.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParsimonyResult", "local_linear_regression_r2", "select_parsimonious", "polynomial_regression_r2",
           "PAPER_DEGREE"]

PAPER_DEGREE = 3  # degree of the polynomial of the paper's criterion (the paper does not state it)


@dataclass
class ParsimonyResult:
    """Output of :func:`local_linear_regression_r2`.

    residuals : r_k, the normalised leave-one-out local-linear-regression error of each coordinate
        (``residuals[0] = 1``). High = new information.
    r2 : ``residuals**2`` (the "r^2" of the eigenvalue/r^2 table of the GIIP paper; *not* a
        coefficient of determination: here high means "not explained by earlier coordinates").
    eigenvalues : the eigenvalues passed in (or None), for the table.
    bandwidths : kernel bandwidth ``h_k`` used for each coordinate (``nan`` for k = 0).
    fit_indices : indices of the points at which the leave-one-out error was evaluated.
    """

    residuals: np.ndarray
    r2: np.ndarray
    eigenvalues: np.ndarray | None
    bandwidths: np.ndarray
    fit_indices: np.ndarray

    def table(self) -> list[tuple[int, float, float, float]]:
        """Rows ``(index, eigenvalue or nan, r, r^2)`` for printing."""
        lam = self.eigenvalues if self.eigenvalues is not None else np.full(len(self.residuals), np.nan)
        return [(i, float(lam[i]), float(self.residuals[i]), float(self.r2[i])) for i in range(len(self.residuals))]


def _median_pair_distances(psi: np.ndarray, rng: np.random.Generator, max_pairs: int) -> np.ndarray:
    """Median over pairs ``i != j`` of ``|Phi_k(i) - Phi_k(j)|`` for every prefix length k = 1..K-1.

    Exact (all pairs) when ``n (n - 1) / 2 <= max_pairs``; otherwise over ``max_pairs`` random pairs.
    """
    n, K = psi.shape
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j[j >= i] += 1
    d2 = np.zeros(len(i))
    med = np.full(K, np.nan)
    for k in range(1, K):
        d2 += (psi[i, k - 1] - psi[j, k - 1]) ** 2
        med[k] = np.sqrt(np.median(d2))
    return med


def local_linear_regression_r2(
    psi,
    eigenvalues=None,
    bandwidth_factor: float = 1.0 / 3.0,
    *,
    max_fit_points: int | None = 3000,
    seed: int = 0,
    batch_size: int = 256,
    max_median_pairs: int = 2_000_000,
    ridge: float = 0.0,
    rcond: float = 1e-10,
) -> ParsimonyResult:
    """Leave-one-out local-linear-regression residuals ``r_k`` of diffusion coordinates.

    Parameters
    ----------
    psi : array (n, K)
        Non-trivial diffusion eigenvectors, columns in decreasing-eigenvalue order (e.g.
        ``DiffusionMap.eigenvectors``).
    eigenvalues : array (K,), optional
        Only carried into the result for the eigenvalue / r table.
    bandwidth_factor : float
        ``h_k = bandwidth_factor * median pairwise distance`` of ``(psi_0..psi_{k-1})``; default 1/3
        as in Dsilva et al.
    max_fit_points : int or None
        If ``n`` exceeds it, the leave-one-out error is evaluated at this many points drawn at
        random (``seed``) without replacement; every point still serves as regression data. Cost is
        about ``n_fit * n * sum_k (k + 2)^2`` flops. ``None``: all points.
    batch_size : int
        Fit points handled at once (memory ``~ 3 * batch_size * n`` floats).
    max_median_pairs : int
        The bandwidth median is exact up to this many pairs, else estimated from that many random
        pairs (``seed``).
    ridge : float
        Optional Tikhonov term ``ridge * h_k^2`` added to each local covariance (0, the default,
        is the plain method). A small value (1e-3) damps the slope in directions that a
        neighbourhood barely samples (isolated points in the tails of ``psi``, whose leave-one-out
        extrapolation can dominate ``r``), at the price of some bias.
    rcond : float
        Directions of a local covariance with eigenvalue below ``rcond`` times its largest (or
        below the rounding noise of the moments) are dropped (pseudo-inverse), as a least-squares
        solver would; this happens in the harmonic case, where the preceding coordinates lie on a
        lower-dimensional curve.

    Returns
    -------
    ParsimonyResult with ``residuals`` (r), ``r2`` (r^2), ``bandwidths`` and ``fit_indices``.
    """
    psi = np.asarray(psi, dtype=float)
    if psi.ndim == 1:
        psi = psi[:, None]
    if psi.ndim != 2:
        raise ValueError(f"psi must have shape (n_points, n_coordinates), got {psi.shape}")
    n, K = psi.shape
    if K == 0:
        raise ValueError("psi has no coordinates")
    if n < 3:
        raise ValueError(f"local linear regression needs at least 3 points, got {n}")
    if not np.all(np.isfinite(psi)):
        raise ValueError("psi contains non-finite values")
    if eigenvalues is not None:
        eigenvalues = np.asarray(eigenvalues, dtype=float).reshape(-1)
        if len(eigenvalues) != K:
            raise ValueError(f"{len(eigenvalues)} eigenvalues for {K} coordinates")
    if not (np.isfinite(bandwidth_factor) and bandwidth_factor > 0):
        raise ValueError(f"bandwidth_factor must be positive, got {bandwidth_factor!r}")
    if int(batch_size) < 1:
        raise ValueError("batch_size must be >= 1")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a non-negative number, got {ridge!r}")
    rng = np.random.default_rng(seed)
    if max_fit_points is not None and n > int(max_fit_points):
        if int(max_fit_points) < 1:
            raise ValueError("max_fit_points must be >= 1 or None")
        fit_idx = np.sort(rng.choice(n, size=int(max_fit_points), replace=False))
    else:
        fit_idx = np.arange(n)

    residuals = np.ones(K)
    bandwidths = np.full(K, np.nan)
    if K > 1:
        med = _median_pair_distances(psi, rng, int(max_median_pairs))
        bandwidths[1:] = bandwidth_factor * med[1:]
        sq_err = np.zeros(K)
        sq_norm = np.sum(psi[fit_idx] ** 2, axis=0)
        for k in range(1, K):
            h2 = bandwidths[k] ** 2
            if not h2 > 0:  # all preceding coordinates constant: nothing to regress on
                sq_err[k] = sq_norm[k]
                continue
            X = psi[:, :k]
            sqX = np.sum(X**2, axis=1)
            F = np.concatenate([np.ones((n, 1)), X, psi[:, k : k + 1]], axis=1)  # (n, k + 2)
            iu, ju = np.triu_indices(k + 2)
            FF = F[:, iu] * F[:, ju]  # unique entries of the symmetric moment matrix
            for a in range(0, len(fit_idx), int(batch_size)):
                rows = fit_idx[a : a + int(batch_size)]
                b = len(rows)
                # squared distances in (psi_0..psi_{k-1}) by the Gram expansion (one matmul)
                logw = X[rows] @ X.T
                logw *= -2.0
                logw += sqX[rows][:, None]
                logw += sqX[None, :]
                np.maximum(logw, 0.0, out=logw)
                logw *= -1.0 / h2
                logw[np.arange(b), rows] = -np.inf  # leave one out
                logw -= logw.max(axis=1, keepdims=True)  # per-row rescaling of weights cancels below
                w = np.exp(logw, out=logw)
                mom = np.empty((b, k + 2, k + 2))
                mom[:, iu, ju] = w @ FF
                mom[:, ju, iu] = mom[:, iu, ju]
                mom /= w.sum(axis=1)[:, None, None]
                mu = mom[:, 0, 1 : k + 1]  # local weighted means of X
                ybar = mom[:, 0, k + 1]
                C = mom[:, 1 : k + 1, 1 : k + 1] - mu[:, :, None] * mu[:, None, :]
                c = mom[:, 1 : k + 1, k + 1] - mu * ybar[:, None]
                C = 0.5 * (C + np.swapaxes(C, 1, 2))
                ev, V = np.linalg.eigh(C)
                ev += ridge * h2
                # drop directions below rcond * largest, and below the rounding noise of the moments
                noise = 64.0 * np.finfo(float).eps * np.trace(mom[:, 1 : k + 1, 1 : k + 1], axis1=1, axis2=2)
                keep = ev > np.maximum(rcond * np.maximum(ev[:, -1], 0.0), noise)[:, None]
                inv = np.where(keep, 1.0 / np.where(keep, ev, 1.0), 0.0)
                beta = np.einsum("bij,bj->bi", V, inv * np.einsum("bkj,bk->bj", V, c))
                pred = ybar + np.einsum("bi,bi->b", beta, X[rows] - mu)
                sq_err[k] += np.sum((psi[rows, k] - pred) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            residuals[1:] = np.sqrt(sq_err[1:] / sq_norm[1:])
        residuals[1:][sq_norm[1:] == 0] = 0.0
    return ParsimonyResult(
        residuals=residuals,
        r2=residuals**2,
        eigenvalues=eigenvalues,
        bandwidths=bandwidths,
        fit_indices=fit_idx,
    )


def polynomial_regression_r2(psi, *, degree: int = PAPER_DEGREE, max_points: int = 8000, seed: int = 0) -> np.ndarray:
    """The criterion of the GIIP paper's text (Hardin et al. 2022): each coordinate ``psi_k``
    predicted from the preceding ones ``psi_0 .. psi_{k-1}`` by a polynomial regression of total
    degree ``degree`` (scikit-learn's ``PolynomialFeatures`` and ``LinearRegression``, least
    squares on all points); returns the coefficient of determination of each (``r2[0] = 0``:
    nothing precedes it). Here, unlike :func:`local_linear_regression_r2`, **r^2 near 1 means
    redundant** (a function of earlier coordinates) and near 0 a new direction.

    The r^2 is the adjusted one, ``1 - (1 - R^2) (n - 1) / (n - p - 1)`` with ``p`` polynomial
    terms, so that the many terms of late coordinates (1,539 at degree 3 with 19 predecessors) do
    not count as explained variance; it is 0 where ``p >= n - 1``. (Out-of-sample r^2 was tried
    first: a cubic extrapolates wildly at the heavy tails of diffusion eigenvectors, giving values
    of -1e5.) At most ``max_points`` points (a seeded random subset) are used. The paper states
    neither the degree nor the threshold: degree 3 is the choice here, and
    :func:`select_parsimonious` applied to ``sqrt(1 - r^2)`` (kept where r^2 < 0.91, the threshold
    0.3 of the residual) gives the selection by this criterion.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import PolynomialFeatures

    psi = np.asarray(psi, dtype=float)
    if psi.ndim != 2:
        raise ValueError(f"psi must be a 2-D array (points x coordinates), got shape {psi.shape}")
    if int(degree) < 1:
        raise ValueError(f"degree must be >= 1, got {degree!r}")
    n, K = psi.shape
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else np.arange(n)
    x = psi[idx]
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)  # conditioning of the polynomial terms
    m = len(idx)
    r2 = np.zeros(K)
    for k in range(1, K):
        y = x[:, k]
        feats = PolynomialFeatures(int(degree), include_bias=False).fit_transform(x[:, :k])
        p = feats.shape[1]
        ss = np.sum((y - y.mean()) ** 2)
        if p >= m - 1 or ss <= 0:
            continue
        pred = LinearRegression().fit(feats, y).predict(feats)
        raw = 1.0 - np.sum((y - pred) ** 2) / ss
        r2[k] = 1.0 - (1.0 - raw) * (m - 1) / (m - p - 1)
    return r2


def select_parsimonious(
    eigenvalues,
    residuals,
    n_coords="auto",
    threshold: float = 0.3,
    *,
    max_considered: int = 10,
    min_eigenvalue: float = 0.0,
    min_relative_eigenvalue: float = 0.005,
) -> np.ndarray:
    """Indices (0-based into the non-trivial eigenvectors) of the parsimonious coordinates.

    A coordinate is *eligible* if its residual ``r_k >= threshold`` and its eigenvalue is
    ``> min_eigenvalue`` (default 0: negative and zero eigenvalues are noise of a kernel that is not
    positive definite, never a direction) and at least ``min_relative_eigenvalue`` (default 0.5%) of
    the leading eigenvalue: below that a coordinate carries almost no diffusion distance, and its
    local-regression residual is dominated by noise (r can then exceed 1, a fit worse than zero,
    which says nothing about new directions). Coordinate 0 is always kept (``r_0 = 1``).

    * ``n_coords="auto"``: the eligible coordinates among the first ``max_considered`` (default 10:
      the eigenvalue decay makes later ones carry little diffusion distance; the GIIP paper's
      choices were within the first 6).
    * ``n_coords=K`` (int): the first ``K`` eligible coordinates in eigenvalue order, over all
      coordinates given (``max_considered`` ignored); if fewer than ``K`` are eligible, the rest are
      filled with the not-yet-chosen coordinates of largest residual (positive eigenvalues first).

    The default ``threshold = 0.3`` sits between the two populations seen by Dsilva et al. and in
    practice: harmonics give ``r`` of order 0.01-0.1 (0.2 with noise), new directions 0.5-1; 0.3 is
    about their geometric midpoint (``sqrt(0.1 * 1)``).

    Returns a sorted int array.
    """
    residuals = np.asarray(residuals, dtype=float).reshape(-1)
    eigenvalues = np.asarray(eigenvalues, dtype=float).reshape(-1)
    K_all = len(residuals)
    if len(eigenvalues) != K_all:
        raise ValueError(f"{len(eigenvalues)} eigenvalues for {K_all} residuals")
    if K_all == 0:
        raise ValueError("no coordinates to select from")
    if np.isnan(residuals).any() or np.isnan(eigenvalues).any():
        raise ValueError("eigenvalues and residuals must not contain NaN")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a non-negative number, got {threshold!r}")
    floor = max(min_eigenvalue, min_relative_eigenvalue * max(eigenvalues[0], 0.0))
    eligible = (residuals >= threshold) & (eigenvalues > floor)
    eligible[0] = True
    if isinstance(n_coords, str):
        if n_coords != "auto":
            raise ValueError(f"n_coords must be 'auto' or a positive integer, got {n_coords!r}")
        if isinstance(max_considered, (bool, np.bool_)) or int(max_considered) < 1:
            raise ValueError(f"max_considered must be a positive integer, got {max_considered!r}")
        return np.flatnonzero(eligible[: int(max_considered)]).astype(np.int64)
    if isinstance(n_coords, (bool, np.bool_)) or int(n_coords) != n_coords or n_coords < 1:
        raise ValueError(f"n_coords must be 'auto' or a positive integer, got {n_coords!r}")
    n_coords = int(n_coords)
    if n_coords > K_all:
        raise ValueError(f"asked for {n_coords} coordinates, only {K_all} available")
    chosen = list(np.flatnonzero(eligible)[:n_coords])
    if len(chosen) < n_coords:
        rest = np.setdiff1d(np.arange(K_all), chosen)
        # positive eigenvalues first, then larger residual, then lower index
        order = np.lexsort((rest, -residuals[rest], ~(eigenvalues[rest] > floor)))
        chosen += list(rest[order][: n_coords - len(chosen)])
    return np.sort(np.asarray(chosen, dtype=np.int64))
