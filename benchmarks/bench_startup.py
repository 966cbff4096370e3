"""Benchmark: the first distance in a fresh process, single pairs after it, and the memory of a
one-pair process (what an OVITO user or a short script pays).

Each figure comes from ``--runs`` fresh Python processes (median): the time to ``import
giip_plugin``, then to the first ``giip_plugin.distance`` of two NiNb first shells (the paper's
parameters), then the median of 50 further single-pair calls, the peak resident memory of the
process (``ru_maxrss``), and whether PyTorch was loaded. Two cases: an empty cache directory
(``GIIP_CACHE_DIR`` new for each process: the radial basis of the band limit is computed), and the
cache that a first process left (its basis loaded from disk: every later process of a user).

    python benchmarks/bench_startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, time
t0 = time.perf_counter()
import giip_plugin as gp
t1 = time.perf_counter()
import numpy as np
rng = np.random.default_rng(0)
def shell(n):
    u = rng.normal(size=(n, 3)); r = rng.uniform(2.2, 3.6, (n, 1))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * r, rng.choice([-1.0, 1.0], n)
(a, wa), (b, wb) = shell(14), shell(15)
t2 = time.perf_counter()
gp.distance(a, wa, b, wb, sigma=1.0)
t3 = time.perf_counter()
times = []
for _ in range(50):
    (a, wa), (b, wb) = shell(14), shell(15)
    s = time.perf_counter(); gp.distance(a, wa, b, wb, sigma=1.0); times.append(time.perf_counter() - s)
times.sort()
print(json.dumps({"import": t1 - t0, "first": t3 - t2, "single": times[len(times) // 2],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": float("torch" in __import__("sys").modules)}))
"""


def _runs(n, cache_dir, fresh):
    rows = []
    for k in range(n):
        env = dict(os.environ, GIIP_CACHE_DIR=os.path.join(cache_dir, f"run{k}" if fresh else "kept"))
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env=env).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold = _runs(args.runs, tmp, fresh=True)
        _runs(1, tmp, fresh=False)  # fills the kept cache
        warm = _runs(args.runs, tmp, fresh=False)
    print(f"fresh processes: {args.runs} per column (median)")
    print("| figure | empty cache | cache kept | target |")
    print("|---|---|---|---|")
    print(f"| import giip_plugin | {cold['import']:.2f} s | {warm['import']:.2f} s | - |")
    print(f"| first distance (after the import) | {cold['first']:.2f} s | {warm['first']:.2f} s | <= 1 s |")
    print(f"| a further single pair | {1e3 * cold['single']:.1f} ms | {1e3 * warm['single']:.1f} ms | <= 5 ms |")
    print(f"| peak memory of the process | {cold['rss_mb']:.0f} MB | {warm['rss_mb']:.0f} MB | <= 300 MB |")
    print(f"| PyTorch loaded | {'yes' if cold['torch'] else 'no'} | {'yes' if warm['torch'] else 'no'} | - |")


if __name__ == "__main__":
    main()
