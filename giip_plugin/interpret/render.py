"""Render a structure with OVITO, atoms coloured by a per-atom value (e.g. the projection of their
diffusion coordinates on a direction), headless with the Tachyon renderer.

Needs the ``ovito`` module; on Debian/Ubuntu, rendering needs a Vulkan loader and driver
(``apt-get install -y libvulkan1 mesa-vulkan-drivers``, done by ``scripts/setup.sh``).
"""
from __future__ import annotations

import os

import numpy as np

from ..io.frames import import_ovito

__all__ = ["render_values", "render_motifs"]


def render_values(atoms, values, path, *, size=(900, 900), cmap: str = "Blue-White-Red", limits=None,
                  radius: float | None = None, camera_dir=None, missing_colour=(0.75, 0.75, 0.75),
                  symmetric: bool = True, palette: bool = True, flat: bool = True, categorical: bool = False):
    """Render ``atoms`` (``ase.Atoms``) coloured by ``values`` (one per atom; NaN = grey) to
    ``path`` (PNG). ``limits`` = (lo, hi) of the colour map (default: the 2nd and 98th percentiles,
    made symmetric about 0 when ``symmetric``). A 2D structure (all z equal) is viewed from the top
    with an orthographic camera. ``palette``: store the PNG with a 256-colour palette (smaller
    file); ``flat``: flat discs rather than shaded spheres. ``categorical``: ``values`` are class
    labels 0, 1, ... (negative or NaN = grey), each class its own colour, those of the class
    figures (:func:`.figures.class_colours`), and ``cmap`` / ``limits`` unused.
    Returns ``(path, (lo, hi))``."""
    import_ovito()
    from ovito.io.ase import ase_to_ovito
    from ovito.modifiers import ColorCodingModifier
    from ovito.pipeline import Pipeline, StaticSource
    from ovito.vis import TachyonRenderer, Viewport

    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) != len(atoms):
        raise ValueError(f"{len(values)} values for {len(atoms)} atoms")
    ok = np.isfinite(values) & ((values >= 0) if categorical else True)
    if not ok.any():
        raise ValueError("no finite value to colour by")
    if categorical:
        if np.any(values[ok] != np.round(values[ok])):
            raise ValueError("categorical colouring needs integer class labels")
        lo, hi = 0.0, float(values[ok].max())
    elif limits is None:
        lo, hi = np.percentile(values[ok], [2, 98])
        if symmetric:
            m = max(abs(lo), abs(hi))
            lo, hi = -m, m
    else:
        lo, hi = limits
    a = atoms.copy()
    a.calc = None
    for key in list(a.arrays):
        if key not in ("numbers", "positions"):
            del a.arrays[key]
    planar = np.ptp(a.positions[:, 2]) < 1e-9
    data = ase_to_ovito(a)
    data.particles_.create_property("Value", data=np.where(ok, values, 0.0))
    if radius is not None:
        data.particles_.create_property("Radius", data=np.full(len(a), float(radius)))
    if categorical:
        from .figures import class_colours

        tab = np.asarray(class_colours(int(hi) + 1))[:, :3]
        rgb = np.where(ok[:, None], tab[np.where(ok, values, 0).astype(np.int64)], missing_colour)
        data.particles_.create_property("Color", data=rgb)
    pipe = Pipeline(source=StaticSource(data=data))
    if not categorical:
        pipe.modifiers.append(ColorCodingModifier(property="Value", start_value=float(lo), end_value=float(hi),
                                                  gradient=_gradient(cmap)))

    def grey_missing(frame, data):  # atoms without a value
        col = np.asarray(data.particles_.colors_)
        col[~ok] = missing_colour
    if not categorical:
        pipe.modifiers.append(grey_missing)
    out = pipe.compute()
    if out.cell is not None and out.cell.vis is not None:
        out.cell.vis.enabled = False
    if flat and out.particles is not None and out.particles.vis is not None:
        from ovito.vis import ParticlesVis

        out.particles.vis.shape = ParticlesVis.Shape.Circle  # flat discs: exact colours, small files
    pipe.add_to_scene()
    try:
        if planar and camera_dir is None:
            vp = Viewport(type=Viewport.Type.Top)
        else:
            vp = Viewport(type=Viewport.Type.Ortho, camera_dir=camera_dir or (1, 1, -0.6))
        vp.zoom_all(size=size)
        renderer = TachyonRenderer(ambient_occlusion=False, shadows=False, antialiasing=True)
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        vp.render_image(size=size, filename=path, background=(1.0, 1.0, 1.0), renderer=renderer)
    finally:
        pipe.remove_from_scene()
    if palette:
        _to_palette(path)
    return path, (float(lo), float(hi))


def _to_palette(path, colours: int = 256):
    """Rewrite a PNG with an adaptive 256-colour palette (a few times smaller; renderings of
    coloured spheres lose nothing visible)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return
    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    q.save(path, optimize=True)


def _gradient(name):
    from ovito.modifiers import ColorCodingModifier

    grads = {
        "Blue-White-Red": ColorCodingModifier.BlueWhiteRed,
        "Viridis": ColorCodingModifier.Viridis,
        "Rainbow": ColorCodingModifier.Rainbow,
        "Jet": ColorCodingModifier.Jet,
        "Magma": ColorCodingModifier.Magma,
    }
    if name not in grads:
        raise ValueError(f"unknown colour map {name!r}; choose one of {sorted(grads)}")
    return grads[name]()


def render_motifs(model, motifs, path, *, spacing: float | None = None, size_per_motif: int = 300):
    """Render motifs of a generative model side by side along x (``path``: PNG), atoms coloured by
    species index (the centre darkest): e.g. motifs generated along a diffusion coordinate."""
    from ase import Atoms

    r = float(model.environments.r_outer)
    step = spacing or 2.4 * r
    pos, val = [], []
    for k in range(len(motifs)):
        m = motifs.present[k]
        p = np.zeros((1 + int(m.sum()), 3))
        p[1:, : motifs.dim] = motifs.positions[k][m]
        p[:, 0] += k * step
        pos.append(p)
        val.append(np.concatenate([[-1.0], motifs.species[k][m].astype(float)]))
    row = Atoms(symbols=["X"] * sum(len(p) for p in pos), positions=np.vstack(pos))
    hi = max(1.0, float(len(motifs.species_names) - 1))
    return render_values(row, np.concatenate(val), path, size=(min(size_per_motif * len(motifs), 2400), 400),
                         cmap="Viridis", limits=(-1.0, hi), radius=0.18 * r, camera_dir=(0, 1, -0.35),
                         symmetric=False)
