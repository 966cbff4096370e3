"""Every switch that changes how giip-plugin runs, in one place (documented in docs/design.md,
section 6). Nothing else in the package reads environment variables or changes process-wide
settings.

Environment variables
---------------------
``GIIP_CACHE_DIR``
    Folder of the rotation search compiled at first use (when ``pip install`` could not build it,
    or built it for another CPU) and of cached tables. Default ``$XDG_CACHE_HOME/giip-plugin``, else
    ``~/.cache/giip-plugin``.
``GIIP_NO_FUSED``
    ``1`` (any non-empty value): every rotation search runs on PyTorch instead of the compiled C
    kernel (the baseline of the benchmarks).
``GIIP_NO_INSTALLED_KERNEL``
    ``1``: ignore the kernel built by ``pip install`` and compile it at first use (tests of that
    fallback).
``CC``
    The C compiler, with flags if needed, that builds the kernel at first use (default ``cc``).

Threads
-------
The distance kernels run chunks of pairs on worker threads, each with one PyTorch thread (the
operations on one chunk are too small for PyTorch's intra-op threads, whose spinning collapses on
a loaded machine). PyTorch's thread count is process-wide, so it is set only at the entry points
(the command line, :class:`~giip_plugin.GIIPAnalyzer`, :meth:`ReferenceMap.build` and
:meth:`~ReferenceMap.transform`, :func:`~giip_plugin.pairwise_distances`, and
:meth:`DistanceEngine.distances <giip_plugin.kernels.DistanceEngine.distances>` when it is called
directly) by :func:`compute_threads`, and restored when they return; nested entry points keep the
outer setting. Outside any entry point the number of worker threads is PyTorch's thread count, so
``torch.set_num_threads(n)`` before a call chooses it.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["cache_dir", "fused_disabled", "c_compiler", "available_cores", "compute_threads", "workers"]


def cache_dir() -> Path:
    """``$GIIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/giip-plugin``, else ``~/.cache/giip-plugin``."""
    env = os.environ.get("GIIP_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "giip-plugin"


def fused_disabled() -> bool:
    """``GIIP_NO_FUSED`` is set: keep every rotation search on PyTorch."""
    return bool(os.environ.get("GIIP_NO_FUSED"))


def installed_kernel_disabled() -> bool:
    """``GIIP_NO_INSTALLED_KERNEL`` is set: compile the kernel at first use even when ``pip install``
    built it."""
    return bool(os.environ.get("GIIP_NO_INSTALLED_KERNEL"))


def c_compiler() -> str:
    """``$CC`` or ``cc``."""
    return os.environ.get("CC") or "cc"


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_STATE = threading.local()


def workers() -> int:
    """Worker threads of the distance kernels: the value of the innermost :func:`compute_threads`
    of this thread, else PyTorch's thread count (the caller's own setting)."""
    n = getattr(_STATE, "workers", None)
    if n:
        return int(n)
    import torch

    return max(1, int(torch.get_num_threads()))


def run_in_threads(fn, items, workers: int):
    """``fn(item)`` for every item on up to ``workers`` threads, yielding ``(item, result)`` in input
    order. On an error or Ctrl-C the items not yet started are cancelled and the exception is
    re-raised (calls under way finish)."""
    items = list(items)
    workers = max(1, min(int(workers), len(items)))
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [(item, pool.submit(fn, item)) for item in items]
        try:
            for item, fut in futures:
                yield item, fut.result()
        except BaseException:
            for _, fut in futures:
                fut.cancel()
            raise


def inside_compute_threads() -> bool:
    """Whether an entry point of this thread has set the threads (:func:`compute_threads`)."""
    return getattr(_STATE, "workers", None) is not None


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Entry-point context: ``n`` worker threads (default PyTorch's thread count, i.e. all cores
    unless the caller chose otherwise) with one PyTorch intra-op thread each; PyTorch's setting is
    restored on exit. Nested uses keep the outer setting unless they name ``n``."""
    outer = getattr(_STATE, "workers", None)
    if outer is not None and n is None:
        yield outer
        return
    if n is not None and int(n) < 1:
        raise ValueError(f"the number of threads must be positive, got {n}")
    import torch

    previous = torch.get_num_threads()
    count = int(n) if n is not None else max(1, int(previous))
    torch.set_num_threads(1)
    _STATE.workers = count
    try:
        yield count
    finally:
        _STATE.workers = outer
        torch.set_num_threads(previous)
