"""The SOAP metric: a second distance between environments for the same reference-map pipeline.

SOAP (Bartok, Kondor and Csanyi 2013) integrates the overlap of two densities over rotations
instead of taking its maximum (GIIP): the rotation-invariant *power spectrum* of a density's
expansion in radial functions and spherical harmonics. It is fast (one feature vector per atom,
the kernel rows are one matrix product) and incomplete (different environments can have the same
power spectrum; docs/soap_vs_giip.md shows such pairs and their GIIP distances).

How the GIIP settings map onto SOAP's (docs/design.md, section 2.3):

* density: Gaussians of width ``sigma`` (the GIIP sigma; ``exp(-r^2 / (2 sigma^2))``, unit L2 norm
  as in GIIP), no Gaussian on the centre atom (GIIP environments hold the neighbours only);
* cutoff: ``r_outer``, with featomic's shifted-cosine smoothing of width ``r_outer - r_inner``:
  weight 1 below ``r_inner`` and a smooth step to 0 at ``r_outer``, as the GIIP cubic spline
  (the two steps differ by at most 0.011);
* species: the power spectrum of the same weight channels as GIIP. The expansion coefficients of
  each species are mixed into the encoding's channels (``none``: one density of every atom;
  ``sign``: the signed density ``rho_positive - rho_other``; ``vector``: one density per species,
  with every cross-species product), so the species enter as they do in the GIIP inner product;
* orientation: the power spectrum is invariant under O(3) (rotations and reflections), so group
  ``O3``; a 2D map (``O2``) is treated as the plane z = 0 in 3D, where O(3) acts as O(2). SO(3),
  SO(2), a fixed orientation and per-species widths cannot be represented, and are refused;
* basis: ``n_max`` GTO radial functions and angular channels ``l <= l_max`` (defaults 8 and 6).

The distance (dimensionless): with ``p`` the power spectrum scaled to unit length,
``d(A, B) = sqrt(|p_A|^2 + |p_B|^2 - 2 p_A . p_B) = sqrt(2 - 2 k(A, B))``, ``k`` the normalised
linear SOAP kernel (De et al. 2016, zeta = 1); 0 for equal spectra, at most sqrt(2). An empty
environment has ``p = 0`` (distance 1 to any other, 0 to another empty one). The rows are one
matrix product (``|p_A|^2 + |p_B|^2 - 2 p_A . p_B``), so equal spectra come out at up to ~1e-7
(the square root of rounding) instead of 0.

The expansion is computed by featomic (pinned in requirements.txt): it exposes the expansion
coefficients (needed for the sign encoding), has the flat-then-smooth cutoff and a zero weight for
the centre atom, and was the fastest library measured (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..environments import EnvironmentSet, SpeciesEncoding

__all__ = ["SOAPSettings", "SOAPMetric", "SOAPFeatures", "soap_distance_rows", "LIBRARY"]

LIBRARY = "featomic"
_INSTALL = "pip install featomic==0.6.7"


def _featomic():
    try:
        import featomic
    except ImportError as e:  # pragma: no cover - featomic is in requirements.txt
        raise ImportError(f"the SOAP metric needs the featomic library ({_INSTALL})") from e
    return featomic


@dataclass(frozen=True)
class SOAPSettings:
    """SOAP's own parameters: ``n_max`` radial functions and angular channels up to ``l_max``."""

    n_max: int = 8
    l_max: int = 6

    def __post_init__(self):
        for name, lo, hi in (("n_max", 1, 30), ("l_max", 0, 20)):
            v = getattr(self, name)
            if isinstance(v, bool) or not float(v).is_integer() or not lo <= int(v) <= hi:
                raise ValueError(f"SOAP {name} must be an integer from {lo} to {hi}, got {v!r}")
            object.__setattr__(self, name, int(v))


class SOAPFeatures:
    """Unit-length SOAP power spectra of environments, ``values`` of shape ``(n, n_features)``
    (zero rows: empty environments). What :meth:`SOAPMetric.rows` takes besides environment sets."""

    def __init__(self, values: np.ndarray):
        values = np.array(values, dtype=float, order="C")
        values.setflags(write=False)
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, idx) -> "SOAPFeatures":
        return SOAPFeatures(self.values[np.asarray(idx, dtype=np.int64)])

    @property
    def counts(self) -> np.ndarray:
        """1 for an environment with neighbours, 0 for an empty one (a spectrum of zero length)."""
        return (np.abs(self.values).sum(1) > 0).astype(np.int64)


def soap_distance_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``d_ij = sqrt(|x_i|^2 + |y_j|^2 - 2 x_i . y_j)`` for unit (or zero) rows ``X`` and ``Y``."""
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    d = X @ Y.T  # then d^2 and d, in place
    d *= -2.0
    d += np.einsum("ij,ij->i", X, X)[:, None]
    d += np.einsum("ij,ij->i", Y, Y)[None, :]
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d)


class SOAPMetric:
    """The SOAP distance of a reference map (see the module docstring).

    Parameters
    ----------
    sigma : float
        Gaussian width (the map's sigma).
    r_inner, r_outer : float
        The environments' cutoffs (smooth step from ``r_inner`` to ``r_outer``).
    encoding : SpeciesEncoding
        The species channels.
    dim : int
        2 or 3 (2D: the plane z = 0).
    group : str
        "O3" in 3D, "O2" in 2D (the power spectrum's invariance).
    settings : SOAPSettings
        ``n_max``, ``l_max``.
    species_sigma : dict, optional
        Refused (one density width only).
    """

    name = "soap"

    def __init__(self, sigma: float, r_inner: float, r_outer: float, encoding: SpeciesEncoding, dim: int = 3,
                 group: str | None = "O3", settings: SOAPSettings | None = None, species_sigma=None):
        self.sigma, self.r_inner, self.r_outer = float(sigma), float(r_inner), float(r_outer)
        self.encoding, self.dim, self.group = encoding, int(dim), group
        self.settings = settings or SOAPSettings()
        self._check(species_sigma)
        codes = encoding.encode(np.array(encoding.species)) if encoding.species else np.ones((1, 1))
        # featomic types: one per distinct channel code (species with equal codes share a density)
        self._codes, self._species_type = np.unique(codes, axis=0, return_inverse=True)
        self._species_type = np.asarray(self._species_type).reshape(-1)
        self._calculator = None
        self._cache: dict = {}

    # ---------------------------------------------------------------- parameters
    def _check(self, species_sigma):
        want = {3: "O3", 2: "O2"}.get(self.dim)
        if want is None:
            raise ValueError(f"the SOAP metric is for 2D or 3D environments, not {self.dim}D")
        if self.group != want:
            what = "a fixed orientation" if self.group is None else self.group
            raise ValueError(
                f"the SOAP power spectrum is invariant under rotations and reflections ({want}); it cannot represent "
                f"{what}. Build the SOAP map with --group {want} (or auto), or use --metric giip")
        if species_sigma:
            raise ValueError("the SOAP metric has one Gaussian width for every species; per-species sigmas "
                             "(--species-sigma) cannot be represented: drop them, or use --metric giip")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a positive number, got {self.sigma}")
        if not 0 <= self.r_inner < self.r_outer:
            raise ValueError(f"the SOAP cutoff needs 0 <= r_inner < r_outer, got {self.r_inner}, {self.r_outer}")

    @classmethod
    def from_environments(cls, environments, sigma: float, group, settings: SOAPSettings | None = None):
        """The metric of a :class:`~giip_plugin.environments.LocalEnvironments` setting."""
        if environments is None:
            raise ValueError("the SOAP metric needs the environment settings (cutoffs and species): build the map "
                             "from structures or give environments=LocalEnvironments(...)")
        return cls(sigma, environments.r_inner, environments.r_outer, environments.encoding, environments.dim,
                   group, settings, environments.species_sigma)

    def parameters(self) -> dict:
        """What the reference file stores (and :meth:`from_parameters` reads)."""
        try:
            from importlib.metadata import version

            lib_version = version(LIBRARY)
        except Exception:  # pragma: no cover
            lib_version = "unknown"
        return {"n_max": self.settings.n_max, "l_max": self.settings.l_max, "library": LIBRARY,
                "library_version": lib_version, "smoothing": "ShiftedCosine", "center_atom_weight": 0.0,
                "radial_basis": "Gto", "distance": "sqrt(2 - 2 k), k = normalised linear power-spectrum kernel"}

    @property
    def n_features(self) -> int:
        q = len(self._codes[0]) * self.settings.n_max  # channels x radial functions
        return (self.settings.l_max + 1) * q * (q + 1) // 2

    def calculator(self):
        if self._calculator is None:
            fe = _featomic()
            from featomic.basis import Gto, TensorProduct
            from featomic.cutoff import Cutoff, ShiftedCosine
            from featomic.density import Gaussian

            self._calculator = fe.SphericalExpansion(
                cutoff=Cutoff(self.r_outer, ShiftedCosine(width=self.r_outer - self.r_inner)),
                density=Gaussian(width=self.sigma, center_atom_weight=0.0),
                basis=TensorProduct(max_angular=self.settings.l_max, radial=Gto(max_radial=self.settings.n_max - 1)),
            )
        return self._calculator

    # ---------------------------------------------------------------- features
    def _spectra(self, system, centers: np.ndarray) -> np.ndarray:
        """Unit power spectra of the atoms ``centers`` of one featomic system."""
        import metatensor

        n = len(centers)
        S, nmax, lmax = len(self._codes), self.settings.n_max, self.settings.l_max
        if n == 0:
            return np.zeros((0, self.n_features))
        sel = metatensor.Labels(["atom"], np.asarray(centers, dtype=np.int32).reshape(-1, 1))
        tm = self.calculator().compute(system, selected_samples=sel)
        row = np.full(int(np.max(centers)) + 1, -1, dtype=np.int64)
        row[centers] = np.arange(n)
        coeff = [np.zeros((n, 2 * l + 1, S, nmax)) for l in range(lmax + 1)]
        for key, block in tm.items():
            l, t = int(key["o3_lambda"]), int(key["neighbor_type"]) - 1
            if t < 0 or t >= S:
                continue
            atoms = np.asarray(block.samples.column("atom"), dtype=np.int64)
            vals = np.asarray(block.values)
            if len(atoms):
                coeff[l][row[atoms], :, t, :] = vals
        feats = []
        q = len(self._codes[0]) * nmax
        iu, ju = np.triu_indices(q)
        scale = np.where(iu == ju, 1.0, math.sqrt(2.0))
        for l in range(lmax + 1):
            mixed = np.einsum("nmtk,tc->nmck", coeff[l], self._codes).reshape(n, 2 * l + 1, q)
            p = np.einsum("nmq,nmr->nqr", mixed, mixed) / math.sqrt(2 * l + 1)
            feats.append(p[:, iu, ju] * scale)
        X = np.concatenate(feats, axis=1)
        norm = np.linalg.norm(X, axis=1)
        ok = norm > 1e-300
        X[ok] /= norm[ok, None]
        X[~ok] = 0.0
        return X

    def features(self, envs: EnvironmentSet, *, chunk: int = 4096) -> SOAPFeatures:
        """Power spectra of an environment set (the neighbours as written in it: every environment
        placed apart in one periodic box, so that no environment sees another)."""
        import ase

        if isinstance(envs, SOAPFeatures):
            return envs
        if envs.sigmas is not None:
            raise ValueError("per-atom sigmas cannot be represented by the SOAP metric")
        if envs.dim != self.dim:
            raise ValueError(f"the SOAP metric is {self.dim}D, the environments are {envs.dim}D")
        if envs.n_channels != len(self._codes[0]):
            raise ValueError(f"the environments have {envs.n_channels} weight channel(s), the SOAP metric's encoding "
                             f"{len(self._codes[0])}: compute them with the reference's environments")
        out = []
        spacing = 2.0 * self.r_outer + 1.0
        for a in range(0, len(envs), chunk):
            sub = envs.subset(np.arange(a, min(len(envs), a + chunk)))
            n, counts = len(sub), np.diff(sub.offsets)
            g = max(1, int(math.ceil(n ** (1.0 / 3.0))))
            k = np.arange(n)
            grid = np.stack([k % g, (k // g) % g, k // (g * g)], axis=1) * spacing
            pos = np.zeros((len(sub.positions), 3))
            pos[:, : self.dim] = sub.positions
            pos += np.repeat(grid, counts, axis=0)
            types = self._types_of_weights(sub)
            numbers = np.concatenate([np.full(n, len(self._codes) + 1), types + 1])
            system = ase.Atoms(numbers=numbers, positions=np.concatenate([grid, pos]), cell=np.eye(3) * g * spacing,
                               pbc=True)
            out.append(self._spectra(system, np.arange(n)))
        return SOAPFeatures(np.concatenate(out) if out else np.zeros((0, self.n_features)))

    def _types_of_weights(self, envs: EnvironmentSet) -> np.ndarray:
        """The featomic type of every neighbour: its weight channels divided by its cutoff weight."""
        from ..environments.cutoff import smooth_cutoff

        r = np.linalg.norm(envs.positions, axis=1)
        f = smooth_cutoff(r, self.r_inner, self.r_outer)
        types, off = self._types_of_codes(envs.weights / np.where(f > 0, f, 1.0)[:, None])
        if len(types) and np.any(off > 1e-6):
            raise ValueError("the environments' weights are not those of the reference's species encoding and "
                             "cutoff: compute them with the reference's environments (ReferenceMap.environments)")
        return types

    def _types_of_codes(self, codes):
        """The featomic type of each row of channel ``codes`` (the nearest distinct code) and how far
        the row is from it."""
        dist = np.abs(np.asarray(codes)[:, None, :] - self._codes[None, :, :]).max(axis=2)
        types = dist.argmin(axis=1)
        return types, dist[np.arange(len(types)), types]

    def features_of_structure(self, atoms, indices, species, *, chunk: int = 16384) -> SOAPFeatures:
        """Power spectra of the atoms ``indices`` of a structure (``species``: every atom's name).

        A 3D structure periodic in every direction is expanded as it is (one featomic call per
        ``chunk`` centres: the coefficients take ~6 kB per centre); anything else goes through its
        environments."""
        import ase

        indices = np.asarray(indices, dtype=np.int64)
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        if self.dim == 3 and pbc.all() and abs(np.linalg.det(np.asarray(atoms.get_cell()[:]))) > 1e-9:
            names = np.asarray(species).astype(str)
            types, _ = self._types_of_codes(self.encoding.encode(names))  # encode raises on unknown species
            pos = np.asarray(atoms.get_positions(), dtype=float)
            if not np.all(np.isfinite(pos)):
                raise ValueError("some atoms have NaN or infinite positions; fix or remove them before the analysis")
            system = ase.Atoms(numbers=types + 1, positions=pos, cell=atoms.get_cell(), pbc=True)
            parts = [self._spectra(system, indices[a:a + chunk]) for a in range(0, len(indices), chunk)]
            return SOAPFeatures(np.concatenate(parts) if parts else np.zeros((0, self.n_features)))
        from ..environments import LocalEnvironments

        local = LocalEnvironments(self.r_inner, self.r_outer, self.encoding, dim=self.dim)
        return self.features(local.compute(atoms, indices=indices, species=species))

    def training_features(self, training: EnvironmentSet) -> SOAPFeatures:
        """:meth:`features` of the training set, computed once per set."""
        key = id(training)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not training:
            hit = (training, self.features(training))
            self._cache = {key: hit}
        return hit[1]

    def set_training_features(self, training: EnvironmentSet, values) -> None:
        """Use ``values`` (stored in a reference file) as :meth:`training_features` of ``training``."""
        values = np.asarray(values, dtype=float)
        if values.shape != (len(training), self.n_features):
            raise ValueError(f"stored SOAP features of shape {values.shape}, expected ({len(training)}, "
                             f"{self.n_features}) for these settings")
        self._cache = {id(training): (training, SOAPFeatures(values))}

    # ---------------------------------------------------------------- the metric's two methods
    def pairwise(self, training: EnvironmentSet, *, progress=False, log=None, **_compute) -> np.ndarray:
        """The training distance matrix ``(n, n)`` (one matrix product; the GIIP compute options,
        checkpoints and threads, have nothing to do here)."""
        if log:
            log(f"SOAP power spectra of {len(training)} training environments ({LIBRARY})")
        X = self.training_features(training).values
        D = soap_distance_rows(X, X)
        D = 0.5 * (D + D.T)
        np.fill_diagonal(D, 0.0)
        return D

    def rows(self, inputs, training: EnvironmentSet, *, progress=None, device=None, exact: bool = False,
             report=None) -> np.ndarray:
        """Distances ``(n, n_train)`` of ``inputs`` (an :class:`EnvironmentSet` or
        :class:`SOAPFeatures`) to the training environments (exact: SOAP has no search;
        ``exact``, ``device`` and ``report`` are accepted for the GIIP metric's signature)."""
        X = self.features(inputs).values
        out = soap_distance_rows(X, self.training_features(training).values)
        if progress is not None and hasattr(progress, "update"):
            progress.update(out.size)
        if report is not None:
            report.soap_atoms += len(out)
        return out
