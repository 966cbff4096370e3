"""Benchmark: the first distance in a fresh process, single pairs after it, and the memory of a
one-pair process (what an OVITO user or a short script pays).

Each figure comes from ``--runs`` fresh Python processes (median): the time to ``import
giip_plugin``, then to the first ``giip_plugin.distance`` of two NiNb first shells (the paper's
parameters), then the median of 50 further single-pair calls, and the peak resident memory of the
process (``ru_maxrss``).

    python benchmarks/bench_startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

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
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    rows = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"fresh processes: {args.runs} (median)")
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(f"| import giip_plugin | {med['import']:.2f} s | - |")
    print(f"| first distance (after the import) | {med['first']:.2f} s | <= 1 s |")
    print(f"| a further single pair | {1e3 * med['single']:.1f} ms | <= 5 ms |")
    print(f"| peak memory of the process | {med['rss_mb']:.0f} MB | <= 300 MB |")


if __name__ == "__main__":
    main()
