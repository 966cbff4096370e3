"""How the compiled search (``fused_kernel.c``) is built: flags and the identity of a build.

Standard library only: ``setup.py`` loads this file at install time (before the package's
dependencies exist), and :mod:`.fused` uses it at run time, so both build the same way.

A build is identified by the SHA-256 of the kernel source and of the CPU it was compiled on (what
``-march=native`` depends on); a library whose identity differs from the running one (the source
changed after an editable install, or another CPU model shares the installation) is not loaded, and
the kernel is compiled again into the cache at first use.
"""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path

SOURCE = Path(__file__).with_name("fused_kernel.c")
# -mprefer-vector-width=512: GCC vectorises the polish's loops over the 16 lanes (doubles) with
# 256-bit registers by default even where AVX-512 exists; full width makes the coarse search 1.25x
# faster on the AVX-512 hosts measured (benchmarks/RESULTS.md; no effect where the widest is 256;
# an x86 option, which compilers for other CPUs refuse)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
CFLAGS = ("-O3", "-march=native") + (("-mprefer-vector-width=512",) if _X86 else ()) + ("-ffast-math", "-fPIC")
# linked in a second step without -ffast-math: linking with it adds a constructor (crtfastmath) that
# flushes denormals to zero in the loading thread, for the whole process (GCC before 13)
LDFLAGS = ("-shared",)
#: the library built by ``pip install`` (a setuptools extension, loaded with ctypes); its identity
#: is compiled into it (``-DGIIP_IDENTITY``, returned by ``giip_identity()``)
INSTALLED_NAME = "_search_kernel"


def cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU model and its flags (Linux), else the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
        if keep:
            return "\n".join(sorted(set(keep)))
    except OSError:
        pass
    return platform.machine() + platform.processor()


def identity(source: bytes | None = None) -> str:
    """Identity of a build of ``source`` (default: the kernel source) on this CPU with these flags."""
    source = SOURCE.read_bytes() if source is None else source
    return hashlib.sha256(b"\0".join([source, repr((CFLAGS, LDFLAGS)).encode(), cpu_identity().encode()])).hexdigest()
