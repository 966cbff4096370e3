"""The reference map: training environments, their classes, diffusion map and Nystrom extension.

A :class:`ReferenceMap` is built once from training trajectories (:meth:`ReferenceMap.from_files`,
or :meth:`ReferenceMap.build` from structures or an
:class:`~giip_plugin.environments.EnvironmentSet`), saved as one HDF5 file (:meth:`save`,
:mod:`giip_plugin.reference.fileformat`), loaded (:meth:`load`) and applied to new environments
(:meth:`transform`): each new environment gets

* the class of its nearest training environment (complete-linkage classes of the training set),
* its selected (parsimonious) diffusion coordinates by Nystrom extension,
* its distance to the nearest training environment (how well the reference covers it).

Pipeline (docs/design.md, section 3): training distances (:mod:`.training`), complete-linkage classes
(:mod:`.clustering`), diffusion map (:mod:`.diffusion`), local-linear-regression parsimony
(:mod:`.regression`).

Number of classes when neither ``n_classes`` nor ``max_diameter`` is given: the *knee* of the
cluster-error curve (largest class diameter against number of classes, K = 1 .. min(n, 50)): both
axes are scaled to [0, 1] and the K farthest below the straight line joining the two ends of the
curve is taken (the "Kneedle" rule). The choice is recorded and shown by ``giip info``; pass
``n_classes`` or ``max_diameter`` (e.g. 1.0 "atom of difference", as the paper's 2D example) to
choose yourself from the curve.
"""
from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from ..environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding
from .clustering import Clustering, ClassSummary, assign_nearest, class_summary, complete_linkage
from .diffusion import DiffusionMap
from .regression import local_linear_regression_r2, select_parsimonious

__all__ = ["ReferenceMap", "MapResult", "MapResultWithRotation", "knee_n_classes"]

_KNEE_MAX_CLASSES = 50
_ROWS_PER_BATCH = 256

# The fast path of transform(fast=True): every distance from a coarse search (band limit capped at
# l_max, the best `candidates` local maxima among the `pool` largest grid values per parity, at most
# `max_iter` Newton steps: upper bounds, exact or nearly so for most pairs), then the `refine`
# nearest of each row by the exact search. The coordinates average the coarse errors of a whole row
# (Nystrom), so large references tolerate a cheaper search; chosen by measurement against the
# exhaustive path (benchmarks/RESULTS.md, "fast path"; NiNb, 120 atoms, max coordinate error in % of
# the range): 3 starts per parity, 0.07-0.18% (60 to 2,000 references); 1 start per parity and a
# smaller pool, 0.76% with 1,000 references and 0.42% with 2,000 (0.84% on 500 other atoms), but
# beyond 1% for many atoms with 60.
# The large-reference search runs on the fused CPU kernel (kernels/fused.py) where it applies, at
# band limit 7: against the exhaustive rows of all 6,750 Ni centres of a NiNb frame (2,000
# references), band limit 6 left 3 atoms beyond 1% (max 1.71%, classes 99.73%), band limit 7 none
# (max 0.998%, classes 99.91%) for 20-30% more time. Its coarse rows put the exact nearest first
# for 98.9% of the atoms, so the 2 nearest are refined there, 4 with the few-start search of small
# references.
FAST_LARGE_REFERENCE = 1500


class FastSettings(NamedTuple):
    l_max: int
    candidates: int
    max_iter: int
    pool: int
    refine: int  # nearest of each row recomputed by the exact search


FAST_SETTINGS = FastSettings(l_max=6, candidates=3, max_iter=2, pool=12, refine=4)
FAST_SETTINGS_LARGE = FastSettings(l_max=7, candidates=1, max_iter=2, pool=8, refine=2)


def fast_settings(n_train: int) -> FastSettings:
    """Coarse-search settings of the fast path for a reference of ``n_train`` environments."""
    return FAST_SETTINGS_LARGE if int(n_train) >= FAST_LARGE_REFERENCE else FAST_SETTINGS


class MapResult(NamedTuple):
    """Result of :meth:`ReferenceMap.transform`: one entry per new environment (the names of
    :class:`~giip_plugin.analysis.AnalysisResult`)."""

    classes: np.ndarray  # class of the nearest training environment
    coordinates: np.ndarray  # (n, n_coords) selected diffusion coordinates (Nystrom)
    ref_distance: np.ndarray  # distance to the nearest training environment (atoms of difference)


class MapResultWithRotation(NamedTuple):
    classes: np.ndarray
    coordinates: np.ndarray
    ref_distance: np.ndarray
    rotation: np.ndarray  # (n, dim, dim): R maximising <new, R nearest-training>


def knee_n_classes(error: np.ndarray, max_classes: int = _KNEE_MAX_CLASSES) -> int:
    """The knee of the cluster-error curve ``error[K - 1]`` (K = 1 .. min(n, max_classes)).

    Both axes are scaled to [0, 1]; the K with the largest distance below the chord joining the
    ends is returned (ties: fewer classes). A flat or too short curve gives 1 class.
    """
    error = np.asarray(error, dtype=float)
    kmax = int(min(len(error), max_classes))
    if kmax < 3 or error[0] <= error[kmax - 1]:
        return 1
    K = np.arange(1, kmax + 1, dtype=float)
    x = (K - 1) / (kmax - 1)
    y = (error[:kmax] - error[kmax - 1]) / (error[0] - error[kmax - 1])
    gap = (1.0 - x) - y  # the chord runs from (0, 1) to (1, 0)
    return int(np.argmax(gap)) + 1


def _group_for(group, dim):
    if group == "auto":
        return "O3" if dim == 3 else "O2"
    if isinstance(group, str) and group.lower() == "none":
        return None
    return group


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _empty_prov(n):
    return {k: np.full(n, -1, dtype=np.int64) for k in ("file_index", "frame_index", "atom_index", "atom_id", "timestep")}


@dataclass
class ReferenceMap:
    """A GIIP reference map (see the module docstring). Build it with :meth:`build`,
    :meth:`from_files` or :meth:`from_distances`; do not fill the fields by hand."""

    environments: LocalEnvironments | None  # how to extract environments from new structures
    sigma: float
    group: str | None
    training: EnvironmentSet
    distances: np.ndarray  # (n, n) training distance matrix
    clustering: Clustering
    labels: np.ndarray  # (n,) class of each training environment, 0 = largest
    classes: ClassSummary  # sizes, diameters, medoids, radii per class
    class_selection: dict
    diffusion: DiffusionMap
    residuals: np.ndarray  # LLR r of each non-trivial eigenvector
    bandwidths: np.ndarray
    selected: np.ndarray  # indices of the kept coordinates (0-based among the non-trivial ones)
    n_coords_request: object = "auto"
    training_provenance: dict = field(default_factory=dict)  # per environment arrays
    provenance: dict = field(default_factory=dict)
    type_names: dict = field(default_factory=dict)
    search_settings: object = None
    checkpoint_path: str | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ derived properties
    @property
    def n_train(self) -> int:
        return len(self.training)

    @property
    def n_classes(self) -> int:
        return len(self.classes.sizes)

    @property
    def n_coords(self) -> int:
        """Number of selected diffusion coordinates (columns of :meth:`transform`'s coordinates)."""
        return len(self.selected)

    @property
    def r2(self) -> np.ndarray:
        return self.residuals**2

    @property
    def epsilon(self) -> float:
        return self.diffusion.epsilon

    @property
    def eigenvalues(self) -> np.ndarray:
        return self.diffusion.eigenvalues

    @property
    def coordinates(self) -> np.ndarray:
        """Selected diffusion coordinates of the training environments, ``(n_train, n_coords)``."""
        return self.diffusion.eigenvectors[:, self.selected]

    @property
    def dim(self) -> int:
        return self.training.dim

    @property
    def encoding(self) -> SpeciesEncoding | None:
        return self.environments.encoding if self.environments is not None else None

    @property
    def species(self) -> tuple:
        """Species names of the encoding (empty for an environment set given directly)."""
        return tuple(self.environments.encoding.species) if self.environments is not None else ()

    @property
    def centers(self):
        """Centre species (None: every atom is a centre)."""
        return self.environments.centers if self.environments is not None else None

    @property
    def error_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(n_classes, largest class diameter)`` of the complete-linkage tree."""
        return self.clustering.error_curve()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def from_distances(
        cls,
        training: EnvironmentSet,
        D,
        *,
        sigma: float,
        group="auto",
        environments: LocalEnvironments | None = None,
        n_classes: int | None = None,
        max_diameter: float | None = None,
        epsilon="auto",
        n_coords="auto",
        n_eigenpairs: int = 20,
        training_provenance: dict | None = None,
        provenance: dict | None = None,
        type_names: dict | None = None,
        search_settings=None,
    ) -> "ReferenceMap":
        """Classes, diffusion map and parsimonious coordinates from a computed training matrix ``D``."""
        from ..kernels import SearchSettings
        from ..validation import check_group, check_sigma

        sigma = check_sigma(sigma)
        group = check_group(_group_for(group, training.dim), training.dim)
        n = len(training)
        if n < 2:
            raise ValueError(f"a reference map needs at least 2 training environments, got {n}")
        D = np.asarray(D, dtype=float)
        if D.shape != (n, n):
            raise ValueError(f"distance matrix of shape {D.shape} for {n} training environments")
        if n_classes is not None and max_diameter is not None:
            raise ValueError("give n_classes or max_diameter, not both")
        clustering = complete_linkage(D)
        ks, err = clustering.error_curve()
        if n_classes is not None:
            labels = clustering.labels(n_classes=n_classes)
            sel = {"method": "n_classes", "value": int(n_classes)}
        elif max_diameter is not None:
            labels = clustering.labels(max_diameter=max_diameter)
            sel = {"method": "max_diameter", "value": float(max_diameter)}
        else:
            K = knee_n_classes(err)
            labels = clustering.labels(n_classes=K)
            sel = {"method": "knee", "value": K,
                   "rule": f"knee of the cluster-error curve over 1..{min(n, _KNEE_MAX_CLASSES)} classes"}
        summary = class_summary(D, labels)
        sel["n_classes"] = int(len(summary.sizes))
        sel["largest_diameter"] = float(summary.diameters.max())

        if isinstance(epsilon, str) and epsilon != "auto":
            epsilon = float(epsilon)
        dmap = DiffusionMap.fit(D, epsilon=epsilon, n_eigenpairs=n_eigenpairs)
        psi = dmap.eigenvectors
        if n >= 3 and psi.shape[1] >= 1:
            llr = local_linear_regression_r2(psi, dmap.eigenvalues)
            residuals, bandwidths = llr.residuals, llr.bandwidths
        else:
            residuals, bandwidths = np.ones(psi.shape[1]), np.full(psi.shape[1], np.nan)
        if isinstance(n_coords, str) and n_coords != "auto":
            n_coords = int(n_coords)
        if not isinstance(n_coords, str) and int(n_coords) > len(dmap.eigenvalues):
            raise ValueError(
                f"asked for {n_coords} coordinates but the diffusion map has {len(dmap.eigenvalues)} "
                f"eigenvectors (n_eigenpairs={n_eigenpairs}, {n} training environments)"
            )
        selected = select_parsimonious(dmap.eigenvalues, residuals, n_coords)
        prov = dict(provenance or {})
        prov.setdefault("date", _now())
        from .. import __version__

        prov.setdefault("package_version", __version__)
        return cls(
            environments=environments,
            sigma=sigma,
            group=group,
            training=training,
            distances=D,
            clustering=clustering,
            labels=labels,
            classes=summary,
            class_selection=sel,
            diffusion=dmap,
            residuals=np.asarray(residuals, dtype=float),
            bandwidths=np.asarray(bandwidths, dtype=float),
            selected=np.asarray(selected, dtype=np.int64),
            n_coords_request=n_coords if isinstance(n_coords, str) else int(n_coords),
            training_provenance=training_provenance or _empty_prov(n),
            provenance=prov,
            type_names=dict(type_names or {}),
            search_settings=search_settings or SearchSettings(),
        )

    @classmethod
    def build(
        cls,
        data,
        *,
        sigma: float,
        environments: LocalEnvironments | None = None,
        r_inner: float | None = None,
        r_outer: float | None = None,
        species: str = "none",
        positive: str | None = None,
        centers=None,
        species_sigma: dict | None = None,
        type_names=None,
        frames=None,
        dim: int | None = None,
        group="auto",
        n_train: int | None = None,
        seed: int = 0,
        select_by: str | None = None,
        select_lowest: int = 0,
        select_highest: int = 0,
        n_classes: int | None = None,
        max_diameter: float | None = None,
        epsilon="auto",
        n_coords="auto",
        n_eigenpairs: int = 20,
        checkpoint=None,
        restart: bool = False,
        scheduler=None,
        block_size: int | None = None,
        n_workers: int | None = None,
        device=None,
        search_settings=None,
        progress: bool = False,
        command_line: str | None = None,
        log=None,
    ) -> "ReferenceMap":
        """Build a reference map.

        ``data`` is one of: an :class:`EnvironmentSet` (the training set, or a pool to draw
        ``n_train`` from; ``environments`` optional, needed only to transform structures later);
        trajectory path(s) (as :meth:`from_files`); an ``ase.Atoms``, a
        :class:`giip_plugin.io.Frame`, or a list of them.

        Environments: give ``environments`` (a :class:`LocalEnvironments`) or ``r_inner``,
        ``r_outer``, ``species`` ("none", "sign", "vector"), ``positive`` (the +1 species of
        "sign"; default the first centre species, else the first type name, else the first
        species seen), ``centers`` (species names, or numeric LAMMPS types named by
        ``type_names``; default all atoms), ``species_sigma``. The
        species list of the encoding is the order of ``type_names`` when given, else the species
        seen in the input (sorted; the positive one first for "sign"). ``dim``: None detects 2D
        input (all z equal), 2 or 3 declares it. ``group``: "auto" (O3 in 3D, O2 in 2D), "O3",
        "SO3", "O2", "SO2" or None (fixed orientation).

        Training atoms (centres only): ``n_train`` spread evenly over all frames (seeded by
        ``seed``; None = all centres; more than available takes all with a warning), or
        ``select_by`` a per-atom column with the ``select_lowest`` lowest and ``select_highest``
        highest values (see :mod:`.sampling`).

        Distances: :func:`~giip_plugin.reference.training.training_distance_matrix` (``checkpoint``
        directory to resume from, ``restart``, ``scheduler`` for Dask, ``block_size``,
        ``n_workers`` torch threads, ``device``, ``progress``). The checkpoint is removed by
        :meth:`save` once the file is written.

        Then :meth:`from_distances` with ``n_classes`` / ``max_diameter``, ``epsilon`` (float or
        "auto"), ``n_coords`` (int or "auto") and ``n_eigenpairs``.
        """
        from ..io import Frame, iter_frames, parse_frames, parse_type_names
        from . import sampling
        from .training import training_distance_matrix

        say = log or (lambda m: None)
        tnames = parse_type_names(type_names) or {}
        prov = {"command_line": command_line or "", "date": _now()}
        if select_by is not None and n_train is not None:
            raise ValueError("choose the training atoms either by n_train or by select_by, not both")
        if isinstance(centers, str):
            centers = tuple(c for c in centers.replace(",", " ").split() if c)
        # numeric LAMMPS types may name centres / the positive species when type names are given
        as_name = lambda c: tnames[int(c)] if tnames and str(c).strip().isdigit() and int(c) in tnames else str(c)
        centers = tuple(as_name(c) for c in centers) if centers else None
        positive = as_name(positive) if positive else None
        if environments is not None:
            if centers is not None and centers != tuple(environments.centers or ()):
                raise ValueError("centers disagree with environments.centers; give one of them")
            centers = environments.centers

        if isinstance(data, EnvironmentSet):
            if select_by is not None:
                raise ValueError("select_by needs structures with per-atom columns, not an EnvironmentSet")
            pool = data
            if n_train is not None and n_train < len(pool):
                rng = np.random.default_rng(seed)
                idx = np.sort(rng.choice(len(pool), size=int(n_train), replace=False))
            else:
                if n_train is not None and n_train > len(pool):
                    warnings.warn(f"asked for {n_train} training environments, the set has {len(pool)}; "
                                  "taking all of them", UserWarning, stacklevel=2)
                idx = np.arange(len(pool))
            training = pool.subset(idx)
            tprov = _empty_prov(len(training))
            tprov["atom_index"] = np.asarray(training.centers, dtype=np.int64)
            prov.update({"input_files": [], "frames": "", "selection": {"method": "environment set",
                         "n_available": len(pool), "n_train_requested": n_train, "seed": int(seed)}})
            local = environments
        else:
            # a factory of frame iterators (two passes over the input)
            fsel = parse_frames(frames)
            if isinstance(data, (str, os.PathLike)) or (
                isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data)
            ):
                paths = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(p) for p in data]

                def frame_iter():
                    return iter_frames(paths, frames=fsel, type_names=tnames or None, dim=dim)

                inputs = [os.path.abspath(p) for p in paths]
            else:
                items = data if isinstance(data, (list, tuple)) else [data]
                if not items:
                    raise ValueError("no structures given to build the reference from")

                def frame_iter():
                    for k, a in enumerate(items[fsel]):
                        if isinstance(a, Frame):
                            yield a
                        elif hasattr(a, "get_positions"):
                            yield Frame.from_atoms(a, source="<structures>", index=k, type_names=tnames or None, dim=dim)
                        else:
                            raise TypeError(f"cannot build a reference from a {type(a).__name__}")

                inputs = ["<structures>"]
            say("reading the training frames (pass 1: counting centre atoms)")
            scan = sampling.scan_frames(frame_iter(), centers, select_by, select_lowest, select_highest)
            frame_dim = scan.dims.pop()
            scan.dims.add(frame_dim)
            if environments is None:
                if r_inner is None or r_outer is None:
                    raise ValueError("give r_inner and r_outer (or a LocalEnvironments) to build from structures")
                local = _make_environments(r_inner, r_outer, species, positive, centers, species_sigma,
                                           frame_dim, tnames, scan.species)
            else:
                local = environments
                if local.dim != frame_dim:
                    raise ValueError(f"the environments are {local.dim}D but the frames are {frame_dim}D")
            if select_by is not None:
                sample = sampling.choose_by_column(scan, select_by, select_lowest, select_highest)
            else:
                sample = sampling.choose_even(scan, n_train, seed)
            n_chosen = sum(len(v) for v in sample.per_frame.values())
            say(f"{scan.n_frames} frame(s), {scan.total_centers} centre atoms; computing {n_chosen} training "
                "environments (pass 2)")
            training, tprov = sampling.collect_environments(frame_iter(), scan, sample, local, local.centers)
            prov.update({
                "input_files": inputs if inputs != ["<structures>"] else inputs,
                "frames": _slice_text(fsel),
                "selection": sample.method,
                "n_frames": scan.n_frames,
                "frames_per_file": [int(np.sum(np.asarray(scan.file_index) == i)) for i in range(len(scan.sources))],
                "sources": list(scan.sources),
            })
        _check_training(training, local)
        prov["n_train"] = len(training)
        grp = _group_for(group, training.dim)
        n = len(training)
        say(f"{n} training environments: {n * (n - 1) // 2} distances to compute")
        D = training_distance_matrix(
            training, sigma, grp, block_size=block_size, checkpoint=checkpoint, restart=restart,
            scheduler=scheduler, progress=progress, n_workers=n_workers, device=device,
            settings=search_settings, log=log,
        )
        ref = cls.from_distances(
            training, D, sigma=sigma, group=grp, environments=local, n_classes=n_classes,
            max_diameter=max_diameter, epsilon=epsilon, n_coords=n_coords, n_eigenpairs=n_eigenpairs,
            training_provenance=tprov, provenance=prov, type_names=tnames, search_settings=search_settings,
        )
        ref.checkpoint_path = os.fspath(checkpoint) if checkpoint is not None else None
        return ref

    @classmethod
    def from_files(cls, paths, **kwargs) -> "ReferenceMap":
        """Build from trajectory files (LAMMPS dumps, extxyz, ASE .traj, what ase.io / OVITO read):
        ``ReferenceMap.from_files(["a.dump"], r_inner=3, r_outer=4, sigma=1, species="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=1000)``. Options as :meth:`build`."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("no trajectory files given")
        return cls.build(paths, **kwargs)

    # ------------------------------------------------------------------ applying
    def engine_for(self, envs: EnvironmentSet, *, device=None, dtype=None, coarse: bool = False):
        """A :class:`~giip_plugin.kernels.DistanceEngine` between ``envs`` (side A) and the training
        environments (side B), with this map's sigma, group and search settings (``coarse=True``:
        the coarse search of the fast path, whose distances are upper bounds)."""
        from dataclasses import replace

        from ..kernels import DistanceEngine

        self._check_compatible(envs)
        settings, extra = self.search_settings, {}
        if coarse:
            fs = fast_settings(self.n_train)
            settings = replace(settings, candidates=fs.candidates, max_iter=fs.max_iter)
            extra = {"l_max": fs.l_max, "grid_pool": fs.pool}
        return DistanceEngine(envs, self.training, sigma=self.sigma, group=self.group, device=device,
                              dtype=dtype, settings=settings, **extra)

    def _check_compatible(self, envs: EnvironmentSet):
        if envs.dim != self.dim:
            raise ValueError(f"the reference is {self.dim}D, the environments are {envs.dim}D")
        if envs.n_channels != self.training.n_channels:
            raise ValueError(
                f"the environments have {envs.n_channels} weight channel(s), the reference "
                f"{self.training.n_channels}: compute them with the reference's environments "
                "(ReferenceMap.environments)"
            )
        if (envs.sigmas is None) != (self.training.sigmas is None):
            raise ValueError("per-atom sigmas: the environments and the reference must agree")

    def compute_environments(self, atoms, indices=None, species=None) -> EnvironmentSet:
        """Environments of a structure with this map's settings (``environments.compute``)."""
        if self.environments is None:
            raise ValueError("this reference was built from an environment set without LocalEnvironments "
                             "settings; pass environments (an EnvironmentSet) instead of a structure")
        return self.environments.compute(atoms, indices=indices, species=species)

    def _as_envs(self, data, indices=None) -> EnvironmentSet:
        if isinstance(data, EnvironmentSet):
            if indices is not None:
                return data.subset(indices)
            return data
        if hasattr(data, "atoms") and hasattr(data, "source"):  # a Frame
            data = data.atoms
        if hasattr(data, "get_positions"):
            return self.compute_environments(data, indices=indices)
        return EnvironmentSet.from_list(list(data))

    def distance_rows(self, envs: EnvironmentSet, *, progress=None, device=None, fast: bool = False,
                      refine: int | None = None) -> np.ndarray:
        """Distances of each environment of ``envs`` to every training environment, ``(n, n_train)``.

        Exact by default. ``fast=True``: every distance from the coarse search (an upper bound,
        exact for most pairs), then the ``refine`` smallest of each row (default: that of
        :func:`fast_settings`) recomputed exactly, so the nearest training environment and its
        distance are exact whenever the exact nearest is among the coarse ``refine`` nearest (see
        :meth:`transform`).
        """
        nA, nB = len(envs), self.n_train
        ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
        if not fast:
            return self.engine_for(envs, device=device).distances(ia, ib, progress=progress).reshape(nA, nB)
        from ..kernels import fused

        coarse = self.engine_for(envs, device=device, coarse=True)
        if fused.applies(coarse):  # the same search, compiled per pair (kernels/fused.py)
            rows = fused.coarse_distance_rows(coarse, progress=progress)
        else:
            rows = coarse.distances(ia, ib, progress=progress).reshape(nA, nB)
        if refine is None:
            refine = fast_settings(nB).refine
        k = int(min(max(int(refine), 0), nB))
        if k and nA:
            near = np.argpartition(rows, k - 1, axis=1)[:, :k] if k < nB else np.tile(np.arange(nB), (nA, 1))
            ra, rb = np.repeat(np.arange(nA), k), near.reshape(-1)
            exact = self.engine_for(envs, device=device).distances(ra, rb, progress=progress)
            rows[ra, rb] = np.minimum(rows[ra, rb], exact)
        return rows

    def transform_from_distances(self, D_rows, *, all_coordinates: bool = False) -> MapResult:
        """(classes, coordinates, nearest distance) from precomputed distance rows ``(n, n_train)``
        to the training environments (in training order). Coordinates are the selected ones
        (``all_coordinates=True``: every eigenvector of the map). Exact for rows computed by
        :meth:`distance_rows`; a pruned search may give ``inf`` for training environments it has
        proven farther than others: the nearest must be exact, and the Nystrom weights of far
        points are negligible anyway (they underflow at ``d > ~38 eps``)."""
        near = assign_nearest(D_rows, self.labels)
        psi = self.diffusion.transform(D_rows)
        coords = psi if all_coordinates else psi[:, self.selected]
        return MapResult(near.labels, coords, near.distance)

    def transform(self, data, return_rotation: bool = False, *, indices=None, progress: bool = False,
                  device=None, all_coordinates: bool = False, batch: int = _ROWS_PER_BATCH, fast: bool = False):
        """Map new environments: ``(classes, coordinates, distance)``.

        ``data``: an :class:`EnvironmentSet` (computed with :attr:`environments`), an ``ase.Atoms``
        or a :class:`giip_plugin.io.Frame` (environments of the centre atoms, or of ``indices``),
        or a list of ``(pos, w)`` tuples. Distances to every training environment are computed
        exactly (``n x n_train`` rotation searches, in batches of ``batch`` rows).

        ``fast=True`` computes them with a coarse rotation search (a band limit of 6, 3 starts per
        parity, 2 Newton steps; about 4 times cheaper for NiNb; from 1,500 training environments
        on, 1 start per parity at a band limit of 7: :func:`fast_settings`, and on the CPU compiled
        per pair by :mod:`giip_plugin.kernels.fused`, about 100 times faster than the exact path)
        and refines the nearest few of each row exactly (4; 2 from 1,500 training environments on).
        Classes then agree with the exact path for nearly every atom (99.9% of a NiNb frame) and the
        coordinates within 1% of their range (typically 0.1%; measured: benchmarks/RESULTS.md). Far
        distances can be slightly too large, and so can the nearest distance for about 1% of the
        atoms, whose exact nearest was not among the coarse 2 nearest.

        ``return_rotation=True`` adds ``rotation``: for each environment, the orthogonal matrix
        ``R`` maximising ``<new, R nearest>`` (it maps the nearest training environment onto the
        new one).
        """
        envs = self._as_envs(data, indices)
        self._check_compatible(envs)
        n = len(envs)
        k = self.diffusion.n_eigenpairs if all_coordinates else self.n_coords
        classes = np.zeros(n, dtype=np.int64)
        coords = np.zeros((n, k))
        dist = np.zeros(n)
        nearest = np.zeros(n, dtype=np.int64)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            extra = min(fast_settings(self.n_train).refine, self.n_train) if fast else 0
            bar = tqdm(total=n * (self.n_train + extra), unit="pair", desc="GIIP distances")
        from .. import config

        try:
            with config.compute_threads():  # an entry point: PyTorch threads set here (config.py)
                self._transform_batches(envs, batch, bar, device, fast, all_coordinates, classes, coords, dist, nearest)
        finally:
            if bar is not None:
                bar.close()
        if not return_rotation:
            return MapResult(classes, coords, dist)
        eng = self.engine_for(envs, device=device)
        _, rot = eng.distances(np.arange(n), nearest, return_rotation=True)
        return MapResultWithRotation(classes, coords, dist, rot)

    def _transform_batches(self, envs, batch, bar, device, fast, all_coordinates, classes, coords, dist, nearest):
        """Fill the output arrays of :meth:`transform`, ``batch`` rows at a time."""
        n = len(envs)
        for a in range(0, n, int(batch)):
            sub = envs.subset(np.arange(a, min(n, a + int(batch))))
            rows = self.distance_rows(sub, progress=bar, device=device, fast=fast)
            res = self.transform_from_distances(rows, all_coordinates=all_coordinates)
            sl = slice(a, a + len(sub))
            classes[sl], coords[sl], dist[sl] = res
            nearest[sl] = np.argmin(rows, axis=1)

    # ------------------------------------------------------------------ file
    def save(self, path, *, remove_checkpoint: bool = True) -> None:
        """Write the map to one HDF5 file (atomically; layout in :mod:`.fileformat`). The distance
        checkpoint this map was built with is removed afterwards unless ``remove_checkpoint=False``."""
        from .. import __version__
        from .fileformat import write_reference

        write_reference(path, self._content(), {"package_version": __version__, "created": _now()})
        if remove_checkpoint and self.checkpoint_path and os.path.isdir(self.checkpoint_path):
            import shutil

            shutil.rmtree(self.checkpoint_path, ignore_errors=True)
            self.checkpoint_path = None

    @classmethod
    def load(cls, path) -> "ReferenceMap":
        """Read a reference file (checked: see :mod:`.fileformat` for the errors)."""
        from .fileformat import read_reference

        content, root = read_reference(path)
        try:
            return cls._from_content(content)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(
                f"the reference file {path} is damaged or inconsistent ({type(e).__name__}: {e}); rebuild it "
                "with 'giip build'"
            ) from e

    def _content(self) -> dict:
        env = self.environments
        enc = env.encoding if env is not None else None
        t = self.training
        ks, err = self.clustering.error_curve()
        tds = {"positions": t.positions, "weights": t.weights, "offsets": t.offsets, "centers": t.centers,
               "classes": self.labels}
        if t.sigmas is not None:
            tds["sigmas"] = t.sigmas
        for k in ("file_index", "frame_index", "atom_index", "atom_id", "timestep"):
            tds[k] = np.asarray(self.training_provenance.get(k, np.full(self.n_train, -1)), dtype=np.int64)
        params = {
            "r_inner": float(env.r_inner) if env is not None else float("nan"),
            "r_outer": float(env.r_outer) if env is not None else float("nan"),
            "sigma": float(self.sigma),
            "group": self.group if self.group is not None else "none",
            "dim": int(self.dim),
            "species_mode": enc.mode if enc is not None else "unknown",
            "species": list(enc.species) if enc is not None else [],
            "positive": (enc.positive or "") if enc is not None else "",
            "centers": list(env.centers) if env is not None and env.centers is not None else None,
            "species_sigma": dict(env.species_sigma) if env is not None and env.species_sigma else None,
            "has_environments": env is not None,
            "type_names": {str(k): v for k, v in self.type_names.items()},
            "search_settings": asdict(self.search_settings),
            "n_eigenpairs": int(self.diffusion.n_eigenpairs),
            "epsilon": float(self.diffusion.epsilon),
            "epsilon_info": self.diffusion.epsilon_info,
            "class_selection": self.class_selection,
            "n_coords_request": self.n_coords_request,
            "n_channels": int(t.n_channels),
        }
        d = self.diffusion
        return {
            "parameters": {"attrs": params},
            "training": {"datasets": tds},
            "distances": {"datasets": {"matrix": self.distances}},
            "classes": {"datasets": {
                "labels": self.labels, "linkage": self.clustering.linkage, "error_curve_classes": ks,
                "error_curve": err, "sizes": self.classes.sizes, "diameters": self.classes.diameters,
                "medoids": self.classes.medoids, "radii": self.classes.radii},
                "attrs": dict(self.class_selection)},
            "diffusion": {"datasets": {
                "eigenvalues": d.eigenvalues, "eigenvectors": d.eigenvectors, "P": d.P, "Dvec": d.Dvec,
                "selected": self.selected, "residuals": self.residuals, "r2": self.r2, "bandwidths": self.bandwidths},
                "attrs": {"epsilon": float(d.epsilon), "n_negative": int(d.n_negative),
                          "trivial_eigenvalue": float(d.trivial_eigenvalue), "eig_residual": float(d.eig_residual),
                          "solver": d.solver, "epsilon_info": d.epsilon_info}},
            "provenance": {"attrs": dict(self.provenance)},
        }

    @classmethod
    def _from_content(cls, c) -> "ReferenceMap":
        from ..kernels import SearchSettings

        p = c["parameters"]["attrs"]
        t = c["training"]["datasets"]
        training = EnvironmentSet(t["positions"], t["weights"], t["offsets"], t.get("sigmas"), t["centers"])
        env = None
        if p.get("has_environments", True):
            enc = SpeciesEncoding(mode=p["species_mode"], species=tuple(p["species"]), positive=p.get("positive") or None)
            env = LocalEnvironments(
                r_inner=float(p["r_inner"]), r_outer=float(p["r_outer"]), encoding=enc,
                centers=tuple(p["centers"]) if p.get("centers") else None, dim=int(p["dim"]),
                species_sigma=p.get("species_sigma") or None,
            )
        if env is not None and env.encoding.n_channels != training.n_channels:
            raise ValueError("the species encoding does not match the weight channels of the training set")
        D = c["distances"]["datasets"]["matrix"]
        cl = c["classes"]["datasets"]
        n = len(training)
        clustering = _clustering_from(cl["linkage"], n)
        summary = ClassSummary(cl["sizes"].astype(np.int64), cl["diameters"].astype(float),
                               cl["medoids"].astype(np.int64), cl["radii"].astype(float))
        df = c["diffusion"]["datasets"]
        da = c["diffusion"]["attrs"]
        dmap = DiffusionMap(
            epsilon=float(da["epsilon"]), eigenvalues=df["eigenvalues"], eigenvectors=df["eigenvectors"],
            P=df["P"], Dvec=df["Dvec"], epsilon_info=da.get("epsilon_info") or p.get("epsilon_info") or {},
            trivial_eigenvalue=float(da.get("trivial_eigenvalue", 1.0)),
            eig_residual=float(da.get("eig_residual", float("nan"))), solver=str(da.get("solver", "")),
        )
        group = p["group"]
        return cls(
            environments=env,
            sigma=float(p["sigma"]),
            group=None if group == "none" else group,
            training=training,
            distances=np.asarray(D, dtype=float),
            clustering=clustering,
            labels=cl["labels"].astype(np.int64),
            classes=summary,
            class_selection=dict(p.get("class_selection") or c["classes"].get("attrs", {})),
            diffusion=dmap,
            residuals=df["residuals"].astype(float),
            bandwidths=df["bandwidths"].astype(float),
            selected=df["selected"].astype(np.int64),
            n_coords_request=p.get("n_coords_request", "auto"),
            training_provenance={k: t[k].astype(np.int64) for k in
                                 ("file_index", "frame_index", "atom_index", "atom_id", "timestep")},
            provenance=dict(c["provenance"]["attrs"]),
            type_names={int(k): v for k, v in (p.get("type_names") or {}).items()},
            search_settings=SearchSettings(**p["search_settings"]) if p.get("search_settings") else SearchSettings(),
        )

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """Everything ``giip info --json`` prints (JSON-serialisable)."""
        env = self.environments
        enc = self.encoding
        ks, err = self.error_curve
        kk = min(len(err), 30)
        sel = set(self.selected.tolist())
        table = [{"index": i + 1, "eigenvalue": float(self.eigenvalues[i]), "r": float(self.residuals[i]),
                  "r2": float(self.r2[i]), "selected": i in sel} for i in range(len(self.eigenvalues))]
        tp = self.training_provenance
        files = list(self.provenance.get("input_files") or [])
        per_file = []
        for i, f in enumerate(self.provenance.get("sources") or files):
            per_file.append({"file": f, "n_train": int(np.sum(np.asarray(tp["file_index"]) == i))})
        return {
            "parameters": {
                "r_inner": float(env.r_inner) if env else None,
                "r_outer": float(env.r_outer) if env else None,
                "sigma": float(self.sigma),
                "species_sigma": dict(env.species_sigma) if env and env.species_sigma else None,
                "species_encoding": enc.mode if enc else None,
                "species": list(enc.species) if enc else [],
                "positive": enc.positive if enc else None,
                "centers": list(env.centers) if env and env.centers is not None else "all",
                "type_names": {str(k): v for k, v in self.type_names.items()},
                "group": self.group if self.group is not None else "none",
                "dim": int(self.dim),
                "epsilon": float(self.epsilon),
                "epsilon_info": self.diffusion.epsilon_info,
                "n_coords_request": self.n_coords_request,
            },
            "training": {
                "n_train": self.n_train,
                "selection": self.provenance.get("selection"),
                "frames": self.provenance.get("frames"),
                "n_frames": self.provenance.get("n_frames"),
                "per_file": per_file,
                "mean_coordination": float(np.mean(self.training.coordination())),
                "mean_neighbours": float(np.mean(self.training.counts)),
            },
            "classes": {
                "selection": self.class_selection,
                "sizes": self.classes.sizes.tolist(),
                "diameters": self.classes.diameters.tolist(),
                "medoids": self.classes.medoids.tolist(),
                "error_curve": {"n_classes": ks[:kk].tolist(), "largest_diameter": err[:kk].tolist()},
            },
            "diffusion": {
                "epsilon": float(self.epsilon),
                "n_negative_eigenvalues": int(self.diffusion.n_negative),
                "selected": (self.selected + 1).tolist(),
                "table": table,
            },
            "provenance": {k: v for k, v in self.provenance.items()},
        }

    def describe(self) -> str:
        """Human-readable summary (what ``giip info`` prints)."""
        s = self.summary()
        p, tr, cl, df = s["parameters"], s["training"], s["classes"], s["diffusion"]
        L = []
        L.append("GIIP reference map")
        L.append("Parameters")
        if p["r_inner"] is not None:
            L.append(f"  cutoff          weight 1 below r_inner = {p['r_inner']:g}, cubic spline to 0 at r_outer = {p['r_outer']:g}")
        L.append(f"  sigma           {p['sigma']:g}")
        if p.get("species_sigma"):
            L.append("  species sigma   " + ", ".join(f"{k} = {v:g}" for k, v in p["species_sigma"].items()))
        if p["species_encoding"] is not None:
            enc = p["species_encoding"]
            extra = f", +1 = {p['positive']}" if enc == "sign" else ""
            L.append(f"  species         {enc} ({', '.join(p['species']) or '-'}{extra})")
        centers = p["centers"] if p["centers"] == "all" else ", ".join(p["centers"])
        L.append(f"  centres         {centers}")
        if p["type_names"]:
            L.append("  type names      " + ",".join(f"{k}={v}" for k, v in p["type_names"].items()))
        L.append(f"  group / dim     {p['group']} / {p['dim']}D")
        info = p["epsilon_info"] or {}
        if info.get("method") == "given":
            how = "given"
        elif info.get("method"):
            how = (f"auto: {info.get('method')}, factor {info.get('factor', 1):g} x median distance to the "
                   f"{info.get('k')}-th nearest training environment")
        else:
            how = "?"
        L.append(f"  epsilon         {p['epsilon']:.4g} ({how})")
        L.append("Training set")
        sel = tr["selection"] or {}
        if sel.get("method") == "even":
            how = f"{sel.get('n_train_requested')} requested, spread evenly over frames, seed {sel.get('seed')}"
        elif sel.get("method") == "column":
            how = f"lowest {sel.get('lowest')} + highest {sel.get('highest')} of column {sel.get('column')!r}"
        else:
            how = sel.get("method", "?")
        L.append(f"  environments    {tr['n_train']} ({how}; {sel.get('n_available', '?')} centres available)")
        L.append(f"  neighbours      {tr['mean_neighbours']:.1f} on average (smooth coordination {tr['mean_coordination']:.2f})")
        if tr["n_frames"] is not None:
            L.append(f"  frames          {tr['n_frames']} (selection {tr['frames'] or 'all'})")
        for f in tr["per_file"]:
            L.append(f"    {f['n_train']:6d}  {f['file']}")
        L.append(f"Classes (complete linkage): {len(cl['sizes'])}")
        cs = cl["selection"]
        L.append(f"  chosen by       {cs.get('method')} = {cs.get('value')}" + (f" ({cs['rule']})" if cs.get("rule") else ""))
        L.append("  class     size  diameter  medoid")
        for k, (sz, dm, md) in enumerate(zip(cl["sizes"], cl["diameters"], cl["medoids"])):
            L.append(f"  {k:5d}  {sz:7d}  {dm:8.3f}  {md:6d}")
        ec = cl["error_curve"]
        L.append("  cluster error (largest diameter) by number of classes:")
        L.append("    " + "  ".join(f"{k}:{e:.2f}" for k, e in zip(ec["n_classes"][:15], ec["largest_diameter"][:15])))
        L.append(f"Diffusion map: {len(df['table'])} eigenpairs, {df['n_negative_eigenvalues']} negative; "
                 f"selected coordinates {df['selected']} (n_coords = {p['n_coords_request']})")
        L.append("  coord  eigenvalue        r       r^2  selected")
        for row in df["table"]:
            mark = "*" if row["selected"] else ""
            L.append(f"  {row['index']:5d}  {row['eigenvalue']:10.5f}  {row['r']:7.4f}  {row['r2']:8.4f}  {mark}")
        pv = s["provenance"]
        L.append("Provenance")
        L.append(f"  built           {pv.get('date', '?')} with giip-plugin {pv.get('package_version', '?')}")
        if pv.get("command_line"):
            L.append(f"  command         {pv['command_line']}")
        return "\n".join(L)


def _slice_text(s: slice) -> str:
    if s == slice(None):
        return ""
    part = lambda v: "" if v is None else str(v)
    return f"{part(s.start)}:{part(s.stop)}" + (f":{s.step}" if s.step is not None else "")


def _clustering_from(linkage, n):
    return Clustering(np.asarray(linkage, dtype=float).reshape(-1, 4), n)


def _make_environments(r_inner, r_outer, mode, positive, centers, species_sigma, dim, type_names, seen):
    """LocalEnvironments from build options and the species seen in pass 1 (see :meth:`ReferenceMap.build`)."""
    if type_names:
        species = [type_names[k] for k in sorted(type_names)]
        species += [s for s in sorted(seen) if s not in species]
    else:
        species = sorted(seen)
    unknown_centers = [c for c in (centers or ()) if c not in species]
    if centers and len(unknown_centers) == len(centers):
        raise ValueError(f"no atoms of the centre species {list(centers)}; the input has {sorted(seen)}")
    if unknown_centers:
        warnings.warn(f"the centre species {unknown_centers} are not in the input (it has {sorted(seen)}); "
                      f"the environments are centred on {[c for c in centers if c not in unknown_centers]} only",
                      UserWarning, stacklevel=3)
    if mode == "sign":
        pos = positive or (centers[0] if centers else species[0] if species else None)
        if pos not in species:
            raise ValueError(f"the positive species {pos!r} of the 'sign' encoding is not among the species "
                             f"{species}; check --positive / --type-names")
        species = [pos] + [s for s in species if s != pos]
        enc = SpeciesEncoding("sign", tuple(species), pos)
    elif mode == "vector":
        enc = SpeciesEncoding("vector", tuple(species))
    elif mode == "none":
        enc = SpeciesEncoding("none", tuple(species))
    else:
        raise ValueError(f"unknown species encoding {mode!r}; choose none, sign or vector")
    return LocalEnvironments(r_inner, r_outer, enc, centers=centers, dim=dim, species_sigma=species_sigma)


def _check_training(training: EnvironmentSet, local):
    n = len(training)
    if n < 2:
        raise ValueError(
            f"only {n} training environment(s) were chosen; a reference map needs at least 2 "
            "(increase --n-train or give more frames)"
        )
    counts = training.counts
    if counts.sum() == 0:
        cut = f"r_outer = {local.r_outer:g}" if local is not None else "the cutoff"
        raise ValueError(
            f"every training environment is empty: no atom has a neighbour within {cut}. The cutoff is "
            "probably too small or in the wrong units (it must be in the units of the positions, e.g. "
            "Angstrom for LAMMPS metal units; typical first-shell cutoffs are 3-4 A for metals)"
        )
    empty = int(np.sum(counts == 0))
    if empty:
        warnings.warn(
            f"{empty} of {n} training environments have no neighbour within the cutoff (isolated atoms)",
            UserWarning,
            stacklevel=3,
        )
