"""A set of local atomic environments stored flat, and padded batches of them for the kernels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import check_environment


@dataclass(frozen=True, eq=False)
class EnvironmentSet:
    """Local atomic environments (LAEs) stored as flat arrays.

    Environment ``k`` owns rows ``offsets[k]:offsets[k+1]`` of ``positions`` (neighbour positions
    relative to the centre, shape ``(M, dim)``), ``weights`` (``(M, channels)``) and, when per-atom
    widths are used, ``sigmas`` (``(M,)``). ``centers`` are the indices of the centre atoms in the
    structure they came from (``-1`` when unknown).

    A set is immutable: its arrays are read-only copies of what it was given, and its fields cannot
    be reassigned. (The kernels keep per-set tensors, which must never go stale; make a new set,
    e.g. with :meth:`subset`, instead of changing one.)
    """

    positions: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray
    sigmas: np.ndarray | None = None
    centers: np.ndarray | None = None

    def __post_init__(self):
        def frozen(a, dtype):
            a = np.array(a, dtype=dtype, order="C")  # a copy: the caller's array stays writable
            a.setflags(write=False)
            return a

        set_ = lambda name, value: object.__setattr__(self, name, value)
        weights = np.asarray(self.weights, dtype=float)
        set_("positions", frozen(self.positions, float))
        set_("weights", frozen(weights[:, None] if weights.ndim == 1 else weights, float))
        set_("offsets", frozen(self.offsets, np.int64))
        if self.sigmas is not None:
            set_("sigmas", frozen(self.sigmas, float))
        centers = np.full(len(self.offsets) - 1, -1, dtype=np.int64) if self.centers is None else self.centers
        set_("centers", frozen(centers, np.int64))
        if self.positions.ndim != 2 or self.positions.shape[1] not in (2, 3):
            raise ValueError(f"positions must have shape (M, 2) or (M, 3), got {self.positions.shape}")
        if len(self.weights) != len(self.positions):
            raise ValueError("weights and positions must have the same number of rows")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.positions) or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must start at 0, be non-decreasing and end at the number of rows")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_list(cls, envs, sigma_per_atom: bool = False) -> "EnvironmentSet":
        """From a list of ``(pos, w)`` or ``(pos, w, sigmas)`` tuples (as in the functional API)."""
        pos_l, w_l, s_l = [], [], []
        dims, chans = set(), set()
        for k, env in enumerate(envs):
            if len(env) not in (2, 3):
                raise ValueError(f"environment {k} must be a (pos, w) or (pos, w, sigmas) tuple")
            pos, w = check_environment(env[0], env[1], name=f"environment {k}")
            dims.add(pos.shape[1])
            chans.add(w.shape[1])
            pos_l.append(pos)
            w_l.append(w)
            if len(env) == 3:
                s = np.asarray(env[2], dtype=float).reshape(-1)
                if len(s) != len(pos):
                    raise ValueError(f"environment {k}: {len(s)} sigmas for {len(pos)} atoms")
                s_l.append(s)
        if len(dims) > 1:
            raise ValueError(f"environments mix dimensions {sorted(dims)}")
        if len(chans) > 1:
            raise ValueError(
                f"environments have different numbers of weight channels {sorted(chans)}; all must "
                "use the same species encoding"
            )
        if s_l and len(s_l) != len(pos_l):
            raise ValueError("either all environments carry per-atom sigmas or none does")
        dim = dims.pop() if dims else 3
        nchan = chans.pop() if chans else 1
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in pos_l])]).astype(np.int64)
        positions = np.concatenate(pos_l) if pos_l else np.zeros((0, dim))
        weights = np.concatenate(w_l) if w_l else np.zeros((0, nchan))
        sigmas = np.concatenate(s_l) if s_l else None
        return cls(positions, weights, offsets, sigmas)

    @classmethod
    def concatenate(cls, sets) -> "EnvironmentSet":
        sets = list(sets)
        if not sets:
            raise ValueError("nothing to concatenate")
        has_sig = {s.sigmas is not None for s in sets}
        if len(has_sig) > 1:
            raise ValueError("cannot mix environment sets with and without per-atom sigmas")
        offs = [np.array([0])]
        base = 0
        for s in sets:
            offs.append(s.offsets[1:] + base)
            base += len(s.positions)
        return cls(
            np.concatenate([s.positions for s in sets]),
            np.concatenate([s.weights for s in sets]),
            np.concatenate(offs),
            np.concatenate([s.sigmas for s in sets]) if sets[0].sigmas is not None else None,
            np.concatenate([s.centers for s in sets]),
        )

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return self.positions.shape[1]

    @property
    def n_channels(self) -> int:
        return self.weights.shape[1]

    @property
    def counts(self) -> np.ndarray:
        """Number of neighbours (rows) of each environment."""
        return np.diff(self.offsets)

    def __getitem__(self, k):
        if isinstance(k, (int, np.integer)):
            if k < 0:
                k += len(self)
            a, b = self.offsets[k], self.offsets[k + 1]
            out = (self.positions[a:b], self.weights[a:b])
            return out + (self.sigmas[a:b],) if self.sigmas is not None else out
        return self.subset(k)

    def subset(self, index) -> "EnvironmentSet":
        """A new set holding the environments ``index`` (array of indices or boolean mask)."""
        index = np.arange(len(self))[index] if not np.ndim(index) == 0 else np.array([index])
        index = np.asarray(index, dtype=np.int64)
        counts = self.counts[index]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows = (
            np.concatenate([np.arange(self.offsets[k], self.offsets[k + 1]) for k in index])
            if len(index) and counts.sum()
            else np.zeros(0, dtype=np.int64)
        )
        return EnvironmentSet(
            self.positions[rows],
            self.weights[rows],
            offsets,
            None if self.sigmas is None else self.sigmas[rows],
            self.centers[index],
        )

    def to_list(self):
        return [self[k] for k in range(len(self))]

    def nearest_distances(self) -> np.ndarray:
        """Distance from each centre to its nearest neighbour (``inf`` for an empty environment)."""
        out = np.full(len(self), np.inf)
        has = self.counts > 0
        if has.any():
            r = np.linalg.norm(self.positions, axis=1)
            out[has] = np.minimum.reduceat(r, self.offsets[:-1][has])
        return out

    def coordination(self) -> np.ndarray:
        """Smooth coordination number: the sum of |weights| of each environment (first channel
        for one-channel encodings, all channels for vector encodings)."""
        out = np.zeros(len(self))
        np.add.at(out, np.repeat(np.arange(len(self)), self.counts), np.abs(self.weights).sum(axis=1))
        return out  # an empty environment (also the last one) has 0

    def channel_occupancy(self) -> np.ndarray:
        """``(len(self), n_channels)`` booleans: whether each environment has a non-zero weight in
        each channel (for vector species: which neighbour species it has)."""
        occ = np.zeros((len(self), self.n_channels), dtype=bool)
        np.logical_or.at(occ, np.repeat(np.arange(len(self)), self.counts), self.weights != 0)
        return occ

    def padded(self, index=None, min_size: int = 1):
        """Pad environments ``index`` to a common neighbour count with zero weights.

        Returns ``pos (B, n, dim)``, ``w (B, n, C)``, ``sig (B, n)`` (or ``None``) as numpy arrays;
        padded rows have zero weight (and so contribute nothing) and position 0.
        """
        if index is None:
            index = np.arange(len(self))
        index = np.asarray(index, dtype=np.int64)
        counts = self.counts[index]
        n = max(int(counts.max()) if len(counts) else 0, min_size)
        B = len(index)
        pos = np.zeros((B, n, self.dim))
        w = np.zeros((B, n, self.n_channels))
        sig = None if self.sigmas is None else np.ones((B, n))
        # vectorised scatter of ragged rows
        rows = np.concatenate([np.arange(self.offsets[k], self.offsets[k + 1]) for k in index]) if counts.sum() else np.zeros(0, np.int64)
        b_idx = np.repeat(np.arange(B), counts)
        j_idx = np.arange(len(rows)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        pos[b_idx, j_idx] = self.positions[rows]
        w[b_idx, j_idx] = self.weights[rows]
        if sig is not None:
            sig[b_idx, j_idx] = self.sigmas[rows]
        return pos, w, sig
