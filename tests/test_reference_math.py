"""Numerical stages of the reference map: complete linkage, diffusion map + Nystrom, parsimony (LLR)."""
import warnings

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.stats import spearmanr

from giip_plugin.reference.clustering import (
    assign_nearest,
    class_summary,
    complete_linkage,
    validate_distance_matrix,
)
from giip_plugin.reference.diffusion import DiffusionMap, auto_epsilon
from giip_plugin.reference.regression import local_linear_regression_r2, select_parsimonious


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def blobs(rng, sizes=(20, 12, 7), spread=0.3):
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    X = np.concatenate([c + spread * rng.standard_normal((s, 3)) for c, s in zip(centers, sizes)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(len(X))
    return X[perm], truth[perm]


def same_partition(a, b):
    """True if two label arrays describe the same partition (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def brute_diameters(D, labels):
    return np.array([D[np.ix_(labels == c, labels == c)].max() for c in range(labels.max() + 1)])


def noisy_curve(rng, n=250, noise=0.003):
    s = np.sort(rng.uniform(0.0, 1.0, n))
    X = np.c_[s, 0.3 * np.sin(3.0 * s), 0.2 * s**2] + noise * rng.standard_normal((n, 3))
    return s, X


def strip(rng, n, length=2.5, width=1.0):
    """Uniform points on [0, length] x [0, width]. Neumann modes cos(a pi x / L) cos(b pi y / W) have
    eigenvalue ~ (a / L)^2 + (b / W)^2: with L = 2.5, W = 1 the order is (1,0), (2,0), (0,1), (3,0),
    well separated. (The classic 4 x 1 strip has (0,1) and (4,0) exactly degenerate, and the finite
    sample mixes them.)"""
    return np.c_[rng.uniform(0.0, length, n), rng.uniform(0.0, width, n)]


def brute_llr(psi, factor=1.0 / 3.0):
    """Dsilva et al.'s procedure written directly: per-point weighted least squares, point left out."""
    n, K = psi.shape
    r = np.ones(K)
    for k in range(1, K):
        X, y = psi[:, :k], psi[:, k]
        d = squareform(pdist(X))
        h = factor * np.median(d[np.triu_indices(n, 1)])
        logw = -(d**2) / h**2
        np.fill_diagonal(logw, -np.inf)
        logw -= logw.max(axis=1, keepdims=True)
        W = np.exp(logw)
        pred = np.empty(n)
        for i in range(n):
            A = np.c_[np.ones(n), X - X[i]]
            sw = np.sqrt(W[i])
            pred[i] = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0][0]
        r[k] = np.sqrt(np.sum((y - pred) ** 2) / np.sum(y**2))
    return r


# --------------------------------------------------------------------------------------------------
# clustering
# --------------------------------------------------------------------------------------------------
def test_three_blobs_give_three_classes_by_diameter():
    rng = np.random.default_rng(0)
    X, truth = blobs(rng)
    D = cdist(X, X)
    cl = complete_linkage(D)
    intra = max(D[np.ix_(truth == c, truth == c)].max() for c in range(3))
    inter = min(D[np.ix_(truth == a, truth == b)].min() for a in range(3) for b in range(3) if a != b)
    assert intra < inter
    lab = cl.labels(max_diameter=0.5 * (intra + inter))
    assert lab.max() == 2 and same_partition(lab, truth)
    # classes numbered by decreasing size: the 20-blob is class 0, the 7-blob class 2
    assert np.array_equal(np.bincount(lab), [20, 12, 7])
    assert cl.n_classes_for(0.5 * (intra + inter)) == 3
    # just below the largest blob diameter one more class is needed
    assert cl.labels(max_diameter=np.nextafter(intra, 0)).max() + 1 > 3
    assert np.array_equal(cl.labels(n_classes=3), lab)
    assert cl.labels(n_classes=1).tolist() == [0] * len(X)
    assert np.array_equal(np.sort(cl.labels(n_classes=len(X))), np.arange(len(X)))
    assert np.array_equal(cl.labels(max_diameter=0.0), cl.labels(n_classes=len(X)))


def test_error_curve_equals_brute_force_diameters():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(25, 2))
    D = cdist(X, X)
    cl = complete_linkage(D)
    ks, err = cl.error_curve()
    assert np.array_equal(ks, np.arange(1, 26))
    assert err[-1] == 0 and np.all(np.diff(err) <= 0)
    assert err[0] == D.max()
    for K in ks:
        lab = cl.labels(n_classes=K)
        assert lab.max() + 1 == K
        assert brute_diameters(D, lab).max() == err[K - 1]
        # same partition as scipy's own cut (heights are distinct for random data)
        assert same_partition(lab, fcluster(cl.linkage, K, criterion="maxclust"))
        # fewest classes within a diameter: K classes suffice for err[K-1], K-1 do not
        assert cl.n_classes_for(err[K - 1]) <= K
        if K > 1 and err[K - 2] > err[K - 1]:
            assert cl.n_classes_for(err[K - 1]) == K


def test_label_ties_are_deterministic():
    # two pairs of equal size: class 0 is the one containing the lower index
    X = np.array([[10.0], [0.0], [10.5], [0.5]])
    lab = complete_linkage(cdist(X, X)).labels(n_classes=2)
    assert lab.tolist() == [0, 1, 0, 1]


def test_class_summary_sizes_diameters_medoids():
    rng = np.random.default_rng(2)
    X, truth = blobs(rng, sizes=(9, 6, 4))
    D = cdist(X, X)
    lab = complete_linkage(D).labels(n_classes=3)
    s = class_summary(D, lab)
    assert s.sizes.tolist() == [9, 6, 4]
    assert np.allclose(s.diameters, brute_diameters(D, lab))
    for c in range(3):
        members = np.flatnonzero(lab == c)
        sub = D[np.ix_(members, members)]
        assert s.medoids[c] == members[np.argmin(sub.max(axis=1))]
        assert s.radii[c] == sub.max(axis=1).min()
        assert s.diameters[c] / 2 <= s.radii[c] <= s.diameters[c]
    # hand example: on a line, the middle point is the minimax medoid; singleton has diameter 0
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    s = class_summary(cdist(x, x), [0, 0, 0, 1])
    assert s.medoids.tolist() == [1, 3] and s.diameters.tolist() == [2.0, 0.0] and s.radii.tolist() == [1.0, 0.0]


def test_assign_nearest():
    rng = np.random.default_rng(3)
    X, truth = blobs(rng)
    D = cdist(X, X)
    lab = complete_linkage(D).labels(n_classes=3)
    Y, truth_new = blobs(rng, sizes=(5, 5, 5))
    Dn = cdist(Y, X)
    res = assign_nearest(Dn, lab)
    labels, index, distance = res
    assert np.array_equal(index, Dn.argmin(axis=1))
    assert np.array_equal(distance, Dn.min(axis=1))
    assert np.array_equal(labels, lab[index])
    assert same_partition(labels, truth_new)
    # a training row is assigned to itself at distance 0; a single 1-D row is one point
    one = assign_nearest(D[4], lab)
    assert one.index.tolist() == [4] and one.distance.tolist() == [0.0]


def test_clustering_bad_inputs():
    good = cdist(np.arange(4.0)[:, None], np.arange(4.0)[:, None])
    with pytest.raises(ValueError, match="square"):
        complete_linkage(good[:3])
    asym = good.copy()
    asym[0, 1] += 0.5
    with pytest.raises(ValueError, match="symmetric"):
        complete_linkage(asym)
    neg = good.copy()
    neg[0, 1] = neg[1, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        complete_linkage(neg)
    nan = good.copy()
    nan[0, 1] = nan[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        complete_linkage(nan)
    diag = good + np.eye(4)
    with pytest.raises(ValueError, match="diagonal"):
        complete_linkage(diag)
    with pytest.raises(ValueError, match="empty"):
        complete_linkage(np.zeros((0, 0)))
    cl = complete_linkage(good)
    with pytest.raises(ValueError, match="exactly one"):
        cl.labels()
    with pytest.raises(ValueError, match="exactly one"):
        cl.labels(n_classes=2, max_diameter=1.0)
    with pytest.raises(ValueError):
        cl.labels(n_classes=0)
    with pytest.raises(ValueError):
        cl.labels(n_classes=5)
    with pytest.raises(ValueError):
        cl.labels(max_diameter=-1.0)
    with pytest.raises(ValueError):
        class_summary(good, [0, 0, 2, 2])  # class 1 empty
    with pytest.raises(ValueError):
        assign_nearest(np.zeros((2, 3)), [0, 0, 1, 1])
    # tiny asymmetry is tolerated and symmetrised; one point is one class
    jitter = good.copy()
    jitter[0, 1] += 1e-12
    assert np.array_equal(validate_distance_matrix(jitter), validate_distance_matrix(jitter).T)
    assert complete_linkage(np.zeros((1, 1))).labels(n_classes=1).tolist() == [0]


# --------------------------------------------------------------------------------------------------
# diffusion map
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def circle():
    rng = np.random.default_rng(4)
    n = 200
    t = rng.uniform(0, 2 * np.pi, n)
    X = np.c_[np.cos(t), np.sin(t), 0.01 * rng.standard_normal(n)]
    return t, X, cdist(X, X)


def test_circle_gives_cos_sin_and_conventions(circle):
    t, X, D = circle
    dm = DiffusionMap.fit(D, "auto", n_eigenpairs=8)
    lam, psi = dm.eigenvalues, dm.eigenvectors
    assert psi.shape == (200, 8) and lam.shape == (8,)
    assert np.all(np.diff(lam) <= 0) and lam[0] < 1 - 1e-6 and abs(dm.trivial_eigenvalue - 1) < 1e-12
    # first two = cos/sin of the angle (any phase): a linear fit on (cos t, sin t) explains them
    A = np.c_[np.cos(t), np.sin(t)]
    for i in (0, 1):
        coef, res, *_ = np.linalg.lstsq(A, psi[:, i], rcond=None)
        assert 1 - res[0] / np.sum((psi[:, i] - psi[:, i].mean()) ** 2) > 0.97
    # the trivial (constant) vector is gone: every psi is pi-orthogonal to constants
    pi = dm.Dvec / dm.Dvec.sum()
    assert np.allclose(pi @ psi, 0, atol=1e-10)
    # normalisation sum_j Dvec_j psi_j^2 = sum_j Dvec_j, pi-orthogonality
    assert np.allclose(psi.T @ (pi[:, None] * psi), np.eye(8), atol=1e-10)
    # sign convention: largest |component| positive
    big = np.abs(psi).argmax(axis=0)
    assert np.all(psi[big, np.arange(8)] > 0)
    # M psi = lambda psi with M = Dm^-1 P^-1 W P^-1
    W = np.exp(-(D**2) / (2 * dm.epsilon**2))
    assert np.allclose(W.sum(axis=1), dm.P)
    Wt = W / np.outer(dm.P, dm.P)
    M = Wt / Wt.sum(axis=1, keepdims=True)
    assert np.allclose(Wt.sum(axis=1), dm.Dvec)
    assert np.allclose(M @ psi, psi * lam, atol=1e-10)
    assert dm.n_negative == 0 and dm.eig_residual < 1e-10


def test_curve_first_coordinate_is_monotone():
    rng = np.random.default_rng(5)
    s, X = noisy_curve(rng)
    dm = DiffusionMap.fit(cdist(X, X), "auto", n_eigenpairs=4)
    assert abs(spearmanr(dm.eigenvectors[:, 0], s)[0]) > 0.99


def test_nystrom_reproduces_training_and_interpolates():
    rng = np.random.default_rng(6)
    s, X = noisy_curve(rng, n=200, noise=0.0)
    D = cdist(X, X)
    dm = DiffusionMap.fit(D, "auto", n_eigenpairs=6, solver="dense")
    assert np.abs(dm.transform(D) - dm.eigenvectors).max() < 1e-10
    # arpack gives the same eigenpairs and the same exactness
    dm2 = DiffusionMap.fit(D, "auto", n_eigenpairs=6, solver="arpack")
    assert dm2.solver == "arpack"
    assert np.allclose(dm2.eigenvalues, dm.eigenvalues, atol=1e-12)
    assert np.allclose(dm2.eigenvectors, dm.eigenvectors, atol=1e-8)
    assert np.abs(dm2.transform(D) - dm2.eigenvectors).max() < 1e-10
    # a point halfway between two neighbouring training points lies between their coordinates
    for i in (60, 100, 140):
        a, b = i, i + 1
        mid = 0.5 * (X[a] + X[b])
        phi = dm.transform(cdist(mid[None], X))[0, 0]
        lo, hi = sorted((dm.eigenvectors[a, 0], dm.eigenvectors[b, 0]))
        assert lo - 1e-9 <= phi <= hi + 1e-9
    # rebuilt from stored arrays, the map extends identically; batching changes nothing
    re = DiffusionMap(dm.epsilon, dm.eigenvalues, dm.eigenvectors, dm.P, dm.Dvec)
    assert np.array_equal(re.transform(D[:7]), dm.transform(D[:7]))
    assert np.allclose(dm.transform(D, batch_size=13), dm.transform(D), atol=1e-14)


def test_nystrom_far_points():
    rng = np.random.default_rng(7)
    s, X = noisy_curve(rng, n=100)
    D = cdist(X, X)
    dm = DiffusionMap.fit(D, 0.05, n_eigenpairs=3)
    far = np.full((1, 100), 1000.0)
    far[0, 3] = 100.0  # 2000 eps away: the plain kernel row underflows to zeros
    assert np.all(np.isnan(dm.transform(far)))
    ext = dm.transform(far, far="extend")  # the stable limit: dominated by training point 3
    assert np.allclose(ext[0], dm.eigenvectors[3] / dm.eigenvalues)
    assert np.all(np.isnan(dm.transform(np.full((1, 100), np.inf), far="extend")))
    mixed = dm.transform(np.vstack([D[5], far[0]]))
    assert np.allclose(mixed[0], dm.eigenvectors[5], atol=1e-10) and np.all(np.isnan(mixed[1]))
    assert dm.log_kernel_mass(far)[0] < -1e5
    assert np.isclose(dm.log_kernel_mass(D[:1])[0], np.log(dm.P[0]))


def test_non_euclidean_distances_give_negative_eigenvalues():
    # entries uniform in [1, 2]: a metric (triangle inequality holds) that is far from Euclidean
    rng = np.random.default_rng(8)
    n = 60
    U = np.triu(rng.uniform(1.0, 2.0, (n, n)), 1)
    D = U + U.T
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        dm = DiffusionMap.fit(D, 0.8, n_eigenpairs=None)
    assert len(dm.eigenvalues) == n - 1
    assert dm.n_negative > 0 and dm.n_negative == np.sum(dm.eigenvalues < 0)
    assert np.all(np.isfinite(dm.eigenvectors)) and np.all(np.diff(dm.eigenvalues) <= 0)
    assert np.abs(dm.transform(D) - dm.eigenvectors).max() < 1e-8
    assert np.all(np.isfinite(dm.transform(D[:3] * 1.01)))


def test_auto_epsilon_is_sensible(circle):
    t, X, D = circle
    eps, info = auto_epsilon(D)
    spacing = 2 * np.pi / len(t)
    # a few sampling spacings (10 neighbours, both sides), far below the radius
    assert 2 * spacing < eps < 10 * spacing and eps < 0.2
    assert info["method"] == "knn_median" and info["k"] == 10 and info["epsilon"] == eps
    # scale-equivariant, and recorded by fit
    assert np.isclose(auto_epsilon(10 * D)[0], 10 * eps)
    dm = DiffusionMap.fit(D, "auto", 3, knn=5, epsilon_factor=2.0)
    assert dm.epsilon_info["k"] == 5 and np.isclose(dm.epsilon, 2 * auto_epsilon(D, k=5)[0])
    assert DiffusionMap.fit(D, 0.3, 3).epsilon_info == {"method": "given", "epsilon": 0.3}


def test_disconnected_kernel_warns():
    rng = np.random.default_rng(9)
    X, _ = blobs(rng, sizes=(15, 15, 15), spread=0.1)
    with pytest.warns(RuntimeWarning, match="disconnected"):
        DiffusionMap.fit(cdist(X, X), 0.1, 4)


def test_diffusion_bad_inputs(circle):
    t, X, D = circle
    for eps in (-1.0, 0.0, np.nan, "median"):
        with pytest.raises(ValueError):
            DiffusionMap.fit(D, eps, 3)
    for k in (0, -2, 1.5):
        with pytest.raises(ValueError):
            DiffusionMap.fit(D, 0.3, k)
    with pytest.raises(ValueError):
        DiffusionMap.fit(D, 0.3, 3, solver="magic")
    with pytest.raises(ValueError):
        DiffusionMap.fit(D[:, :5], 0.3, 3)
    with pytest.raises(ValueError):
        DiffusionMap.fit(np.zeros((1, 1)), 0.3, 3)
    dm = DiffusionMap.fit(D, 0.3, 3)
    with pytest.raises(ValueError, match="shape"):
        dm.transform(D[:, :10])
    with pytest.raises(ValueError, match="negative"):
        dm.transform(-D[:2])
    with pytest.raises(ValueError, match="NaN"):
        dm.transform(np.full((1, 200), np.nan))
    with pytest.raises(ValueError):
        dm.transform(D[:2], far="ignore")
    with pytest.raises(ValueError):
        DiffusionMap(0.3, dm.eigenvalues, dm.eigenvectors[:10], dm.P, dm.Dvec)


# --------------------------------------------------------------------------------------------------
# parsimonious coordinates (local linear regression)
# --------------------------------------------------------------------------------------------------
def test_llr_on_strip_selects_the_two_directions():
    rng = np.random.default_rng(10)
    P = strip(rng, 800)
    dm = DiffusionMap.fit(cdist(P, P), "auto", n_eigenpairs=6)
    psi, lam = dm.eigenvectors, dm.eigenvalues
    # which coordinate describes the short (y) direction
    corr_y = [abs(np.corrcoef(psi[:, i], np.cos(np.pi * P[:, 1]))[0, 1]) for i in range(6)]
    j = int(np.argmax(corr_y))
    assert corr_y[j] > 0.85 and j == 2  # after cos(pi x / L) and its harmonic cos(2 pi x / L)
    assert abs(np.corrcoef(psi[:, 0], np.cos(np.pi * P[:, 0] / 2.5))[0, 1]) > 0.95
    res = local_linear_regression_r2(psi, lam)
    assert res.residuals[0] == 1 and np.array_equal(res.r2, res.residuals**2)
    assert res.residuals[j] > 0.5
    assert np.all(np.delete(res.residuals, [0, j]) < 0.2)  # harmonics of x (and mixed modes)
    assert select_parsimonious(lam, res.residuals).tolist() == [0, j]
    assert select_parsimonious(lam, res.residuals, n_coords=2).tolist() == [0, j]
    table = res.table()
    assert len(table) == 6 and table[j][1] == lam[j] and table[j][2] == res.residuals[j]


def test_llr_matches_direct_leave_one_out_fits():
    rng = np.random.default_rng(11)
    P = strip(rng, 160)
    psi = DiffusionMap.fit(cdist(P, P), "auto", n_eigenpairs=4).eigenvectors
    ours = local_linear_regression_r2(psi, batch_size=37).residuals
    assert np.allclose(ours, brute_llr(psi), rtol=1e-7, atol=1e-9)


def test_llr_subsampled_fit_points():
    rng = np.random.default_rng(12)
    P = strip(rng, 600)
    dm = DiffusionMap.fit(cdist(P, P), "auto", n_eigenpairs=5)
    full = local_linear_regression_r2(dm.eigenvectors)
    sub = local_linear_regression_r2(dm.eigenvectors, max_fit_points=300, seed=1)
    assert len(sub.fit_indices) == 300 and len(np.unique(sub.fit_indices)) == 300
    assert len(full.fit_indices) == 600
    assert np.allclose(sub.residuals, full.residuals, atol=0.1)
    assert np.argmax(sub.residuals[1:]) == np.argmax(full.residuals[1:])
    again = local_linear_regression_r2(dm.eigenvectors, max_fit_points=300, seed=1)
    assert np.array_equal(again.residuals, sub.residuals)


def test_select_parsimonious_rules():
    lam = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, -0.01])
    r = np.array([1.0, 0.05, 0.6, 0.1, 0.9, 0.2, 0.95])
    assert select_parsimonious(lam, r).tolist() == [0, 2, 4]  # negative eigenvalue never chosen
    assert select_parsimonious(lam, r, threshold=0.5, max_considered=3).tolist() == [0, 2]
    assert select_parsimonious(lam, r, n_coords=2).tolist() == [0, 2]
    # not enough eligible: fill with the largest residuals among positive eigenvalues
    assert select_parsimonious(lam, r, n_coords=5).tolist() == [0, 2, 3, 4, 5]
    assert select_parsimonious(lam, r, threshold=0.0).tolist() == [0, 1, 2, 3, 4, 5]
    # coordinate 0 always kept
    assert select_parsimonious(lam, np.array([0.0, 0.9, 0, 0, 0, 0, 0])).tolist() == [0, 1]
    with pytest.raises(ValueError):
        select_parsimonious(lam, r[:3])
    with pytest.raises(ValueError):
        select_parsimonious(lam, r, n_coords=0)
    with pytest.raises(ValueError):
        select_parsimonious(lam, r, n_coords=8)
    with pytest.raises(ValueError):
        select_parsimonious(lam, r, n_coords="all")
    with pytest.raises(ValueError):
        select_parsimonious(lam, r, threshold=-1)


def test_llr_bad_inputs():
    with pytest.raises(ValueError):
        local_linear_regression_r2(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        local_linear_regression_r2(np.full((10, 3), np.nan))
    with pytest.raises(ValueError):
        local_linear_regression_r2(np.ones((10, 3)), eigenvalues=[1.0, 0.5])
    with pytest.raises(ValueError):
        local_linear_regression_r2(np.random.default_rng(0).normal(size=(10, 3)), bandwidth_factor=0)
    # a single coordinate is trivially new
    assert local_linear_regression_r2(np.arange(5.0)).residuals.tolist() == [1.0]


def test_polynomial_criterion_of_the_paper_flags_harmonics_as_redundant():
    """The paper's criterion: a coordinate that is a polynomial of earlier ones has r^2 near 1 (a
    harmonic of a strip, cos(2x) of cos(x), and a product of two earlier ones); a new direction
    has r^2 near 0; the selection on sqrt(1 - r^2) keeps the new ones."""
    from giip_plugin.reference.regression import polynomial_regression_r2

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, np.pi, 600), rng.uniform(0, np.pi, 600)
    psi = np.stack([np.cos(x), np.cos(2 * x), np.cos(y), np.cos(x) * np.cos(y), rng.normal(size=600)], 1)
    r2 = polynomial_regression_r2(psi)
    assert r2[0] == 0.0
    assert r2[1] > 0.99 and r2[3] > 0.99  # cos 2x = 2 cos^2 x - 1; a product of earlier coordinates
    assert r2[2] < 0.05 and r2[4] < 0.05  # new directions (adjusted r^2: the terms fitted to noise do not count)
    lam = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    kept = select_parsimonious(lam, np.sqrt(np.clip(1 - r2, 0, None)), "auto")
    np.testing.assert_array_equal(kept, [0, 2, 4])
    with pytest.raises(ValueError, match="degree"):
        polynomial_regression_r2(psi, degree=0)
