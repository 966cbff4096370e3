"""The generative model of motifs: a trained VAE, the settings it belongs to, and its HDF5 file.

A :class:`MotifModel` encodes motifs (:mod:`.motifs`) to latent vectors and decodes latent vectors
to motifs: the decoded Gram matrix (:mod:`.gram`) gives positions by eigendecomposition, the
species logits give each slot's species (or an absent slot). It keeps the environment settings of
its motifs (cutoffs, species encoding) and the GIIP width and group, so every decoded motif is a
GIIP environment that can be measured against real ones (:meth:`giip_distances`) or placed on a
reference map, and the real training motifs (for "the nearest real environment").

File layout (format ``giip-generative``, schema version 1)::

    /            attrs: format, schema_version, package_version, created, checksum, attrs_checksum
    /settings    attrs: n, dim, species_names, latent, hidden, environments (LocalEnvironments),
                 sigma, group, min_distance, beta, order (of the slots)
    /scaling     attrs: the Gram standardisation (diag_mean, diag_scale, off_mean, off_scale)
    /network     datasets: the PyTorch state (one dataset per parameter, float64)
    /training    datasets: positions (N, n, dim), species (N, n), held_out (indices),
                 prototype (n, dim; the "prototype" slot order)
                 attrs: loss history, held-out reconstruction errors
    /provenance  attrs: command line, inputs, date, reference map, seed

Data only (no pickle); loading checks the checksums and the shapes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..environments import LocalEnvironments
from .gram import GramScaling, positions_from_gram, synchronise, untriu
from .motifs import Motifs
from .vae import build_network, network_inputs

__all__ = ["MotifModel", "GENERATIVE", "is_generative_file"]


def _check(path, c):
    from ..reference.fileformat import _damaged

    s = c["settings"]["attrs"]
    t = c["training"]["datasets"]
    n, dim = int(s["n"]), int(s["dim"])
    if t["positions"].ndim != 3 or t["positions"].shape[1:] != (n, dim) or t["species"].shape != t["positions"].shape[:2]:
        raise _damaged(path, f"the training motifs do not have {n} slots in {dim}D", GENERATIVE)


def _kind():
    from ..reference.fileformat import FileKind

    return FileKind("giip-generative", 1, ("settings", "scaling", "network", "training", "provenance"),
                    {"training": ("positions", "species", "held_out")},
                    {"settings": ("n", "dim", "species_names", "latent", "hidden", "environments", "sigma"),
                     "scaling": ("diag_mean", "diag_scale", "off_mean", "off_scale")},
                    "generative model file", "giip generate train", check=_check)


GENERATIVE = _kind()


ORDERS = ("prototype", "distance")


def canonical_order(motifs: Motifs, order: str, prototype=None, progress: bool = False) -> Motifs:
    """The slot order the network reads and writes: ``"distance"`` (the seed's: neighbours by
    distance from the centre) or ``"prototype"`` (each motif matched, by rotation, reflection and
    assignment, to one prototype motif, whose slots it then follows: the same slot holds the atom
    in the same place of every motif, which makes the Gram entries learnable where distances are
    close). Either way the result does not depend on the order the motif came in."""
    if order == "distance":
        return motifs.sorted_by_distance()
    if order == "prototype":
        if prototype is None:
            raise ValueError("the prototype order needs a prototype motif")
        return motifs.aligned_to(prototype, progress=progress)
    raise ValueError(f"unknown slot order {order!r}; choose one of {ORDERS}")


def choose_prototype(motifs: Motifs) -> np.ndarray:
    """The prototype of the ``"prototype"`` order: among the motifs with every slot filled (or the
    fullest), the one whose sorted neighbour distances are nearest the median profile."""
    full = np.flatnonzero(motifs.counts == motifs.counts.max())
    r = np.sort(np.linalg.norm(motifs.positions[full], axis=2), axis=1)
    k = full[int(np.argmin(np.abs(r - np.median(r, axis=0)).sum(1)))]
    return motifs.sorted_by_distance().positions[k].copy()


def is_generative_file(path) -> bool:
    from ..reference.fileformat import file_format

    return file_format(path) == GENERATIVE.format


@dataclass(eq=False)
class MotifModel:
    """A trained generative model of motifs (make one with :func:`~giip_plugin.generate.train`
    or ``giip generate train``; :meth:`load` a file)."""

    environments: LocalEnvironments
    sigma: float
    group: str | None
    n: int
    species_names: tuple
    latent: int
    hidden: tuple
    scaling: GramScaling
    state: dict  # parameter name -> float64 array
    training: Motifs
    held_out: np.ndarray
    min_distance: float
    beta: float = 0.1
    history: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    order: str = "distance"  # the slots' canonical order: "distance" or "prototype"
    prototype: np.ndarray | None = None  # (n, dim): the motif whose slots "prototype" order follows

    # ------------------------------------------------------------------ network
    @property
    def dim(self) -> int:
        return self.environments.dim

    @property
    def n_classes(self) -> int:
        return len(self.species_names) + 1  # the species, and "absent"

    @property
    def n_gram(self) -> int:
        return self.n * (self.n + 1) // 2

    def network(self):
        """The PyTorch module with this model's weights (made once, kept)."""
        net = self.__dict__.get("_net")
        if net is None:
            import torch

            net = build_network(self.n_gram + self.n * self.n_classes, self.n_gram, self.n, self.n_classes,
                                self.hidden, self.latent).double()
            net.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in self.state.items()})
            net.eval()
            self.__dict__["_net"] = net
        return net

    def canonical(self, motifs: Motifs) -> Motifs:
        """``motifs`` in the model's canonical slot order (:func:`canonical_order`)."""
        self.check_motifs(motifs)
        return canonical_order(motifs, self.order, self.prototype)

    def inputs(self, motifs: Motifs) -> np.ndarray:
        m = self.canonical(motifs)
        return network_inputs(m.positions, m.species, self.scaling, self.n_classes)

    def check_motifs(self, motifs: Motifs) -> None:
        """A clear error for motifs this model cannot read (slots, dimension, species)."""
        if motifs.n != self.n:
            raise ValueError(f"the motifs have {motifs.n} neighbour slots, the model {self.n}: make them with the "
                             f"model's settings (MotifModel.motifs_of / n={self.n})")
        if motifs.dim != self.dim:
            raise ValueError(f"the motifs are {motifs.dim}D, the model {self.dim}D")
        if tuple(motifs.species_names) != tuple(self.species_names):
            raise ValueError(f"the motifs' species {list(motifs.species_names)} are not the model's "
                             f"{list(self.species_names)}")

    def encode(self, motifs: Motifs) -> np.ndarray:
        """Latent means ``(N, latent)`` of ``motifs``."""
        import torch

        with torch.no_grad():
            mu, _ = self.network().encode(torch.as_tensor(self.inputs(motifs)))
        return mu.numpy()

    def decode(self, z: np.ndarray, sort: bool = True) -> Motifs:
        """Motifs of latent vectors ``z`` ``(N, latent)``: Gram matrix to positions by
        eigendecomposition, each slot's most likely species (absent slots dropped), neighbours
        sorted by distance (``sort=False``: in the network's slot order, the canonical one). The
        orientation is arbitrary (:meth:`synchronise` fixes it)."""
        import torch

        z = np.atleast_2d(np.asarray(z, dtype=float))
        if z.shape[1] != self.latent:
            raise ValueError(f"latent vectors must have {self.latent} components, got {z.shape[1]}")
        with torch.no_grad():
            g, s = self.network().decode(torch.as_tensor(z))
        return self._motifs_of_outputs(g.numpy(), s.numpy(), sort)

    def _motifs_of_outputs(self, g_scaled, logits, sort=True) -> Motifs:
        G = untriu(self.scaling.inverse(g_scaled), self.n)
        cls = logits.argmax(2)
        absent = cls == self.n_classes - 1
        G[absent[:, :, None] | absent[:, None, :]] = 0.0
        X = positions_from_gram(G, self.dim)
        spc = np.where(absent, -1, cls)
        out = Motifs(X, spc, self.species_names)
        return out.sorted_by_distance() if sort else out

    def reconstruct(self, motifs: Motifs) -> Motifs:
        """Decode the latent means of ``motifs``, each aligned onto its original (:meth:`synchronise`)."""
        out = self.decode(self.encode(motifs))
        return self.synchronise(out, motifs)

    # ------------------------------------------------------------------ motifs and distances
    def motifs_of(self, atoms, indices=None, species=None) -> Motifs:
        """Motifs of a structure's centre atoms (or ``indices``) with the model's settings."""
        return Motifs.from_structure(atoms, self.environments, self.n, indices=indices, species=species)

    def to_environments(self, motifs: Motifs):
        return motifs.to_environments(self.environments)

    def giip_distances(self, a: Motifs, b: Motifs) -> np.ndarray:
        """GIIP distance between motif ``k`` of ``a`` and motif ``k`` of ``b`` (exact search)."""
        from ..kernels import DistanceEngine

        if len(a) != len(b):
            raise ValueError(f"{len(a)} and {len(b)} motifs: pair them one to one")
        ea, eb = self.to_environments(a), self.to_environments(b)
        eng = DistanceEngine(ea, eb, sigma=self.sigma, group=self.group)
        k = np.arange(len(a))
        return eng.distances(k, k)

    def nearest_real(self, motifs: Motifs, real: Motifs | None = None, *, progress=None):
        """``(index, GIIP distance)`` of the nearest real motif (default: the training motifs) to each motif."""
        from ..reference.metric import GIIPMetric

        real = self.training if real is None else real
        rows = GIIPMetric(self.sigma, self.group).rows(self.to_environments(motifs), self.to_environments(real),
                                                        progress=progress)
        k = rows.argmin(1)
        return k, rows[np.arange(len(motifs)), k]

    def synchronise(self, motifs: Motifs, templates: Motifs) -> Motifs:
        """Each motif rotated (or reflected) onto template ``k`` by ``min_Q ||Y - X Q||``, its atoms
        matched to the template's (Hungarian algorithm): a decoded motif in the frame of a real one."""
        if len(templates) == 1 and len(motifs) > 1:
            templates = templates.subset(np.zeros(len(motifs), dtype=int))
        pos = np.array(motifs.positions)
        for k in range(len(motifs)):
            m, t = motifs.present[k], templates.present[k]
            if m.sum() == 0 or t.sum() == 0:
                continue
            _, Q, _ = synchronise(motifs.positions[k][m], templates.positions[k][t], match=True)
            pos[k] = motifs.positions[k] @ Q
        return Motifs(pos, motifs.species, motifs.species_names)

    def onto_nearest_real(self, motifs: Motifs) -> Motifs:
        """Each motif synchronised onto its nearest training motif (by GIIP distance)."""
        return self.synchronise(motifs, self.training.subset(self.nearest_real(motifs)[0]))

    def valid(self, motifs: Motifs, min_distance: float | None = None) -> np.ndarray:
        """Motifs whose atoms (the centre included) are nowhere closer than ``min_distance``
        (default: the model's, from its training motifs) and that have at least one neighbour."""
        dmin = self.min_distance if min_distance is None else float(min_distance)
        return (motifs.nearest_pair_distances() >= dmin) & (motifs.counts > 0)

    # ------------------------------------------------------------------ generation
    def sample(self, count: int, *, seed: int = 0, min_distance: float | None = None, max_tries: int = 50,
               synchronise: bool = True):
        """``count`` valid motifs decoded from the unit Gaussian (invalid ones, with atoms closer
        than ``min_distance``, are drawn again). Returns ``(motifs, z, acceptance)``; with
        ``synchronise``, each is aligned onto its nearest real (training) motif."""
        rng = np.random.default_rng(seed)
        got_z, got, tried = [], 0, 0
        for _ in range(max_tries):
            z = rng.standard_normal((max(2 * (count - got), 16), self.latent))
            ok = self.valid(self.decode(z), min_distance)
            tried += len(z)
            got_z.append(z[ok])
            got += int(ok.sum())
            if got >= count:
                break
        z = np.concatenate(got_z)[:count]
        if len(z) < count:
            raise RuntimeError(f"only {len(z)} of {count} generated motifs were valid in {tried} tries (atoms "
                               f"closer than {self.min_distance if min_distance is None else min_distance:g}); "
                               "train longer or lower the minimum distance")
        motifs = self.decode(z)
        if synchronise:
            motifs = self.onto_nearest_real(motifs)
        return motifs, z, got / max(tried, 1)

    def interpolate(self, a: Motifs, b: Motifs, steps: int = 8) -> tuple:
        """Motifs along the straight line between the latent means of ``a`` and ``b`` (one motif
        each), ``steps`` of them including both ends, each aligned onto the one before (the first
        onto ``a``). Returns ``(motifs, t)``."""
        if len(a) != 1 or len(b) != 1:
            raise ValueError("interpolate between one motif and one motif")
        if steps < 2:
            raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
        za, zb = self.encode(a)[0], self.encode(b)[0]
        t = np.linspace(0.0, 1.0, int(steps))
        out = self.decode((1 - t)[:, None] * za + t[:, None] * zb)
        pos, prev = np.array(out.positions), a
        for k in range(len(out)):
            one = self.synchronise(out.subset([k]), prev)
            pos[k] = one.positions[0]
            prev = one
        return Motifs(pos, out.species, out.species_names), t

    # ------------------------------------------------------------------ output
    def atoms(self, motifs: Motifs, k: int):
        """Motif ``k`` as ``ase.Atoms`` (the centre first, in a box with 4 length units of vacuum):
        species names, or the element of a one-species model (``provenance["element"]``)."""
        el = self.provenance.get("element")
        center = self.provenance.get("center") or el or motifs.species_names[0]
        a = motifs.to_atoms(k, center=center)
        if el:
            a.set_chemical_symbols([el] * len(a))
        a.center(vacuum=4.0)
        return a

    def write(self, path, motifs: Motifs, info_rows=None) -> None:
        """Motifs to extended XYZ, one frame each (``info_rows``: a dict per motif for ``atoms.info``);
        written to a temporary file first, so a failed write leaves no partial file."""
        import ase.io

        frames = []
        for k in range(len(motifs)):
            a = self.atoms(motifs, k)
            a.info.update((info_rows[k] if info_rows else {}))
            frames.append(a)
        path = os.fspath(path)
        tmp = f"{path}.tmp"
        try:
            ase.io.write(tmp, frames, format="extxyz")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def describe(self) -> str:
        n_in = self.n_gram + self.n * self.n_classes
        L = ["generative model of motifs (variational autoencoder on Gram matrices)",
             f"  motifs          {self.n} nearest neighbours within r_outer = {self.environments.r_outer:g} "
             f"(r_inner {self.environments.r_inner:g}), {self.dim}D, species {', '.join(self.species_names)} "
             f"(encoding {self.environments.encoding.mode})",
             f"  network         {n_in}-" + "-".join(str(h) for h in self.hidden) + f"-{self.latent} (tanh), beta "
             f"{self.beta:g}, slots in {self.order} order",
             f"  GIIP check      sigma {self.sigma:g}, group {self.group}",
             f"  training        {len(self.training)} motifs ({len(self.held_out)} held out), minimum atom "
             f"distance of generated motifs {self.min_distance:.3g}"]
        for k in ("held_out_gram_rmse", "held_out_giip_median", "held_out_giip_p90", "held_out_species_error"):
            if k in self.history:
                L.append(f"  {k:<22} {self.history[k]:.4g}")
        for k, v in self.provenance.items():
            if k in ("command", "reference", "inputs", "seed", "created"):
                L.append(f"  {k:<15} {v}")
        return "\n".join(L)

    # ------------------------------------------------------------------ file
    def save(self, path) -> None:
        from ..reference.fileformat import write_model_file

        content = {
            "settings": {"attrs": {"n": self.n, "dim": self.dim, "species_names": list(self.species_names),
                                   "latent": self.latent, "hidden": list(self.hidden),
                                   "environments": self.environments.to_dict(), "sigma": float(self.sigma),
                                   "group": self.group or "", "min_distance": float(self.min_distance),
                                   "beta": float(self.beta), "order": self.order}},
            "scaling": {"attrs": {k: v for k, v in self.scaling.to_dict().items() if k != "n"}},
            "network": {"datasets": {k: np.asarray(v, dtype=float) for k, v in self.state.items()}},
            "training": {"datasets": {"positions": self.training.positions, "species": self.training.species,
                                      "held_out": np.asarray(self.held_out, dtype=np.int64),
                                      **({"prototype": self.prototype} if self.prototype is not None else {})},
                         "attrs": dict(self.history)},
            "provenance": {"attrs": dict(self.provenance)},
        }
        write_model_file(path, content, GENERATIVE)

    @classmethod
    def load(cls, path) -> "MotifModel":
        from ..reference.fileformat import _damaged, read_reference

        c, _ = read_reference(os.fspath(path), kind=GENERATIVE)
        s, t = c["settings"]["attrs"], c["training"]["datasets"]
        n = int(s["n"])
        names = tuple(s["species_names"])
        model = cls(LocalEnvironments.from_dict(s["environments"]), float(s["sigma"]), s["group"] or None, n,
                    names, int(s["latent"]), tuple(int(h) for h in s["hidden"]),
                    GramScaling(n, **{k: float(v) for k, v in c["scaling"]["attrs"].items()}),
                    dict(c["network"]["datasets"]), Motifs(t["positions"], t["species"], names), t["held_out"],
                    float(s["min_distance"]), float(s.get("beta", 0.1)), dict(c["training"]["attrs"]),
                    dict(c["provenance"]["attrs"]), str(s.get("order", "distance")), t.get("prototype"))
        if model.order == "prototype" and (model.prototype is None or model.prototype.shape != (n, model.dim)):
            raise _damaged(path, "the prototype motif of the slot order is missing or of the wrong shape", GENERATIVE)
        try:
            model.network()
        except (RuntimeError, KeyError) as e:  # the stored weights do not fit the stored layout
            raise _damaged(path, f"the network weights do not match its layout: {e}", GENERATIVE) from e
        return model
