"""The batched engine: results do not depend on how pairs are grouped into batches."""
import numpy as np

from giip_plugin.environments import EnvironmentSet
from giip_plugin.kernels import DistanceEngine


def _envs(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = rng.integers(4, 12)
        pos = rng.normal(size=(m, 3)) * 1.6
        out.append((pos, rng.choice([-1.0, 1.0], m)))
    return EnvironmentSet.from_list(out)


def test_repeated_and_mixed_pairs_in_one_batch():
    envs = _envs(6, 3)
    eng = DistanceEngine(envs, sigma=1.0, group="O3", chunk_pairs=7)
    ia = np.array([0, 0, 1, 2, 2, 3, 0, 4, 5, 5, 1, 0])
    ib = np.array([0, 0, 1, 2, 3, 2, 4, 0, 5, 1, 5, 4])
    d = eng.distances(ia, ib)
    # self-distances are zero however often the pair repeats in a batch
    same = ia == ib
    np.testing.assert_allclose(d[same], 0.0, atol=1e-6)
    # symmetric pairs agree, and each pair alone gives the same value
    alone = np.array([DistanceEngine(envs, sigma=1.0, chunk_pairs=1).distances([i], [j])[0] for i, j in zip(ia, ib)])
    np.testing.assert_allclose(d, alone, atol=1e-9)
    np.testing.assert_allclose(d[4], d[5], atol=1e-9)
    np.testing.assert_allclose(d[6], d[7], atol=1e-9)
