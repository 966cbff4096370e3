"""Per-atom physical quantities to interpret diffusion coordinates with (step 6; docs/design.md).

* ``coordination``: the smooth coordination number, the sum of the cutoff weights ``f(r)`` of the
  neighbours (weight 1 below ``r_inner``, cubic spline to 0 at ``r_outer``): the reference's own
  environment settings, so it is the sum of |weights| of the environments the map sees.
* ``frac_<species>``: fraction of each species among the neighbours, weighted by the same cutoff
  weights (``sum of f over neighbours of that species / coordination``). With a sharp cutoff
  (``r_inner = r_outer``) these would be plain counts; the smooth weights keep them continuous.
* ``bond_angle``: the mean angle in degrees at the atom between two of its neighbours, each pair
  weighted by the product of their cutoff weights (NaN with fewer than two neighbours). For an
  atom with two neighbours it is their angle (in silica, the Si-O-Si angle at a bridging oxygen);
  109.47 for a regular tetrahedron.
* ``voronoi_volume`` (3D) / ``voronoi_area`` (2D): the atom's Voronoi cell, from OVITO's
  ``VoronoiAnalysisModifier``; in 3D also ``voronoi_n5``, the number of pentagonal faces of the
  cell (five-fold, i.e. tetrahedral, local order), and ``voronoi_icosahedral``, 1 for a full
  icosahedron (Voronoi index <0,0,12,0>) and 0 otherwise. OVITO refuses 2D cells, so a 2D frame is analysed as a one-layer
  periodic slab of thickness 1 (every in-plane Voronoi face is then perpendicular to the plane and
  the volume of the prism equals the area of the 2D cell). Atoms at free surfaces get large cells
  that reach into the vacuum.
* ``volumetric_strain`` and ``shear_strain`` (von Mises), when a reference configuration of the same
  atoms is given (e.g. the perfect lattice they started from): OVITO's ``AtomicStrainModifier``
  (in 2D its 2D mode), neighbours within a cutoff in the reference.
* every numeric per-atom column of the input (``c_pe``, ``v_...``, ``vx`` ...), under its own name;
  the columns written by ``giip apply`` (``giip_*``) are not quantities.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..environments import LocalEnvironments, SpeciesEncoding
from ..io.frames import import_ovito

__all__ = ["neighbour_quantities", "voronoi_sizes", "voronoi_analysis", "atomic_strain", "input_columns", "frame_quantities", "QUANTITY_HELP"]

QUANTITY_HELP = (
    "coordination (smooth, sum of cutoff weights), frac_<species> (weighted fraction of each species "
    "among the neighbours), bond_angle (mean angle at the atom between two neighbours), voronoi_* (OVITO Voronoi volume, or area in 2D; in 3D the number of pentagonal "
    "faces and whether the cell is an icosahedron), volumetric_strain and shear_strain (OVITO atomic strain "
    "against --strain-reference), and every numeric per-atom "
    "column of the input (e.g. c_pe)"
)

# per-atom arrays that are never quantities
_SKIP_ARRAYS = {"numbers", "positions", "id", "type", "species", "momenta", "masses", "element",
                "x", "y", "z", "xs", "ys", "zs", "xu", "yu", "zu", "xsu", "ysu", "zsu", "ix", "iy", "iz"}


def neighbour_quantities(atoms, environments: LocalEnvironments, indices, species_names, species=None) -> dict:
    """``coordination`` and ``frac_<s>`` of the atoms ``indices``.

    ``environments`` gives the cutoff (``r_inner``, ``r_outer``) and the dimension (normally
    ``ReferenceMap.environments``); ``species_names`` is the name of every atom of ``atoms``;
    ``species`` the species to report fractions of (default: those present, sorted; the
    reference's order when given).
    """
    names = np.asarray(species_names).astype(str)
    present = sorted(set(names.tolist()))
    species = [s for s in (species or present)]
    species += [s for s in present if s not in species]
    le = LocalEnvironments(environments.r_inner, environments.r_outer,
                           encoding=SpeciesEncoding("vector", tuple(species)), centers=None,
                           dim=environments.dim)
    envs = le.compute(atoms, indices=np.asarray(indices, dtype=np.int64), species=names)
    per_species = np.zeros((len(envs), envs.weights.shape[1]))
    np.add.at(per_species, np.repeat(np.arange(len(envs)), envs.counts), envs.weights)  # empty ones stay 0
    coord = per_species.sum(axis=1)
    out = {"coordination": coord, "bond_angle": _mean_bond_angles(envs)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, s in enumerate(species):
            if len(species) > 1:
                out[f"frac_{s}"] = np.where(coord > 0, per_species[:, k] / coord, np.nan)
    return out


def _mean_bond_angles(envs) -> np.ndarray:
    """``bond_angle`` of every environment of ``envs`` (see the module's docstring)."""
    f = envs.weights.sum(axis=1)  # the cutoff weight of each neighbour (one channel is non-zero)
    out = np.full(len(envs), np.nan)
    for k in np.flatnonzero(envs.counts >= 2):
        a, b = envs.offsets[k], envs.offsets[k + 1]
        u = envs.positions[a:b] / np.linalg.norm(envs.positions[a:b], axis=1, keepdims=True)
        i, j = np.triu_indices(b - a, 1)
        w = f[a:b][i] * f[a:b][j]
        if w.sum() > 0:
            ang = np.degrees(np.arccos(np.clip(np.einsum("pd,pd->p", u[i], u[j]), -1.0, 1.0)))
            out[k] = float(np.dot(w, ang) / w.sum())
    return out


def _enclose(a, dim: int, thickness: float = 1.0) -> None:
    """Give ``a`` (in place) a cell OVITO accepts: with free boundaries or a degenerate cell, a
    generous box enclosing the atoms (5 length units of margin; in 2D the z extent ``thickness``)."""
    if not np.all(a.pbc) or abs(np.linalg.det(a.cell.array)) < 1e-12:
        pos = a.get_positions()
        lo, hi = pos.min(axis=0) - 5.0, pos.max(axis=0) + 5.0
        cell = np.array(a.cell.array, dtype=float)
        for k in range(3):
            if not a.pbc[k] or np.linalg.norm(cell[k]) < 1e-12:
                cell[k] = 0.0
                cell[k, k] = hi[k] - lo[k] if not (dim == 2 and k == 2) else thickness
        a.set_cell(cell)
        a.set_celldisp(np.where(a.pbc, a.get_celldisp().reshape(3), lo))


def _positions_only(atoms):
    a = atoms.copy()
    a.calc = None
    for key in list(a.arrays):
        if key not in ("numbers", "positions"):
            del a.arrays[key]
    return a


def atomic_strain(atoms, reference, cutoff: float, dim: int = 3) -> dict:
    """Atomic strain of every atom of ``atoms`` relative to ``reference`` (an ``ase.Atoms`` of the
    same atoms, e.g. the perfect lattice they started from), from OVITO's ``AtomicStrainModifier``
    with neighbours within ``cutoff`` in the reference: ``volumetric_strain`` and
    ``shear_strain`` (von Mises), in the order of ``atoms``. Atoms are matched by their ``id``
    arrays where both have them (any order), else by position in the arrays. 2D frames use OVITO's
    2D mode (strain in the plane). Atoms with fewer than ``dim`` reference neighbours in reach get
    NaN (OVITO cannot fit their deformation gradient)."""
    import_ovito()
    from ovito.io.ase import ase_to_ovito
    from ovito.modifiers import AtomicStrainModifier
    from ovito.pipeline import Pipeline, StaticSource

    if not float(cutoff) > 0:
        raise ValueError(f"the atomic strain needs a positive neighbour cutoff, got {cutoff!r}")
    order = np.arange(len(atoms))
    ids, ref_ids = atoms.arrays.get("id"), reference.arrays.get("id")
    if ids is not None and ref_ids is not None:
        pos_of = {int(i): k for k, i in enumerate(np.asarray(ref_ids))}
        missing = [int(i) for i in np.asarray(ids) if int(i) not in pos_of]
        if missing or len(ref_ids) != len(ids):
            raise ValueError(f"the strain reference holds other atoms than the frame ({len(ref_ids)} against "
                             f"{len(ids)} atoms, {len(missing)} ids of the frame missing, e.g. {missing[:3]}); give "
                             "the reference configuration of the same atoms")
        order = np.array([pos_of[int(i)] for i in np.asarray(ids)], dtype=np.int64)
    elif len(reference) != len(atoms):
        raise ValueError(f"the strain reference has {len(reference)} atoms and the frame {len(atoms)}, and they "
                         "have no ids to match them by; give the reference configuration of the same atoms")
    cur, ref = _positions_only(atoms), _positions_only(reference[order])
    datas = []
    for a in (cur, ref):
        if dim == 2:
            pos = a.get_positions()
            pos[:, 2] = 0.0
            a.set_positions(pos)
            a.pbc = [bool(a.pbc[0]), bool(a.pbc[1]), False]
        _enclose(a, dim)
        d = ase_to_ovito(a)
        if dim == 2:
            d.cell_.is2D = True
        datas.append(d)
    mod = AtomicStrainModifier(cutoff=float(cutoff), select_invalid_particles=True)
    mod.reference = StaticSource(data=datas[1])
    pipe = Pipeline(source=StaticSource(data=datas[0]))
    pipe.modifiers.append(mod)
    out = pipe.compute()
    vol = np.asarray(out.particles["Volumetric Strain"], dtype=float).copy()
    shear = np.asarray(out.particles["Shear Strain"], dtype=float).copy()
    invalid = np.asarray(out.particles["Selection"]) != 0
    vol[invalid] = np.nan
    shear[invalid] = np.nan
    return {"volumetric_strain": vol, "shear_strain": shear}


def voronoi_sizes(atoms, dim: int = 3) -> np.ndarray:
    """Voronoi volume (3D) or area (2D) of every atom of ``atoms`` with OVITO."""
    return voronoi_analysis(atoms, dim)["size"]


def voronoi_analysis(atoms, dim: int = 3, indices: bool = False) -> dict:
    """OVITO Voronoi tessellation of ``atoms``: ``size`` (volume in 3D, area in 2D) of every atom;
    with ``indices`` (3D), also ``n5`` (number of pentagonal faces of the cell) and ``ico``
    (1.0 for a full icosahedron, Voronoi index <0,0,12,0>, else 0.0)."""
    import_ovito()
    from ovito.io.ase import ase_to_ovito
    from ovito.modifiers import VoronoiAnalysisModifier
    from ovito.pipeline import Pipeline, StaticSource

    a = _positions_only(atoms)  # only what the tessellation needs
    thickness = 1.0
    if dim == 2:
        cell = np.array(a.cell.array, dtype=float)
        cell[2] = [0.0, 0.0, thickness]
        pos = a.get_positions()
        pos[:, 2] = 0.0
        a.set_positions(pos)
        a.set_cell(cell)
        a.pbc = [bool(a.pbc[0]), bool(a.pbc[1]), True]
    _enclose(a, dim, thickness)
    data = ase_to_ovito(a)
    pipe = Pipeline(source=StaticSource(data=data))
    want_idx = bool(indices) and dim == 3
    pipe.modifiers.append(VoronoiAnalysisModifier(compute_indices=want_idx))
    out = pipe.compute()
    vol = np.asarray(out.particles["Atomic Volume"], dtype=float).copy()
    if dim == 2:
        vol /= thickness
    res = {"size": vol}
    if want_idx:
        vi = np.asarray(out.particles["Voronoi Index"], dtype=np.int64)  # column k: faces with k + 1 edges
        vi = np.pad(vi, ((0, 0), (0, max(0, 6 - vi.shape[1]))))
        res["n5"] = vi[:, 4].astype(float)
        others = vi.sum(axis=1) - vi[:, 4]
        res["ico"] = ((vi[:, 4] == 12) & (others == 0)).astype(float)
    return res


def input_columns(atoms) -> dict:
    """Numeric per-atom columns of the input, except positions, ids, types and ``giip_*`` columns."""
    out = {}
    for key, v in atoms.arrays.items():
        if key in _SKIP_ARRAYS or key.startswith("giip_") or key.startswith("d_giip") or key.startswith("d2_giip"):
            continue
        v = np.asarray(v)
        if v.ndim != 1 or v.dtype.kind not in "fiu":
            continue
        out[key] = v.astype(float)
    return out


def frame_quantities(atoms, environments: LocalEnvironments, indices, species_names, *, species=None,
                     voronoi: bool = True, columns: bool = True, dim: int | None = None,
                     symmetry: dict | None = None, strain: dict | None = None) -> dict:
    """Every quantity of this module for the atoms ``indices`` of one frame (name -> array).
    ``symmetry``: ``{"groups": [...], "sigma": s, "species": bool}`` adds ``symmetry_<G>``, the
    continuous symmetry measure of :mod:`.symmetry` of each atom's environment (the positions alone
    unless ``species``; about 0.1 s per atom and group). ``strain``: ``{"reference": ase.Atoms,
    "cutoff": c}`` adds ``volumetric_strain`` and ``shear_strain`` against that reference
    configuration (:func:`atomic_strain`)."""
    indices = np.asarray(indices, dtype=np.int64)
    q = neighbour_quantities(atoms, environments, indices, species_names, species=species)
    if strain:
        d = environments.dim if dim is None else dim
        for k, v in atomic_strain(atoms, strain["reference"], float(strain["cutoff"]), d).items():
            q[k] = v[indices]
    if symmetry:
        from .symmetry import symmetry_measures

        envs = environments.compute(atoms, indices=indices, species=species_names)
        for g, v in symmetry_measures(envs, sigma=float(symmetry["sigma"]), groups=tuple(symmetry["groups"]),
                                      species=bool(symmetry.get("species", False))).items():
            q[f"symmetry_{g}"] = v
    if voronoi:
        d = environments.dim if dim is None else dim
        try:
            vor = voronoi_analysis(atoms, d, indices=(d == 3))
            q["voronoi_area" if d == 2 else "voronoi_volume"] = vor["size"][indices]
            if "n5" in vor:
                q["voronoi_n5"] = vor["n5"][indices]
                q["voronoi_icosahedral"] = vor["ico"][indices]
        except ImportError:
            warnings.warn("OVITO is not installed: no Voronoi volumes (pip install ovito)", RuntimeWarning,
                          stacklevel=2)
    if columns:
        for key, v in input_columns(atoms).items():
            if key not in q:
                q[key] = v[indices]
    return q
