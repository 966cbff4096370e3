"""The generative model of motifs: Gram decoding, permutation handling, training, generation,
interpolation, infilling, generation at a point of a map, the model file and its errors."""
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from giip_plugin.environments import LocalEnvironments  # noqa: E402
from giip_plugin.generate import Motifs, MotifModel, gram, positions_from_gram, synchronise  # noqa: E402
from giip_plugin.generate.training import motifs_of_reference, train  # noqa: E402
from giip_plugin.kernels import distance  # noqa: E402

TETRA = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
LOCAL = LocalEnvironments(2.8, 3.2)  # one species: every neighbour within 2.8 weighs 1


def _rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def tetrahedra(count, seed=0, noise=0.05):
    """Tetrahedral motifs (4 neighbours at ~2.35) in random orientations: a set a model learns."""
    rng = np.random.default_rng(seed)
    pos = np.stack([(TETRA * rng.normal(2.35, 0.05, (4, 1))) @ _rotation(rng).T + noise * rng.standard_normal((4, 3))
                    for _ in range(count)])
    order = np.argsort(np.linalg.norm(pos, axis=2), axis=1)
    return Motifs(np.take_along_axis(pos, order[..., None], 1), np.zeros((count, 4), dtype=int), ("X",))


@pytest.fixture(scope="module")
def model():
    return train(tetrahedra(400), LOCAL, sigma=0.3, epochs=60, seed=0, giip_check=50)


def test_gram_decoding_recovers_an_environment_up_to_rotation(ninb_envs):
    pos = ninb_envs[3][0]
    X = positions_from_gram(gram(pos[None]), 3)[0]
    w = np.ones(len(pos))
    assert distance(X, w, pos, w, sigma=1.0, group="O3") < 1e-5
    aligned, Q, _ = synchronise(X, pos)  # rows known: Procrustes
    assert np.allclose(Q @ Q.T, np.eye(3)) and np.abs(aligned - pos).max() < 1e-6
    perm = np.random.default_rng(1).permutation(len(pos))  # rows unknown: Hungarian + Procrustes
    aligned, _, (a, b) = synchronise(X[perm], pos, match=True)
    assert np.abs(aligned[a] - pos[b]).max() < 1e-6


def test_motifs_are_the_environments_when_no_neighbour_is_dropped(ninb_envs):
    from giip_plugin.environments import SpeciesEncoding

    enc = SpeciesEncoding("sign", ("Ni", "Nb"), positive="Ni")
    envs = ninb_envs.subset(np.arange(20))
    m = Motifs.from_environments(envs, enc)
    assert m.n == envs.counts.max() and np.array_equal(m.counts, envs.counts)
    back = m.to_environments(LocalEnvironments(3.0, 4.0, enc, centers=("Ni",)))
    for k in range(len(envs)):
        (p0, w0), (p1, w1) = envs[k][:2], back[k][:2]
        assert distance(p0, w0[:, 0], p1, w1[:, 0], sigma=1.0, group="O3") < 1e-5


def test_training_reduces_the_loss_and_reconstructs(model):
    h = model.history
    assert h["train_loss"][-1] < 0.6 * h["train_loss"][0]
    assert h["held_out_giip_median"] < 0.5  # 4-atom motifs: a missing atom would cost ~1
    assert len(model.held_out) == 40


def test_canonical_order_makes_encodings_permutation_invariant(model):
    m = tetrahedra(5, seed=3)
    rng = np.random.default_rng(0)
    for k in range(5):
        p = m.positions[k][rng.permutation(4)]
        again = Motifs.from_points(p, ["X"] * 4, ("X",), 4)
        assert np.allclose(model.encode(again), model.encode(m.subset([k])))


@pytest.mark.slow
def test_permutation_augmentation_teaches_the_encoder_to_ignore_order():
    import torch

    from giip_plugin.generate.gram import triu
    from giip_plugin.generate.vae import encode_inputs, permuted_copies

    data = tetrahedra(300, seed=5, noise=0.15)
    spread = {}
    for augment in (False, True):
        mdl = train(data, LOCAL, sigma=0.3, epochs=40, seed=0, augment=augment, giip_check=10)
        test = tetrahedra(20, seed=9, noise=0.15)
        rng = np.random.default_rng(2)
        net = mdl.network()
        zs = []
        for _ in range(6):  # the network fed reordered copies directly (no sorting)
            pos, spc = permuted_copies(test.positions, test.species, rng)
            x = encode_inputs(mdl.scaling.transform(triu(gram(pos))), spc, mdl.n_classes)
            with torch.no_grad():
                zs.append(net.encode(torch.as_tensor(x))[0].numpy())
        zs = np.stack(zs)  # (copies, motifs, latent)
        within = zs.std(0).mean()
        between = zs.mean(0).std(0).mean()
        spread[augment] = within / between
    assert spread[True] < spread[False]


def test_generated_motifs_are_valid(model):
    motifs, z, acc = model.sample(12, seed=1)
    assert len(motifs) == 12 and z.shape == (12, model.latent) and 0 < acc <= 1
    assert model.min_distance > 1.0  # the stated minimum: 0.8 x the 1st percentile of the training motifs
    assert np.all(motifs.nearest_pair_distances() >= model.min_distance)
    _, d = model.nearest_real(motifs)
    assert np.median(d) < 0.6


def test_interpolation_runs_between_the_two_motifs(model):
    a, b = model.training.subset([0]), model.training.subset([1])
    path, t = model.interpolate(a, b, 5)
    assert len(path) == 5 and t[0] == 0 and t[-1] == 1
    d_a = model.giip_distances(path.subset([0]), a)[0]
    d_b = model.giip_distances(path.subset([4]), b)[0]
    assert d_a < 0.8 and d_b < 0.8  # well under one atom of difference
    with pytest.raises(ValueError, match="at least 2 steps"):
        model.interpolate(a, b, 1)


def test_infilling_puts_a_missing_atom_back(model):
    full = model.training.subset([5])
    keep = np.array([0, 1, 3])
    partial = Motifs.from_points(full.positions[0][keep], ["X"] * 3, ("X",), 4)
    from giip_plugin.generate import infill

    res = infill(model, partial, missing=1)
    assert len(res.added) == 1 and res.motif.counts[0] == 4
    before = model.giip_distances(partial, full)[0]
    after = model.giip_distances(res.motif, full)[0]
    assert before > 0.9 and after < 0.5 * before
    kept = res.motif.positions[0][res.motif.present[0]]  # the known atoms stay where they were
    assert all(np.min(np.linalg.norm(kept - p, axis=1)) < 1e-9 for p in partial.positions[0][:3])
    with pytest.raises(ValueError, match="do not fit"):
        infill(model, partial, missing=2)


def test_model_file_round_trip(model, tmp_path):
    path = tmp_path / "gen.h5"
    model.save(path)
    back = MotifModel.load(path)
    m = tetrahedra(4, seed=7)
    assert np.allclose(back.encode(m), model.encode(m))
    assert back.n == model.n and back.species_names == model.species_names
    assert back.history["held_out_giip_median"] == pytest.approx(model.history["held_out_giip_median"])
    assert "generative model" in back.describe()
    from giip_plugin.reference import ReferenceMap
    from giip_plugin.reference.fileformat import ReferenceFileError

    with pytest.raises(ReferenceFileError, match="not a GIIP reference file"):
        ReferenceMap.load(path)
    (tmp_path / "nothing.txt").write_text("x")
    with pytest.raises(ReferenceFileError, match="not a generative model file"):
        MotifModel.load(tmp_path / "nothing.txt")


def test_clear_errors_for_other_slots_and_species(model):
    with pytest.raises(ValueError, match="neighbour slots"):
        model.encode(Motifs(np.zeros((1, 6, 3)), np.zeros((1, 6), dtype=int), ("X",)))
    with pytest.raises(ValueError, match="species"):
        model.encode(Motifs(np.ones((1, 4, 3)), np.zeros((1, 4), dtype=int), ("Ni",)))
    with pytest.raises(ValueError, match="unknown to the model"):
        Motifs.from_points(np.ones((2, 3)), ["Ni", "Nb"], ("X",), 4)
    with pytest.raises(ValueError, match="more than the model's 4 slots"):
        Motifs.from_points(np.ones((5, 3)), ["X"] * 5, ("X",), 4)
    with pytest.raises(ValueError, match="too few"):
        train(tetrahedra(5), LOCAL, sigma=0.3)


def noisy_diamond(seed, noise=0.15):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(3)
    atoms.positions += np.random.default_rng(seed).normal(0, noise, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def si_map(tmp_path_factory):
    """A small map of distorted tetrahedra (noisy diamond Si, first shell only)."""
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.build([noisy_diamond(1), noisy_diamond(2)], sigma=0.3, r_inner=2.8, r_outer=3.2,
                             n_train=80, n_classes=3, n_coords=2, seed=0, progress=False)
    path = tmp_path_factory.mktemp("si") / "si_map.h5"
    ref.save(path)
    return path


@pytest.fixture(scope="module")
def map_model(si_map):
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(si_map)
    gen = train(motifs_of_reference(ref), ref.environments, sigma=ref.sigma, group=ref.group, epochs=150,
                seed=0, giip_check=20)
    return ref, gen


def test_generation_at_a_point_of_the_map(map_model):
    from giip_plugin.generate.search import at_coordinates, check_model_fits_map, parse_target

    ref, gen = map_model
    assert gen.n == int(ref.training.counts.max())
    target = parse_target(f"dc1={np.median(ref.coordinates[:, 0]):.6f}", ref.n_coords)
    res = at_coordinates(gen, ref, target, 2, rounds=2, candidates=16)
    assert len(res.motifs) == 2 and res.evaluated > 0
    again = ref.transform(gen.to_environments(res.motifs), exact=True)  # the map's own coordinates
    assert np.allclose(again.coordinates, res.coordinates, atol=1e-6)
    assert np.all(np.diff(res.error) >= 0)
    drawn, _, _ = gen.sample(16, seed=3, synchronise=False)  # the search beats draws from the prior
    c = ref.transform(gen.to_environments(drawn), exact=True).coordinates[:, 0]
    spread = ref.coordinates[:, 0].std()
    assert res.error[0] < np.median(np.abs(c - target[0]) / spread)
    with pytest.raises(ValueError, match="dc1 .. dc2"):
        parse_target("dc7=0.1", ref.n_coords)
    other = train(tetrahedra(40), LOCAL, sigma=0.3, epochs=2, giip_check=2)
    with pytest.raises(ValueError, match="other environment settings"):
        check_model_fits_map(other, ref)


def test_command_line(si_map, tmp_path, capsys):
    from giip_plugin.cli import main

    gen = tmp_path / "gen.h5"
    assert main(["generate", "train", "--reference", str(si_map), "-o", str(gen), "--epochs", "100",
                 "--element", "Si", "--no-progress"]) == 0
    out = tmp_path / "s.xyz"
    assert main(["generate", "sample", str(gen), "-n", "3", "-o", str(out)]) == 0
    import ase.io

    frames = ase.io.read(out, index=":")
    assert len(frames) == 3 and "giip_nearest_real" in frames[0].info
    assert set(frames[0].get_chemical_symbols()) == {"Si"} and len(frames[0]) <= 1 + 4
    path = tmp_path / "path.xyz"
    assert main(["generate", "interpolate", str(gen), "train:0", "train:1", "--steps", "3", "-o", str(path)]) == 0
    assert len(ase.io.read(path, index=":")) == 3
    at = tmp_path / "at.xyz"
    assert main(["generate", "at", str(gen), str(si_map), "--at", "dc1=0", "-n", "1", "--rounds", "1",
                 "--candidates", "8", "-o", str(at), "--no-progress"]) == 0
    assert "dc1" in ase.io.read(at).info
    r = subprocess.run([sys.executable, "-m", "giip_plugin.cli", "info", str(gen)], capture_output=True, text=True)
    assert r.returncode == 0 and "generative model" in r.stdout
    (tmp_path / "empty.xyz").write_text("")
    assert main(["generate", "infill", str(gen), str(tmp_path / "empty.xyz"), "-o", str(tmp_path / "f.xyz")]) == 1
    assert "cannot read the partial motif" in capsys.readouterr().err
    partial = tmp_path / "partial.xyz"  # a training motif without its last neighbour
    ase.io.write(partial, frames[0][:-1])
    assert main(["generate", "infill", str(gen), str(partial), "-o", str(tmp_path / "f.xyz"), "--missing", "1"]) == 0
    assert len(ase.io.read(tmp_path / "f.xyz")) == len(frames[0])
    assert main(["generate", "train", "-o", str(tmp_path / "x.h5")]) == 1  # neither TRAJ nor --reference
    assert "give trajectories (TRAJ...) or --reference MAP.h5" in capsys.readouterr().err


def test_command_line_trains_on_trajectories_with_the_settings_of_a_map(si_map, tmp_path, capsys):
    import ase.io

    from giip_plugin.cli import main
    from giip_plugin.generate.vae import default_latent
    from giip_plugin.reference import ReferenceMap

    traj = tmp_path / "si.xyz"
    ase.io.write(traj, [noisy_diamond(3), noisy_diamond(4)])
    gen = tmp_path / "gen.h5"
    assert main(["generate", "train", str(traj), "--reference", str(si_map), "-o", str(gen), "--epochs", "20",
                 "--no-progress"]) == 0
    assert "motifs of" in capsys.readouterr().err
    model, ref = MotifModel.load(gen), ReferenceMap.load(si_map)
    n_atoms = len(noisy_diamond(3)) + len(noisy_diamond(4))
    assert len(model.training) == n_atoms > ref.n_train  # every atom of the trajectories, not the map's training set
    assert model.n <= 8 and model.latent == default_latent(model.n) == 8  # the seed's latent up to 8 slots
    assert default_latent(19) == 30 and default_latent(9) == 10
    assert model.provenance["reference"] == str(si_map.resolve())
    assert main(["generate", "train", str(traj), "--reference", str(si_map), "--r-outer", "3", "-o",
                 str(tmp_path / "y.h5")]) == 1
    assert "the environment settings are the map's" in capsys.readouterr().err
    assert not (tmp_path / "y.h5").exists()


@pytest.mark.slow
def test_report_renders_motifs_generated_along_coordinates(si_map, tmp_path, capsys):
    pytest.importorskip("ovito")
    from PIL import Image

    from giip_plugin.cli import main

    gen = tmp_path / "gen.h5"
    assert main(["generate", "train", "--reference", str(si_map), "-o", str(gen), "--epochs", "60",
                 "--no-progress"]) == 0
    out = tmp_path / "report"
    assert main(["report", str(si_map), "-o", str(out), "--generator", str(gen), "--generated-steps", "3"]) == 0
    for j in (1, 2):
        with Image.open(out / f"generated_dc{j}.png") as im:
            assert im.size == (900, 400) and len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) >= 3
    assert "dc1 requested -> obtained" in capsys.readouterr().err
    strip = tmp_path / "along.png"
    assert main(["generate", "along", str(gen), str(si_map), "--coord", "2", "--steps", "2", "-o", str(strip),
                 "--xyz", str(tmp_path / "along.xyz"), "--no-progress"]) == 0
    assert strip.exists() and (tmp_path / "along.xyz").exists()
