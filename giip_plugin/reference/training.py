"""The training distance matrix, computed in blocks, checkpointed on disk, locally or on Dask.

The ``n x n`` matrix of orientation-invariant GIIP distances between the training environments is
the expensive part of a reference map (``n (n - 1) / 2`` exact rotation searches). It is split into
square blocks of ``block_size`` rows and columns; only the blocks on and above the diagonal are
computed (a diagonal block holds its pairs ``i < j``).

Checkpoints
    With ``checkpoint=DIR`` every finished block is written to ``DIR`` (one ``.npy`` file per block,
    written to a temporary name and renamed, so a block file is either complete or absent) next to
    a ``manifest.json`` that holds a SHA-256 hash of the inputs: the environment arrays, sigma, the
    group, the block size and the rotation-search settings. A rerun with the same inputs skips the
    blocks already on disk; a checkpoint made from other inputs is never reused (a
    :class:`CheckpointMismatch` error says so, or ``restart=True`` discards it). After an
    interruption (Ctrl-C, ``KeyboardInterrupt``) the finished blocks stay on disk and the message says
    to rerun the same command to resume.

Where the blocks run
    * Locally (default): one process, PyTorch's intra-op thread pool set to ``n_workers`` threads
      (default: every core this process may use, ``os.sched_getaffinity``). The rotation search is
      batched tensor arithmetic, so one process with all cores as torch threads uses the machine;
      no cluster is started.
    * ``scheduler="tcp://HOST:PORT"`` (or a ``dask.distributed.Client``): one Dask task per block on
      an existing cluster. The environment arrays are sent once to every worker
      (``client.scatter(..., broadcast=True)``); each worker builds one
      :class:`~giip_plugin.kernels.DistanceEngine` for the whole training set (cached per process),
      so the distances are the same as on the local path. Each task runs with one torch thread:
      start workers with ``--nthreads`` equal to their cores. Results are gathered as they complete,
      with the progress bar, and checkpointed as they arrive.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import threading
from dataclasses import asdict

import numpy as np

from .. import config
from ..environments import EnvironmentSet

__all__ = [
    "CheckpointMismatch",
    "DistanceCheckpoint",
    "block_layout",
    "block_pairs",
    "default_block_size",
    "inputs_hash",
    "training_distance_matrix",
]

CHECKPOINT_FORMAT = "giip-distance-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointMismatch(ValueError):
    """A checkpoint directory holds blocks of a different computation."""


# --------------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------------
def default_block_size(n: int, device=None) -> int:
    """Rows per block: 64, i.e. 4,096 pairs per off-diagonal block (about a minute on 2 cores for
    NiNb-size environments): the unit of checkpointing and of Dask tasks. Large enough that the
    batched rotation search runs at full speed, small enough that little is lost on interruption.
    On a GPU (``device`` resolving to CUDA) 512 rows, 262,144 pairs: a block of 4,096 pairs is far
    too small a launch there."""
    if device != "cpu":  # None / "auto": CUDA where PyTorch sees a GPU
        from ..kernels.engine import resolve_device

        if resolve_device(device).type == "cuda":
            return 512
    return 64


def block_layout(n: int, block_size: int) -> list[tuple[int, int]]:
    """Blocks ``(I, J)`` with ``I <= J`` covering the upper triangle, in row-major order."""
    nb = math.ceil(n / block_size) if n else 0
    return [(I, J) for I in range(nb) for J in range(I, nb)]


def block_pairs(n: int, block_size: int, I: int, J: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(ia, ib)`` of block ``(I, J)``, ``ia < ib``, in a fixed order."""
    a0, a1 = I * block_size, min(n, (I + 1) * block_size)
    b0, b1 = J * block_size, min(n, (J + 1) * block_size)
    if I == J:
        ia, ib = np.triu_indices(a1 - a0, k=1)
        return (ia + a0).astype(np.int64), (ib + a0).astype(np.int64)
    ia = np.repeat(np.arange(a0, a1), b1 - b0)
    ib = np.tile(np.arange(b0, b1), a1 - a0)
    return ia.astype(np.int64), ib.astype(np.int64)


def _n_pairs(n, block_size, I, J):
    a = min(n, (I + 1) * block_size) - I * block_size
    if I == J:
        return a * (a - 1) // 2
    return a * (min(n, (J + 1) * block_size) - J * block_size)


# --------------------------------------------------------------------------------------------------
# hashing and checkpoints
# --------------------------------------------------------------------------------------------------
def _settings_dict(settings) -> dict:
    if settings is None:
        from ..kernels import SearchSettings

        settings = SearchSettings()
    return asdict(settings)


def inputs_hash(envs: EnvironmentSet, sigma: float, group, block_size: int, settings=None) -> str:
    """SHA-256 (hex) of everything that determines the blocks of the matrix."""
    h = hashlib.sha256()
    for name, arr in (("positions", envs.positions), ("weights", envs.weights), ("offsets", envs.offsets),
                      ("sigmas", envs.sigmas)):
        h.update(name.encode())
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr, dtype="<f8" if name != "offsets" else "<i8")
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    params = {"sigma": float(sigma), "group": group, "block_size": int(block_size), "n": len(envs),
              "settings": _settings_dict(settings)}
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


class DistanceCheckpoint:
    """A directory of finished blocks (``b{I}_{J}.npy``) with a ``manifest.json``."""

    def __init__(self, path, key: str, n: int, block_size: int, restart: bool = False, log=None):
        self.path = os.fspath(path)
        self.key = key
        self.n = int(n)
        self.block_size = int(block_size)
        manifest = os.path.join(self.path, "manifest.json")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"checkpoint path {self.path} exists and is not a directory; remove it")
        if os.path.isdir(self.path):
            old = None
            try:
                with open(manifest) as f:
                    old = json.load(f)
            except (OSError, ValueError):
                old = None
            if old is None or old.get("format") != CHECKPOINT_FORMAT or old.get("hash") != key:
                if not restart:
                    why = ("was made from different inputs (training environments or parameters)"
                           if old is not None and old.get("format") == CHECKPOINT_FORMAT
                           else "is not a readable GIIP distance checkpoint")
                    raise CheckpointMismatch(
                        f"the checkpoint directory {self.path} {why}; it cannot be reused. Delete it, "
                        "or rerun with --restart (restart=True) to discard it and start afresh"
                    )
                shutil.rmtree(self.path)
                if log:
                    log(f"discarded the old checkpoint {self.path}")
            elif restart:
                shutil.rmtree(self.path)
                if log:
                    log(f"discarded the checkpoint {self.path} (restart)")
        os.makedirs(self.path, exist_ok=True)
        if not os.path.exists(manifest):
            tmp = manifest + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "hash": key,
                           "n": self.n, "block_size": self.block_size}, f, indent=1)
            os.replace(tmp, manifest)

    def _file(self, I, J):
        return os.path.join(self.path, f"b{I}_{J}.npy")

    def load(self, I, J, expected: int):
        """The values of block (I, J), or None when it is not (validly) there."""
        fn = self._file(I, J)
        if not os.path.exists(fn):
            return None
        try:
            v = np.load(fn, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if v.shape != (expected,) or not np.all(np.isfinite(v)):
            return None
        return v

    def save(self, I, J, values):
        fn = self._file(I, J)
        tmp = fn + ".tmp.npy"
        np.save(tmp, np.asarray(values, dtype=float))
        os.replace(tmp, fn)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# computing blocks
# --------------------------------------------------------------------------------------------------
def _compute_block(engine, n: int, block_size: int, I: int, J: int, progress=None) -> np.ndarray:
    """Distances of the pairs of block (I, J) (module-level so that tests can interrupt it)."""
    ia, ib = block_pairs(n, block_size, I, J)
    return engine.distances(ia, ib, progress=progress)




def _payload(envs: EnvironmentSet, sigma, group, settings, device, dtype, key, compiled=None) -> dict:
    return {
        "positions": envs.positions, "weights": envs.weights, "offsets": envs.offsets, "sigmas": envs.sigmas,
        "sigma": float(sigma), "group": group, "settings": settings, "device": device, "dtype": dtype,
        "key": key, "compiled": compiled,
    }


_ENGINE_CACHE: dict = {}
_ENGINE_LOCK = threading.Lock()


def _engine_from_payload(p):
    from ..kernels import DistanceEngine

    with _ENGINE_LOCK:
        eng = _ENGINE_CACHE.get(p["key"])
        if eng is None:
            S = EnvironmentSet(p["positions"], p["weights"], p["offsets"], p["sigmas"])
            eng = DistanceEngine(S, sigma=p["sigma"], group=p["group"], device=p["device"], dtype=p["dtype"],
                                 settings=p["settings"], compiled=p.get("compiled"))
            _ENGINE_CACHE.clear()  # one training set per worker process at a time
            _ENGINE_CACHE[p["key"]] = eng
        return eng


def _dask_block(payload, n, block_size, I, J):
    """A Dask task: one block, on one torch thread (see the module docstring)."""
    with config.compute_threads(1):
        eng = _engine_from_payload(payload)
        return I, J, _compute_block(eng, n, block_size, I, J)


def _progress_bar(progress, total, initial, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="pair", desc=desc, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.05)


def training_distance_matrix(
    envs: EnvironmentSet,
    sigma: float,
    group="O3",
    *,
    block_size: int | None = None,
    checkpoint=None,
    restart: bool = False,
    keep_checkpoint: bool = True,
    scheduler=None,
    progress: bool = True,
    n_workers: int | None = None,
    device=None,
    dtype=None,
    settings=None,
    log=None,
    compiled: bool | None = None,
) -> np.ndarray:
    """Symmetric matrix of invariant GIIP distances of ``envs`` (zero diagonal), in blocks.

    Parameters
    ----------
    envs : the training :class:`~giip_plugin.environments.EnvironmentSet`.
    sigma, group : GIIP Gaussian width and orientation group ("O3", "SO3", "O2", "SO2" or None).
    block_size : rows per block (default :func:`default_block_size`).
    checkpoint : directory for finished blocks (None: no checkpoint). Resumes from it when it holds
        blocks of the same inputs; raises :class:`CheckpointMismatch` when it holds others.
    restart : discard an existing checkpoint first.
    keep_checkpoint : leave the checkpoint directory after success (the caller removes it once the
        result is safely stored; :class:`~giip_plugin.reference.ReferenceMap` does).
    scheduler : None (local) or a Dask scheduler address / ``dask.distributed.Client``.
    progress : show a progress bar (tqdm, on stderr) over pairs.
    n_workers : torch threads of the local path (default: all cores available to this process).
    device, dtype, settings, compiled : passed to :class:`~giip_plugin.kernels.DistanceEngine`
        (``compiled=None``: the compiled search wherever it covers the search; ``False``: PyTorch).
    log : optional callable for one-line messages (resume state, interruption).

    On ``KeyboardInterrupt`` the finished blocks stay in ``checkpoint`` and the interrupt is
    re-raised after a message saying how to resume (rerun the same command / call).
    """
    if not isinstance(envs, EnvironmentSet):
        raise TypeError("envs must be an EnvironmentSet")
    n = len(envs)
    if n < 2:
        raise ValueError(f"a training distance matrix needs at least 2 environments, got {n}")
    from ..kernels import DistanceEngine, SearchSettings
    from ..validation import check_group, check_sigma

    sigma = check_sigma(sigma)
    check_group(group, envs.dim)
    settings = settings or SearchSettings()
    bs = int(block_size) if block_size is not None else default_block_size(n, device if scheduler is None else "cpu")
    if bs < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    blocks = block_layout(n, bs)
    key = inputs_hash(envs, sigma, group, bs, settings)
    ck = DistanceCheckpoint(checkpoint, key, n, bs, restart=restart, log=log) if checkpoint is not None else None

    D = np.zeros((n, n))

    def put(I, J, vals):
        ia, ib = block_pairs(n, bs, I, J)
        D[ia, ib] = vals
        D[ib, ia] = vals

    todo = []
    done_pairs = 0
    for I, J in blocks:
        vals = ck.load(I, J, _n_pairs(n, bs, I, J)) if ck is not None else None
        if vals is None:
            todo.append((I, J))
        else:
            put(I, J, vals)
            done_pairs += len(vals)
    total_pairs = n * (n - 1) // 2
    if ck is not None and len(todo) < len(blocks) and log:
        log(f"resuming from {ck.path}: {len(blocks) - len(todo)} of {len(blocks)} blocks already done")
    if not todo:
        return _finish(D, ck, keep_checkpoint)

    bar = _progress_bar(progress, total_pairs, done_pairs, "GIIP training distances")
    n_done = len(blocks) - len(todo)
    try:
        if scheduler is None:
            with config.compute_threads(n_workers if n_workers is not None else config.available_cores()):
                eng = DistanceEngine(envs, sigma=sigma, group=group, device=device, dtype=dtype, settings=settings,
                                     compiled=compiled)
                for I, J in todo:
                    vals = _compute_block(eng, n, bs, I, J, progress=bar)
                    if ck is not None:
                        ck.save(I, J, vals)
                    put(I, J, vals)
                    n_done += 1
        else:
            for I, J, vals in _run_dask(scheduler, _payload(envs, sigma, group, settings, device, dtype, key, compiled),
                                        n, bs, todo):
                if ck is not None:
                    ck.save(I, J, vals)
                put(I, J, vals)
                n_done += 1
                if bar is not None:
                    bar.update(len(vals))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        msg = (f"interrupted: {n_done} of {len(blocks)} blocks of the training distance matrix are saved in "
               f"{ck.path}; rerun the same command to resume from there" if ck is not None else
               "interrupted: no checkpoint directory was given, so nothing was saved")
        (log or (lambda m: print(m, file=sys.stderr)))(msg)
        raise
    finally:
        if bar is not None:
            bar.close()
    return _finish(D, ck, keep_checkpoint)


def _finish(D, ck, keep_checkpoint):
    if ck is not None and not keep_checkpoint:
        ck.remove()
    return D


def _run_dask(scheduler, payload, n, bs, todo):
    """Yield ``(I, J, values)`` of the blocks ``todo`` as the Dask tasks complete."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ValueError(
            "--scheduler needs Dask's distributed scheduler: pip install 'giip-plugin[dask]'"
        ) from e
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, set_as_default=False) if own else scheduler
    except OSError as e:
        raise ValueError(f"cannot connect to the Dask scheduler at {scheduler!r}: {e}") from e
    futures = []
    try:
        remote = client.scatter(payload, broadcast=True)
        tag = payload["key"][:12]
        futures = [client.submit(_dask_block, remote, n, bs, I, J, key=f"giip-block-{tag}-{I}-{J}", pure=False)
                   for I, J in todo]
        with client.as_current():  # as_completed looks for the current client
            for fut in as_completed(futures):
                I, J, vals = fut.result()
                yield I, J, np.asarray(vals, dtype=float)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        if own:
            client.close()
