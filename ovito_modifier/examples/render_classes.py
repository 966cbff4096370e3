#!/usr/bin/env python
"""Render a structure coloured by GIIP class (or by one diffusion coordinate) with OVITO.

    python render_classes.py DUMP REF.h5 -o classes.png
    python render_classes.py DUMP REF.h5 -o dc1.png --color-by coordinate --coordinate 1

Loads DUMP (anything OVITO reads) with ``ovito.io.import_file``, appends ``GIIPModifier`` with the
reference map REF.h5 (made by ``giip build``), prints the class counts and renders a PNG with the
Tachyon renderer. Runs headless with the ``ovito`` pip module; on Debian/Ubuntu rendering needs a
Vulkan loader and driver: ``apt-get install -y libvulkan1 mesa-vulkan-drivers``.

Analysing a whole frame takes a while on a CPU (each centre atom needs one exact distance per
reference environment); ``--keep "Position.X < 20 && Position.Y < 20 && Position.Z < 20"`` renders
just the particles that match an OVITO expression, for a quick look.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _import_modifier():
    try:
        from ovito_modifier import GIIPModifier
    except ImportError:  # run from a source checkout without the package installed
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        sys.modules.pop("ovito_modifier", None)
        from ovito_modifier import GIIPModifier
    return GIIPModifier


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 800x600, not {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError("size must be positive")
    return w, h


def _vector(text):
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers x,y,z, not {text!r}") from None
    if len(v) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers x,y,z, not {text!r}")
    return v


def _color_or_none(text):
    return None if text.strip().lower() == "none" else _vector(text)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("dump", help="structure or trajectory file (LAMMPS dump, extxyz, ...)")
    p.add_argument("reference", metavar="REF.h5", help="GIIP reference map made by 'giip build'")
    p.add_argument("-o", "--output", default="giip_classes.png", help="PNG to write (default giip_classes.png)")
    p.add_argument("--frame", type=int, default=0, help="trajectory frame to render (default 0)")
    p.add_argument("--color-by", choices=("class", "coordinate", "none"), default="class",
                   help="colour by GIIP class (default), by a diffusion coordinate, or not at all")
    p.add_argument("--coordinate", type=int, default=1, metavar="K", help="with --color-by coordinate: DCK (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="compute device (default auto)")
    p.add_argument("--exact", action="store_true",
                   help="the modifier's exhaustive exact search (default: coarse searches refined exactly for the "
                        "nearest references)")
    p.add_argument("--keep", metavar="EXPRESSION",
                   help="keep only the particles matching this OVITO expression (the cell is then not drawn)")
    p.add_argument("--size", type=_size, default=(800, 600), metavar="WxH", help="image size (default 800x600)")
    p.add_argument("--camera-dir", type=_vector, default=(1.0, 1.0, -0.6), metavar="X,Y,Z",
                   help="viewing direction (default 1,1,-0.6)")
    p.add_argument("--flat", action="store_true",
                   help="flat discs without shading: every pixel of a particle has exactly its colour")
    p.add_argument("--no-cell", action="store_true", help="do not draw the simulation cell")
    p.add_argument("--radius", type=float, default=None, metavar="R",
                   help="particle radius (default: 0.3 x the median nearest-neighbour distance, so that "
                        "neighbours do not overlap and vacancies show as holes)")
    p.add_argument("--no-legend", action="store_true", help="no colour legend of the classes")
    p.add_argument("--bulk-color", type=_color_or_none, default=(0.82, 0.85, 0.9), metavar="R,G,B",
                   help="colour of the most populous class with --color-by class, so that the rarer "
                        "environments (defects) stand out (default a pale grey-blue; 'none': its own colour)")
    return p


def nearest_neighbour_distance(data) -> float:
    """Median distance from a particle to its nearest neighbour (minimum image, OVITO's finder)."""
    import numpy as np
    from ovito.data import NearestNeighborFinder

    finder = NearestNeighborFinder(1, data)
    n = data.particles.count
    sample = np.linspace(0, n - 1, min(n, 2000)).astype(int)
    d = [next(iter(finder.find(int(i)))).distance for i in sample]
    return float(np.median(d))


def label_classes(bulk_color=None):
    """A pipeline function: the legend names each class with its atom count, and the most populous
    class gets ``bulk_color`` (its particles and its legend entry)."""
    import numpy as np

    def modify(frame, data):
        cls = data.particles_["GIIP Class_"]
        values = np.asarray(cls[...])
        counts = {t.id: int(np.sum(values == t.id)) for t in cls.types}
        bulk = max((i for i in counts if i >= 0), key=lambda i: counts[i], default=None)
        for t in list(cls.types):
            mt = cls.make_mutable(t)
            mt.name = f"{t.name} ({counts[t.id]} atoms)"
            if bulk_color is not None and t.id == bulk:
                mt.color = tuple(bulk_color)
        if bulk_color is not None and bulk is not None and "Color" in data.particles:
            col = data.particles_["Color_"]
            col[values == bulk] = bulk_color

    return modify


def render(pipeline, output, *, size=(800, 600), camera_dir=(1.0, 1.0, -0.6), frame=0, flat=False,
           show_cell=True, legend=True):
    """Render ``pipeline`` at ``frame`` to ``output`` (PNG) with the Tachyon renderer; ``legend``
    draws the classes' colours (the ``GIIP Class`` types) in a corner."""
    from ovito.vis import ColorLegendOverlay, ParticlesVis, TachyonRenderer, Viewport

    data = pipeline.compute(frame)
    if data.particles is not None and data.particles.vis is not None and flat:
        data.particles.vis.shape = ParticlesVis.Shape.Circle
    if data.cell is not None and data.cell.vis is not None:
        data.cell.vis.enabled = bool(show_cell)
    pipeline.add_to_scene()
    try:
        vp = Viewport(type=Viewport.Type.Perspective, camera_dir=camera_dir)
        if legend and "GIIP Class" in data.particles:
            from ovito.qt_compat import QtCore

            vp.overlays.append(ColorLegendOverlay(
                property="particles/GIIP Class", title="GIIP class", orientation=QtCore.Qt.Orientation.Vertical,
                alignment=QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignTop,
                font_size=0.05, legend_size=0.45, background_enabled=True, background_color=(1.0, 1.0, 1.0)))
        vp.zoom_all(size=(int(size[0] * 0.7), size[1]) if legend else size)  # room for the legend
        renderer = TachyonRenderer(ambient_occlusion=not flat, shadows=not flat, antialiasing=not flat)
        vp.render_image(size=size, filename=os.fspath(output), background=(1.0, 1.0, 1.0),
                        frame=frame, renderer=renderer)
    finally:
        pipeline.remove_from_scene()
    return output


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not os.path.exists(args.dump):
        sys.exit(f"render_classes: input not found: {args.dump}")
    from ovito.io import import_file
    from ovito.modifiers import DeleteSelectedModifier, ExpressionSelectionModifier

    GIIPModifier = _import_modifier()
    pipeline = import_file(args.dump, multiple_frames=True)
    if args.keep:
        pipeline.modifiers.append(ExpressionSelectionModifier(expression=f"({args.keep}) == 0"))
        pipeline.modifiers.append(DeleteSelectedModifier())
    pipeline.modifiers.append(GIIPModifier(reference_file=args.reference, color_by=args.color_by,
                                           coordinate=args.coordinate, device=args.device, exact=args.exact))
    from ovito.modifiers import ComputePropertyModifier, PythonScriptModifier

    radius = args.radius if args.radius is not None else 0.3 * nearest_neighbour_distance(pipeline.compute(args.frame))
    pipeline.modifiers.append(ComputePropertyModifier(output_property="Radius", expressions=[repr(float(radius))]))
    if args.color_by == "class":
        pipeline.modifiers.append(PythonScriptModifier(function=label_classes(args.bulk_color)))
    t0 = time.time()
    data = pipeline.compute(args.frame)
    n_classes = int(data.attributes["GIIP.n_classes"])
    counts = ", ".join(f"{c}: {data.attributes[f'GIIP.count.Class{c}']}" for c in range(n_classes))
    print(f"GIIP: {data.attributes['GIIP.n_analysed']} of {data.particles.count} particles analysed in "
          f"{time.time() - t0:.1f} s; class counts {counts}")
    render(pipeline, args.output, size=args.size, camera_dir=args.camera_dir, frame=args.frame,
           flat=args.flat, show_cell=not (args.no_cell or args.keep),
           legend=args.color_by == "class" and not args.no_legend)
    print(f"wrote {args.output}")
    return args.output


if __name__ == "__main__":
    main()
