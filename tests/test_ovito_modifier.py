"""The OVITO modifier (ovito_modifier.GIIPModifier), headless with the pip ``ovito`` module, on
small cut-outs of the NiNb glass dump (exact distances cost ~2 ms per pair on a CPU)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

ovito = pytest.importorskip("ovito")

from ovito.io import import_file  # noqa: E402
from ovito.modifiers import (  # noqa: E402
    AffineTransformationModifier,
    DeleteSelectedModifier,
    ExpressionSelectionModifier,
)

from ovito_modifier import GIIPModifier, class_color, class_colors, clear_caches, coordinate_colors  # noqa: E402

DATA = Path(__file__).parent / "data" / "ninb"
DUMP = DATA / "quench100K.dump"
DUMP2 = DATA / "quench1M.dump"
EXAMPLE = Path(__file__).parents[1] / "ovito_modifier" / "examples" / "render_classes.py"
N_TRAIN, N_CLASSES, N_COORDS = 16, 3, 3
# an 8 A cube (35 atoms, 19 Ni) and a 6 A cube of the 58 A box
CUBE = "Position.X>10 && Position.X<18 && Position.Y>10 && Position.Y<18 && Position.Z>10 && Position.Z<18"
SMALL = "Position.X>30 && Position.X<36 && Position.Y>30 && Position.Y<36 && Position.Z>30 && Position.Z<36"
SMALL2 = "Position.X>40 && Position.X<46 && Position.Y>40 && Position.Y<46 && Position.Z>40 && Position.Z<46"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A small NiNb reference map (16 training environments, 3 classes, 3 coordinates), built
    with the ``giip build`` command line."""
    from giip_plugin.cli import main

    out = tmp_path_factory.mktemp("ref") / "ninb.h5"
    rc = main(["build", str(DUMP), "-o", str(out), "--r-inner", "3", "--r-outer", "4", "--sigma", "1",
               "--species", "sign", "--centers", "Ni", "--type-names", "1=Ni,2=Nb", "--n-train", str(N_TRAIN),
               "--epsilon", "1.5", "--classes", str(N_CLASSES), "--n-coords", str(N_COORDS),
               "--device", "cpu", "--no-progress"])
    assert rc == 0 and out.exists()
    return out


@pytest.fixture
def count_calls(monkeypatch):
    """Counts the analyser's analyses (GIIPAnalyzer.analyze_steps, which the modifier and analyze
    both run) and the number of environments analysed."""
    from giip_plugin.analysis import GIIPAnalyzer

    calls = {"n": 0, "envs": 0}
    orig = GIIPAnalyzer.analyze_steps

    def counted(self, *args, **kwargs):
        res = yield from orig(self, *args, **kwargs)
        calls["n"] += 1
        calls["envs"] += int(res.analysed.sum())
        return res

    monkeypatch.setattr(GIIPAnalyzer, "analyze_steps", counted)
    return calls


def crop(pipeline, expression):
    pipeline.modifiers.append(ExpressionSelectionModifier(expression=f"({expression}) == 0"))
    pipeline.modifiers.append(DeleteSelectedModifier())
    return pipeline


def pipeline_with(reference, expression=CUBE, files=DUMP, **params):
    p = crop(import_file(files if not isinstance(files, list) else [str(f) for f in files]), expression)
    mod = GIIPModifier(reference_file=str(reference), device="cpu", **params)
    p.modifiers.append(mod)
    return p, mod


@pytest.fixture(scope="module")
def cube(reference):
    """The 8 A cube with the GIIP modifier, computed once (colour by class)."""
    clear_caches()
    p, mod = pipeline_with(reference)
    return p, mod, p.compute()


# ------------------------------------------------------------------------------- outputs
def test_properties_shapes_types_and_attributes(cube):
    _, _, data = cube
    n = data.particles.count
    assert 20 < n < 60
    cls = data.particles["GIIP Class"]
    assert cls.shape == (n,) and np.issubdtype(cls.dtype, np.integer)
    types = {t.id: t for t in cls.types}
    assert sorted(types) == [-1] + list(range(N_CLASSES))
    assert [types[c].name for c in range(N_CLASSES)] == [f"Class {c}" for c in range(N_CLASSES)]
    cols = [tuple(np.round(types[c].color, 4)) for c in range(-1, N_CLASSES)]
    assert len(set(cols)) == N_CLASSES + 1  # distinct colours, grey for "Not analysed"
    assert np.allclose(types[-1].color, (0.7, 0.7, 0.7))

    dc = data.particles["Diffusion Coordinates"]
    assert dc.shape == (n, N_COORDS) and dc.dtype == np.float64
    assert dc.component_names == tuple(f"DC{i}" for i in range(1, N_COORDS + 1))
    dist = data.particles["GIIP Reference Distance"]
    assert dist.shape == (n,) and dist.dtype == np.float64

    ptype = np.asarray(data.particles.particle_types)
    c = np.asarray(cls)
    ni = ptype == 1
    assert (c[~ni] == -1).all() and (c[ni] >= 0).all()  # Ni centres analysed, Nb not
    assert np.isnan(np.asarray(dc)[~ni]).all() and np.isfinite(np.asarray(dc)[ni]).all()
    assert (np.asarray(dist)[ni] >= 0).all() and np.isnan(np.asarray(dist)[~ni]).all()

    color = np.asarray(data.particles["Color"])
    assert color.shape == (n, 3)
    expected = np.array([class_color(k) for k in c])
    assert np.allclose(color, expected, atol=1e-6)

    a = data.attributes
    assert a["GIIP.n_analysed"] == ni.sum() and a["GIIP.n_not_analysed"] == (~ni).sum()
    assert a["GIIP.n_classes"] == N_CLASSES and a["GIIP.n_coords"] == N_COORDS and a["GIIP.n_empty"] == 0
    assert [a[f"GIIP.count.Class{k}"] for k in range(N_CLASSES)] == np.bincount(c[ni], minlength=N_CLASSES).tolist()
    table = data.tables["giip-classes"]
    assert np.asarray(table["Atom Count"]).tolist() == [a[f"GIIP.count.Class{k}"] for k in range(N_CLASSES)]


def test_results_equal_the_analyser(cube, reference):
    from giip_plugin.analysis import GIIPAnalyzer
    from ovito.io.ase import ovito_to_ase

    _, _, data = cube
    atoms = ovito_to_ase(crop(import_file(str(DUMP)), CUBE).compute())  # numeric types 1, 2: H, He
    res = GIIPAnalyzer(str(reference), device="cpu").analyze(atoms)
    assert np.array_equal(np.asarray(data.particles["GIIP Class"]), res.classes)
    np.testing.assert_allclose(np.asarray(data.particles["Diffusion Coordinates"]), res.coordinates,
                               rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.asarray(data.particles["GIIP Reference Distance"]), res.ref_distance,
                               rtol=1e-9, atol=1e-12, equal_nan=True)


def test_exact_option_uses_the_exhaustive_analyser(reference):
    from giip_plugin.analysis import GIIPAnalyzer
    from ovito.io.ase import ovito_to_ase

    p, mod = pipeline_with(reference, exact=True)
    data = p.compute()
    atoms = ovito_to_ase(crop(import_file(str(DUMP)), CUBE).compute())
    res = GIIPAnalyzer(str(reference), device="cpu", exact=True).analyze(atoms)
    assert np.array_equal(np.asarray(data.particles["GIIP Class"]), res.classes)
    np.testing.assert_allclose(np.asarray(data.particles["Diffusion Coordinates"]), res.coordinates,
                               rtol=1e-9, atol=1e-12, equal_nan=True)


def test_n_classes_colours_by_the_recut_tree(reference):
    """``n_classes=K``: the classes (and their colours, types and counts) of the tree cut at K,
    as ``GIIPAnalyzer(n_classes=K)`` gives them; 0 is the map's own classes."""
    from giip_plugin.analysis import GIIPAnalyzer
    from ovito.io.ase import ovito_to_ase

    k = N_CLASSES + 2
    p, mod = pipeline_with(reference, n_classes=k)
    data = p.compute()
    atoms = ovito_to_ase(crop(import_file(str(DUMP)), CUBE).compute())
    res = GIIPAnalyzer(str(reference), device="cpu", n_classes=k).analyze(atoms)
    cls = data.particles["GIIP Class"]
    assert np.array_equal(np.asarray(cls), res.classes)
    assert sorted(t.id for t in cls.types) == [-1] + list(range(k))
    assert data.attributes["GIIP.n_classes"] == k
    assert np.allclose(np.asarray(data.particles["Color"]), [class_color(c) for c in res.classes], atol=1e-6)
    mod.n_classes = 0
    assert p.compute().attributes["GIIP.n_classes"] == N_CLASSES


def test_colour_by_coordinate_and_none_reuse_the_analysis(cube, count_calls):
    p, mod, data = cube
    classes = np.asarray(data.particles["GIIP Class"]).copy()
    dc = np.asarray(data.particles["Diffusion Coordinates"]).copy()
    try:
        mod.color_by, mod.coordinate = "coordinate", 2
        d2 = p.compute()
        assert np.allclose(np.asarray(d2.particles["Color"]), coordinate_colors(dc[:, 1]), atol=1e-6)
        grey = classes < 0
        assert np.allclose(np.asarray(d2.particles["Color"])[grey], (0.7, 0.7, 0.7))
        assert d2.attributes["GIIP.color_min"] == pytest.approx(np.nanmin(dc[:, 1]))
        mod.color_by = "none"
        d3 = p.compute()
        assert "Color" not in d3.particles
        assert np.array_equal(np.asarray(d3.particles["GIIP Class"]), classes)
        mod.color_by, mod.coordinate = "coordinate", N_COORDS + 1
        with pytest.raises(RuntimeError, match=f"diffusion coordinate {N_COORDS + 1}.*keeps {N_COORDS}"):
            p.compute()
    finally:
        mod.color_by, mod.coordinate = "class", 1
    assert count_calls["n"] == 0  # colour changes re-use the analysis


def test_colour_maps():
    assert len({tuple(c) for c in class_colors(40)}) == 40
    assert class_color(-1) == (0.7, 0.7, 0.7)
    c = coordinate_colors([0.0, 1.0, np.nan, 0.5])
    assert np.allclose(c[0], (0.267, 0.0049, 0.3294)) and np.allclose(c[1], (0.9932, 0.9062, 0.1439))
    assert np.allclose(c[2], (0.7, 0.7, 0.7))


# ------------------------------------------------------------------------------- rendering
def _vulkan_available():
    import ctypes.util

    return ctypes.util.find_library("vulkan") is not None


@pytest.mark.skipif(not _vulkan_available(),
                    reason="headless rendering needs a Vulkan loader and driver: apt-get install libvulkan1 mesa-vulkan-drivers")
def test_example_renders_class_colours(cube, reference, tmp_path):
    """The example script renders the cube; every particle pixel has a class colour (or the grey
    of atoms not analysed), and the most frequent classes are visible."""
    import matplotlib.image as mpimg

    spec = importlib.util.spec_from_file_location("render_classes", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    _, _, data = cube
    out = tmp_path / "classes.png"
    assert example.main([str(DUMP), str(reference), "-o", str(out), "--keep", CUBE, "--flat", "--device", "cpu",
                         "--size", "400x300", "--exact", "--no-legend"]) == str(out)
    img = mpimg.imread(out)
    assert img.shape[:2] == (300, 400)
    px = np.round(img[..., :3].reshape(-1, 3) * 255).astype(int)
    fg = px[(px < 250).any(axis=1)]  # not the white background
    assert len(fg) > 0.05 * len(px)
    counts = [data.attributes[f"GIIP.count.Class{k}"] for k in range(N_CLASSES)]
    colors = class_colors(N_CLASSES)
    colors[int(np.argmax(counts))] = (0.82, 0.85, 0.9)  # the most populous class in the pale bulk colour
    palette = np.round(np.vstack([colors, [(0.7, 0.7, 0.7)]]) * 255).astype(int)
    nearest = np.abs(fg[:, None, :] - palette[None]).max(axis=2)
    match = nearest.min(axis=1) <= 2
    assert match.mean() > 0.97, f"{(~match).sum()} of {len(fg)} particle pixels have no class colour"
    shown = np.bincount(nearest.argmin(axis=1)[match], minlength=len(palette))
    top = int(np.argmax(counts))
    assert shown[top] > 0.05 * len(fg) and shown[-1] > 0.05 * len(fg)  # main class and grey Nb
    for k in range(N_CLASSES):
        if counts[k] == 0:
            assert shown[k] == 0
    # the default adds a legend of the classes (with their atom counts) in the top right corner
    legend = tmp_path / "legend.png"
    example.main([str(DUMP), str(reference), "-o", str(legend), "--keep", CUBE, "--flat", "--device", "cpu",
                  "--size", "400x300", "--exact"])
    corner = lambda im: (np.round(im[:100, 300:, :3] * 255) < 250).any(axis=2).mean()
    assert corner(mpimg.imread(legend)) > corner(img) + 0.02


# ------------------------------------------------------------------------------- caching
def test_frames_are_cached_and_parameter_changes_recompute(reference, tmp_path, count_calls):
    p, mod = pipeline_with(reference, SMALL, files=[DUMP, DUMP2])
    assert p.num_frames == 2
    d0 = p.compute(0)
    first = count_calls["envs"]
    assert first == d0.attributes["GIIP.n_analysed"] > 0
    d1 = p.compute(1)
    second = count_calls["envs"]
    assert second == first + d1.attributes["GIIP.n_analysed"]
    calls = count_calls["n"]
    for f in (0, 1, 0, 1):  # scrubbing back and forth: no recomputation
        p.compute(f)
    assert count_calls["n"] == calls
    assert np.array_equal(np.asarray(p.compute(0).particles["GIIP Class"]), np.asarray(d0.particles["GIIP Class"]))

    # another reference file (a copy): recomputed
    other = tmp_path / "copy.h5"
    shutil.copy(reference, other)
    mod.reference_file = str(other)
    d0b = p.compute(0)
    assert count_calls["n"] > calls and count_calls["envs"] == second + d0.attributes["GIIP.n_analysed"]
    assert np.array_equal(np.asarray(d0b.particles["GIIP Class"]), np.asarray(d0.particles["GIIP Class"]))


def test_progress_and_data_cache(reference, count_calls):
    """modify() is a generator: a status text, then progress from 0 to 1; a second call with the
    same data_cache does no work."""
    from ovito.data import DataCollection

    p = crop(import_file(str(DUMP)), SMALL2)
    mod = GIIPModifier(reference_file=str(reference), device="cpu")
    cache = DataCollection()
    data = p.compute()
    steps = list(mod.modify(data, frame=0, data_cache=cache))
    texts = [s for s in steps if isinstance(s, str)]
    progress = [s for s in steps if not isinstance(s, str)]
    assert texts and progress[0] == 0.0 and progress[-1] == 1.0
    assert all(0.0 <= v <= 1.0 for v in progress) and progress == sorted(progress)
    assert len(progress) > 2  # several chunks
    n = count_calls["n"]
    assert "GIIP Class" in data.particles

    clear_caches()  # only OVITO's data_cache is left
    data2 = p.compute()
    steps2 = list(mod.modify(data2, frame=0, data_cache=cache))
    assert count_calls["n"] == n and not [s for s in steps2 if not isinstance(s, str)]
    assert np.array_equal(np.asarray(data2.particles["GIIP Class"]), np.asarray(data.particles["GIIP Class"]))

    # the same frame number with other positions is not taken from the cache
    data3 = p.compute()
    data3.particles_.positions_[0] += 0.05
    list(mod.modify(data3, frame=0, data_cache=cache))
    assert count_calls["n"] > n


def test_only_selected(cube, reference, count_calls):
    _, _, full = cube
    sel = f"({CUBE}) && fmod(ParticleIdentifier, 3) == 0"
    p, mod = pipeline_with(reference, only_selected=True)
    p.modifiers.insert(len(p.modifiers) - 1, ExpressionSelectionModifier(expression=sel))
    data = p.compute()
    chosen = np.asarray(data.particles["Selection"]) != 0
    ni = np.asarray(data.particles.particle_types) == 1
    c = np.asarray(data.particles["GIIP Class"])
    assert ((c >= 0) == (chosen & ni)).all() and (chosen & ni).any()
    assert count_calls["envs"] == (chosen & ni).sum()
    # environments still see every neighbour: same results as the whole cube
    assert np.array_equal(c[chosen & ni], np.asarray(full.particles["GIIP Class"])[chosen & ni])


# ------------------------------------------------------------------------------- errors
def test_missing_and_invalid_reference_files(tmp_path):
    p, mod = pipeline_with(tmp_path / "nothere.h5", SMALL)
    with pytest.raises(RuntimeError, match="GIIP reference file not found: .*nothere.h5 .* giip build"):
        p.compute()
    junk = tmp_path / "junk.h5"
    junk.write_text("not a reference map\n")
    mod.reference_file = str(junk)
    with pytest.raises(RuntimeError, match="junk.h5 is not a GIIP reference file"):
        p.compute()
    mod.reference_file = ""
    with pytest.raises(RuntimeError, match="no reference file chosen"):
        p.compute()


def test_species_mismatch_messages(reference):
    from ovito.modifiers import ComputePropertyModifier, PythonScriptModifier

    # a third LAMMPS type, unknown to the reference (which names types 1=Ni, 2=Nb)
    p, _ = pipeline_with(reference, SMALL)
    p.modifiers.insert(0, ComputePropertyModifier(output_property="Particle Type",
                                                  expressions=["fmod(ParticleIdentifier, 3) == 0 ? 3 : ParticleType"]))
    with pytest.raises(RuntimeError, match=r"species \['3'\].*does not know.*\['Ni', 'Nb'\]"):
        p.compute()

    # named types of other elements
    def rename(frame, data):
        types = data.particles_.particle_types_
        types.type_by_id_(1).name = "Cu"
        types.type_by_id_(2).name = "Zr"

    p, _ = pipeline_with(reference, SMALL)
    p.modifiers.insert(0, PythonScriptModifier(function=rename))
    with pytest.raises(RuntimeError, match=r"species \['Cu', 'Zr'\] that the reference does not know"):
        p.compute()

    # no atom of the centre species
    p, _ = pipeline_with(reference, SMALL)
    p.modifiers.insert(0, ComputePropertyModifier(output_property="Particle Type", expressions=["2"]))
    with pytest.raises(RuntimeError, match="no atoms of the reference's centre species"):
        p.compute()


def test_wrong_length_units(reference):
    p, _ = pipeline_with(reference, "1")  # the whole frame, scaled x10 (as if in 0.1 A units)
    p.modifiers.insert(0, AffineTransformationModifier(transformation=[[10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0]]))
    with pytest.raises(RuntimeError, match="no neighbour within the reference's cutoff.*units"):
        p.compute()


# ------------------------------------------------------------------------------- registration
def test_entry_point_registered():
    eps = importlib.metadata.entry_points(group="OVITO.Modifier")
    ours = [ep for ep in eps if ep.value == "ovito_modifier:GIIPModifier"]
    assert ours and ours[0].name == "GIIP structure analysis"
    assert ours[0].load() is GIIPModifier
    from ovito.pipeline import ModifierInterface

    assert issubclass(GIIPModifier, ModifierInterface)


def test_script_file_loads_on_its_own():
    """docs/ovito.md: OVITO Pro can load ovito_modifier/giip_modifier.py as a script file."""
    import runpy

    ns = runpy.run_path(str(Path(__file__).parents[1] / "ovito_modifier" / "giip_modifier.py"))
    cls = ns["GIIPModifier"]
    m = cls()
    assert m.color_by == "class" and m.device == "auto" and m.coordinate == 1 and m.reference_file == ""
    for name in ("reference_file", "color_by", "coordinate", "device", "only_selected", "not_analysed_color"):
        assert cls.class_traits()[name].label


def test_a_soap_reference_colours_through_the_same_modifier(tmp_path):
    """A map built with --metric soap: the modifier uses its metric with nothing else to set."""
    from giip_plugin.analysis import GIIPAnalyzer
    from giip_plugin.cli import main
    from ovito.io.ase import ovito_to_ase

    pytest.importorskip("featomic")
    out = tmp_path / "soap.h5"
    rc = main(["build", str(DUMP), "-o", str(out), "--r-inner", "3", "--r-outer", "4", "--sigma", "1",
               "--species", "sign", "--centers", "Ni", "--type-names", "1=Ni,2=Nb", "--n-train", "60",
               "--classes", str(N_CLASSES), "--n-coords", "2", "--metric", "soap", "--no-progress"])
    assert rc == 0
    clear_caches()
    p, _ = pipeline_with(out)
    data = p.compute()
    cls = np.asarray(data.particles["GIIP Class"])
    ni = np.asarray(data.particles.particle_types) == 1
    assert (cls[ni] >= 0).all() and (cls[~ni] == -1).all()
    assert data.particles["Diffusion Coordinates"].shape == (data.particles.count, 2)
    atoms = ovito_to_ase(crop(import_file(str(DUMP)), CUBE).compute())
    res = GIIPAnalyzer(str(out)).analyze(atoms)
    assert np.array_equal(cls, res.classes)
    np.testing.assert_allclose(np.asarray(data.particles["GIIP Reference Distance"]), res.ref_distance,
                               atol=1e-12, equal_nan=True)


def test_a_softness_model_colours_through_the_same_modifier(tmp_path):
    """A softness model file in the modifier: Softness per particle, NaN for species without a hyperplane."""
    pytest.importorskip("sklearn")
    from giip_plugin.softness import SoftnessModel, StructureFunctions
    from ovito.io.ase import ovito_to_ase

    sf = StructureFunctions(("Ni", "Nb"), mu=(2.4, 2.6, 2.8, 3.0), width=0.2, angular=((2.0, 1, 1),),
                            angular_cutoff=3.2)
    F = sf.n_features
    model = SoftnessModel(sf, ("Ni",), np.zeros((1, F)), np.ones((1, F)), np.linspace(-1, 1, F)[None], np.array([0.0]),
                          np.array([1.0]), np.array([0.9]), np.array([[10, 10]]), {"method": "p_hop"},
                          {"type_names": {"1": "Ni", "2": "Nb"}})
    path = tmp_path / "soft.h5"
    model.save(path)
    clear_caches()
    p, _ = pipeline_with(path)
    data = p.compute()
    S = np.asarray(data.particles["Softness"])
    ni = np.asarray(data.particles.particle_types) == 1
    assert np.all(np.isfinite(S[ni])) and np.all(np.isnan(S[~ni]))
    assert "Color" in data.particles and data.attributes["GIIP.n_analysed"] == ni.sum()
    atoms = ovito_to_ase(crop(import_file(str(DUMP)), CUBE).compute())
    names = np.where(np.asarray(atoms.numbers) == 1, "Ni", "Nb")
    np.testing.assert_allclose(S, model.softness(atoms, species=names), atol=1e-12, equal_nan=True)
