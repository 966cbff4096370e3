"""The default path's calibration: a map measures the coarse search against its own exact training
distances and uses the cheapest rung that meets the accuracy contract (reference/calibration.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from giip_plugin.io import iter_frames
from giip_plugin.reference import ReferenceMap, calibration
from giip_plugin.reference.fileformat import map_from_content, map_to_content
from giip_plugin.reference.metric import COARSE_LADDER, COARSE_SETTINGS, SearchReport

DATA = Path(__file__).parent / "data" / "ninb"


def noisy_diamond(seed, noise=0.15):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(seed).normal(0, noise, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def ninb_map():
    return ReferenceMap.from_files(
        [str(DATA / "quench100K.dump"), str(DATA / "quench10M.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0,
        encoding="sign", centers=["Ni"], type_names="1=Ni,2=Nb", n_train=60, n_classes=4, n_coords=2,
        progress=False,
    )


@pytest.fixture(scope="module")
def sharp_map():
    """First shells of distorted diamond (4-5 neighbours) with sharp Gaussians: the NiNb coarse
    search (band limit 7) misses the exact nearest reference for many atoms here."""
    return ReferenceMap.build([noisy_diamond(1), noisy_diamond(2)], sigma=0.6, r_inner=2.8, r_outer=3.2,
                              n_train=50, n_coords=2, seed=0, progress=False)


def test_ninb_keeps_the_cheapest_coarse_search(ninb_map):
    dp = ninb_map.default_path
    assert dp.coarse._replace(margin=0.05) == COARSE_SETTINGS and len(dp.trials) == 1
    t = dp.trials[0]
    assert t["accepted"] and t["near_misses"] <= 0.01 * dp.sample and t["nearest_exact"] == 1.0
    assert t["coord_max"] <= calibration.COORD_MAX and dp.sample == ninb_map.n_train
    # the margin covers three times the largest gap seen and the largest coarse error of a near pair
    assert dp.coarse.margin == pytest.approx(max(COARSE_SETTINGS.margin, 3 * t["max_gap"], t["max_error"]))
    assert "band limit 7" in dp.describe()


def test_sharp_environments_get_a_finer_search_that_meets_the_contract(sharp_map):
    dp = sharp_map.default_path
    assert not dp.trials[0]["accepted"] and dp.trials[0]["near_misses"] > 0
    assert dp.coarse is None or dp.coarse._replace(margin=0.05) in COARSE_LADDER[1:]
    envs = sharp_map.compute_environments(noisy_diamond(5))
    rep = SearchReport()
    fast, exact = sharp_map.transform(envs, report=rep), sharp_map.transform(envs, exact=True)
    np.testing.assert_array_equal(fast.classes, exact.classes)
    np.testing.assert_allclose(fast.ref_distance, exact.ref_distance, atol=1e-9)
    span = sharp_map.coordinates.max(0) - sharp_map.coordinates.min(0)
    err = np.abs(fast.coordinates - exact.coordinates) / span
    assert err.max() <= 0.01 and np.median(err) <= 0.001
    assert rep.atoms == len(envs) or rep.calibrated_exact == len(envs)
    # the engine of the default path is the calibrated one
    eng = sharp_map.engine_for(envs.subset([0]), coarse=True)
    if dp.coarse is not None:
        assert eng.settings.candidates == dp.coarse.candidates and eng.grid_pool == dp.coarse.pool
        assert eng.L == sharp_map.engine_for(envs.subset([0])).L  # the exact search's band limit


def test_default_path_round_trips_and_old_files_calibrate_at_first_use(sharp_map, tmp_path):
    path = tmp_path / "sharp.h5"
    sharp_map.save(path)
    back = ReferenceMap.load(path)
    assert back.default_path == sharp_map.default_path
    # a file written before calibration existed: no default_path; measured again at first use, the same
    content = map_to_content(sharp_map)
    del content["parameters"]["attrs"]["default_path"]
    old = map_from_content(content)
    assert old.default_path is None
    envs = sharp_map.compute_environments(noisy_diamond(7)).subset(np.arange(8))
    np.testing.assert_allclose(old.transform(envs).coordinates, sharp_map.transform(envs).coordinates, atol=1e-12)
    assert old.default_path.coarse == sharp_map.default_path.coarse


def test_a_map_calibrated_by_an_older_rule_is_measured_again(ninb_map, tmp_path):
    assert ninb_map.default_path.rule == calibration.RULE
    content = map_to_content(ninb_map)
    stored = dict(content["parameters"]["attrs"]["default_path"])
    stored.pop("rule")  # a file of rule 1: the margin from the gaps alone
    stored["coarse"] = dict(stored["coarse"], margin=0.05)
    content["parameters"]["attrs"]["default_path"] = stored
    with pytest.warns(UserWarning, match="calibrated by an older rule .* save the map again"):
        old = map_from_content(content)
    assert old.default_path is None
    assert old.calibrated().coarse == ninb_map.default_path.coarse  # measured again, by this rule
    path = tmp_path / "again.h5"
    old.save(path)
    assert ReferenceMap.load(path).default_path.rule == calibration.RULE  # no warning: kept


def test_distances_that_no_search_reproduces_give_the_exhaustive_path(ninb_map):
    """A map whose training matrix is not what the search computes (here: every distance 30 %
    smaller) has no trustworthy coarse search: the default path becomes the exhaustive one, says
    so, and still gives the exhaustive rows."""
    ref = ReferenceMap.from_distances(ninb_map.training, 0.7 * ninb_map.distances, sigma=1.0,
                                      environments=ninb_map.environments, n_classes=4, n_coords=2)
    assert ref.default_path.coarse is None
    assert "exhaustive" in ref.default_path.describe()
    assert [t["accepted"] for t in ref.default_path.trials] == [False] * len(COARSE_LADDER)
    atoms = next(iter_frames(str(DATA / "quench500K.dump"), type_names={1: "Ni", 2: "Nb"})).atoms
    envs = ref.compute_environments(atoms, indices=np.arange(0, 60, 6))
    rep = SearchReport()
    res = ref.transform(envs, report=rep)
    assert rep.calibrated_exact == rep.exact_atoms == len(envs) and "calibration" in rep.line()
    np.testing.assert_allclose(res.coordinates, ref.transform(envs, exact=True).coordinates, atol=1e-12)


def test_sample_size():
    assert calibration.sample_size(10) == 10 and calibration.sample_size(300) == 300
    assert calibration.sample_size(2000) == calibration.sample_size(20000) == 400


def test_rule_3_maps_keep_an_accepted_rung_and_exhaustive_ones_are_measured_again(ninb_map, recwarn):
    """Rule 4 appends a rung after those of rule 3: a rule-3 map that accepted a rung is kept as it
    is (no warning, no new measurement); one left with the exhaustive search is measured again."""
    content = map_to_content(ninb_map)
    stored = dict(content["parameters"]["attrs"]["default_path"], rule=3)
    content["parameters"]["attrs"]["default_path"] = stored
    kept = map_from_content(content)
    assert not [w for w in recwarn if "older rule" in str(w.message)]
    assert kept.default_path is not None and kept.default_path.rule == 3
    assert kept.default_path.coarse == ninb_map.default_path.coarse
    content["parameters"]["attrs"]["default_path"] = dict(stored, coarse=None)
    with pytest.warns(UserWarning, match="older rule .*exhaustive exact search"):
        left = map_from_content(content)
    assert left.default_path is None
    assert left.calibrated().coarse == ninb_map.default_path.coarse and left.default_path.rule == calibration.RULE
    assert not calibration.outdated(ninb_map.default_path)


def test_the_sharp_rung_is_last_and_caps_only_the_grid(sharp_map):
    """The last rung (sharp Gaussians) caps the grid's band limit at 12 and polishes on the true
    function: its distances agree with the exact search's for most pairs (both are values at actual
    rotations; on this map one pair in 800 is 5e-4 below the exact search's value, none above it)."""
    from giip_plugin.reference.metric import SHARP_SETTINGS

    assert COARSE_LADDER[-1] == SHARP_SETTINGS and SHARP_SETTINGS.l_max == 12
    envs = sharp_map.compute_environments(noisy_diamond(9)).subset(np.arange(0, 64, 4))
    exact_L = sharp_map.engine_for(envs.subset([0])).L
    eng = sharp_map.metric.engine(envs, sharp_map.training, coarse=SHARP_SETTINGS)
    assert eng.L == min(12, exact_L) and exact_L > 12
    C = sharp_map.metric.coarse_rows(envs, sharp_map.training, SHARP_SETTINGS)
    ia, ib = np.repeat(np.arange(len(envs)), sharp_map.n_train), np.tile(np.arange(sharp_map.n_train), len(envs))
    E = sharp_map.engine_for(envs).distances(ia, ib).reshape(C.shape)
    assert np.mean(np.abs(C - E) <= 1e-6) > 0.9 and np.all(C >= E - 1e-3)
