"""The reference file: one HDF5 file with a schema version.

Layout (schema version 2)::

    /                       attrs: format = "giip-reference", schema_version = 2 (int),
                                   package_version, created (ISO date), checksum (SHA-256 of every
                                   dataset), attrs_checksum (SHA-256 of the attributes of every
                                   group below, as read back)
    /parameters             attrs: r_inner, r_outer, sigma, group ("O3", "SO3", "O2", "SO2" or
                                   "none"), dim, species_mode, species, positive, centers,
                                   species_sigma, type_names, search_settings, n_eigenpairs,
                                   epsilon, epsilon_info, class_selection, n_coords_request,
                                   metric ("giip" or "soap"; absent in files written before SOAP:
                                   "giip"), metric_parameters (SOAP: n_max, l_max, library, ...),
                                   default_path (GIIP: the calibrated coarse search of the default
                                   path and its measurement, calibration.py, with the version
                                   of its rule; absent in files written before it, or of an
                                   older rule: measured at first use)
    /training               positions (M, dim), weights (M, channels), offsets (n+1,),
                            [sigmas (M,)], centers (n,), classes (n,), file_index, frame_index,
                            atom_index, atom_id, timestep (n,), [soap_features (n, F): the unit
                            power spectra of a SOAP map's training environments]
    /distances              matrix (n, n): the training distance matrix
    /classes                labels (n,), linkage (n-1, 4), error_curve_classes (n,),
                            error_curve (n,), sizes (K,), diameters (K,), medoids (K,), radii (K,)
    /diffusion              eigenvalues (k,), eigenvectors (n, k), P (n,), Dvec (n,),
                            selected (s,), residuals (k,), r2 (k,), bandwidths (k,)
                            attrs: epsilon, n_negative, trivial_eigenvalue, eig_residual, solver
    /provenance             attrs: package_version, date, command_line, input_files, frames,
                            selection (how the training atoms were chosen), n_train

Attributes are plain numbers or strings; lists, dicts, booleans and None are stored as JSON text
and listed in the group's ``_json`` attribute so that they come back as written.

Schema 2 differs from 1 only by ``attrs_checksum``: the parameters that change results (sigma,
cutoffs, species, epsilon, ...) are attributes, and editing one (with h5py, say) must not go
unnoticed. Schema-1 files (no ``attrs_checksum``) still load; their datasets are checked.

Writing is atomic (a temporary file in the same folder, then ``os.replace``). Loading checks the
file and never returns a wrong map: a missing file raises ``FileNotFoundError``; a file that is not
HDF5 or not a GIIP reference raises ``ValueError("... is not a GIIP reference file ...")``; a newer
schema says to upgrade giip-plugin; a truncated or damaged file (unreadable, missing datasets,
inconsistent shapes, or a checksum mismatch) says to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..io.atomic import open_temp, remove_stale

FORMAT = "giip-reference"
SCHEMA_VERSION = 2

__all__ = ["FORMAT", "SCHEMA_VERSION", "write_reference", "read_reference", "ReferenceFileError", "FileKind", "REFERENCE",
           "file_format", "root_attribute", "map_to_content",
           "map_from_content"]

# datasets every schema-1 file has (the optional ones: training/sigmas)
REQUIRED = {
    "training": ("positions", "weights", "offsets", "centers", "classes", "file_index", "frame_index",
                 "atom_index", "atom_id", "timestep"),
    "distances": ("matrix",),
    "classes": ("labels", "linkage", "error_curve_classes", "error_curve", "sizes", "diameters", "medoids", "radii"),
    "diffusion": ("eigenvalues", "eigenvectors", "P", "Dvec", "selected", "residuals", "r2", "bandwidths"),
}
REQUIRED_ATTRS = {
    "parameters": ("r_inner", "r_outer", "sigma", "group", "dim", "species_mode", "species", "centers"),
    "diffusion": ("epsilon",),
}
GROUPS = ("parameters", "training", "distances", "classes", "diffusion", "provenance")


class ReferenceFileError(ValueError):
    """The file is not a usable GIIP reference file (or model file of another kind)."""


@dataclass(frozen=True)
class FileKind:
    """One kind of data file written by this module: its ``format`` attribute, schema ``version``,
    groups, required datasets and attributes, a check of the content (``check(path, content)``),
    and the words of its messages (``what``: "GIIP reference file"; ``make``: the command that
    writes one). Reference maps are :data:`REFERENCE`; the softness model is another kind."""

    format: str
    version: int
    groups: tuple
    required: dict
    required_attrs: dict
    what: str
    make: str
    check: object = None
    attrs_checksum_from: int = 1  # the first schema version with an attrs_checksum


def _damaged(path, why, kind=None) -> ReferenceFileError:
    kind = kind or REFERENCE
    name = kind.what.replace("GIIP ", "")
    return ReferenceFileError(f"the {name} {path} is damaged or truncated ({why}); rebuild it with '{kind.make}'")


def _checksum(datasets: dict) -> str:
    """SHA-256 over every dataset, in sorted group/name order (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for g in sorted(datasets):
        for name in sorted(datasets[g]):
            a = np.ascontiguousarray(datasets[g][name])
            h.update(f"{g}/{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _attrs_checksum(attrs: dict) -> str:
    """SHA-256 of every group's attributes (as read back: canonical JSON, sorted keys)."""
    text = json.dumps({g: attrs[g] for g in sorted(attrs)}, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _native(v):
    return isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _write_attrs(obj, attrs: dict):
    js = []
    for k, v in attrs.items():
        if _native(v):
            obj.attrs[k] = v
        else:
            obj.attrs[k] = json.dumps(v, default=_json_default)
            js.append(k)
    if js:
        obj.attrs["_json"] = json.dumps(js)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    raise TypeError(f"cannot store {type(o).__name__} in a reference file attribute")


def _read_attrs(obj) -> dict:
    js = set(json.loads(obj.attrs["_json"])) if "_json" in obj.attrs else set()
    out = {}
    for k, v in obj.attrs.items():
        if k == "_json":
            continue
        if isinstance(v, bytes):
            v = v.decode()
        if k in js:
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def write_reference(path, content: dict, root_attrs: dict | None = None, kind: FileKind | None = None) -> None:
    """Write ``content = {group: {"attrs": {...}, "datasets": {...}}}`` atomically to ``path``
    (a reference file, or a file of another ``kind``)."""
    import h5py

    kind = kind or REFERENCE
    GROUPS = kind.groups
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    datasets = {g: {k: np.asarray(v) for k, v in content.get(g, {}).get("datasets", {}).items()} for g in GROUPS}
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    remove_stale(path, ".tmp")
    fd, tmp = open_temp(path, ".tmp")  # mode 0o666 & ~umask, like any new file
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = kind.format
            f.attrs["schema_version"] = np.int64(kind.version)
            for k, v in (root_attrs or {}).items():
                f.attrs[k] = v
            f.attrs["checksum"] = _checksum(datasets)
            for g in GROUPS:
                grp = f.create_group(g)
                _write_attrs(grp, content.get(g, {}).get("attrs", {}))
                for name, arr in datasets[g].items():
                    kw = {}
                    if arr.size > 65536:
                        kw = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
                    grp.create_dataset(name, data=arr, **kw)
            f.attrs["attrs_checksum"] = _attrs_checksum({g: _read_attrs(f[g]) for g in GROUPS})
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # name the target, not the hidden temporary file
            raise OSError(f"cannot write the {kind.what.replace('GIIP ', '')} {path}: {exc.strerror or exc}") from exc
        raise


def write_model_file(path, content: dict, kind: FileKind) -> None:
    """:func:`write_reference` for a model file of ``kind``, stamped with the package version and
    the date (the root attributes ``package_version`` and ``created``)."""
    import datetime

    from .. import __version__

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    write_reference(path, content, {"package_version": __version__, "created": now}, kind=kind)


def read_reference(path, kind: FileKind | None = None) -> tuple[dict, dict]:
    """Read and check a reference file (or a file of another ``kind``); returns ``(content,
    root_attrs)`` as for :func:`write_reference`."""
    import h5py

    kind = kind or REFERENCE
    FORMAT, SCHEMA_VERSION, GROUPS, what, make = kind.format, kind.version, kind.groups, kind.what, kind.make
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what.replace('GIIP ', '')} not found: {path}")
    if os.path.isdir(path):
        raise ReferenceFileError(f"{path} is a directory, not a {what}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise ReferenceFileError(f"cannot read {path}: {e}") from e
    if head != b"\x89HDF\r\n\x1a\n" and not h5py.is_hdf5(path):
        raise ReferenceFileError(
            f"{path} is not a {what} (not an HDF5 file); build one with '{make}'"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _damaged(path, f"HDF5 cannot open it: {e}", kind) from e
    with f:
        try:
            fmt = f.attrs.get("format")
        except (OSError, RuntimeError, KeyError) as e:
            raise _damaged(path, f"unreadable header: {e}", kind) from e
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT:
            found = "it has no 'format' attribute" if fmt is None else f"its format is {fmt!r}"
            raise ReferenceFileError(
                f"{path} is not a {what} ({found}, expected {FORMAT!r}); build one with '{make}'"
            )
        version = f.attrs.get("schema_version")
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise _damaged(path, f"schema_version {version!r} is not an integer", kind) from None
        if version > SCHEMA_VERSION:
            from .. import __version__

            raise ReferenceFileError(
                f"{path} uses {what.replace('GIIP ', '').replace(' file', '')} schema version {version}, newer than the version "
                f"{SCHEMA_VERSION} this giip-plugin ({__version__}) reads; upgrade giip-plugin "
                "(pip install -U giip-plugin)"
            )
        if version < 1:
            raise _damaged(path, f"schema_version {version} is not valid", kind)
        try:
            root = _read_attrs(f)
            content = {}
            for g in GROUPS:
                if g not in f:
                    raise _damaged(path, f"group /{g} is missing", kind)
                grp = f[g]
                content[g] = {"attrs": _read_attrs(grp), "datasets": {k: grp[k][()] for k in grp.keys()}}
        except ReferenceFileError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise _damaged(path, f"{type(e).__name__}: {e}", kind) from e
    for g, names in kind.required.items():
        for n in names:
            if n not in content[g]["datasets"]:
                raise _damaged(path, f"dataset /{g}/{n} is missing", kind)
    for g, names in kind.required_attrs.items():
        for n in names:
            if n not in content[g]["attrs"]:
                raise _damaged(path, f"attribute {n!r} of /{g} is missing", kind)
    stored = root.get("checksum")
    if stored is None:
        raise _damaged(path, "no checksum", kind)
    if stored != _checksum({g: content[g]["datasets"] for g in GROUPS}):
        raise _damaged(path, "checksum mismatch: the stored arrays are not those that were written", kind)
    if version >= kind.attrs_checksum_from:
        stored_attrs = root.get("attrs_checksum")
        if stored_attrs is None:
            raise _damaged(path, "no attrs_checksum", kind)
        if stored_attrs != _attrs_checksum({g: content[g]["attrs"] for g in GROUPS}):
            raise _damaged(
                path, "attribute checksum mismatch: a parameter (sigma, a cutoff, the species, epsilon, ...) "
                "was changed after the file was written", kind
            )
    if kind.check is not None:
        kind.check(path, content)
    return content, root


def _check_shapes(path, c):
    t, d, cl, df = (c[g]["datasets"] for g in ("training", "distances", "classes", "diffusion"))
    p = c["parameters"]["attrs"]
    off = t["offsets"]
    n = len(off) - 1
    M = len(t["positions"])
    dim = int(p["dim"])

    def need(cond, why):
        if not cond:
            raise _damaged(path, why)

    need(n >= 2, f"{n} training environments")
    need(off.ndim == 1 and off[0] == 0 and off[-1] == M and np.all(np.diff(off) >= 0), "bad offsets")
    need(t["positions"].ndim == 2 and t["positions"].shape[1] == dim, "positions do not match dim")
    need(t["weights"].ndim == 2 and len(t["weights"]) == M, "weights do not match positions")
    if "sigmas" in t:
        need(t["sigmas"].shape == (M,), "sigmas do not match positions")
    for k in ("centers", "classes", "file_index", "frame_index", "atom_index", "atom_id", "timestep"):
        need(t[k].shape == (n,), f"/training/{k} has shape {t[k].shape}, expected ({n},)")
    need(d["matrix"].shape == (n, n), f"distance matrix of shape {d['matrix'].shape} for {n} environments")
    need(cl["labels"].shape == (n,) and cl["linkage"].shape == (n - 1, 4), "class arrays do not match")
    need(cl["error_curve"].shape == (n,) and cl["error_curve_classes"].shape == (n,), "error curve does not match")
    K = len(cl["sizes"])
    need(K >= 1 and cl["diameters"].shape == (K,) and cl["medoids"].shape == (K,) and cl["radii"].shape == (K,),
         "class summary arrays do not match")
    need(int(cl["labels"].max()) == K - 1 and int(np.sum(cl["sizes"])) == n, "class sizes do not match labels")
    k = len(df["eigenvalues"])
    need(k >= 1 and df["eigenvectors"].shape == (n, k), "eigenvectors do not match")
    need(df["P"].shape == (n,) and df["Dvec"].shape == (n,), "normalisation vectors do not match")
    need(df["residuals"].shape == (k,) and df["r2"].shape == (k,), "r / r^2 table does not match")
    sel = df["selected"]
    need(sel.ndim == 1 and len(sel) >= 1 and sel.min() >= 0 and sel.max() < k, "selected coordinates out of range")
    for name, arr in (("distances", d["matrix"]), ("eigenvectors", df["eigenvectors"]), ("P", df["P"])):
        need(np.all(np.isfinite(arr)), f"{name} contain non-finite values")


REFERENCE = FileKind(FORMAT, SCHEMA_VERSION, GROUPS, REQUIRED, REQUIRED_ATTRS, "GIIP reference file", "giip build",
                     check=_check_shapes, attrs_checksum_from=2)


def root_attribute(path, name: str):
    """One attribute of the root of an HDF5 file (text decoded), or None when the file is not HDF5
    or has no such attribute; nothing else is read or checked."""
    import h5py

    try:
        with h5py.File(os.fspath(path), "r") as f:
            v = f.attrs.get(name)
    except (OSError, ValueError):
        return None
    return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)


def file_format(path) -> str | None:
    """The ``format`` attribute of an HDF5 file of this package ("giip-reference",
    "giip-softness"), or None when the file is not HDF5 or has none (no other check)."""
    return root_attribute(path, "format")


# --------------------------------------------------------------------------- a map <-> its content
def map_to_content(ref) -> dict:
    """The groups, datasets and attributes of a map's file (layout in the module docstring)."""
    from dataclasses import asdict

    env = ref.environments
    enc = env.encoding if env is not None else None
    t = ref.training
    ks, err = ref.clustering.error_curve()
    tds = {"positions": t.positions, "weights": t.weights, "offsets": t.offsets, "centers": t.centers,
           "classes": ref.labels}
    if t.sigmas is not None:
        tds["sigmas"] = t.sigmas
    if ref.metric_name == "soap":  # computed once at the build; applying the map needs them every time
        tds["soap_features"] = ref.metric.training_features(t).values
    for k in ("file_index", "frame_index", "atom_index", "atom_id", "timestep"):
        tds[k] = np.asarray(ref.training_provenance.get(k, np.full(ref.n_train, -1)), dtype=np.int64)
    params = {
        "r_inner": float(env.r_inner) if env is not None else float("nan"),
        "r_outer": float(env.r_outer) if env is not None else float("nan"),
        "sigma": float(ref.sigma),
        "group": ref.group if ref.group is not None else "none",
        "dim": int(ref.dim),
        "species_mode": enc.mode if enc is not None else "unknown",
        "species": list(enc.species) if enc is not None else [],
        "positive": (enc.positive or "") if enc is not None else "",
        "centers": list(env.centers) if env is not None and env.centers is not None else None,
        "species_sigma": dict(env.species_sigma) if env is not None and env.species_sigma else None,
        "has_environments": env is not None,
        "type_names": {str(k): v for k, v in ref.type_names.items()},
        "search_settings": asdict(ref.search_settings),
        "n_eigenpairs": int(ref.diffusion.n_eigenpairs),
        "epsilon": float(ref.diffusion.epsilon),
        "epsilon_info": ref.diffusion.epsilon_info,
        "class_selection": ref.class_selection,
        "n_coords_request": ref.n_coords_request,
        "n_channels": int(t.n_channels),
        "metric": ref.metric_name,
        "metric_parameters": ref.metric.parameters() if ref.metric_name == "soap" else {},
    }
    if ref.metric_name == "giip":
        params["default_path"] = ref.calibrated().to_dict()
    d = ref.diffusion
    return {
        "parameters": {"attrs": params},
        "training": {"datasets": tds},
        "distances": {"datasets": {"matrix": ref.distances}},
        "classes": {"datasets": {
            "labels": ref.labels, "linkage": ref.clustering.linkage, "error_curve_classes": ks,
            "error_curve": err, "sizes": ref.classes.sizes, "diameters": ref.classes.diameters,
            "medoids": ref.classes.medoids, "radii": ref.classes.radii},
            "attrs": dict(ref.class_selection)},
        "diffusion": {"datasets": {
            "eigenvalues": d.eigenvalues, "eigenvectors": d.eigenvectors, "P": d.P, "Dvec": d.Dvec,
            "selected": ref.selected, "residuals": ref.residuals, "r2": ref.r2, "bandwidths": ref.bandwidths},
            "attrs": {"epsilon": float(d.epsilon), "n_negative": int(d.n_negative),
                      "trivial_eigenvalue": float(d.trivial_eigenvalue), "eig_residual": float(d.eig_residual),
                      "solver": d.solver, "epsilon_info": d.epsilon_info}},
        "provenance": {"attrs": dict(ref.provenance)},
    }


def map_from_content(c):
    """The :class:`~giip_plugin.reference.ReferenceMap` of a file's content (:func:`read_reference`)."""
    from ..environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding
    from .clustering import ClassSummary, Clustering
    from .diffusion import DiffusionMap
    from .refmap import ReferenceMap
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
    clustering = Clustering(np.asarray(cl["linkage"], dtype=float).reshape(-1, 4), n)
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
    ref = ReferenceMap(
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
        metric_name=_metric_of(p),
        soap_settings=_soap_settings_of(p),
        default_path=_default_path_of(p),
    )
    if ref.metric_name == "soap" and "soap_features" in t:
        ref.metric.set_training_features(training, t["soap_features"])
    return ref


def _default_path_of(p):
    """The calibrated default path of a GIIP map's file (None in files written before calibration,
    or calibrated by an older rule: the map calibrates itself at first use)."""
    d = p.get("default_path")
    if not d or _metric_of(p) != "giip":
        return None
    from .calibration import RULE, DefaultPath, outdated

    dp = DefaultPath.from_dict(d)
    if outdated(dp):
        warnings.warn(
            f"this reference map's default path was calibrated by an older rule (version {dp.rule}, now {RULE}: "
            + ("its refinement margin could miss the exact nearest reference of a few atoms" if dp.coarse is not None
               else "it was left with the exhaustive exact search, where a newer coarse search may meet the "
                    "accuracy contract")
            + "); it is measured again "
            "at first use (seconds to a minute). To keep the new calibration, save the map again: "
            "ReferenceMap.load(PATH).save(PATH)", UserWarning, stacklevel=4)
        return None
    return dp


def _metric_of(p) -> str:
    name = str(p.get("metric", "giip"))
    if name not in ("giip", "soap"):
        raise ValueError(f"unknown metric {name!r} (this giip-plugin knows 'giip' and 'soap'; upgrade giip-plugin)")
    return name


def _soap_settings_of(p):
    if _metric_of(p) != "soap":
        return None
    from .soap import SOAPSettings

    mp = p.get("metric_parameters") or {}
    return SOAPSettings(n_max=int(mp["n_max"]), l_max=int(mp["l_max"]))
