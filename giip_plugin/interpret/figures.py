"""PNG figures (matplotlib, no display needed) of a reference map and of analysed frames.

Reference (``giip report``, :func:`write_report`):

* ``eigenvalues_r2.png`` -- eigenvalue against the local-linear-regression r^2 of each diffusion
  coordinate (the paper's Fig. 1b / 2b): parsimonious coordinates (kept) have a large r^2 (new
  information) and a large eigenvalue; harmonics of earlier coordinates sit near r^2 = 0;
* ``training_plane.png`` -- the training environments in the plane of two coordinates, coloured by
  class, the class medoids marked;
* ``cluster_error.png`` -- largest class diameter against the number of complete-linkage classes,
  the chosen number marked;
* ``exemplars.png`` -- the medoid environment of each class, drawn in 3D (in the plane for a 2D
  map): the centre atom, the neighbours sized by |weight| and coloured by species.

Analysed frames (``giip interpret`` / ``giip compare``): scatter of a coordinate against a
quantity, the best direction in a plane (the paper's Fig. 1d), the difference of two smoothed
densities (Fig. 3c) and class populations side by side.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = [
    "coordinate_labels", "fig_eigenvalues_r2", "fig_training_plane", "fig_cluster_error", "fig_exemplars",
    "write_report", "fig_quantity_scatter", "fig_direction", "fig_density_difference", "fig_populations",
    "REPORT_FILES", "fig_conformal",
]

REPORT_FILES = ("eigenvalues_r2.png", "training_plane.png", "cluster_error.png", "exemplars.png")
_DPI = 110


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg", force=True)
        except Exception:  # pragma: no cover - a backend already in use
            pass
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi=_DPI):
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def coordinate_labels(reference) -> list:
    """``dcJ (psiI)``: the J-th selected coordinate is the I-th non-trivial eigenvector."""
    return [f"dc{j + 1} (\u03c8{int(i) + 1})" for j, i in enumerate(reference.selected)]


def class_colours(n):
    """The colour of each of ``n`` classes (matplotlib's tab10, tab20 beyond 10 classes, repeating
    after 20), in every class figure and in :func:`.render.render_values` (``categorical``)."""
    plt = _plt()
    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    return [cmap(k % cmap.N) for k in range(n)]


# --------------------------------------------------------------------------- reference figures


def fig_eigenvalues_r2(reference, path, n_leading: int | None = None, r2_cap: float = 1.5, criterion: str = "llr"):
    """Eigenvalue against r^2 of the leading coordinates: ``criterion="llr"`` (default), the
    local-linear-regression r^2 of the map's selection (high = new direction; above ``r2_cap``
    drawn at the cap); ``"paper"``, the paper's convention, the coefficient of determination of a
    polynomial regression on the preceding coordinates (near 1 = redundant) and the coordinates
    that criterion keeps (:meth:`ReferenceMap.paper_criterion`)."""
    if criterion not in ("llr", "paper"):
        raise ValueError(f"criterion must be 'llr' or 'paper', got {criterion!r}")
    plt = _plt()
    lam = np.asarray(reference.eigenvalues, float)
    if criterion == "paper":
        r2, selected = reference.paper_criterion()
        r2_cap = 1.0
    else:
        r2, selected = np.asarray(reference.r2, float), reference.selected
    n = len(lam) if n_leading is None else min(int(n_leading), len(lam))
    sel = set(int(i) for i in selected)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    kept = np.array([i in sel for i in range(n)], dtype=bool)
    # r^2 > 1 means the local fit is worse than none (noise in tiny eigenvectors): clip for display
    cap = r2_cap
    x = np.minimum(r2[:n], cap)
    if criterion == "paper":  # an adjusted r^2 below 0 (fewer points than the terms justify) is drawn at 0
        x = np.maximum(x, 0.0)
    over = r2[:n] > cap
    for mask, style in (((~kept) & ~over, dict(facecolors="white", edgecolors="0.4", label="not kept")),
                        (kept & ~over, dict(c="tab:red", label="kept (parsimonious)")),
                        ((~kept) & over, dict(facecolors="white", edgecolors="0.4", marker=">",
                                              label=f"not kept, $r^2$ > {cap:g} (clipped)")),
                        (kept & over, dict(c="tab:red", marker=">", label=f"kept, $r^2$ > {cap:g} (clipped)"))):
        if mask.any():
            ax.scatter(x[mask], lam[:n][mask], s=40, zorder=3, **style)
    for i in range(n):
        ax.annotate(str(i + 1), (x[i], lam[i]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlim(-0.05, cap + 0.1)
    ax.set_xlabel("local linear regression $r^2$ (high = new direction)" if criterion == "llr" else
                  "polynomial regression $r^2$ on the preceding coordinates (near 1 = redundant)")
    ax.set_ylabel("eigenvalue $\\lambda$")
    ax.set_title(f"Diffusion coordinates 1-{n} (\u03b5 = {reference.epsilon:g}, {reference.n_train} training LAEs)",
                 fontsize=10)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def fig_training_plane(reference, path, coords=(1, 2)):
    """Training environments in the plane of selected coordinates ``coords`` (1-based dc numbers)."""
    plt = _plt()
    i, j = _check_pair(coords, reference.n_coords)
    X = reference.coordinates
    labels = coordinate_labels(reference)
    lab = np.asarray(reference.labels)
    K = reference.n_classes
    cols = class_colours(K)
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    for k in range(K):
        m = lab == k
        ax.scatter(X[m, i], X[m, j], s=10, color=cols[k], label=f"{k} ({int(m.sum())})", rasterized=True,
                   alpha=0.85, linewidths=0)
    med = np.asarray(reference.classes.medoids)
    ax.scatter(X[med, i], X[med, j], s=70, facecolors="none", edgecolors="k", linewidths=1.0, label="medoids")
    ax.set_xlabel(labels[i])
    ax.set_ylabel(labels[j])
    ax.set_title(f"Training set ({reference.n_train} LAEs) coloured by class", fontsize=10)
    ncol = 1 if K <= 16 else 2
    ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=ncol,
              title="class (size)", title_fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def fig_cluster_error(reference, path, max_classes: int = 50):
    """Largest class diameter against the number of classes."""
    plt = _plt()
    ks, err = reference.error_curve
    m = min(len(ks), int(max_classes))
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ax.plot(ks[:m], err[:m], "o-", ms=3, color="tab:blue")
    K = reference.n_classes
    if K <= m:
        ax.plot([K], [err[K - 1]], "o", ms=9, mfc="none", mec="tab:red", mew=1.5,
                label=f"chosen: {K} classes, diameter {err[K - 1]:.2f}")
    sel = reference.class_selection or {}
    if sel.get("method") == "max_diameter":
        ax.axhline(float(sel["value"]), color="tab:red", ls="--", lw=0.8, label=f"max diameter {sel['value']:g}")
    ax.set_xlabel("number of classes")
    ax.set_ylabel("cluster error: largest class diameter (atoms)")
    ax.set_title("Complete-linkage cluster error", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _species_colours(reference, w):
    """Colour and legend label for each neighbour of an environment from its weight channels."""
    enc = reference.encoding
    palette = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    w = np.asarray(w, float).reshape(len(w), -1)
    if enc is None or enc.mode == "none":
        return ["tab:blue"] * len(w), None
    if enc.mode == "sign":
        other = [s for s in enc.species if s != enc.positive]
        names = [enc.positive, other[0] if other else "-"]
        idx = np.where(w[:, 0] >= 0, 0, 1)
    else:
        names = list(enc.species)
        idx = np.argmax(np.abs(w), axis=1)
    return [palette[k % len(palette)] for k in idx], {names[k]: palette[k % len(palette)] for k in range(len(names))}


def _draw_environment(ax, reference, pos, w):
    """Draw one environment into ``ax`` (a 3D axes for a 3D map): neighbours coloured by species,
    sized by |weight|, with bonds to the centre. Returns ``(legend, coordination)``."""
    pos, w = np.asarray(pos), np.asarray(w)
    cols, legend = _species_colours(reference, w)
    aw = np.abs(w).reshape(len(w), -1).sum(axis=1)
    s = 20 + 160 * np.clip(aw, 0, 1)
    r_out = reference.environments.r_outer if reference.environments is not None else None
    lim = r_out or (np.abs(pos).max() if len(pos) else 1.0)
    if reference.dim == 3:
        for p, a in zip(pos, aw):
            ax.plot([0, p[0]], [0, p[1]], [0, p[2]], color="0.6", lw=0.6, alpha=float(np.clip(a, 0.15, 1)))
        ax.scatter(pos[:, 0], pos[:, 1], pos[:, 2], s=s, c=cols, edgecolors="k", linewidths=0.3, depthshade=True)
        ax.scatter([0], [0], [0], s=90, c="k", marker="o")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
        ax.view_init(elev=20, azim=35)
    else:
        plt = _plt()
        for p, a in zip(pos, aw):
            ax.plot([0, p[0]], [0, p[1]], color="0.6", lw=0.8, alpha=float(np.clip(a, 0.15, 1)))
        ax.scatter(pos[:, 0], pos[:, 1], s=s, c=cols, edgecolors="k", linewidths=0.3, zorder=3)
        ax.scatter([0], [0], s=90, c="k", zorder=4)
        if r_out:
            ax.add_patch(plt.Circle((0, 0), r_out, fill=False, ls=":", color="0.6"))
        ax.set_xlim(-lim * 1.05, lim * 1.05)
        ax.set_ylim(-lim * 1.05, lim * 1.05)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return legend, float(aw.sum())


def _species_legend(fig, legend):
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", ls="", color=c, label=s) for s, c in legend.items()]
        fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False)


def fig_exemplars(reference, path, max_classes: int = 24):
    """One exemplar (the medoid) environment per class."""
    plt = _plt()
    K = min(reference.n_classes, int(max_classes))
    dim = reference.dim
    ncol = min(K, 4 if dim == 3 else 5)
    nrow = int(np.ceil(K / ncol))
    size = 3.0 if dim == 3 else 2.6
    fig = plt.figure(figsize=(size * ncol, size * nrow + 0.4))
    legend = None
    for k in range(K):
        env = reference.training[int(reference.classes.medoids[k])]
        ax = fig.add_subplot(nrow, ncol, k + 1, **({"projection": "3d"} if dim == 3 else {}))
        leg, coord = _draw_environment(ax, reference, env[0], env[1])
        legend = legend or leg
        ax.set_title(f"class {k}: {int(reference.classes.sizes[k])} LAEs\n"
                     f"diam {reference.classes.diameters[k]:.2f}, coord {coord:.2f}", fontsize=8)
    title = "Medoid environment of each class (size = |weight|)"
    if reference.n_classes > K:
        title += f"; first {K} of {reference.n_classes} classes"
    fig.suptitle(title, fontsize=10)
    _species_legend(fig, legend)
    return _save(fig, path, dpi=90)


def hull_points(xy, n_points: int = 8, trim: float = 0.01):
    """``n_points`` points evenly spaced (by perimeter) around the convex hull of the 2D points
    ``xy``, after leaving out the fraction ``trim`` farthest from their median (in units of each
    axis' interquartile range: single outliers do not make the hull), starting at the point of
    largest first coordinate, counter-clockwise. Returns ``(points (n_points, 2), hull polygon
    (m, 2))``."""
    from scipy.spatial import ConvexHull

    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 3:
        raise ValueError(f"hull_points needs at least three 2D points, got shape {xy.shape}")
    med = np.median(xy, axis=0)
    iqr = np.subtract(*np.percentile(xy, [75, 25], axis=0))
    r = np.hypot(*((xy - med) / np.where(iqr > 0, iqr, 1.0)).T)
    core = xy[r <= np.quantile(r, 1.0 - float(trim))] if trim > 0 else xy
    poly = core[ConvexHull(core).vertices]  # counter-clockwise
    poly = np.roll(poly, -int(np.argmax(poly[:, 0])), axis=0)
    closed = np.vstack([poly, poly[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.arange(int(n_points)) * cum[-1] / int(n_points)
    k = np.clip(np.searchsorted(cum, at, side="right") - 1, 0, len(seg) - 1)
    t = (at - cum[k]) / np.where(seg[k] > 0, seg[k], 1.0)
    pts = closed[k] + t[:, None] * (closed[k + 1] - closed[k])
    return pts, poly


def plane_view(xy, points, bulk: float = 0.2, pad: float = 0.05):
    """Limits ``(lo, hi)`` of a view of the plane ``xy`` that holds the hull ``points`` and the bulk
    of the atoms (``bulk`` to ``100 - bulk`` percent of each axis), padded by ``pad`` of its size, and
    the number of atoms outside it: a few far atoms neither squash the plane nor pull the ring of
    environments around it to one side."""
    xy = np.asarray(xy, float)
    pts = np.asarray(points, float).reshape(-1, 2)
    lo, hi = np.percentile(xy, bulk, axis=0), np.percentile(xy, 100.0 - bulk, axis=0)
    if len(pts):
        lo, hi = np.minimum(lo, pts.min(axis=0)), np.maximum(hi, pts.max(axis=0))
    margin = pad * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - margin, hi + margin
    return lo, hi, int(np.sum(np.any((xy < lo) | (xy > hi), axis=1)))


def fig_hull_exemplars(reference, xy, points, exemplars, path, *, labels=("dc2", "dc3"), titles=None,
                       colour=None, title=None):
    """The plane ``xy`` (all atoms, grey or coloured by ``colour`` class labels) with its hull
    points ``points`` (:func:`hull_points`) and, around it, the environment ``exemplars[k]`` =
    ``(pos, w)`` nearest to each point, joined to it by a line; ``titles[k]`` under each."""
    plt = _plt()
    xy = np.asarray(xy, float)
    fig = plt.figure(figsize=(11, 11))
    main = fig.add_axes([0.3, 0.3, 0.4, 0.4])
    if colour is not None:
        colour = np.asarray(colour)
        cols = np.asarray(class_colours(int(colour.max()) + 1))
        main.scatter(xy[:, 0], xy[:, 1], s=2, c=cols[colour], lw=0, rasterized=True)
    else:
        main.scatter(xy[:, 0], xy[:, 1], s=2, c="0.6", lw=0, rasterized=True)
    main.set_xlabel(labels[0])
    main.set_ylabel(labels[1])
    lo, hi, outside = plane_view(xy, points)
    main.set_xlim(lo[0], hi[0])
    main.set_ylim(lo[1], hi[1])
    if outside:
        main.text(0.99, 0.01, f"{outside} atoms outside the view", transform=main.transAxes, ha="right",
                  va="bottom", fontsize=7, color="0.4")
    centre = (lo + hi) / 2
    legend = None
    for k, (p, env) in enumerate(zip(points, exemplars)):
        ang = np.arctan2((p[1] - centre[1]) / (hi[1] - lo[1] or 1), (p[0] - centre[0]) / (hi[0] - lo[0] or 1))
        c, sn = np.cos(ang), np.sin(ang)
        cx, cy = 0.5 + 0.4 * c / max(abs(c), abs(sn)), 0.47 + 0.36 * sn / max(abs(c), abs(sn))  # a square ring
        ax = fig.add_axes([cx - 0.085, cy - 0.085, 0.17, 0.17], **({"projection": "3d"} if reference.dim == 3 else {}))
        ax.patch.set_alpha(0.0)
        leg, coord = _draw_environment(ax, reference, env[0], env[1])
        legend = legend or leg
        ax.set_title((titles[k] if titles else f"{k}") + f"\ncoord {coord:.2f}", fontsize=8)
        main.plot([p[0]], [p[1]], "o", ms=7, mfc="none", mec="k")
        main.annotate(str(k), p, fontsize=8, xytext=(4, 4), textcoords="offset points")
        f = 0.3 + 0.4 * main.transLimits.transform(p)  # the point in figure fractions
        fig.add_artist(plt.Line2D([f[0], cx], [f[1], cy], transform=fig.transFigure, color="0.5", lw=0.6))
    fig.suptitle(title or "Environments around the hull of the plane", fontsize=11)
    _species_legend(fig, legend)
    return _save(fig, path, dpi=90)


def write_report(reference, outdir, *, coords=(1, 2), n_leading: int | None = 20, max_classes: int = 24,
                 criterion: str = "llr") -> list:
    """The four reference figures in ``outdir``; returns their paths (``criterion="paper"``: also
    the eigenvalue figure in the paper's convention, ``eigenvalues_r2_paper.png``)."""
    os.makedirs(outdir, exist_ok=True)
    out = [fig_eigenvalues_r2(reference, os.path.join(outdir, REPORT_FILES[0]), n_leading)]
    if criterion == "paper":
        out.append(fig_eigenvalues_r2(reference, os.path.join(outdir, "eigenvalues_r2_paper.png"), n_leading,
                                      criterion="paper"))
    if reference.n_coords >= 2:
        out.append(fig_training_plane(reference, os.path.join(outdir, REPORT_FILES[1]), coords))
    out.append(fig_cluster_error(reference, os.path.join(outdir, REPORT_FILES[2])))
    out.append(fig_exemplars(reference, os.path.join(outdir, REPORT_FILES[3]), max_classes))
    return out


def _check_pair(coords, n_coords):
    if len(coords) != 2:
        raise ValueError(f"give two coordinates, got {coords}")
    i, j = (int(c) - 1 for c in coords)
    for c in (i, j):
        if not 0 <= c < n_coords:
            raise ValueError(f"coordinate dc{c + 1} does not exist: the map has dc1..dc{n_coords}")
    if i == j:
        raise ValueError("the two coordinates of a plane must differ")
    return i, j


# --------------------------------------------------------------------------- analysed frames


def fig_quantity_scatter(x, q, path, *, xlabel="coordinate", qlabel="quantity", r2=None, title=None):
    """Scatter of a coordinate against a quantity, with the least-squares line."""
    plt = _plt()
    x = np.asarray(x, float)
    q = np.asarray(q, float)
    ok = np.isfinite(x) & np.isfinite(q)
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    ax.scatter(q[ok], x[ok], s=6, alpha=0.5, rasterized=True, linewidths=0)
    if ok.sum() >= 2 and np.ptp(q[ok]) > 0:
        b, a = np.polyfit(q[ok], x[ok], 1)
        qq = np.linspace(q[ok].min(), q[ok].max(), 10)
        ax.plot(qq, a + b * qq, color="tab:red", lw=1.2, label=f"$r^2$ = {r2:.3f}" if r2 is not None else None)
    ax.set_xlabel(qlabel)
    ax.set_ylabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    if r2 is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def fig_direction(xy, q, direction, path, *, labels=("dc1", "dc2"), qlabel="quantity", title=None,
                  robust: bool = True):
    """Points in a plane coloured by a quantity, the best direction and its orthogonal drawn
    through the centroid (the paper's Fig. 1d)."""
    plt = _plt()
    xy = np.asarray(xy, float)
    q = np.asarray(q, float)
    ok = np.all(np.isfinite(xy), axis=1) & np.isfinite(q)
    xy, q = xy[ok], q[ok]
    vmin, vmax = (np.percentile(q, [2, 98]) if robust and len(q) else (None, None))
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    order = np.argsort(q)
    sc = ax.scatter(xy[order, 0], xy[order, 1], c=q[order], s=6, cmap="viridis", vmin=vmin, vmax=vmax,
                    rasterized=True, linewidths=0)
    fig.colorbar(sc, ax=ax, label=qlabel)
    c = xy.mean(axis=0)
    span = 0.35 * np.ptp(xy, axis=0).max()
    u = np.asarray(direction.direction)
    v = np.asarray(direction.orthogonal)
    ends = np.array([c + span * u, c - span * u, c + 0.6 * span * v, c - 0.6 * span * v])
    ax.update_datalim(ends)
    ax.autoscale_view()
    ax.annotate("", xy=ends[0], xytext=ends[1], annotation_clip=False,
                arrowprops=dict(arrowstyle="-|>", color="tab:red", lw=2, mutation_scale=15))
    ax.annotate("", xy=ends[2], xytext=ends[3], annotation_clip=False,
                arrowprops=dict(arrowstyle="-|>", color="k", lw=1.5, ls="--", mutation_scale=12))
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color="tab:red", lw=2, label=f"best direction, $r^2$ = {direction.r2:.3f}"),
                       Line2D([], [], color="k", lw=1.5, ls="--",
                              label=f"orthogonal, $r^2$ = {direction.r2_orthogonal:.3f}")],
              fontsize=8, loc="best", framealpha=0.8)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or f"Best direction for {qlabel}: {direction.angle_deg:.1f}\u00b0", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def fig_density_difference(dd, path, *, labels=("A", "B"), axes=("dc2", "dc3"), title=None, view=(0.5, 99.5)):
    """Density of set A and of set B (contours) and their difference B - A (colour). The axes show
    the region where the densities are not negligible (``view``: percentiles of the cumulative
    density along each axis; None = the whole grid)."""
    plt = _plt()
    diff = dd.difference
    lim = float(np.abs(diff).max()) or 1.0
    fig, axs = plt.subplots(1, 3, figsize=(14, 4.3), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    extent = (dd.x[0], dd.x[-1], dd.y[0], dd.y[-1])
    vmax = float(max(dd.density_a.max(), dd.density_b.max()))
    for ax, dens, lab, n in ((axs[0], dd.density_a, labels[0], dd.n_a), (axs[1], dd.density_b, labels[1], dd.n_b)):
        from matplotlib.colors import PowerNorm

        ax.imshow(dens.T, origin="lower", extent=extent, aspect="auto", cmap="Greys", interpolation="bilinear",
                  norm=PowerNorm(gamma=0.5, vmin=0, vmax=vmax))
        ax.contour(dd.x, dd.y, dens.T, levels=6, colors="k", linewidths=0.5)
        ax.set_title(f"{lab} ({n} atoms)", fontsize=10)
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
    im = axs[2].imshow(diff.T, origin="lower", extent=extent, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                       interpolation="bilinear")
    axs[2].contour(dd.x, dd.y, dd.density_a.T, levels=4, colors="0.4", linewidths=0.4)
    fig.colorbar(im, ax=axs[2], label=f"density difference (red: more in {labels[1]})")
    axs[2].set_title(f"{labels[1]} - {labels[0]}", fontsize=10)
    axs[2].set_xlabel(axes[0])
    axs[2].set_ylabel(axes[1])
    if view is not None:
        tot = dd.density_a + dd.density_b
        lims = []
        for marg, grid in ((tot.sum(axis=1), dd.x), (tot.sum(axis=0), dd.y)):
            c = np.cumsum(marg) / marg.sum()
            lo = grid[min(np.searchsorted(c, view[0] / 100), len(grid) - 1)]
            hi = grid[min(np.searchsorted(c, view[1] / 100), len(grid) - 1)]
            pad = 0.1 * (hi - lo)
            lims.append((lo - pad, hi + pad))
        for ax in axs:
            ax.set_xlim(*lims[0])
            ax.set_ylim(*lims[1])
    fig.suptitle(title or f"Smoothed densities in the plane ({axes[0]}, {axes[1]}), bandwidth "
                 f"{dd.bandwidth[0]:.3g} x {dd.bandwidth[1]:.3g}", fontsize=10)
    return _save(fig, path)


def fig_populations(pops, path, *, title="Class populations"):
    """Class fractions of each set side by side."""
    plt = _plt()
    f = pops.fractions
    S, K = f.shape
    fig, ax = plt.subplots(figsize=(min(10.0, max(5.0, 0.35 * K * S + 2)), 3.8))
    width = 0.8 / S
    for s in range(S):
        ax.bar(np.arange(K) + (s - (S - 1) / 2) * width, 100 * f[s], width, label=f"{pops.labels[s]} "
               f"({int(pops.counts[s].sum())})")
    ax.set_xticks(np.arange(K))
    ax.set_xlabel("class")
    ax.set_ylabel("% of analysed atoms")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


# --------------------------------------------------------------------------- conformal autoencoder


def fig_conformal(scan, remainder_r2: dict, folder) -> list:
    """Two figures of a :class:`~giip_plugin.interpret.conformal.ConformalScan`: the held-out
    reconstruction error against the number of remainder dimensions, and the r^2 of each
    remainder dimension of the chosen model against the other quantities."""
    plt = _plt()
    files = []
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ks = [r.n_rest for r in scan.results]
    ax.plot(ks, scan.errors, "o-")
    ax.axvline(scan.n_unexplained, color="tab:red", lw=1, ls="--", label=f"chosen: {scan.n_unexplained}")
    ax.set_xlabel("remainder dimensions")
    ax.set_ylabel("held-out reconstruction error\n(fraction of the variance)")
    ax.set_yscale("log")
    ax.set_xticks(ks)
    ax.set_title("named: " + ", ".join(scan.results[0].named), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    files.append(_save(fig, os.path.join(os.fspath(folder), "conformal_error.png")))
    if remainder_r2:
        names = sorted({q for row in remainder_r2.values() for q in row})
        fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(names) + 2), 3.6))
        width = 0.8 / len(remainder_r2)
        for j, (dim, row) in enumerate(remainder_r2.items()):
            vals = [row.get(q, np.nan) for q in names]
            ax.bar(np.arange(len(names)) + j * width, vals, width, label=dim)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("$r^2$ with the remainder")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        files.append(_save(fig, os.path.join(os.fspath(folder), "conformal_remainder.png")))
    return files
