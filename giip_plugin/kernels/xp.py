"""One implementation for numpy and PyTorch arrays: the array namespace of an input, and the few
constructors whose signatures differ between the two.

The special functions, inner products and harmonic coefficients of this package are written once
against these helpers. Called with numpy arrays they run without importing PyTorch (the compiled
search of a single pair needs nothing else, so a one-pair process stays small and starts fast);
called with tensors they run on the tensors' device (the PyTorch search, CUDA included).
"""
from __future__ import annotations

import numpy as np


def namespace(x):
    """``torch`` for a tensor, else ``numpy`` (PyTorch is not imported for numpy input)."""
    if type(x).__module__.partition(".")[0] == "torch":
        import torch

        return torch
    return np


def is_torch(xp) -> bool:
    return xp is not np


def zeros(xp, like, shape, dtype=None):
    """Zeros of ``shape`` with ``dtype`` (default: that of ``like``) where ``like`` lives."""
    dtype = like.dtype if dtype is None else dtype
    if is_torch(xp):
        return xp.zeros(tuple(shape), dtype=dtype, device=like.device)
    return np.zeros(tuple(shape), dtype=dtype)


def full(xp, like, shape, value, dtype=None):
    dtype = like.dtype if dtype is None else dtype
    if is_torch(xp):
        return xp.full(tuple(shape), value, dtype=dtype, device=like.device)
    return np.full(tuple(shape), value, dtype=dtype)


def astype(xp, x, dtype):
    return x.to(dtype) if is_torch(xp) else x.astype(dtype, copy=False)


def asarray(xp, x, like, dtype=None):
    """``x`` (numpy) as an array of ``like``'s kind, dtype and device."""
    dtype = like.dtype if dtype is None else dtype
    if is_torch(xp):
        return xp.as_tensor(x, dtype=dtype, device=like.device)
    return np.asarray(x, dtype=dtype)


def real_dtype(xp, x):
    """float64 for double-precision input (real or complex), else float32."""
    return xp.float64 if x.dtype in (xp.float64, xp.complex128) else xp.float32


def complex_dtype(xp, x):
    """complex128 for double-precision input, else complex64."""
    return xp.complex128 if x.dtype in (xp.float64, xp.complex128) else xp.complex64


def size(x) -> int:
    n = 1
    for s in x.shape:
        n *= int(s)
    return n
