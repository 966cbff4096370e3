"""The variational autoencoder of motifs (PyTorch; imported only when a model is trained or used).

Input of one motif: its standardised Gram upper triangle (:mod:`.gram`) followed by one one-hot
species vector per slot (the species, and one more class for an absent slot). Encoder: fully
connected layers with tanh (the seed's 36-28-18-8 for 8 neighbours of one species: by default the
hidden widths are 28/36 and 18/36 of the Gram triangle's length), then the mean and log-variance of the latent
Gaussian. Decoder: the mirror image, ending in the Gram triangle and the species logits.

Loss per motif: squared error of the standardised Gram triangle, cross-entropy of the species
(summed over slots) and ``beta`` times the Kullback-Leibler divergence from the unit Gaussian.
The encoder sees randomly permuted copies of each motif (its present neighbours reordered: the
permutation augmentation of the seed); the decoder is asked for the canonical order (neighbours by
distance), so the encoding learns to ignore the order of the input and the decoding has one answer.
"""
from __future__ import annotations

import numpy as np

__all__ = ["default_latent", "default_hidden", "build_network", "encode_inputs", "network_inputs", "permuted_copies"]


def default_latent(n_slots: int) -> int:
    """The latent size when none is given: the seed's 8 for up to 8 neighbour slots, 2 more for
    each further slot (NiNb's 20-slot environments: 32). Measured on the 6,750 Ni environments of a
    NiNb sample (``docs/generative.md``): the median held-out GIIP reconstruction error is 2.7 at
    latent 8, 2.0 at 16 and 0.80 at 32, and gains little beyond (0.77 at 48)."""
    return 8 + 2 * max(0, int(n_slots) - 8)


def default_hidden(n_gram: int, latent: int) -> tuple:
    """The seed's proportions (36-28-18-8 for the 36 numbers of an 8-neighbour Gram triangle)."""
    return (max(latent + 2, int(round(n_gram * 28 / 36))), max(latent + 1, int(round(n_gram * 18 / 36))))


def build_network(n_in: int, n_gram: int, n_slots: int, n_classes: int, hidden, latent: int):
    import torch
    from torch import nn

    class MotifVAE(nn.Module):
        def __init__(self):
            super().__init__()
            layers, w = [], n_in
            for h in hidden:
                layers += [nn.Linear(w, h), nn.Tanh()]
                w = h
            self.encoder = nn.Sequential(*layers)
            self.mu = nn.Linear(w, latent)
            self.logvar = nn.Linear(w, latent)
            layers, w = [], latent
            for h in reversed(tuple(hidden)):
                layers += [nn.Linear(w, h), nn.Tanh()]
                w = h
            layers += [nn.Linear(w, n_gram + n_slots * n_classes)]
            self.decoder = nn.Sequential(*layers)
            self.n_gram, self.n_slots, self.n_classes = n_gram, n_slots, n_classes

        def encode(self, x):
            h = self.encoder(x)
            return self.mu(h), self.logvar(h)

        def decode(self, z):
            out = self.decoder(z)
            return out[:, : self.n_gram], out[:, self.n_gram:].reshape(-1, self.n_slots, self.n_classes)

        def forward(self, x, generator=None):
            mu, logvar = self.encode(x)
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
            g, s = self.decode(z)
            return g, s, mu, logvar

    return MotifVAE()


def encode_inputs(gram_scaled: np.ndarray, species: np.ndarray, n_classes: int) -> np.ndarray:
    """Network inputs: ``(N, n_gram + n * n_classes)`` (absent slots are class ``n_classes - 1``)."""
    spc = np.where(species < 0, n_classes - 1, species)
    onehot = np.zeros(species.shape + (n_classes,))
    np.put_along_axis(onehot, spc[..., None], 1.0, axis=2)
    return np.concatenate([gram_scaled, onehot.reshape(len(species), -1)], axis=1)


def network_inputs(positions: np.ndarray, species: np.ndarray, scaling, n_classes: int) -> np.ndarray:
    """Network inputs of motifs in the order given: the standardised Gram triangle of ``positions``
    (``scaling``: a :class:`~.gram.GramScaling`), then the species one-hot vectors."""
    from .gram import gram, triu

    return encode_inputs(scaling.transform(triu(gram(positions))), species, n_classes)


def permuted_copies(positions: np.ndarray, species: np.ndarray, rng: np.random.Generator):
    """One random reordering of the present neighbours of each motif (absent slots stay last)."""
    N, n = species.shape
    keys = rng.random((N, n))
    keys[species < 0] = 2.0  # absent slots sort last
    order = np.argsort(keys, axis=1)
    return np.take_along_axis(positions, order[..., None], axis=1), np.take_along_axis(species, order, axis=1)
