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
