"""Structure functions of the softness method (Cubuk et al. 2015; Cubuk, thesis, Harvard 2016).

For particle ``i`` with neighbours ``j`` at distances ``r_ij``:

* radial, one set per neighbour species ``Y``:
  ``G_Y(i; mu) = sum_{j in Y} exp(-(r_ij - mu)^2 / L^2)``, ``mu`` from 0.3 to 5.0 in steps of 0.1
  and width ``L = 0.1``, in units of ``length`` (sigma_AA for Lennard-Jones; the thesis's grid);
* angular, over all pairs of neighbours ``j < k`` within ``angular_cutoff``:
  ``Psi(i; xi, lambda, zeta) = sum_{j<k} exp(-(r_ij^2 + r_ik^2 + r_jk^2) / xi^2)
  (1 + lambda cos theta_jik)^zeta``, over every pair of neighbours, or (``angular_species``) one
  set per unordered pair of neighbour species (AA, AB, BB for two species). The thesis uses 66 of
  them. The default is a grid of 66 species-blind functions: ``xi`` from 1.0 to 3.0 in steps of
  0.2 (11 values) times ``zeta`` in (1, 2, 4) times ``lambda`` = -1, +1. :data:`PUBLISHED_ANGULAR`
  is the table of 22 triplets ``(xi, lambda, zeta)`` used per species pair (22 x 3 = 66) by a public
  implementation of Schoenholz et al. (Nat. Phys. 2016): SoftnessML_api (T. Obadiya, D. M. Sussman's
  group, Emory; its ``angular_structure``); the thesis's own table was not found. Take it with
  ``angular=PUBLISHED_ANGULAR, angular_species=True`` (``giip softness train --angular published``).

Neighbours come from the project's neighbour list (vesin, periodic images included). Everything
is vectorised over pairs and triplets, in chunks of centres.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["StructureFunctions", "MapCoordinates", "FeatureSet", "features_from_dict", "DEFAULT_MU",
           "DEFAULT_ANGULAR", "PUBLISHED_ANGULAR"]

DEFAULT_MU = tuple(np.round(np.arange(0.3, 5.0 + 1e-9, 0.1), 10).tolist())
DEFAULT_ANGULAR = tuple((round(float(xi), 10), lam, zeta) for xi in np.arange(1.0, 3.0 + 1e-9, 0.2)
                        for zeta in (1, 2, 4) for lam in (-1, 1))
# (xi, lambda, zeta), see the module docstring
PUBLISHED_ANGULAR = (
    (14.633, -1, 1), (14.633, 1, 1), (14.638, -1, 2), (14.638, 1, 2),
    (2.554, -1, 1), (2.554, 1, 1), (2.554, -1, 2), (2.554, 1, 2),
    (1.648, 1, 1), (1.648, 1, 2),
    (1.204, 1, 1), (1.204, 1, 2), (1.204, 1, 4), (1.204, 1, 16),
    (0.933, 1, 1), (0.933, 1, 2), (0.933, 1, 4), (0.933, 1, 16),
    (0.695, 1, 1), (0.695, 1, 2), (0.695, 1, 4), (0.695, 1, 16),
)


@dataclass(frozen=True)
class StructureFunctions:
    """Radial and angular structure functions of particles (see the module docstring).

    Parameters
    ----------
    species : tuple of str
        Neighbour species, one radial set each (in this order).
    mu, width : radial centres and width ``L`` (units of ``length``).
    angular : tuple of (xi, lambda, zeta); empty for radial functions only.
    angular_species : one angular set per unordered pair of neighbour species (AA, AB, BB, in the
        order of ``species``) instead of one over all pairs of neighbours.
    angular_cutoff : neighbours of the angular functions (units of ``length``; default 2.0).
    length : the length unit (sigma_AA; 1 in Lennard-Jones units).
    dim : 2 or 3.
    """

    species: tuple
    mu: tuple = DEFAULT_MU
    width: float = 0.1
    angular: tuple = DEFAULT_ANGULAR
    angular_cutoff: float = 2.0
    length: float = 1.0
    dim: int = 3
    angular_species: bool = False
    names: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        species = tuple(str(s) for s in self.species)
        if not species or len(set(species)) != len(species):
            raise ValueError(f"structure functions need distinct species names, got {list(self.species)}")
        mu = tuple(float(m) for m in self.mu)
        if not mu or min(mu) < 0:
            raise ValueError("the radial centres mu must be a non-empty list of numbers >= 0")
        ang = tuple((float(x), int(l), int(z)) for x, l, z in self.angular)
        for x, l, z in ang:
            if not (x > 0 and l in (-1, 1) and z >= 1):
                raise ValueError(f"angular parameters (xi, lambda, zeta) need xi > 0, lambda = +-1, zeta >= 1; "
                                 f"got {(x, l, z)}")
        for name in ("width", "angular_cutoff", "length"):
            v = float(getattr(self, name))
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if int(self.dim) not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("species", species)
        set_("mu", mu)
        set_("angular", ang)
        set_("width", float(self.width))
        set_("angular_cutoff", float(self.angular_cutoff))
        set_("length", float(self.length))
        set_("dim", int(self.dim))
        set_("angular_species", bool(self.angular_species))
        names = [f"G_{s}({m:g})" for s in species for m in mu]
        if self.angular_species:
            names += [f"Psi_{a}{b}({x:g},{l:+d},{z})" for a, b in self.species_pairs for x, l, z in ang]
        else:
            names += [f"Psi({x:g},{l:+d},{z})" for x, l, z in ang]
        set_("names", tuple(names))

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def species_pairs(self) -> tuple:
        """The unordered pairs of neighbour species of the angular sets (with ``angular_species``)."""
        n = len(self.species)
        return tuple((self.species[a], self.species[b]) for a in range(n) for b in range(a, n))

    @property
    def cutoff(self) -> float:
        """The largest distance of a neighbour that enters the features."""
        return max(self.radial_cutoff, self.angular_cutoff * self.length if self.angular else 0.0)

    @property
    def radial_cutoff(self) -> float:
        """Neighbours of the radial functions: the largest mu plus 4 widths (exp(-16) below)."""
        return (max(self.mu) + 4.0 * self.width) * self.length

    def to_dict(self) -> dict:
        return {"kind": "structure_functions", "species": list(self.species), "mu": list(self.mu), "width": self.width,
                "angular": [list(a) for a in self.angular], "angular_cutoff": self.angular_cutoff,
                "length": self.length, "dim": self.dim, "angular_species": self.angular_species}

    @classmethod
    def from_dict(cls, d: dict) -> "StructureFunctions":
        return cls(species=tuple(d["species"]), mu=tuple(d["mu"]), width=float(d["width"]),
                   angular=tuple(tuple(a) for a in d["angular"]), angular_cutoff=float(d["angular_cutoff"]),
                   length=float(d["length"]), dim=int(d["dim"]),
                   angular_species=bool(d.get("angular_species", False)))  # files before it: species-blind

    # ------------------------------------------------------------------ computing
    def compute(self, atoms, indices=None, species=None, *, chunk: int = 512) -> np.ndarray:
        """Features ``(len(indices), n_features)`` of the atoms ``indices`` (default all) of
        ``atoms`` (an ase.Atoms; ``species``: every atom's name, default its symbols / species array)."""
        from ..environments.neighbors import neighbor_pairs, species_names

        names = species_names(atoms, species)
        unknown = sorted(set(names.tolist()) - set(self.species))
        if unknown:
            raise ValueError(f"species {unknown} are not among the structure functions' species "
                             f"{list(self.species)}: a model trained on another system (check --type-names)")
        idx = np.arange(len(atoms)) if indices is None else np.asarray(indices, dtype=np.int64)
        lookup = {s: k for k, s in enumerate(self.species)}
        spec_index = np.array([lookup[s] for s in names.tolist()], dtype=np.int64)
        i, j, D = neighbor_pairs(atoms, self.cutoff, self.dim)
        D = D[:, : self.dim]
        out = np.zeros((len(idx), self.n_features))
        if len(idx) == 0:
            return out
        row = np.full(len(atoms), -1, dtype=np.int64)
        row[idx] = np.arange(len(idx))
        keep = row[i] >= 0
        i, j, D = row[i[keep]], j[keep], D[keep]
        r = np.linalg.norm(D, axis=1) / self.length
        self._radial(out, i, spec_index[j], r)
        if self.angular:
            near = r < self.angular_cutoff
            self._angular(out, i[near], D[near] / self.length, len(idx), chunk, spec_index[j[near]])
        return out

    def _radial(self, out, i, s, r):
        """Sum the Gaussians of every pair into its centre's row (bincount per chunk of pairs)."""
        mu = np.asarray(self.mu)
        nmu = len(mu)
        width = len(self.species) * nmu
        acc = np.zeros(out.shape[0] * width)
        for a in range(0, len(r), 1 << 16):
            sl = slice(a, a + (1 << 16))
            g = np.exp(-np.square((r[sl, None] - mu[None, :]) / self.width))
            flat = (i[sl] * width + s[sl] * nmu)[:, None] + np.arange(nmu)[None, :]
            acc += np.bincount(flat.reshape(-1), weights=g.reshape(-1), minlength=len(acc))
        out[:, :width] += acc.reshape(out.shape[0], width)

    def _angular(self, out, i, D, n, chunk, s):
        """Sum over pairs j < k of neighbours of each centre (``D`` sorted by centre; ``s``: the
        neighbours' species indices)."""
        first = len(self.species) * len(self.mu)
        xis = np.array(sorted({x for x, _, _ in self.angular}))
        cols = {a: first + k for k, a in enumerate(self.angular)}
        n_ang, n_sp = len(self.angular), len(self.species)
        # the set of each ordered pair of neighbour species: that of the unordered pair, in the order
        # of species_pairs; species-blind functions are one set for every pair
        pair_of = np.zeros((n_sp, n_sp), dtype=np.int64)
        if self.angular_species:
            upper = np.triu_indices(n_sp)
            pair_of[upper] = np.arange(len(upper[0]))
            pair_of.T[upper] = pair_of[upper]
        n_pairs = int(pair_of.max()) + 1
        order = np.argsort(i, kind="stable")
        i, D, s = i[order], D[order], s[order]
        starts = np.searchsorted(i, np.arange(n + 1))
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            a, b = starts[c0], starts[c1]
            if b - a < 2:
                continue
            ci, Dc, sc = i[a:b], D[a:b], s[a:b]
            # every (j, k) pair of the same centre, j < k
            cnt = np.bincount(ci - c0, minlength=c1 - c0)
            off = np.concatenate([[0], np.cumsum(cnt)])
            jj, kk, owner = [], [], []
            for m in np.unique(cnt[cnt >= 2]):
                cen = np.flatnonzero(cnt == m)
                tj, tk = np.triu_indices(m, 1)
                base = off[cen][:, None]
                jj.append((base + tj[None, :]).reshape(-1))
                kk.append((base + tk[None, :]).reshape(-1))
                owner.append(np.repeat(cen + c0, len(tj)))
            jj, kk, owner = np.concatenate(jj), np.concatenate(kk), np.concatenate(owner)
            rj2 = np.einsum("ij,ij->i", Dc, Dc)
            dot = np.einsum("ij,ij->i", Dc[jj], Dc[kk])
            r2j, r2k = rj2[jj], rj2[kk]
            r2jk = r2j + r2k - 2.0 * dot
            cos = dot / np.sqrt(r2j * r2k)
            s2 = r2j + r2k + r2jk
            bins = owner * n_pairs + pair_of[sc[jj], sc[kk]]  # each (centre, set) its own bin
            for xi in xis:
                e = np.exp(-s2 / xi**2)
                for (x, lam, zeta), col in cols.items():
                    if x != xi:
                        continue
                    acc = np.bincount(bins, weights=e * (1.0 + lam * cos) ** zeta, minlength=n * n_pairs)
                    out[:, col + n_ang * np.arange(n_pairs)] += acc.reshape(n, n_pairs)


# --------------------------------------------------------------------------- map coordinates
_MAPS: dict = {}


def _load_map(path, checksum):
    """A reference map, loaded once per (path, checksum); refused if the file changed."""
    from ..reference import ReferenceMap
    from ..reference.fileformat import root_attribute

    key = (os.path.abspath(path), checksum)
    if key not in _MAPS:
        if not os.path.exists(path):
            raise FileNotFoundError(f"the softness model uses the GIIP coordinates of the reference map {path}, which "
                                    "is not there: put it back, or retrain the model")
        # the stored checksum names the map; ReferenceMap.load checks the content against it
        if root_attribute(path, "checksum") != checksum:
            raise ValueError(f"the reference map {path} is not the one this softness model was trained with (its "
                             "checksum differs): retrain the model with the new map")
        _MAPS.clear()
        _MAPS[key] = ReferenceMap.load(path)
    return _MAPS[key]


@dataclass(frozen=True)
class MapCoordinates:
    """Features from a GIIP reference map: the kept diffusion coordinates of each particle's
    environment (the map's default path, as ``giip apply``). Particles without a neighbour get 0.
    ``reference``: the map's path; ``checksum``: its stored checksum (the model refuses another
    file)."""

    reference: str
    checksum: str
    n_coords: int
    species: tuple
    dim: int
    cutoff: float

    @classmethod
    def of(cls, path) -> "MapCoordinates":
        from ..reference.fileformat import root_attribute

        path = os.path.abspath(os.fspath(path))
        checksum = root_attribute(path, "checksum")
        if checksum is None:
            from ..reference import ReferenceFileError

            raise ReferenceFileError(f"{path} is not a GIIP reference file (no checksum); build one with 'giip build'")
        ref = _load_map(path, checksum)
        if ref.metric_name != "giip":
            raise ValueError(f"{path} is a {ref.metric_name.upper()} map; softness features need a GIIP map")
        return cls(path, checksum, int(ref.n_coords), tuple(ref.species), int(ref.dim),
                   float(ref.environments.r_outer))

    @property
    def names(self) -> tuple:
        return tuple(f"giip_dc{k + 1}" for k in range(self.n_coords))

    @property
    def n_features(self) -> int:
        return self.n_coords

    def to_dict(self) -> dict:
        return {"kind": "giip_coordinates", "reference": self.reference, "checksum": self.checksum,
                "n_coords": self.n_coords, "species": list(self.species), "dim": self.dim, "cutoff": self.cutoff}

    def compute(self, atoms, indices=None, species=None, *, chunk: int = 512) -> np.ndarray:
        ref = _load_map(self.reference, self.checksum)
        idx = np.arange(len(atoms)) if indices is None else np.asarray(indices, dtype=np.int64)
        out = np.zeros((len(idx), self.n_coords))
        if len(idx) == 0:
            return out
        envs = ref.environments.compute(atoms, indices=idx, species=species)
        ok = np.flatnonzero(envs.counts > 0)
        if len(ok):
            out[ok] = ref.transform(envs.subset(ok)).coordinates
        return out


@dataclass(frozen=True)
class FeatureSet:
    """Several feature sources side by side (structure functions and map coordinates)."""

    parts: tuple

    def __post_init__(self):
        species = {p.species for p in self.parts}
        if len(species) != 1:
            raise ValueError(f"the feature sources have different species {sorted(species)}")
        if len({p.dim for p in self.parts}) != 1:
            raise ValueError("the feature sources are of different dimensions")

    species = property(lambda self: self.parts[0].species)
    dim = property(lambda self: self.parts[0].dim)
    names = property(lambda self: tuple(n for p in self.parts for n in p.names))
    n_features = property(lambda self: sum(p.n_features for p in self.parts))
    cutoff = property(lambda self: max(p.cutoff for p in self.parts))

    def to_dict(self) -> dict:
        return {"kind": "set", "parts": [p.to_dict() for p in self.parts]}

    def compute(self, atoms, indices=None, species=None, **kw) -> np.ndarray:
        return np.concatenate([p.compute(atoms, indices, species, **kw) for p in self.parts], axis=1)


def features_from_dict(d: dict):
    """The feature object of a model file's ``/features`` attributes."""
    kind = d.get("kind", "structure_functions")
    if kind == "structure_functions":
        return StructureFunctions.from_dict(d)
    if kind == "giip_coordinates":
        return MapCoordinates(d["reference"], d["checksum"], int(d["n_coords"]), tuple(d["species"]), int(d["dim"]),
                              float(d["cutoff"]))
    if kind == "set":
        return FeatureSet(tuple(features_from_dict(p) for p in d["parts"]))
    raise ValueError(f"unknown feature kind {kind!r} (a model of a newer giip-plugin?)")
