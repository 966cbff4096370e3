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
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding
from .clustering import Clustering, ClassSummary, assign_nearest, class_summary, complete_linkage
from .diffusion import DiffusionMap
from .metric import COARSE_SETTINGS, FastSettings, GIIPMetric, SearchReport, fast_settings  # noqa: F401
from .regression import local_linear_regression_r2, select_parsimonious

__all__ = ["ReferenceMap", "MapResult", "MapResultWithRotation", "knee_n_classes"]

_KNEE_MAX_CLASSES = 50
_ROWS_PER_BATCH = 256
_GPU_PAIRS_PER_BATCH = 1 << 22  # pairs of a batch of rows on a GPU (rows of 2,000 references: 2,097 atoms)


def _on_gpu(device) -> bool:
    from ..kernels.engine import resolve_device

    return resolve_device(device).type == "cuda"

def _exact_from(exact: bool, fast: bool | None) -> bool:
    """``exact``, or the deprecated ``fast`` keyword (``fast=False``: the exhaustive search)."""
    if fast is None:
        return bool(exact)
    import warnings

    warnings.warn("fast= is deprecated: the refined coarse search is now the default, and exact=True gives the "
                  "exhaustive rows", DeprecationWarning, stacklevel=3)
    return not fast


class MapResult(NamedTuple):
    """Result of :meth:`ReferenceMap.transform`: one entry per new environment (the names of
    :class:`~giip_plugin.analysis.AnalysisResult`)."""

    classes: np.ndarray  # class of the nearest training environment
    coordinates: np.ndarray  # (n, n_coords) selected diffusion coordinates (Nystrom)
    ref_distance: np.ndarray  # distance to the nearest training environment (atoms of difference)
    nearest: np.ndarray  # index of that training environment (recut classes: clustering.labels(K)[nearest])


class MapResultWithRotation(NamedTuple):
    classes: np.ndarray
    coordinates: np.ndarray
    ref_distance: np.ndarray
    nearest: np.ndarray
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


def _check_metric_name(metric) -> str:
    name = str(metric).lower() if metric is not None else "giip"
    if name not in ("giip", "soap"):
        raise ValueError(f"unknown metric {metric!r}; choose 'giip' (the GIIP distance) or 'soap' (SOAP power spectra)")
    return name


def _soap_settings(metric, settings=None, n_max=None, l_max=None):
    """The SOAPSettings of a map with this ``metric`` (None for GIIP; basis sizes only with SOAP)."""
    if _check_metric_name(metric) != "soap":
        if n_max is not None or l_max is not None or settings is not None:
            raise ValueError("soap_n_max / soap_l_max (--soap-n-max, --soap-l-max) are SOAP parameters: give them "
                             "with metric='soap' (--metric soap)")
        return None
    from .soap import SOAPSettings

    if settings is not None:
        return settings
    d = SOAPSettings()
    return SOAPSettings(n_max=d.n_max if n_max is None else n_max, l_max=d.l_max if l_max is None else l_max)


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


def channel_groups(training: EnvironmentSet) -> np.ndarray:
    """Group of each training environment by shared weight channels: environments are in one group
    when a chain of them links them, each sharing a channel (a neighbour species, for vector
    species) with the next. Environments of different groups have no overlap at any rotation, so
    their distance is sqrt(<A,A> + <B,B>) whatever their shapes (e.g. Si- and O-centred first shells
    of silica). Empty environments join group 0. Returns labels 0..G-1."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, C = len(training), training.n_channels
    e, c = np.nonzero(training.channel_occupancy())
    # bipartite graph: environments 0..n-1, channels n..n+C-1
    g = coo_matrix((np.ones(len(e)), (e, n + c)), shape=(n + C, n + C))
    _, lab = connected_components(g, directed=False)
    env_lab = lab[:n].copy()
    empty = training.counts == 0
    if empty.any() and not empty.all():  # an empty environment has no channel: not a group of its own
        env_lab[empty] = env_lab[np.flatnonzero(~empty)[0]]
    _, out = np.unique(env_lab, return_inverse=True)
    return out.reshape(-1)


def _warn_disjoint_channels(training, dmap, environments) -> None:
    """After a disconnected diffusion map: say so plainly when the cause is environments that share
    no weight channel (no epsilon connects them), with the fix."""
    import warnings

    vals = dmap.eigenvalues
    if training.n_channels < 2 or not len(vals) or vals[0] <= 1.0 - 1e-9:
        return
    groups = channel_groups(training)
    G = int(groups.max()) + 1
    if G < 2:
        return
    names = list(getattr(getattr(environments, "encoding", None), "species", None) or [])
    desc = []
    occ = training.channel_occupancy()
    for g in range(G):
        chans = np.flatnonzero(occ[groups == g].any(axis=0))
        who = ", ".join(str(names[k]) if k < len(names) else f"channel {k}" for k in chans)
        desc.append(f"{int((groups == g).sum())} environments with neighbours {who}")
    warnings.warn(
        f"the training environments fall into {G} groups that share no neighbour species ({'; '.join(desc)}): "
        "distances between groups do not depend on the environments' shapes, and one diffusion map of them is disconnected at any "
        "epsilon; build one reference per centre species (giip build --centers NAME, or centers=[...])",
        RuntimeWarning, stacklevel=3)


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
    metric_name: str = "giip"  # "giip" or "soap" (the distance between environments; :mod:`.metric`, :mod:`.soap`)
    soap_settings: object = None  # SOAPSettings of a SOAP map
    default_path: object = None  # calibration.DefaultPath of a GIIP map (measured at the build, or at first use)

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

    def paper_criterion(self, degree: int | None = None, n_coords="auto"):
        """The coordinate selection of the paper's text: ``(r2, selected)``, the coefficient of
        determination of each eigenvector predicted from the preceding ones by a polynomial
        regression (:func:`.regression.polynomial_regression_r2`; near 1 = redundant) and the
        coordinates :func:`.regression.select_parsimonious` keeps with ``sqrt(1 - r2)`` as the
        residual. Computed from the training eigenvectors on each call (seconds); the map's own
        selection (:attr:`selected`) stays the local-linear-regression one."""
        from .regression import PAPER_DEGREE, polynomial_regression_r2

        r2 = polynomial_regression_r2(self.diffusion.eigenvectors, degree=degree or PAPER_DEGREE)
        res = np.sqrt(np.clip(1.0 - r2, 0.0, None))
        res[0] = 1.0
        return r2, select_parsimonious(self.eigenvalues, res, n_coords)

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
        metric: str = "giip",
        soap_settings=None,
        log=None,
    ) -> "ReferenceMap":
        """Classes, diffusion map and parsimonious coordinates from a computed training matrix ``D``
        (``metric``: "giip" or "soap", the distance ``D`` is of; ``soap_settings`` of a SOAP map).
        A GIIP map then chooses its default path by measuring the coarse search against ``D``
        (:func:`.calibration.calibrate`; ``log``: a function receiving its lines)."""
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
        _warn_disjoint_channels(training, dmap, environments)
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
        ref = cls(
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
            metric_name=_check_metric_name(metric),
            soap_settings=_soap_settings(metric, soap_settings),
        )
        if ref.metric_name == "giip":
            from .calibration import calibrate

            ref.default_path = calibrate(ref, log=log)
        return ref

    @classmethod
    def build(cls, data, *, sigma: float, environments: LocalEnvironments | None = None,
              r_inner: float | None = None, r_outer: float | None = None, encoding: str = "none",
              positive: str | None = None, centers=None, species_sigma: dict | None = None, type_names=None,
              frames=None, dim: int | None = None, group="auto", n_train: int | str | None = None, seed: int = 0,
              select_by: str | None = None, select_lowest: int = 0, select_highest: int = 0,
              n_classes: int | None = None, max_diameter: float | None = None, epsilon="auto", n_coords="auto",
              n_eigenpairs: int = 20, checkpoint=None, restart: bool = False, scheduler=None,
              block_size: int | None = None, n_workers: int | None = None, device=None, search_settings=None,
              progress: bool = False, command_line: str | None = None, log=None, reference_search: bool = False,
              species: str | None = None, metric: str = "giip", soap_n_max: int | None = None,
              soap_l_max: int | None = None) -> "ReferenceMap":
        """Build a reference map: :class:`~giip_plugin.reference.builder.MapBuilder` with its settings
        given as keywords.

        Parameters
        ----------
        data : EnvironmentSet, path(s), ase.Atoms, Frame or list of them
            The training input (see :meth:`MapBuilder.fit`).
        sigma, environments, r_inner, r_outer, encoding, positive, centers, species_sigma, type_names, dim, group
            :class:`~giip_plugin.reference.builder.EnvironmentSettings` (``encoding``: "none",
            "sign" or "vector"). Lengths in the units of the positions.
        metric, soap_n_max, soap_l_max
            The distance: "giip" (default) or "soap" (:mod:`giip_plugin.reference.soap`, with its
            radial and angular basis sizes, default 8 and 6).
        n_train, seed, select_by, select_lowest, select_highest, frames
            :class:`~giip_plugin.reference.builder.TrainingSelection` (``n_train`` default 1,000;
            ``"all"`` for every centre).
        n_classes, max_diameter
            :class:`~giip_plugin.reference.builder.ClassSettings`.
        epsilon, n_coords, n_eigenpairs
            :class:`~giip_plugin.reference.builder.DiffusionSettings`.
        checkpoint, restart, scheduler, block_size, n_workers, device, search_settings, progress, log,
        reference_search
            :class:`~giip_plugin.reference.builder.ComputeSettings`.
        command_line : str, optional
            Stored in the provenance.
        species : str, optional
            Deprecated name of ``encoding`` (``species=`` means names of atoms everywhere else).

        Returns
        -------
        ReferenceMap
        """
        from .builder import (ClassSettings, ComputeSettings, DiffusionSettings, EnvironmentSettings, MapBuilder,
                              TrainingSelection)

        if species is not None:
            import warnings

            warnings.warn("ReferenceMap.build(species=...) is now encoding=...", DeprecationWarning, stacklevel=2)
            encoding = species

        return MapBuilder(
            EnvironmentSettings(sigma=sigma, r_inner=r_inner, r_outer=r_outer, encoding=encoding, positive=positive,
                                centers=centers, species_sigma=species_sigma, type_names=type_names, dim=dim,
                                group=group, environments=environments, metric=metric,
                                soap=_soap_settings(metric, None, soap_n_max, soap_l_max)),
            TrainingSelection(n_train=n_train, seed=seed, select_by=select_by, lowest=select_lowest,
                              highest=select_highest, frames=frames),
            ClassSettings(n_classes=n_classes, max_diameter=max_diameter),
            DiffusionSettings(epsilon=epsilon, n_coords=n_coords, n_eigenpairs=n_eigenpairs),
            ComputeSettings(checkpoint=checkpoint, restart=restart, scheduler=scheduler, block_size=block_size,
                            n_workers=n_workers, device=device, search=search_settings, progress=progress, log=log,
                            reference_search=reference_search),
            command_line=command_line,
        ).fit(data)

    @classmethod
    def from_files(cls, paths, **kwargs) -> "ReferenceMap":
        """Build from trajectory files (LAMMPS dumps, extxyz, ASE .traj, what ase.io / OVITO read):
        ``ReferenceMap.from_files(["a.dump"], r_inner=3, r_outer=4, sigma=1, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=1000)``. Options as :meth:`build`."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("no trajectory files given")
        return cls.build(paths, **kwargs)

    # ------------------------------------------------------------------ applying
    @property
    def metric(self):
        """The distance between environments of this map: a :class:`~.metric.GIIPMetric`
        (:mod:`.metric`) or, for a map built with ``metric="soap"``, a :class:`~.soap.SOAPMetric`
        (made once per map: it keeps the training power spectra)."""
        if self.metric_name != "soap":
            return GIIPMetric(self.sigma, self.group, self.search_settings, self.calibrated().coarse)
        m = self.__dict__.get("_soap_metric")
        if m is None:
            from .soap import SOAPMetric

            m = SOAPMetric.from_environments(self.environments, self.sigma, self.group, self.soap_settings)
            self.__dict__["_soap_metric"] = m
        return m

    def calibrated(self):
        """The default path of this GIIP map (:class:`.calibration.DefaultPath`), measured now if the
        map has none yet (a file written before calibration existed)."""
        if self.default_path is None:
            from .calibration import calibrate

            self.default_path = calibrate(self)
        return self.default_path

    def engine_for(self, envs: EnvironmentSet, *, device=None, dtype=None, coarse: bool = False):
        """A :class:`~giip_plugin.kernels.DistanceEngine` between ``envs`` (side A) and the training
        environments (side B), with this map's metric (``coarse=True``: the default path's coarse search)."""
        if self.metric_name == "soap":
            raise ValueError("this reference map uses the SOAP metric, which has no rotation search (no GIIP "
                             "engine, no rotations); build a map with --metric giip for those")
        self._check_compatible(envs)
        return self.metric.engine(envs, self.training, device=device, dtype=dtype, coarse=coarse)

    def metric_inputs(self, atoms, indices, species=None, envs: EnvironmentSet | None = None):
        """What :meth:`transform` maps for the atoms ``indices`` of a structure: their environments
        (GIIP; ``envs`` if already computed) or their SOAP power spectra, computed from the
        structure itself (:meth:`SOAPMetric.features_of_structure`)."""
        if self.metric_name == "soap":
            from ..environments.neighbors import species_names

            return self.metric.features_of_structure(atoms, indices, species_names(atoms, species))
        return envs if envs is not None else self.compute_environments(atoms, indices=indices, species=species)

    def _check_compatible(self, envs):
        from .soap import SOAPFeatures

        if isinstance(envs, SOAPFeatures):
            if self.metric_name != "soap" or envs.values.shape[1] != self.metric.n_features:
                raise ValueError("these SOAP features were not computed with this reference map's metric; map "
                                 "structures or environment sets instead")
            return
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

    def _as_envs(self, data, indices=None):
        from .soap import SOAPFeatures

        if isinstance(data, (EnvironmentSet, SOAPFeatures)):
            if indices is not None:
                return data.subset(indices)
            return data
        if hasattr(data, "atoms") and hasattr(data, "source"):  # a Frame
            data = data.atoms
        if hasattr(data, "get_positions"):
            if self.metric_name == "soap":  # spectra of the structure itself
                from ..environments.neighbors import species_names

                metric = self.metric  # (a map without environment settings raises its error here)
                names = species_names(data)
                idx = self.environments.center_indices(data, names) if indices is None else indices
                return metric.features_of_structure(data, idx, names)
            return self.compute_environments(data, indices=indices)
        return EnvironmentSet.from_list(list(data))

    def distance_rows(self, envs: EnvironmentSet, *, progress=None, device=None, exact: bool = False,
                      report: SearchReport | None = None, fast: bool | None = None) -> np.ndarray:
        """Distances of each environment of ``envs`` to every training environment, ``(n, n_train)``
        (:meth:`GIIPMetric.rows`: the coarse search with the nearest of each row recomputed
        exactly; ``exact=True`` the exhaustive exact rows)."""
        self._check_compatible(envs)
        exact = _exact_from(exact, fast)
        return self.metric.rows(envs, self.training, progress=progress, device=device, exact=exact, report=report)

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
        return MapResult(near.labels, coords, near.distance, near.index)

    def transform(self, data, return_rotation: bool = False, *, indices=None, progress: bool = False,
                  device=None, all_coordinates: bool = False, batch: int = _ROWS_PER_BATCH,
                  exact: bool = False, report: SearchReport | None = None,
                  fast: bool | None = None) -> MapResult | MapResultWithRotation:
        """Map new environments: class, diffusion coordinates and distance to the nearest training
        environment (design.md, section 3).

        Parameters
        ----------
        data : EnvironmentSet, ase.Atoms, Frame or list of (pos, w) tuples
            Environments computed with :attr:`environments`, or a structure (the environments of
            its centre atoms, or of ``indices``).
        return_rotation : bool
            Also return, for each environment, the orthogonal matrix ``R`` maximising
            ``<new, R nearest>`` (it maps the nearest training environment onto the new one).
        indices : array of int, optional
            Atoms of a structure to map (default: its centre atoms).
        progress : bool
            A progress bar (pairs).
        device : {None, "cpu", "cuda"}
            PyTorch device.
        all_coordinates : bool
            Every eigenvector of the map instead of the kept (parsimonious) ones.
        batch : int
            Rows computed at a time (memory).
        exact : bool
            ``False`` (default): the map's default path (:attr:`default_path`, chosen when the map
            was built by measuring the coarse search against the map's own exact distances,
            :mod:`.calibration`): coarse rotation searches for every pair (for NiNb first shells
            band limit 7, 2 starts per parity, 2 Newton steps; compiled on the CPU by
            :mod:`giip_plugin.kernels.fused`), then the exact search for the coarse nearest
            reference of each row and every reference within the calibrated margin of it; or the
            exhaustive exact search where no coarse search met the accuracy contract on the map.
            The nearest reference, its distance and the class are those of the exhaustive search
            for every atom measured; far distances can be slightly too large, which moves the
            coordinates by far less than 1 % of their range (benchmarks/RESULTS.md, "default
            path"). ``True``: the exhaustive exact search of every pair.
        report : SearchReport, optional
            Receives how many atoms were refined and how many nearest references the exact search
            confirmed.
        fast : bool, optional
            Deprecated: the default is the refined coarse path; ``fast=False`` means ``exact=True``.

        Returns
        -------
        MapResult or MapResultWithRotation
            ``classes`` (n,), ``coordinates`` (n, n_coords), ``ref_distance`` (n,) in atoms of
            difference, ``nearest`` (n,) the index of the nearest training environment (so
            ``ref.clustering.labels(n_classes=K)[nearest]`` are the classes of the tree cut at
            ``K``), and ``rotation`` (n, dim, dim) with ``return_rotation``.
        """
        exact = _exact_from(exact, fast)
        if self.metric_name == "soap" and batch == _ROWS_PER_BATCH:  # rows are cheap: fewer, larger batches
            batch = max(batch, (1 << 21) // max(self.n_train, 1))
        elif batch == _ROWS_PER_BATCH and _on_gpu(device):  # a GPU wants few, large launches
            batch = max(batch, _GPU_PAIRS_PER_BATCH // max(self.n_train, 1))
        if return_rotation and self.metric_name == "soap":
            raise ValueError("return_rotation: the SOAP metric has no rotation search (its distance integrates over "
                             "rotations); use a map built with --metric giip")
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

            coarse = None if exact or self.metric_name == "soap" else self.metric.coarse
            extra = 0 if coarse is None else min(coarse.refine, self.n_train)
            bar = tqdm(total=n * (self.n_train + extra), unit="pair",
                       desc="SOAP distances" if self.metric_name == "soap" else "GIIP distances")
        from .. import config

        try:
            with config.compute_threads():  # an entry point: PyTorch threads set here (config.py)
                self._transform_batches(envs, batch, bar, device, exact, report, all_coordinates, classes, coords,
                                        dist, nearest)
                if return_rotation:
                    eng = self.engine_for(envs, device=device)
                    _, rot = eng.distances(np.arange(n), nearest, return_rotation=True)
        finally:
            if bar is not None:
                bar.close()
        if not return_rotation:
            return MapResult(classes, coords, dist, nearest)
        return MapResultWithRotation(classes, coords, dist, nearest, rot)

    def _transform_batches(self, envs, batch, bar, device, exact, report, all_coordinates, classes, coords, dist,
                           nearest):
        """Fill the output arrays of :meth:`transform`, ``batch`` rows at a time."""
        n = len(envs)
        for a in range(0, n, int(batch)):
            sub = envs.subset(np.arange(a, min(n, a + int(batch))))
            rows = self.distance_rows(sub, progress=bar, device=device, exact=exact, report=report)
            res = self.transform_from_distances(rows, all_coordinates=all_coordinates)
            sl = slice(a, a + len(sub))
            classes[sl], coords[sl], dist[sl], nearest[sl] = res

    # ------------------------------------------------------------------ file
    def save(self, path, *, remove_checkpoint: bool = True) -> None:
        """Write the map to one HDF5 file (atomically; layout in :mod:`.fileformat`). The distance
        checkpoint this map was built with is removed afterwards unless ``remove_checkpoint=False``."""
        from .. import __version__
        from .fileformat import map_to_content, write_reference

        write_reference(path, map_to_content(self), {"package_version": __version__, "created": _now()})
        if remove_checkpoint and self.checkpoint_path and os.path.isdir(self.checkpoint_path):
            import shutil

            shutil.rmtree(self.checkpoint_path, ignore_errors=True)
            self.checkpoint_path = None

    @classmethod
    def load(cls, path) -> "ReferenceMap":
        """Read a reference file (checked: see :mod:`.fileformat` for the errors)."""
        from .fileformat import read_reference

        from .fileformat import map_from_content

        content, root = read_reference(path)
        try:
            return map_from_content(content)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(
                f"the reference file {path} is damaged or inconsistent ({type(e).__name__}: {e}); rebuild it "
                "with 'giip build'"
            ) from e

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """Everything ``giip info --json`` prints (JSON-serialisable; :func:`.report.summary`)."""
        from .report import summary

        return summary(self)

    def describe(self) -> str:
        """Human-readable summary, what ``giip info`` prints (:func:`.report.describe`)."""
        from .report import describe

        return describe(self)
