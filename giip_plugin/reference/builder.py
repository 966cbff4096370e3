"""Building a reference map from training data, the way scikit-learn estimators are fitted:
settings in a few plain objects, then :meth:`MapBuilder.fit` returns the fitted
:class:`~giip_plugin.reference.ReferenceMap`.

* :class:`EnvironmentSettings` -- the local environments and the distance (cutoffs, sigma,
  species encoding, centres, type names, dimension, orientation group);
* :class:`TrainingSelection` -- which centres are training environments (``n_train`` spread
  evenly over the frames, or the extremes of a per-atom column; frames);
* :class:`ClassSettings` -- the complete-linkage classes (a number, a largest diameter, or the
  knee of the cluster-error curve);
* :class:`DiffusionSettings` -- the diffusion map (epsilon, kept coordinates, eigenpairs);
* :class:`ComputeSettings` -- how the training distances are computed (checkpoint, Dask,
  threads, device, progress).

``ReferenceMap.build(data, **options)`` and ``ReferenceMap.from_files`` take the same options as
keywords and call this builder. Pipeline: design.md, section 3.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding
from .metric import GIIPMetric

__all__ = ["EnvironmentSettings", "TrainingSelection", "ClassSettings", "DiffusionSettings", "ComputeSettings",
           "MapBuilder", "DEFAULT_N_TRAIN"]

#: training environments when none are asked for (the command line's default too); "all" takes
#: every centre (hours of work and a matrix of gigabytes for a large input)
DEFAULT_N_TRAIN = 1000


@dataclass(frozen=True)
class EnvironmentSettings:
    """Local environments and the GIIP distance.

    Give ``environments`` (a :class:`~giip_plugin.environments.LocalEnvironments`) or ``r_inner``,
    ``r_outer`` (weight 1 below, cubic spline to 0 at; units of the positions), ``encoding``
    ("none", "sign", "vector"), ``positive`` (the +1 species of "sign"; default the first centre
    species, else the first type name, else the first species seen), ``centers`` (species names, or
    numeric LAMMPS types named by ``type_names``; default all atoms), ``species_sigma``. ``sigma``:
    the Gaussian width (units of the positions). ``dim``: None detects 2D input (all z equal).
    ``group``: "auto" (O3 in 3D, O2 in 2D), "O3", "SO3", "O2", "SO2" or None (fixed orientation).
    ``metric``: "giip" (default) or "soap" (SOAP power spectra of the same environments, with the
    basis sizes of ``soap``, a :class:`~giip_plugin.reference.soap.SOAPSettings`; :mod:`.soap`).
    """

    sigma: float
    r_inner: float | None = None
    r_outer: float | None = None
    encoding: str = "none"
    positive: str | None = None
    centers: object = None
    species_sigma: dict | None = None
    type_names: object = None
    dim: int | None = None
    group: object = "auto"
    environments: LocalEnvironments | None = None
    metric: str = "giip"
    soap: object = None


@dataclass(frozen=True)
class TrainingSelection:
    """Which centres become training environments.

    ``n_train``: how many, spread evenly over all frames and random within a frame (seeded by
    ``seed``); default :data:`DEFAULT_N_TRAIN` (all of them when the input has fewer); ``"all"``:
    every centre. Or ``select_by`` a per-atom column with its ``lowest`` lowest and ``highest``
    highest values (the paper's 100 lowest- and 4,900 highest-energy atoms). ``frames``: a slice or
    ``"start:stop:step"`` of each file.
    """

    n_train: int | str | None = None
    seed: int = 0
    select_by: str | None = None
    lowest: int = 0
    highest: int = 0
    frames: object = None


@dataclass(frozen=True)
class ClassSettings:
    """``n_classes`` or ``max_diameter`` (atoms of difference); neither: the knee of the curve."""

    n_classes: int | None = None
    max_diameter: float | None = None


@dataclass(frozen=True)
class DiffusionSettings:
    """``epsilon`` (a number or "auto"), ``n_coords`` (an integer or "auto": the parsimonious ones),
    ``n_eigenpairs`` computed."""

    epsilon: object = "auto"
    n_coords: object = "auto"
    n_eigenpairs: int = 20


@dataclass(frozen=True)
class ComputeSettings:
    """How the training distances are computed: ``checkpoint`` folder (resumable), ``restart``,
    Dask ``scheduler``, ``block_size``, ``n_workers`` threads, ``device``, the rotation search's
    ``search`` settings, ``progress`` bars, ``log`` (a callable that takes a message), and
    ``reference_search``: the PyTorch implementation of the rotation search instead of the compiled
    one (the same algorithm; slower, kept as a cross-check)."""

    checkpoint: object = None
    restart: bool = False
    scheduler: object = None
    block_size: int | None = None
    n_workers: int | None = None
    device: object = None
    search: object = None
    progress: bool = False
    log: object = None
    reference_search: bool = False


class MapBuilder:
    """Fits a :class:`~giip_plugin.reference.ReferenceMap` (see the module docstring).

    >>> builder = MapBuilder(EnvironmentSettings(sigma=1.0, r_inner=3, r_outer=4, encoding="sign",
    ...                                          centers=("Ni",), type_names="1=Ni,2=Nb"),
    ...                      TrainingSelection(n_train=1000))           # doctest: +SKIP
    >>> ref = builder.fit(["quench100K.dump"])                          # doctest: +SKIP
    """

    def __init__(self, environments: EnvironmentSettings, training: TrainingSelection | None = None,
                 classes: ClassSettings | None = None, diffusion: DiffusionSettings | None = None,
                 compute: ComputeSettings | None = None, *, command_line: str | None = None):
        self.environments = environments
        self.training = training or TrainingSelection()
        self.classes = classes or ClassSettings()
        self.diffusion = diffusion or DiffusionSettings()
        self.compute = compute or ComputeSettings()
        self.command_line = command_line

    def fit(self, data) -> "ReferenceMap":  # noqa: F821
        """Fit the reference map of ``data``.

        Parameters
        ----------
        data : EnvironmentSet, str or path-like, list of paths, ase.Atoms, Frame, or list of them
            An :class:`~giip_plugin.environments.EnvironmentSet` (the training set, or a pool to
            draw ``n_train`` from), trajectory file(s) (LAMMPS dumps, extxyz, what ``ase.io``
            reads), or structures.

        Returns
        -------
        ReferenceMap
            Training environments, the ``(n_train, n_train)`` distance matrix (atoms of
            difference), complete-linkage classes, the diffusion map and its kept coordinates.
            The distance checkpoint stays until :meth:`ReferenceMap.save` has written the file.
        """
        from .refmap import ReferenceMap, _empty_prov, _group_for, _now

        e, t, c, d, k = self.environments, self.training, self.classes, self.diffusion, self.compute
        sigma, environments, r_inner, r_outer = e.sigma, e.environments, e.r_inner, e.r_outer
        species, positive, centers, species_sigma = e.encoding, e.positive, e.centers, e.species_sigma
        type_names, dim, group = e.type_names, e.dim, e.group
        implicit_n_train = t.n_train is None
        n_train = DEFAULT_N_TRAIN if t.n_train is None else (None if t.n_train == "all" else t.n_train)
        if isinstance(n_train, str):
            raise ValueError(f"n_train must be a positive integer or 'all', got {t.n_train!r}")
        seed, select_by, select_lowest, select_highest, frames = t.seed, t.select_by, t.lowest, t.highest, t.frames
        if select_by is not None:
            if not implicit_n_train:
                raise ValueError("choose the training atoms either by n_train or by select_by, not both")
            n_train = None
        n_classes, max_diameter = c.n_classes, c.max_diameter
        epsilon, n_coords, n_eigenpairs = d.epsilon, d.n_coords, d.n_eigenpairs
        checkpoint, restart, scheduler, block_size = k.checkpoint, k.restart, k.scheduler, k.block_size
        n_workers, device, search_settings, progress, log = k.n_workers, k.device, k.search, k.progress, k.log
        reference_search = bool(k.reference_search)
        command_line = self.command_line
        from ..io import Frame, iter_frames, parse_frames, parse_type_names
        from . import sampling
        from ..validation import check_sigma

        say = log or (lambda m: None)
        tnames = parse_type_names(type_names) or {}
        prov = {"command_line": command_line or "", "date": _now()}
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
                if n_train is not None and n_train > len(pool) and not implicit_n_train:
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
                sample = sampling.choose_even(scan, n_train, seed, warn=not implicit_n_train)
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
        metric = self._metric(check_sigma(sigma), grp, search_settings, local)
        D = metric.pairwise(
            training, block_size=block_size, checkpoint=checkpoint, restart=restart,
            scheduler=scheduler, progress=progress, n_workers=n_workers, device=device, log=log,
            compiled=False if reference_search else None,
        )
        ref = ReferenceMap.from_distances(
            training, D, sigma=sigma, group=grp, environments=local, n_classes=n_classes,
            max_diameter=max_diameter, epsilon=epsilon, n_coords=n_coords, n_eigenpairs=n_eigenpairs,
            training_provenance=tprov, provenance=prov, type_names=tnames, search_settings=search_settings,
            metric=metric.name, soap_settings=getattr(metric, "settings", None) if metric.name == "soap" else None,
            log=log,
        )
        if metric.name == "soap":
            ref.__dict__["_soap_metric"] = metric  # keeps the training power spectra
        ref.checkpoint_path = os.fspath(checkpoint) if checkpoint is not None else None
        return ref


    def _metric(self, sigma, group, search_settings, local):
        """The metric of the build (checked before any environment is computed where possible)."""
        from .refmap import _check_metric_name, _soap_settings

        name = _check_metric_name(self.environments.metric)
        if name == "giip":
            _soap_settings(name, self.environments.soap)
            return GIIPMetric(sigma, group, search_settings)
        from .soap import SOAPMetric

        if self.compute.reference_search:
            raise ValueError("--exact (the reference rotation search) is a GIIP option; the SOAP metric has no search")
        return SOAPMetric.from_environments(local, sigma, group, _soap_settings(name, self.environments.soap))

def _slice_text(s: slice) -> str:
    if s == slice(None):
        return ""
    part = lambda v: "" if v is None else str(v)
    return f"{part(s.start)}:{part(s.stop)}" + (f":{s.step}" if s.step is not None else "")


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
