"""A SIGINT to a process that ignores it (a background job of a script, nohup) stays ignored after
the package imports ovito (to read frames, or for a Voronoi analysis), whose import otherwise
installs a native handler that crashed the process."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

DUMP = Path(__file__).parent / "data" / "ninb" / "quench10M.dump"

READ = f"""
from giip_plugin.io import iter_frames
n = len(next(iter_frames({str(DUMP)!r}, type_names="1=Ni,2=Nb", reader="ovito")).atoms)
"""
VORONOI = """
from ase.build import bulk
from giip_plugin.interpret.quantities import voronoi_sizes
n = len(voronoi_sizes(bulk("Cu", cubic=True) * (2, 2, 2), 3))
"""
AFTER = """
import os, signal, time
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.5)
print("alive", n, flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
@pytest.mark.parametrize("work, n", [(READ, 13500), (VORONOI, 32)], ids=["read-frames", "voronoi"])
def test_an_ignored_sigint_stays_ignored_after_ovito_is_imported(work, n):
    pytest.importorskip("ovito")
    res = subprocess.run([sys.executable, "-c", work + AFTER], capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"alive {n}" in res.stdout
