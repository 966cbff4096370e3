"""Linear regressions of diffusion coordinates on physical quantities.

* :func:`r2` -- coefficient of determination of the least-squares line ``y = a + b x`` (the
  squared Pearson correlation; symmetric in ``x`` and ``y``);
* :func:`r2_table` -- that r^2 for every (quantity, coordinate) pair;
* :func:`best_direction` -- the direction ``u = (cos t, sin t)`` in the plane of two coordinates
  along which the projection ``u . (x, y)`` correlates best with a quantity ``q`` (the paper's
  Fig. 1d). It is the direction of the gradient of the least-squares plane
  ``q = a + b1 x + b2 y``, and its r^2 is that plane's (the multiple r^2): no other direction
  does better, since any projection is one of the linear models. The orthogonal direction is
  the one that carries no linear information on ``q`` (in the LJ crystal: the strain around
  dislocations, with coordination along the best direction).

These r^2 are coefficients of determination (high = explained). They are unrelated to the
local-linear-regression "r^2" of the parsimony selection (``ReferenceMap.r2``, high = new).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["r2", "r2_table", "best_direction", "Direction", "R2Table"]


def _finite_pairs(x, y):
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y have different lengths ({len(x)} and {len(y)})")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def r2(x, y) -> float:
    """r^2 of the least-squares line through ``(x, y)`` (NaN/inf pairs dropped). NaN when fewer
    than 3 pairs are left or either variable is constant."""
    x, y = _finite_pairs(x, y)
    if len(x) < 3:
        return float("nan")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    sxx, syy = float(x @ x), float(y @ y)
    return float(min(1.0, (x @ y) ** 2 / (sxx * syy)))


@dataclass
class R2Table:
    """r^2 of each quantity (rows) against each coordinate (columns)."""

    quantities: list
    coordinates: list  # column labels
    values: np.ndarray  # (n_quantities, n_coordinates)
    n: np.ndarray  # (n_quantities,) number of atoms with a finite value of the quantity

    def best(self, quantity: str) -> tuple[str, float]:
        """The coordinate with the highest r^2 for ``quantity``."""
        i = self.quantities.index(quantity)
        row = np.where(np.isfinite(self.values[i]), self.values[i], -1)
        j = int(np.argmax(row))
        return self.coordinates[j], float(self.values[i, j])

    def format(self, digits: int = 3, header_extra: list | None = None) -> str:
        """A fixed-width text table; ``header_extra`` is a second header line (e.g. eigenvector indices)."""
        qw = max([len("quantity")] + [len(q) for q in self.quantities])
        cw = max(digits + 3, max(len(c) for c in self.coordinates) if self.coordinates else 0,
                 max((len(h) for h in header_extra), default=0) if header_extra else 0)
        lines = [f"{'quantity':<{qw}}  {'n':>6}  " + "  ".join(f"{c:>{cw}}" for c in self.coordinates)]
        if header_extra:
            lines.append(f"{'':<{qw}}  {'':>6}  " + "  ".join(f"{h:>{cw}}" for h in header_extra))
        for q, n, row in zip(self.quantities, self.n, self.values):
            cells = "  ".join(f"{v:>{cw}.{digits}f}" if np.isfinite(v) else f"{'-':>{cw}}" for v in row)
            lines.append(f"{q:<{qw}}  {int(n):>6}  {cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"quantities": list(self.quantities), "coordinates": list(self.coordinates),
                "r2": [[None if not np.isfinite(v) else float(v) for v in row] for row in self.values],
                "n": [int(v) for v in self.n]}


def r2_table(coordinates, quantities: dict, labels=None) -> R2Table:
    """r^2 of every quantity (``{name: (n,) array}``) against every column of ``coordinates``
    (``(n, k)``); ``labels`` names the columns (default dc1..dck)."""
    X = np.asarray(coordinates, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"coordinates must be an (n, k) array, got shape {X.shape}")
    labels = list(labels) if labels is not None else [f"dc{k + 1}" for k in range(X.shape[1])]
    if len(labels) != X.shape[1]:
        raise ValueError(f"{len(labels)} labels for {X.shape[1]} coordinates")
    names = list(quantities)
    vals = np.full((len(names), X.shape[1]), np.nan)
    n = np.zeros(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        q = np.asarray(quantities[name], dtype=float).reshape(-1)
        if len(q) != len(X):
            raise ValueError(f"quantity {name!r} has {len(q)} values for {len(X)} atoms")
        n[i] = int(np.sum(np.isfinite(q) & np.all(np.isfinite(X), axis=1)))
        for j in range(X.shape[1]):
            vals[i, j] = r2(X[:, j], q)
    return R2Table(names, labels, vals, n)


@dataclass
class Direction:
    """Result of :func:`best_direction`."""

    angle_deg: float  # angle of the best direction from the first coordinate's axis, in (-180, 180]
    direction: tuple  # unit vector (u1, u2)
    orthogonal: tuple  # the unit vector at +90 degrees
    r2: float  # r^2 of the quantity against the projection on the best direction
    r2_orthogonal: float  # r^2 against the projection on the orthogonal direction
    r2_axes: tuple  # r^2 against each coordinate alone
    intercept: float
    coefficients: tuple  # (b1, b2) of q = a + b1 x + b2 y
    n: int

    def project(self, xy) -> np.ndarray:
        return np.asarray(xy, dtype=float) @ np.asarray(self.direction)

    def project_orthogonal(self, xy) -> np.ndarray:
        return np.asarray(xy, dtype=float) @ np.asarray(self.orthogonal)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def best_direction(xy, q) -> Direction:
    """The direction in the plane of ``xy`` (``(n, 2)``) best correlated with ``q`` (``(n,)``);
    see the module docstring. Rows with a non-finite value are dropped."""
    xy = np.asarray(xy, dtype=float)
    q = np.asarray(q, dtype=float).reshape(-1)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must be an (n, 2) array, got shape {xy.shape}")
    if len(q) != len(xy):
        raise ValueError(f"{len(q)} values of the quantity for {len(xy)} points")
    ok = np.all(np.isfinite(xy), axis=1) & np.isfinite(q)
    xy, q = xy[ok], q[ok]
    if len(q) < 4:
        raise ValueError(f"a direction needs at least 4 points with finite values, got {len(q)}")
    if np.ptp(q) == 0:
        raise ValueError("the quantity is constant: it does not vary linearly with these coordinates")
    A = np.column_stack([np.ones(len(q)), xy])
    coef, *_ = np.linalg.lstsq(A, q, rcond=None)
    b = coef[1:]
    nb = float(np.hypot(*b))
    if nb == 0 or not np.isfinite(nb):
        raise ValueError("the quantity does not vary linearly with these coordinates (zero gradient)")
    u = b / nb
    v = np.array([-u[1], u[0]])
    return Direction(
        angle_deg=float(np.degrees(np.arctan2(u[1], u[0]))),
        direction=(float(u[0]), float(u[1])),
        orthogonal=(float(v[0]), float(v[1])),
        r2=r2(xy @ u, q),
        r2_orthogonal=r2(xy @ v, q),
        r2_axes=(r2(xy[:, 0], q), r2(xy[:, 1], q)),
        intercept=float(coef[0]),
        coefficients=(float(b[0]), float(b[1])),
        n=int(len(q)),
    )
