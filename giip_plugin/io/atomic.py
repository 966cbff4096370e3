"""Files that appear whole or not at all, and outputs that never overwrite their inputs.

Every file this package writes for a user (annotated trajectories, reference maps, checkpoint
blocks) is first written to a hidden temporary file beside the target, then renamed onto it. The
temporary file is made with ``os.open(..., 0o666)``, so it gets the process's umask like any new
file (no process-wide umask change), and it is named after the target, the host and the process:
``.NAME.HOST.PID.RANDOM.SUFFIX``. A process killed by SIGKILL (or a crash) cannot remove its
temporary file; the next process that writes the same target removes the temporary files of that
target left by processes of this host that are no longer running (:func:`remove_stale`).
"""
from __future__ import annotations

import glob
import os
import secrets
import socket
import time
from pathlib import Path

__all__ = ["temp_path_for", "open_temp", "remove_stale", "check_output", "same_file"]

# temporary files of the older naming (.NAME.XXXXXXXX.SUFFIX, without host and pid) are removed
# once they have not been modified for this long
_LEGACY_STALE_S = 3600.0


def _host() -> str:
    return "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in socket.gethostname()) or "host"


def temp_path_for(path, suffix: str = ".part") -> Path:
    """A fresh hidden temporary name beside ``path`` (the file is not created)."""
    path = Path(path)
    return path.parent / f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"


def open_temp(path, suffix: str = ".part") -> tuple[int, Path]:
    """Create the temporary file for ``path``: ``(fd, temporary path)``; mode 0o666 & ~umask."""
    while True:
        tmp = temp_path_for(path, suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        return fd, tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(path, suffix: str = ".part") -> list:
    """Remove the temporary files of ``path`` left by dead processes of this host; return them.

    Files of running processes (another run writing the same target now) and of other hosts
    (a shared file system) are left alone.
    """
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    host = _host()
    for cand in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*" + glob.escape(suffix))):
        middle = os.path.basename(cand)[len(prefix): -len(suffix)]
        parts = middle.split(".")
        stale = False
        if len(parts) == 3 and parts[1].isdigit():
            stale = parts[0] == host and int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
        elif len(parts) == 1 and len(parts[0]) >= 6:  # the older tempfile.mkstemp naming
            try:
                stale = time.time() - os.path.getmtime(cand) > _LEGACY_STALE_S
            except OSError:
                stale = False
        if stale:
            try:
                os.unlink(cand)
                removed.append(cand)
            except OSError:
                pass
    return removed


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same existing file (resolved path or same inode)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, inputs=(), *, what: str = "output", option: str = "-o") -> Path:
    """Refuse an output path that would lose data or fail only after the computation.

    Raises ``ValueError`` when ``path`` is a directory, names one of ``inputs`` (the same file by
    resolved path or inode: writing it would destroy the input), or lies in a folder that does not
    exist or cannot be written. Returns the path.
    """
    p = Path(os.fspath(path))
    if str(p) in ("", "."):
        raise ValueError(f"the {what} path is empty; give a file name with {option}")
    if p.is_dir():
        raise ValueError(f"the {what} {p} is a directory; give a file name with {option}")
    for inp in inputs or ():
        if same_file(p, inp):
            raise ValueError(
                f"the {what} {p} is the input {inp}: writing it would destroy the input; "
                f"give another file name with {option}"
            )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write the {what} {p}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {p}: the folder {parent} is not writable")
    return p
