"""A SIGINT to a process that ignores it (a background job of a script, nohup) stays ignored after
frames are read with OVITO, whose import otherwise installs a native handler that crashed the
process."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

DUMP = Path(__file__).parent / "data" / "ninb" / "quench10M.dump"

CHILD = f"""
import os, signal, time
from giip_plugin.io import iter_frames
frame = next(iter_frames({str(DUMP)!r}, type_names="1=Ni,2=Nb"))
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.5)
print("alive", len(frame.atoms), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_an_ignored_sigint_stays_ignored_after_reading_with_ovito():
    pytest.importorskip("ovito")
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "alive 13500" in res.stdout
