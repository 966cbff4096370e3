"""Softness (giip_plugin.softness): structure functions against a double loop, p_hop on a known
jump, D2min from OVITO, training on a labelled set, the model file, ``giip softness train`` /
``giip apply`` / ``giip info``, the ASE analyser, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from giip_plugin.softness import SoftnessModel, StructureFunctions, Trajectory, d2min, p_hop, train
from giip_plugin.softness.features import PUBLISHED_ANGULAR
from giip_plugin.softness.training import rearrangement_labels

pytest.importorskip("sklearn")


def gas(n=60, L=7.0, seed=0, dmin=0.85, species=("A", "B")):
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, L, 3)
        if all(np.linalg.norm((p - q + L / 2) % L - L / 2) > dmin for q in pos):
            pos.append(p)
    a = Atoms(positions=pos, cell=np.eye(3) * L, pbc=True)
    a.new_array("species", np.array([species[k % len(species)] for k in range(n)]))
    return a


SMALL = dict(mu=tuple(np.round(np.arange(0.5, 2.01, 0.25), 6)), width=0.2,
             angular=((1.0, 1, 1), (1.5, -1, 2), (2.0, 1, 4)), angular_cutoff=2.0)


def brute_force(atoms, sf):
    """The structure functions by a double (and triple) loop over minimum images."""
    L = atoms.cell.lengths()[0]
    pos, names = atoms.positions, atoms.arrays["species"]
    n = len(atoms)
    out = np.zeros((n, sf.n_features))
    nmu = len(sf.mu)
    for i in range(n):
        vec = {}
        for j in range(n):
            if j == i:
                continue
            d = (pos[j] - pos[i] + L / 2) % L - L / 2
            vec[j] = d
            r = np.linalg.norm(d)
            if r < sf.radial_cutoff:
                s = sf.species.index(names[j])
                for m, mu in enumerate(sf.mu):
                    out[i, s * nmu + m] += np.exp(-((r - mu) / sf.width) ** 2)
        near = [j for j, d in vec.items() if np.linalg.norm(d) < sf.angular_cutoff]
        for a_, j in enumerate(near):
            for k in near[a_ + 1:]:
                rij, rik = vec[j], vec[k]
                rjk = rik - rij
                cos = rij @ rik / (np.linalg.norm(rij) * np.linalg.norm(rik))
                e2 = rij @ rij + rik @ rik + rjk @ rjk
                pair = tuple(sorted((names[j], names[k]), key=sf.species.index))
                base = len(sf.species) * nmu + (sf.species_pairs.index(pair) * len(sf.angular)
                                                if sf.angular_species else 0)
                for c, (xi, lam, zeta) in enumerate(sf.angular):
                    out[i, base + c] += np.exp(-e2 / xi**2) * (1 + lam * cos) ** zeta
    return out


def test_structure_functions_equal_a_double_loop():
    atoms = gas()
    sf = StructureFunctions(("A", "B"), **SMALL)
    F = sf.compute(atoms)
    ref = brute_force(atoms, sf)
    assert F.shape == (len(atoms), 2 * len(SMALL["mu"]) + 3) and ref.max() > 1
    np.testing.assert_allclose(F, ref, rtol=1e-10, atol=1e-12)
    # a subset of centres, in the order given, and chunks of centres
    idx = np.array([7, 2, 30])
    np.testing.assert_allclose(sf.compute(atoms, idx, chunk=2), ref[idx], rtol=1e-10, atol=1e-12)
    # rotation and permutation invariance
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rot = Atoms(positions=atoms.positions @ q.T, cell=atoms.cell[:] @ q.T, pbc=True)
    rot.new_array("species", atoms.arrays["species"])
    np.testing.assert_allclose(sf.compute(rot), F, rtol=1e-9, atol=1e-10)
    perm = np.random.default_rng(2).permutation(len(atoms))
    np.testing.assert_allclose(sf.compute(atoms[perm]), F[perm], rtol=1e-10, atol=1e-12)


def test_angular_functions_per_species_pair_equal_a_double_loop():
    atoms = gas(n=70, species=("A", "A", "A", "B"))
    sf = StructureFunctions(("A", "B"), **SMALL, angular_species=True)
    assert sf.species_pairs == (("A", "A"), ("A", "B"), ("B", "B")) and sf.n_features == 2 * len(SMALL["mu"]) + 9
    assert sf.names[2 * len(SMALL["mu"])] == "Psi_AA(1,+1,1)" and sf.names[-1] == "Psi_BB(2,+1,4)"
    F = sf.compute(atoms)
    ref = brute_force(atoms, sf)
    assert ref[:, -3:].max() > 0  # B-B pairs present
    np.testing.assert_allclose(F, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sf.compute(atoms, np.array([5, 1, 40]), chunk=2), ref[[5, 1, 40]], rtol=1e-10,
                               atol=1e-12)
    # the three sets add up to the species-blind functions
    blind = StructureFunctions(("A", "B"), **SMALL).compute(atoms)
    ang = F[:, 2 * len(SMALL["mu"]):].reshape(len(atoms), 3, 3).sum(1)
    np.testing.assert_allclose(ang, blind[:, 2 * len(SMALL["mu"]):], rtol=1e-10, atol=1e-12)
    assert StructureFunctions.from_dict(sf.to_dict()) == sf
    old = sf.to_dict()
    del old["angular_species"]  # a model file written before the option: species-blind
    assert not StructureFunctions.from_dict(old).angular_species


def test_published_angular_table_has_the_thesis_size():
    sf = StructureFunctions(("A", "B"), angular=PUBLISHED_ANGULAR, angular_species=True)
    assert len(PUBLISHED_ANGULAR) == 22 and sf.n_features == 2 * 48 + 66


def test_default_structure_functions_have_the_thesis_sizes():
    sf = StructureFunctions(("A", "B"))
    assert len(sf.mu) == 48 and sf.mu[0] == 0.3 and sf.mu[-1] == 5.0 and len(sf.angular) == 66
    assert sf.n_features == 2 * 48 + 66 and len(sf.names) == sf.n_features
    assert StructureFunctions.from_dict(sf.to_dict()) == sf
    with pytest.raises(ValueError, match="lambda"):
        StructureFunctions(("A",), angular=((1.0, 0, 1),))
    with pytest.raises(ValueError, match="not among the structure functions' species"):
        sf.compute(gas(species=("A", "C")))


def test_p_hop_of_a_known_jump():
    rng = np.random.default_rng(0)
    T, N = 60, 3
    X = rng.normal(scale=0.02, size=(T, N, 3))
    X[30:, 1] += [0.7, 0.0, 0.0]  # particle 1 hops by 0.7 at frame 30
    ph = p_hop(X, 10)
    assert ph.shape == (T - 10, N)
    t = np.argmax(ph[:, 1]) + 5
    assert abs(t - 30) <= 1
    assert ph[:, 1].max() == pytest.approx(0.7**2 * (5 * 6 / 36), rel=0.15)  # d^2 h(h+1)/(h+1)^2 at the jump
    assert ph[:, [0, 2]].max() < 0.01
    # against the definition, frame by frame
    h = 5
    for k in (0, 17, 49):
        tt = k + h
        A, B = X[tt - h:tt + 1], X[tt:tt + h + 1]
        qa = np.mean(np.sum((A - B.mean(0)) ** 2, axis=-1), axis=0)
        qb = np.mean(np.sum((B - A.mean(0)) ** 2, axis=-1), axis=0)
        np.testing.assert_allclose(ph[k], np.sqrt(qa * qb), rtol=1e-9, atol=1e-14)
    frames, up, calm, _ = rearrangement_labels(X, 10, p_c=0.05)
    assert up[:, 1].any() and not up[:, [0, 2]].any() and calm[:, 0].any() and not calm[:, 1][20:30].any()
    with pytest.raises(ValueError, match="too short for a p_hop window"):
        p_hop(X[:10], 10)
    with pytest.raises(ValueError, match="even number"):
        p_hop(X, 7)


def test_quiet_particles_both_sides_and_before_follow_their_definitions():
    rng = np.random.default_rng(1)
    T, N = 80, 4
    X = rng.normal(scale=0.02, size=(T, N, 3))
    X[40:, 1] += [0.7, 0.0, 0.0]  # particle 1 hops at frame 40
    X[20:, 2] += [0.0, 0.7, 0.0]  # particle 2 at frame 20
    window, p_c, q = 10, 0.05, 12
    for side in ("both", "before"):
        frames, up, calm, ph = rearrangement_labels(X, window, p_c, quiet=q, quiet_side=side)
        n = len(ph)
        for t in range(n):  # quiet at t: p_hop < p_c over [t - q, t + q] or [t - q, t], inside the labelled frames
            lo, hi = t - q, (t + q if side == "both" else t)
            inside = lo >= 0 and hi <= n - 1
            expect = (ph[max(lo, 0):min(hi, n - 1) + 1] < p_c).all(axis=0) & inside
            np.testing.assert_array_equal(calm[t], expect, err_msg=f"{side}, frame {t}")
        # after its hop, particle 2 is quiet "before" sooner than "on both sides"
        if side == "both":
            both = calm
    assert calm[:, 2].sum() > both[:, 2].sum()
    assert not calm[:q].any() and calm[-1, 0] and not both[-1, 0]
    with pytest.raises(ValueError, match="quiet_side"):
        rearrangement_labels(X, window, p_c, quiet=q, quiet_side="after")
    with pytest.raises(ValueError, match="not shorter than"):
        rearrangement_labels(X, window, p_c, quiet=T)


def test_tau_alpha_of_a_random_walk():
    from giip_plugin.softness import tau_alpha

    rng = np.random.default_rng(2)
    step, k = 0.05, 7.25
    X = np.cumsum(rng.normal(scale=step, size=(120, 3000, 3)), axis=0)
    tau, t, fs = tau_alpha(X, 0.5, k)  # half a time unit between frames
    # Gaussian displacements: F_s = exp(-k^2 step^2 n / 2) after n frames, 1/e at n = 2 / (k step)^2
    assert tau == pytest.approx(0.5 * 2 / (k * step) ** 2, rel=0.05)
    np.testing.assert_allclose(fs, np.exp(-(k * step) ** 2 * (t / 0.5) / 2), atol=0.02)
    tau, _, fs = tau_alpha(X[:, :, :] * 0.1, 0.5, k)  # ten times smaller steps: not relaxed in half the run
    assert np.isnan(tau) and fs[-1] > np.exp(-1)
    with pytest.raises(ValueError, match="k > 0"):
        tau_alpha(X, 0.5, 0.0)


def _write_dump(path, frames, L, cols=("id", "type", "x", "y", "z"), steps=None):
    with open(path, "w") as fh:
        for k, (ids, types, pos) in enumerate(frames):
            fh.write(f"ITEM: TIMESTEP\n{(steps or range(0, 10**9, 100))[k]}\nITEM: NUMBER OF ATOMS\n{len(ids)}\n")
            fh.write("ITEM: BOX BOUNDS pp pp pp\n" + f"0 {L}\n" * 3)
            fh.write("ITEM: ATOMS " + " ".join(cols) + "\n")
            for i, t, p in zip(ids, types, pos):
                fh.write(f"{i} {t} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}\n")


def test_trajectory_unwraps_and_orders_by_id(tmp_path):
    L = 5.0
    ids = np.array([3, 1, 2])
    path = tmp_path / "t.dump"
    frames = []
    for k in range(6):
        pos = np.array([[1.0, 1.0, 1.0], [4.6 + 0.2 * k, 2.0, 2.0], [2.5, 2.5, 2.5]])
        frames.append((ids[::(-1) ** k], [1, 1, 2][::(-1) ** k], (pos % L)[::(-1) ** k]))
    _write_dump(path, frames, L)
    tr = Trajectory.read(path, type_names={1: "A", 2: "B"})
    assert tr.ids.tolist() == [1, 2, 3] and tr.n_frames == 6 and tr.frame_interval() == 100
    x = tr.positions[:, :, 0]
    # atom of id 1 is the first line of frame 0 ([1, 1, 1]); whichever atom crosses x = L stays continuous
    assert np.all(np.abs(np.diff(x, axis=0)) < 0.5)
    moving = np.argmax(np.ptp(x, axis=0))
    np.testing.assert_allclose(np.diff(x[:, moving]), 0.2, atol=1e-9)


def test_d2min_from_ovito(tmp_path):
    pytest.importorskip("ovito")
    rng = np.random.default_rng(3)
    L = 8.0
    n = 64
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.0 + 0.5
    pos0 = g + rng.normal(scale=0.05, size=(n, 3))
    pos1 = pos0.copy()
    pos1[10] += [0.6, 0.0, 0.0]  # one particle moves non-affinely
    ids = np.arange(1, n + 1)
    path = tmp_path / "d.dump"
    _write_dump(path, [(ids, np.ones(n, int), pos0), (ids, np.ones(n, int), pos1)], L)
    d2 = d2min(path, 1, cutoff=2.5)
    assert d2.shape == (1, n)
    assert np.argmax(d2[0]) == 10 and d2[0, 10] > 10 * np.median(d2[0])
    with pytest.raises(ValueError, match="too few"):
        d2min(path, 2, cutoff=2.5)


def _labelled_trajectory(seed=0, n=160, L=8.0):
    """A 'trajectory' of 4 copies of random structures; particles with a neighbour closer than
    0.95 are labelled rearranging, those without one within 1.05 quiet: the separating direction
    is the radial function at short distances."""
    from giip_plugin.io import Frame

    frames, up, calm = [], [], []
    for k in range(4):
        a = gas(n=n, L=L, seed=seed + k, dmin=0.8)
        frames.append(Frame.from_atoms(a, index=k))
        from giip_plugin.environments.neighbors import neighbor_pairs

        i, j, D = neighbor_pairs(a, 1.2)
        r = np.linalg.norm(D, axis=1)
        near = np.full(n, np.inf)
        np.minimum.at(near, i, r)
        up.append(near < 0.95)
        calm.append(near > 1.05)
    species = np.asarray(frames[0].species)
    tr = Trajectory(frames, np.stack([f.atoms.positions for f in frames]), np.arange(4) * 100,
                    np.arange(n), species)
    return tr, (np.arange(4), np.array(up), np.array(calm), None)


def test_training_recovers_a_known_separating_direction(tmp_path):
    tr, labels = _labelled_trajectory()
    sf = StructureFunctions(("A", "B"), mu=tuple(np.round(np.arange(0.6, 2.01, 0.1), 6)), width=0.1, angular=())
    model, report = train([tr], sf, label_sets=[labels], n_per_class=200, held_out=0.25, Cs=(0.1, 1.0), seed=0)
    assert model.centers == ("A", "B")
    assert np.all(model.cv_accuracy > 0.9)
    # the largest weights sit on the radial functions between 0.8 and 1.0 (the labelling distance)
    for k in range(2):
        top = np.argsort(-np.abs(model.weights[k]))[:3]
        mus = np.array([float(sf.names[t].split("(")[1].rstrip(")")) for t in top])
        assert np.all((mus >= 0.75) & (mus <= 1.05)), [sf.names[t] for t in top]
    # held out (the last frame): rearranging particles are soft, quiet ones hard
    for c in ("A", "B"):
        assert report[c]["rearranging_positive"] > 0.85 and report[c]["quiet_negative"] > 0.85
    # the file round trip gives the same softness
    path = tmp_path / "soft.h5"
    model.save(path)
    back = SoftnessModel.load(path)
    fr = tr.frames[-1]
    np.testing.assert_allclose(back.softness(fr.atoms), model.softness(fr.atoms), atol=1e-12)
    assert back.centers == model.centers and "cross-validated accuracy" in back.describe()


def test_held_out_frames_sets_how_many_frames_are_scored():
    """The held-out figures count every particle of up to held_out_frames held-out frames."""
    tr, labels = _labelled_trajectory()
    sf = StructureFunctions(("A", "B"), mu=(0.8, 0.9, 1.0, 1.1), width=0.1, angular=())
    counts = {}
    for k in (1, 2):
        _, rep = train([tr], sf, label_sets=[labels], n_per_class=50, held_out=0.5, Cs=(1.0,), held_out_frames=k)
        counts[k] = rep["A"]["n_rearranging"] + rep["A"]["n_quiet"]
    a = tr.species == "A"
    _, up, calm, _ = labels
    per_frame = [int(up[t][a].sum() + calm[t][a].sum()) for t in range(4)]
    # frames 2 and 3 are held out; one frame scored: the first of them, two: both
    assert counts[1] == per_frame[2]
    assert counts[2] == per_frame[2] + per_frame[3]
    with pytest.raises(ValueError, match="held_out_frames"):
        train([tr], sf, label_sets=[labels], n_per_class=50, held_out=0.5, Cs=(1.0,), held_out_frames=0)


def _small_model(tmp_path):
    """A model trained on the labelled set (radial functions near the labelling distance), saved."""
    tr, labels = _labelled_trajectory()
    sf = StructureFunctions(("A", "B"), mu=(0.8, 0.9, 1.0, 1.1), width=0.1, angular=())
    model, _ = train([tr], sf, label_sets=[labels], n_per_class=50, held_out=0.0, Cs=(1.0,))
    path = tmp_path / "soft.h5"
    model.save(path)
    return tr, model, path


def test_model_file_errors(tmp_path):
    from giip_plugin.reference import ReferenceMap

    _, model, path = _small_model(tmp_path)
    with pytest.raises(ValueError, match="not a GIIP reference file.*giip-softness"):
        ReferenceMap.load(path)
    import h5py

    with h5py.File(path, "r+") as f:
        f["svm/weights"][0, 0] += 1.0
    with pytest.raises(ValueError, match="softness model file .* is damaged.*giip softness train"):
        SoftnessModel.load(path)
    with pytest.raises(ValueError, match="not among the structure functions' species"):
        model.softness(gas(species=("A", "Cu")))


# --------------------------------------------------------------------------- the command line
def _md_like_dump(path, n=100, L=5.4, T=40, seed=0):
    """Particles vibrating on a jittered lattice, a few hopping once: a dump with xu yu zu."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * (L / 5)
    base = g + rng.normal(scale=0.05, size=(n, 3))
    hop = {2 * k: 8 + (3 * k) % 20 for k in range(16)}  # 16 particles of type A (odd ids) hop once
    frames = []
    for t in range(T):
        pos = base + rng.normal(scale=0.03, size=(n, 3))
        for i, t0 in hop.items():
            if t >= t0:
                pos[i] += [0.6, 0.0, 0.0]
        frames.append((np.arange(1, n + 1), 1 + (np.arange(n) % 2), pos))
    _write_dump(path, frames, L, cols=("id", "type", "xu", "yu", "zu"))


def test_cli_train_info_apply(tmp_path, capsys):
    from giip_plugin.cli import main
    from giip_plugin.io import iter_frames

    dump = tmp_path / "md.dump"
    _md_like_dump(dump)
    out = tmp_path / "soft.h5"
    rc = main(["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--window-frames", "6",
               "--p-c", "0.05", "--n-per-class", "40", "--held-out", "0.2", "--no-progress", "--centers", "A"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "cross-validated accuracy" in err and "held out" in err
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "softness model" in text and "centre A" in text and "window_frames = 6" in text
    assert "quiet_frames = 6" in text and "quiet_side = both" in text
    res = tmp_path / "soft.dump"
    assert main(["apply", str(out), str(dump), "-o", str(res), "--frames", "0:2", "--no-progress"]) == 0
    capsys.readouterr()
    frames = list(iter_frames([str(res)], type_names={1: "A", 2: "B"}))
    assert len(frames) == 2 and "d_softness" in frames[0].columns
    S = np.asarray(frames[0].atoms.arrays["d_softness"]).reshape(-1)
    a = frames[0].species == "A"
    assert np.all(np.isfinite(S[a])) and np.all(np.isnan(S[~a]))
    model = SoftnessModel.load(out)
    src = next(iter(iter_frames([str(dump)], type_names={1: "A", 2: "B"})))
    np.testing.assert_allclose(S, model.softness(src.atoms), atol=1e-6, equal_nan=True)


def test_cli_quiet_over_the_measured_tau_alpha(tmp_path, capsys):
    from giip_plugin.cli import main

    rng = np.random.default_rng(3)
    n, L, T = 100, 5.4, 40
    g = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * (L / 5)
    X = g + np.cumsum(rng.normal(scale=0.1, size=(T, n, 3)), axis=0)  # a random walk: F_s decays
    dump, out = tmp_path / "rw.dump", tmp_path / "rw.h5"
    _write_dump(dump, [(np.arange(1, n + 1), 1 + (np.arange(n) % 2), X[t]) for t in range(T)], L,
                cols=("id", "type", "xu", "yu", "zu"))
    assert main(["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--no-progress",
                 "--window-frames", "4", "--p-c", "0.05", "--quiet", "tau_alpha", "--dt", "0.005",
                 "--quiet-side", "before", "--n-per-class", "20", "--centers", "A"]) == 0
    err = capsys.readouterr().err
    assert "tau_alpha (F_s(k = 7.25, t) = 1/e)" in err and "before the frame" in err
    labels = SoftnessModel.load(out).labels
    # 100 steps of 0.005 between frames; F_s = exp(-k^2 0.01 n / 2) reaches 1/e after n = 200 / 7.25^2 frames
    assert labels["tau_alpha"] == pytest.approx(0.5 * 200 / 7.25 ** 2, rel=0.15)
    assert labels["quiet_frames"] == round(labels["tau_alpha"] / 0.5) and labels["quiet_side"] == "before"


def test_cli_train_with_the_published_angular_table(tmp_path, capsys):
    from giip_plugin.cli import main

    dump = tmp_path / "md.dump"
    _md_like_dump(dump)
    out = tmp_path / "soft.h5"
    rc = main(["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--window-frames", "6",
               "--p-c", "0.05", "--n-per-class", "40", "--no-progress", "--centers", "A", "--angular", "published"])
    assert rc == 0, capsys.readouterr().err
    sf = SoftnessModel.load(out).features
    assert sf.angular == PUBLISHED_ANGULAR and sf.angular_species and sf.n_features == 2 * 48 + 66
    assert "Psi_AB(2.554,-1,1)" in sf.names
    assert main(["info", str(out)]) == 0
    assert "22 functions Psi(xi, lambda, zeta) per pair of neighbour species (AA, AB, BB)" in capsys.readouterr().out


def test_cli_train_errors(tmp_path, capsys):
    from giip_plugin.cli import main

    dump = tmp_path / "md.dump"
    _md_like_dump(dump, T=8)
    out = tmp_path / "soft.h5"
    base = ["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--no-progress"]
    assert main(base + ["--window-frames", "10"]) != 0
    assert "too short for a p_hop window" in capsys.readouterr().err
    assert main(base) != 0
    assert "--dt" in capsys.readouterr().err
    assert main(base + ["--labels", "d2min"]) != 0
    assert "--lag" in capsys.readouterr().err
    assert main(base + ["--labels", "d2min", "--lag", "2", "--d2min-threshold", "0.1", "--quiet-side", "before"]) != 0
    assert "choose the quiet particles of p_hop labels" in capsys.readouterr().err
    assert main(base + ["--held-out-frames", "0"]) != 0
    assert "--held-out-frames must be at least 1" in capsys.readouterr().err
    assert main(base + ["--window-frames", "4", "--quiet", "5"]) != 0
    assert "--quiet is a time: give --dt too" in capsys.readouterr().err
    assert main(base + ["--window-frames", "4", "--quiet-frames", "8"]) != 0
    assert "not shorter than" in capsys.readouterr().err
    assert main(base + ["--window-frames", "4", "--quiet", "tau_alpha", "--dt", "0.005"]) != 0
    assert "tau_alpha cannot be measured" in capsys.readouterr().err  # vibrating particles do not relax
    assert main(base + ["--window-frames", "4", "--quiet", "soon", "--dt", "0.005"]) != 0
    assert "--quiet takes a time or tau_alpha" in capsys.readouterr().err
    assert main(base + ["--window-frames", "4", "--no-angular", "--angular", "published"]) != 0
    assert "--no-angular and --angular published: choose one" in capsys.readouterr().err
    assert not out.exists()


def test_ase_analyser(tmp_path):
    from giip_plugin.analysis import SoftnessAnalyzer

    tr, model, path = _small_model(tmp_path)
    atoms = tr.frames[0].atoms.copy()
    calc = SoftnessAnalyzer(str(path))
    calc.annotate(atoms)
    np.testing.assert_allclose(atoms.arrays["softness"], model.softness(atoms), atol=1e-12)
    atoms.calc = calc
    np.testing.assert_allclose(atoms.calc.get_property("softness", atoms), model.softness(atoms), atol=1e-12)
    with pytest.raises(TypeError, match="no parameter"):
        SoftnessAnalyzer(str(path), exact=True)


def test_cli_train_with_d2min_labels(tmp_path, capsys):
    pytest.importorskip("ovito")
    from giip_plugin.cli import main

    dump = tmp_path / "md.dump"
    _md_like_dump(dump)
    out = tmp_path / "soft.h5"
    rc = main(["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--labels", "d2min",
               "--lag", "2", "--d2min-cutoff", "1.6", "--d2min-threshold", "0.5", "--n-per-class", "30",
               "--centers", "A", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    model = SoftnessModel.load(out)
    assert model.labels["method"] == "D2min" and model.labels["lag_frames"] == 2
    assert model.n_train[0, 0] >= 10


def test_giip_coordinates_as_features(tmp_path, capsys):
    """--features both: the structure functions and the diffusion coordinates of a GIIP map; the
    model refuses a map that changed."""
    from giip_plugin.cli import main
    from giip_plugin.io import iter_frames
    from giip_plugin.softness import FeatureSet, MapCoordinates

    dump = tmp_path / "md.dump"
    _md_like_dump(dump)
    ref = tmp_path / "map.h5"
    common = ["--type-names", "1=A,2=B", "--no-progress"]
    assert main(["build", str(dump), "-o", str(ref), "--r-inner", "1.1", "--r-outer", "1.6", "--sigma", "0.3",
                 "--species", "vector", "--n-train", "30", "--frames", "0:2", "--classes", "3", "--n-coords", "2",
                 "--epsilon", "1.0", *common]) == 0
    out = tmp_path / "soft.h5"
    train_cmd = ["softness", "train", str(dump), "-o", str(out), "--window-frames", "6", "--p-c", "0.05",
                 "--n-per-class", "30", "--centers", "A", "--max-frames", "8", "--no-angular", *common]
    assert main(train_cmd + ["--features", "both"]) != 0
    assert "needs --reference" in capsys.readouterr().err
    assert main(train_cmd + ["--features", "both", "--reference", str(ref)]) == 0, capsys.readouterr().err
    model = SoftnessModel.load(out)
    assert isinstance(model.features, FeatureSet) and isinstance(model.features.parts[1], MapCoordinates)
    assert model.features.names[-2:] == ("giip_dc1", "giip_dc2")
    fr = next(iter(iter_frames([str(dump)], type_names={1: "A", 2: "B"})))
    S = model.softness(fr.atoms)
    assert np.all(np.isfinite(S[fr.species == "A"]))
    assert main(["info", str(out)]) == 0 and "GIIP map        2 diffusion coordinates" in capsys.readouterr().out
    # the map's coordinates enter: they equal what the map gives these atoms
    a = np.flatnonzero(fr.species == "A")[:5]
    from giip_plugin.reference import ReferenceMap

    np.testing.assert_allclose(model.features.parts[1].compute(fr.atoms, a),
                               ReferenceMap.load(ref).transform(fr.atoms, indices=a).coordinates, atol=1e-12)
    # another map at the same path: refused
    assert main(["build", str(dump), "-o", str(ref), "--r-inner", "1.1", "--r-outer", "1.6", "--sigma", "0.3",
                 "--species", "vector", "--n-train", "30", "--frames", "0:2", "--classes", "3", "--n-coords", "2",
                 "--epsilon", "1.0", "--seed", "5", *common]) == 0
    from giip_plugin.softness import features as feats_mod

    feats_mod._MAPS.clear()
    with pytest.raises(ValueError, match="not the one this softness model was trained with"):
        SoftnessModel.load(out).softness(fr.atoms)


def test_cli_train_records_its_command_line(tmp_path):
    from giip_plugin.cli import main

    dump = tmp_path / "md.dump"
    _md_like_dump(dump)
    out = tmp_path / "soft.h5"
    assert main(["softness", "train", str(dump), "-o", str(out), "--type-names", "1=A,2=B", "--window-frames", "6",
                 "--p-c", "0.05", "--n-per-class", "40", "--centers", "A", "--no-angular", "--no-progress"]) == 0
    cmd = SoftnessModel.load(out).provenance["command_line"]
    assert cmd.startswith(f"giip softness train {dump} -o {out}")
    assert "--window-frames 6" in cmd and "--p-c 0.05" in cmd and "--no-angular" in cmd and "--centers A" in cmd
