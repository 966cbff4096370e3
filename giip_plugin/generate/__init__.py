"""Generating environments: a symmetry-aware generative model of local motifs (Uhrin & Paulish),
tied to the GIIP map.

* :mod:`.motifs` -- motifs: the ``n`` nearest neighbours of a centre as fixed slots, and back to
  GIIP environments;
* :mod:`.gram` -- Gram matrices, positions from a Gram matrix, synchronisation (Procrustes);
* :mod:`.vae` -- the variational autoencoder (PyTorch, loaded on use);
* :mod:`.training` -- training from trajectories or a reference map, held-out errors;
* :mod:`.model` -- :class:`MotifModel`: encode, decode, sample, interpolate, and its HDF5 file;
* :mod:`.editing` -- infilling missing atoms; :mod:`.search` -- motifs at a point of a map's
  diffusion space.

The command line ``giip generate`` is a thin layer over these (docs/generative.md).
"""
from .gram import GramScaling, gram, positions_from_gram, synchronise
from .model import GENERATIVE, MotifModel, is_generative_file
from .motifs import Motifs

__all__ = ["Motifs", "MotifModel", "GENERATIVE", "is_generative_file", "GramScaling", "gram",
           "positions_from_gram", "synchronise", "train", "motifs_of_reference", "motifs_of_frames",
           "infill", "at_coordinates"]


def __getattr__(name):
    if name in ("train", "motifs_of_reference", "motifs_of_frames"):
        from . import training

        return getattr(training, name)
    if name == "infill":
        from .editing import infill

        return infill
    if name == "at_coordinates":
        from .search import at_coordinates

        return at_coordinates
    raise AttributeError(name)
