"""Species encodings of neighbour weights.

* ``none``: one channel, weight 1 for every neighbour (species ignored).
* ``sign``: one channel, ``+1`` for the positive species and ``-1`` for the other one (binary
  systems only). One atom of the wrong species then costs about 2 "atoms of difference".
* ``vector``: one channel per species (one-hot). The GIIP inner product sums over channels inside
  the rotation search.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENCODINGS = ("none", "sign", "vector")


@dataclass(frozen=True)
class SpeciesEncoding:
    """How neighbour species become weight channels.

    Parameters
    ----------
    mode : "none", "sign" or "vector"
    species : ordered species names known to the encoding (needed for ``sign`` and ``vector``).
    positive : for ``sign``, the species that gets ``+1`` (default: the first of ``species``).
    """

    mode: str = "none"
    species: tuple = field(default_factory=tuple)
    positive: str | None = None

    def __post_init__(self):
        if self.mode not in ENCODINGS:
            raise ValueError(f"unknown species encoding {self.mode!r}; choose one of {ENCODINGS}")
        object.__setattr__(self, "species", tuple(str(s) for s in self.species))
        if len(set(self.species)) != len(self.species):
            raise ValueError(f"species names must be unique, got {self.species}")
        if self.mode == "sign":
            if len(self.species) != 2:
                raise ValueError(
                    "the 'sign' species encoding is for binary systems and needs exactly two "
                    f"species, got {list(self.species)}; use --species vector for more"
                )
            pos = self.positive if self.positive is not None else self.species[0]
            if pos not in self.species:
                raise ValueError(
                    f"positive species {pos!r} is not one of the species {list(self.species)}"
                )
            object.__setattr__(self, "positive", str(pos))
        if self.mode == "vector" and not self.species:
            raise ValueError("the 'vector' species encoding needs the list of species names")

    @property
    def n_channels(self) -> int:
        return len(self.species) if self.mode == "vector" else 1

    def encode(self, names) -> np.ndarray:
        """Weight channels ``(n, n_channels)`` for an array of species names."""
        names = np.asarray(names).astype(str)
        if self.mode == "none":
            return np.ones((len(names), 1))
        unknown = sorted(set(names.tolist()) - set(self.species))
        if unknown:
            raise ValueError(
                f"species {unknown} are not known to the {self.mode!r} encoding, which has "
                f"{list(self.species)}; check --type-names / the species of the structure"
            )
        if self.mode == "sign":
            return np.where(names == self.positive, 1.0, -1.0)[:, None]
        index = {s: k for k, s in enumerate(self.species)}
        out = np.zeros((len(names), len(self.species)))
        out[np.arange(len(names)), [index[s] for s in names]] = 1.0
        return out

    def to_dict(self) -> dict:
        return {"mode": self.mode, "species": list(self.species), "positive": self.positive or ""}

    @classmethod
    def from_dict(cls, d: dict) -> "SpeciesEncoding":
        return cls(mode=d["mode"], species=tuple(d.get("species", ())), positive=d.get("positive") or None)
