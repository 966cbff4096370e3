"""GIIP structure analysis as an OVITO modifier (OVITO 3.10 or later, Python modifiers).

``GIIPModifier`` classifies and maps every particle against a GIIP reference map made by
``giip build`` (Hardin et al. 2022) and colours the structure by class or by one diffusion
coordinate. It needs the ``giip-plugin`` package in OVITO's Python interpreter.

Use it in a Python script::

    from ovito.io import import_file
    from ovito_modifier import GIIPModifier

    pipeline = import_file("quench.dump", multiple_frames=True)
    pipeline.modifiers.append(GIIPModifier(reference_file="ninb.h5", color_by="class"))
    data = pipeline.compute()
    data.particles["GIIP Class"]            # class of every particle, -1: not analysed

or in OVITO Pro: installed into OVITO's Python, it is listed as "GIIP structure analysis" among the
modifiers; this file can also be loaded directly as a Python script modifier (see docs/ovito.md).

Outputs (per particle): ``GIIP Class`` (int, one named, coloured type per class, type -1 "Not
analysed"), ``Diffusion Coordinates`` (components DC1 .. DCk, NaN where not analysed),
``GIIP Reference Distance`` (NaN where not analysed), ``Color`` when colouring is on; global
attributes ``GIIP.count.Class0`` .. , ``GIIP.n_analysed``, ``GIIP.n_not_analysed``, ``GIIP.n_empty``,
``GIIP.n_classes``, ``GIIP.n_coords``; a bar-chart data table ``giip-classes`` of the class counts.

This file is self-contained (besides ``giip_plugin``) so that OVITO Pro can load it as a script file.
"""
from __future__ import annotations

import collections
import hashlib
import math
import os
import threading
import warnings

import numpy as np
from ovito.data import DataCollection, DataTable, ElementType
from ovito.pipeline import ModifierInterface
from traits.api import Bool, Enum, Range

try:  # OVITO >= 3.10: a file-selection widget in the GUI
    from ovito.traits import FilePath as _FilePathTrait
except ImportError:  # pragma: no cover - older OVITO
    from traits.api import Str as _FilePathTrait
try:
    from ovito.traits import Color as _ColorTrait
except ImportError:  # pragma: no cover - older OVITO
    from traits.api import Tuple as _ColorTrait

__all__ = ["GIIPModifier", "class_color", "class_colors", "coordinate_colors", "clear_caches",
           "NOT_ANALYSED_COLOR", "COLOR_BY_CHOICES", "DEVICE_CHOICES"]

# ---------------------------------------------------------------------------------- colours
# Qualitative palette (matplotlib's tab10 then the light tab20 shades, greys left out: grey means
# "not analysed"); beyond 18 classes, hues spaced by the golden angle.
_PALETTE = np.array([
    [0.1216, 0.4667, 0.7059], [1.0, 0.498, 0.0549], [0.1725, 0.6275, 0.1725], [0.8392, 0.1529, 0.1569],
    [0.5804, 0.4039, 0.7412], [0.549, 0.3373, 0.2941], [0.8902, 0.4667, 0.7608], [0.7373, 0.7412, 0.1333],
    [0.0902, 0.7451, 0.8118], [0.6824, 0.7804, 0.9098], [1.0, 0.7333, 0.4706], [0.5961, 0.8745, 0.5412],
    [1.0, 0.5961, 0.5882], [0.7725, 0.6902, 0.8353], [0.7686, 0.6118, 0.5804], [0.9686, 0.7137, 0.8235],
    [0.8588, 0.8588, 0.5529], [0.6196, 0.8549, 0.898],
])
# matplotlib's viridis at 17 evenly spaced points (interpolated linearly in between)
_VIRIDIS = np.array([
    [0.267, 0.0049, 0.3294], [0.2823, 0.095, 0.4173], [0.2788, 0.1755, 0.4834], [0.259, 0.2515, 0.5247],
    [0.2297, 0.3224, 0.5457], [0.1994, 0.3876, 0.5546], [0.1727, 0.4488, 0.5579], [0.149, 0.5081, 0.5572],
    [0.1276, 0.5669, 0.5506], [0.1206, 0.6258, 0.5335], [0.1579, 0.6838, 0.5017], [0.2461, 0.7389, 0.452],
    [0.3692, 0.7889, 0.3829], [0.516, 0.8312, 0.2943], [0.6785, 0.8637, 0.1895], [0.8456, 0.8873, 0.0997],
    [0.9932, 0.9062, 0.1439],
])
NOT_ANALYSED_COLOR = (0.7, 0.7, 0.7)
COLOR_BY_CHOICES = ("class", "coordinate", "none")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def class_color(k: int) -> tuple:
    """RGB colour (floats in [0, 1]) of class ``k``; grey for -1 (not analysed)."""
    k = int(k)
    if k < 0:
        return NOT_ANALYSED_COLOR
    if k < len(_PALETTE):
        return tuple(float(c) for c in _PALETTE[k])
    import colorsys

    h = (0.1 + 0.618033988749895 * k) % 1.0
    return colorsys.hsv_to_rgb(h, 0.65 + 0.3 * ((k // 7) % 2), 0.85)


def class_colors(n_classes: int) -> np.ndarray:
    """``(n_classes, 3)`` class colours."""
    return np.array([class_color(k) for k in range(int(n_classes))], dtype=float).reshape(-1, 3)


def coordinate_colors(values, vmin=None, vmax=None, nan_color=NOT_ANALYSED_COLOR) -> np.ndarray:
    """Viridis colours of ``values`` over ``[vmin, vmax]`` (default: the range of the finite
    values); NaN gets ``nan_color``."""
    v = np.asarray(values, dtype=float)
    out = np.empty(v.shape + (3,))
    out[:] = nan_color
    ok = np.isfinite(v)
    if not ok.any():
        return out
    lo = float(np.min(v[ok])) if vmin is None else float(vmin)
    hi = float(np.max(v[ok])) if vmax is None else float(vmax)
    t = np.zeros(int(ok.sum())) if not hi > lo else np.clip((v[ok] - lo) / (hi - lo), 0.0, 1.0)
    x = np.linspace(0.0, 1.0, len(_VIRIDIS))
    out[ok] = np.column_stack([np.interp(t, x, _VIRIDIS[:, c]) for c in range(3)])
    return out


# ---------------------------------------------------------------------------------- caches
# Shared by all modifier instances, keyed by content, so nothing has to live on the (traits)
# modifier object: the loaded reference maps (by path, size and modification time), and the
# results of recent analyses (so that a colour-only parameter change, which makes OVITO clear the
# modifier's per-frame data_cache, does not rerun the analysis).
_LOCK = threading.RLock()
_ANALYZERS: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
_MAX_ANALYZERS = 2
_RECENT: "collections.OrderedDict[str, object]" = collections.OrderedDict()
_MAX_RECENT = 16
_MAX_RECENT_BYTES = 512 * 2**20
_CACHE_PREFIX = "giip-frame-"


def clear_caches() -> None:
    """Forget loaded reference maps and recent results (e.g. to free memory)."""
    with _LOCK:
        _ANALYZERS.clear()
        _RECENT.clear()


def _result_nbytes(res) -> int:
    if hasattr(res, "softness"):
        return res.softness.nbytes + res.analysed.nbytes
    return sum(a.nbytes for a in (res.classes, res.coordinates, res.ref_distance, res.analysed))


def _remember(key, res) -> None:
    with _LOCK:
        _RECENT[key] = res
        _RECENT.move_to_end(key)
        while len(_RECENT) > _MAX_RECENT or (
            len(_RECENT) > 1 and sum(_result_nbytes(r) for r in _RECENT.values()) > _MAX_RECENT_BYTES
        ):
            _RECENT.popitem(last=False)


def _recall(key):
    with _LOCK:
        res = _RECENT.get(key)
        if res is not None:
            _RECENT.move_to_end(key)
        return res


# ---------------------------------------------------------------------------------- modifier
class GIIPModifier(ModifierInterface):
    """GIIP structure analysis: classify and map every particle against a reference map.

    Parameters
    ----------
    reference_file : path of the reference map (``giip build ... -o REF.h5``), or of a softness model
        (``giip softness train ... -o SOFT.h5``): then the output is ``Softness`` per particle,
        coloured over its range unless ``color_by="none"``.
    color_by : ``"class"`` (default; one colour per class), ``"coordinate"`` (a viridis colour map
        over the range of diffusion coordinate ``coordinate``), or ``"none"`` (no ``Color`` output).
    coordinate : which diffusion coordinate colours the particles with ``color_by="coordinate"``
        (1 = DC1; at most the number the reference keeps).
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    exact : the exhaustive exact rotation search of every (particle, reference) pair (``giip apply
        --exact``); by default a coarse search of every pair is refined by the exact search for the
        nearest references of each particle (the same classes and nearest distances, coordinates
        within far less than 1 % of their range).
    n_classes : 0 (default) for the map's own classes; K for the map's class tree cut at K classes
        (each particle gets the class of its nearest training environment), e.g. 20 to colour finer
        than the map's classes (``giip apply --n-classes K``).
    only_selected : analyse only the selected particles (the others get class -1); their
        environments still see every neighbour.
    not_analysed_color : colour of particles that are not analysed (other species, no neighbour,
        not selected) when colouring is on.
    """

    reference_file = _FilePathTrait(label="Reference file (giip build)")
    color_by = Enum(*COLOR_BY_CHOICES, label="Colour by")
    coordinate = Range(low=1, high=50, value=1, label="Diffusion coordinate (DCk) to colour by")
    device = Enum(*DEVICE_CHOICES, label="Compute device")
    exact = Bool(False, label="Exhaustive exact search (slower)")
    n_classes = Range(low=0, high=100000, value=0, label="Classes (0: the map's; K: its tree cut at K)")
    only_selected = Bool(False, label="Analyse selected particles only")
    not_analysed_color = _ColorTrait(default=NOT_ANALYSED_COLOR, label="Colour of particles not analysed")

    # rows of environments per chunk between progress reports: between _MIN_CHUNK and
    # _MAX_CHUNK, about 1/_N_CHUNKS of the work. At least 4 so that the analyser's check for wrong
    # length units (most centres with no neighbour) fires on the first chunk as on a whole frame.
    _N_CHUNKS = 100
    _MIN_CHUNK = 4
    _MAX_CHUNK = 256

    # -- the reference --------------------------------------------------------------------
    def _analyzer(self):
        """``(GIIPAnalyzer, key)``: the reference map loaded once per file version."""
        path = os.fspath(self.reference_file or "").strip()
        if not path:
            raise RuntimeError(
                "GIIP: no reference file chosen; set 'Reference file' to a map made with "
                "'giip build TRAJ... -o REF.h5'"
            )
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise RuntimeError(
                f"GIIP reference file not found: {path} \u2014 build one with giip build "
                "(giip build TRAJ... -o REF.h5)"
            )
        st = os.stat(path)
        device = None if self.device == "auto" else self.device
        n_classes = int(self.n_classes or 0) or None
        key = (path, st.st_size, st.st_mtime_ns, device, bool(self.exact), n_classes)
        with _LOCK:
            an = _ANALYZERS.get(key)
            if an is not None:
                _ANALYZERS.move_to_end(key)
                return an, key
        from giip_plugin.analysis import GIIPAnalyzer, SoftnessAnalyzer
        from giip_plugin.softness import is_softness_file

        softness = is_softness_file(path)  # a softness model (giip softness train): one property, Softness
        if device == "cuda" and not softness:
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("GIIP: device 'cuda' was chosen but PyTorch finds no CUDA GPU; choose 'auto' or 'cpu'")
        try:
            an = (SoftnessAnalyzer(path) if softness else
                  GIIPAnalyzer(path, device=device, exact=bool(self.exact), n_classes=n_classes))
        except (ValueError, OSError, KeyError) as exc:
            what = "softness model" if softness else "reference file"
            raise RuntimeError(f"GIIP: cannot use the {what} {path}: {exc}") from exc
        with _LOCK:
            _ANALYZERS[key] = an
            while len(_ANALYZERS) > _MAX_ANALYZERS:
                _ANALYZERS.popitem(last=False)
        return an, key

    # -- the structure ----------------------------------------------------------------------
    @staticmethod
    def _content_key(atoms, species, selection, ref_key) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr(ref_key).encode())
        h.update(np.ascontiguousarray(atoms.get_positions(), dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
        h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
        uniq, inv = np.unique(species, return_inverse=True)
        h.update("\0".join(uniq.tolist()).encode())
        h.update(np.ascontiguousarray(inv, dtype=np.int32).tobytes())
        h.update(b"sel" if selection is not None else b"all")
        if selection is not None:
            h.update(np.packbits(selection).tobytes())
        return h.hexdigest()

    # -- per-frame cache (OVITO's data_cache; cleared by OVITO when a parameter changes) ---
    @staticmethod
    def _from_data_cache(data_cache, frame, key, n, k):
        ident = f"{_CACHE_PREFIX}{frame}"
        if data_cache is None or ident not in data_cache.tables:
            return None
        if data_cache.attributes.get(ident) != key:
            return None
        t = data_cache.tables[ident]
        try:
            classes = np.asarray(t["Class"][...], dtype=np.int64)
            coords = np.asarray(t["Coordinates"][...], dtype=float).reshape(n, k)
            dist = np.asarray(t["Distance"][...], dtype=float)
            analysed = np.asarray(t["Analysed"][...]).astype(bool)
        except (KeyError, ValueError):
            return None
        if len(classes) != n:
            return None
        from giip_plugin.analysis import AnalysisResult

        return AnalysisResult(classes, coords, dist, analysed, int(data_cache.attributes.get(ident + "-empty", 0)))

    @staticmethod
    def _to_data_cache(data_cache, frame, key, res) -> None:
        if data_cache is None:
            return
        ident = f"{_CACHE_PREFIX}{frame}"
        if ident in data_cache.tables:
            data_cache.objects.remove(data_cache.tables[ident])
        n, k = res.coordinates.shape
        t = data_cache.tables.create(identifier=ident, title=f"GIIP results, frame {frame}", count=n)
        t.create_property("Class", data=res.classes.astype(np.int64))
        t.create_property("Coordinates", data=res.coordinates.reshape(n, k),
                          components=[f"DC{i + 1}" for i in range(k)])
        t.create_property("Distance", data=res.ref_distance)
        t.create_property("Analysed", data=res.analysed.astype(np.int32))
        data_cache.attributes[ident] = key
        data_cache.attributes[ident + "-empty"] = int(res.n_empty)

    # -- the analysis, in chunks with progress ----------------------------------------------
    def _analyse(self, analyzer, atoms, species, selection):
        """Generator: yields progress, returns the analyser's :class:`AnalysisResult` (restricted to
        ``selection``), computed by :meth:`GIIPAnalyzer.analyze_steps` in chunks."""
        n_centers = int(np.sum(analyzer.center_mask(atoms, species) & (True if selection is None else selection)))
        n_train = int(getattr(analyzer.reference, "n_train", 0) or 0)
        yield f"GIIP: {n_centers} environments x {n_train} reference environments"
        chunk = int(min(self._MAX_CHUNK, max(self._MIN_CHUNK, math.ceil(max(n_centers, 1) / self._N_CHUNKS))))
        indices = None if selection is None else np.flatnonzero(selection)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = yield from analyzer.analyze_steps(atoms, indices=indices, species=species, chunk=chunk)
        for w in caught:  # shown in OVITO's log, once each
            print(f"GIIP: {w.message}")
        return res

    # -- the modifier -----------------------------------------------------------------------
    def modify(self, data: DataCollection, *, frame: int = 0, data_cache: DataCollection | None = None, **kwargs):
        if data.particles is None or data.particles.count == 0:
            raise RuntimeError("GIIP: the input has no particles")
        yield "GIIP: loading the reference map"
        analyzer, ref_key = self._analyzer()
        from giip_plugin.systems import from_system

        atoms = from_system(data)
        try:
            species = analyzer.species_of(atoms)
        except ValueError as exc:  # types the reference does not name
            raise RuntimeError(f"GIIP: {exc}") from exc
        selection = None
        if self.only_selected:
            if "Selection" not in data.particles:
                raise RuntimeError("GIIP: 'Analyse selected particles only' is on but no particles are selected "
                                   "(insert a selection modifier before this one)")
            selection = np.asarray(data.particles["Selection"][...]) != 0
        key = self._content_key(atoms, species, selection, ref_key)
        if hasattr(analyzer, "model"):  # softness
            res = _recall(key)
            if res is None:
                yield "GIIP: softness (structure functions)"
                try:
                    res = analyzer.analyze(atoms, indices=None if selection is None else np.flatnonzero(selection),
                                           species=species)
                except ValueError as exc:
                    raise RuntimeError(f"GIIP: {exc}") from exc
                _remember(key, res)
            self._output_softness(data, res)
            return
        n, k = len(atoms), analyzer.n_coords
        res = self._from_data_cache(data_cache, frame, key, n, k)
        if res is None:
            res = _recall(key)
            if res is None:
                try:
                    res = yield from self._analyse(analyzer, atoms, species, selection)
                except ValueError as exc:  # species mismatch, no centre atoms, wrong units
                    raise RuntimeError(f"GIIP: {exc}") from exc
                _remember(key, res)
            self._to_data_cache(data_cache, frame, key, res)
        self._output(data, res, analyzer)

    def _output_softness(self, data, res) -> None:
        """``Softness`` per particle (NaN: species without a hyperplane, or not selected) and, unless
        ``color_by="none"``, a viridis colour over its range; attributes ``Softness.mean``,
        ``Softness.fraction_positive``, ``GIIP.n_analysed``."""
        parts = data.particles_
        parts.create_property("Softness", data=res.softness)
        if self.color_by != "none":
            parts.create_property("Color", data=coordinate_colors(res.softness,
                                                                  nan_color=tuple(self.not_analysed_color)))
        ok = np.isfinite(res.softness)
        data.attributes["GIIP.n_analysed"] = int(ok.sum())
        data.attributes["GIIP.n_not_analysed"] = int(len(ok) - ok.sum())
        if ok.any():
            data.attributes["Softness.mean"] = float(res.softness[ok].mean())
            data.attributes["Softness.fraction_positive"] = float(np.mean(res.softness[ok] > 0))
            data.attributes["GIIP.color_min"] = float(res.softness[ok].min())
            data.attributes["GIIP.color_max"] = float(res.softness[ok].max())

    def _output(self, data, res, analyzer) -> None:
        n_classes, k = analyzer.n_classes, analyzer.n_coords
        parts = data.particles_
        cls = parts.create_property("GIIP Class", data=res.classes.astype(np.int32))
        cls.types.append(ElementType(id=-1, name="Not analysed", color=tuple(self.not_analysed_color)))
        for c in range(n_classes):
            cls.types.append(ElementType(id=c, name=f"Class {c}", color=class_color(c)))
        names = [f"DC{i + 1}" for i in range(k)]
        parts.create_property("Diffusion Coordinates", data=res.coordinates.reshape(len(res.classes), k),
                              components=names)
        parts.create_property("GIIP Reference Distance", data=res.ref_distance)

        if self.color_by == "class":
            table = np.vstack([class_colors(n_classes), np.asarray(self.not_analysed_color, dtype=float)[None]])
            parts.create_property("Color", data=table[res.classes])  # class -1 -> last row
        elif self.color_by == "coordinate":
            if not 1 <= self.coordinate <= k:
                raise RuntimeError(f"GIIP: diffusion coordinate {self.coordinate} was chosen for the colours, but "
                                   f"the reference keeps {k} (DC1 .. DC{k})")
            v = res.coordinates[:, self.coordinate - 1]
            parts.create_property("Color", data=coordinate_colors(v, nan_color=tuple(self.not_analysed_color)))
            ok = np.isfinite(v)
            if ok.any():
                data.attributes["GIIP.color_min"] = float(v[ok].min())
                data.attributes["GIIP.color_max"] = float(v[ok].max())

        counts = np.bincount(res.classes[res.classes >= 0], minlength=n_classes)
        for c in range(n_classes):
            data.attributes[f"GIIP.count.Class{c}"] = int(counts[c])
        n_analysed = int(res.analysed.sum())
        data.attributes["GIIP.n_analysed"] = n_analysed
        data.attributes["GIIP.n_not_analysed"] = int(len(res.classes) - n_analysed)
        data.attributes["GIIP.n_empty"] = int(res.n_empty)
        data.attributes["GIIP.n_classes"] = int(n_classes)
        data.attributes["GIIP.n_coords"] = int(k)

        t = DataTable(identifier="giip-classes", title="GIIP classes", plot_mode=DataTable.PlotMode.BarChart,
                      count=n_classes)
        x = t.create_property("GIIP Class", dtype=int, components=1)
        x[...] = np.arange(n_classes)
        for c in range(n_classes):
            x.types.append(ElementType(id=c, name=f"Class {c}", color=class_color(c)))
        t.x = x
        t.y = t.create_property("Atom Count", data=counts.astype(np.int64))
        t.create_property("Atom Fraction", data=counts / max(n_analysed, 1))
        data.objects.append(t)
