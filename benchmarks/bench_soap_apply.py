#!/usr/bin/env python
"""Benchmark: ``giip apply`` with a SOAP reference map on a whole 13,500-atom NiNb frame, against
the SOAP descriptor alone on the same frame.

    python benchmarks/bench_soap_apply.py [--n-train 2000] [--frame DUMP] [--repeat 3]

A SOAP map is built (``--metric soap``, the paper's GIIP settings: sigma 1, cutoff 3-4 A, sign
species, Ni centres; ``--n-train`` environments of quench100K.dump and quench500K.dump), then,
in the same run and on the same frame:

* the baseline: featomic's ``SoapPowerSpectrum`` of every Ni centre of the frame with the same
  hyper-parameters (the descriptor alone: what a user computes without this package; no classes,
  no map), and dscribe's SOAP (n_max 8, l_max 6) when dscribe is installed;
* ``giip apply REF FRAME -o OUT`` in this process (reading the dump, power spectra, the
  ``(6750, n_train)`` distance rows, classes, Nystrom coordinates, writing the dump), and the same
  command as a new process (with Python's start-up and imports).

The target (issue 17): ``giip apply`` within 2x the time of the descriptor alone. Prints a table;
the best of ``--repeat`` runs of each.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "ninb")


# the descriptor alone, as a user would compute it in a script of their own
DESCRIPTOR_SCRIPT = '''
import sys, numpy as np, ase.io, featomic, metatensor
from featomic.basis import Gto, TensorProduct
from featomic.cutoff import Cutoff, ShiftedCosine
from featomic.density import Gaussian
atoms = ase.io.read(sys.argv[1], format="lammps-dump-text", index=0)
ni = np.flatnonzero(atoms.numbers == 1)
calc = featomic.SoapPowerSpectrum(cutoff=Cutoff(4.0, ShiftedCosine(width=1.0)),
                                  density=Gaussian(width=1.0, center_atom_weight=0.0),
                                  basis=TensorProduct(max_angular=int(sys.argv[3]), radial=Gto(max_radial=int(sys.argv[2]) - 1)))
calc.compute(atoms, selected_samples=metatensor.Labels(["atom"], ni.astype(np.int32).reshape(-1, 1)))
'''


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--frame", default=os.path.join(DATA, "quench10M.dump"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import featomic
    from featomic.basis import Gto, TensorProduct
    from featomic.cutoff import Cutoff, ShiftedCosine
    from featomic.density import Gaussian
    import metatensor

    from giip_plugin.cli import main as giip
    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    tmp = tempfile.mkdtemp(prefix="bench_soap_")
    ref_path = os.path.join(tmp, "soap.h5")
    t0 = time.perf_counter()
    rc = giip(["build", os.path.join(DATA, "quench100K.dump"), os.path.join(DATA, "quench500K.dump"), "-o", ref_path,
               "--type-names", "1=Ni,2=Nb", "--centers", "Ni", "--species", "sign", "--r-inner", "3", "--r-outer", "4",
               "--sigma", "1", "--n-train", str(args.n_train), "--metric", "soap", "--no-progress"])
    t_build = time.perf_counter() - t0
    assert rc == 0
    ref = ReferenceMap.load(ref_path)
    frame = next(iter(iter_frames([args.frame], type_names={1: "Ni", 2: "Nb"})))
    ni = np.flatnonzero(frame.species == "Ni")
    atoms = frame.atoms
    s = ref.soap_settings

    import ase

    system = ase.Atoms(numbers=np.where(frame.species == "Ni", 1, 2), positions=atoms.positions, cell=atoms.cell,
                       pbc=True)
    calc = featomic.SoapPowerSpectrum(cutoff=Cutoff(4.0, ShiftedCosine(width=1.0)),
                                      density=Gaussian(width=1.0, center_atom_weight=0.0),
                                      basis=TensorProduct(max_angular=s.l_max, radial=Gto(max_radial=s.n_max - 1)))
    sel = metatensor.Labels(["atom"], ni.astype(np.int32).reshape(-1, 1))
    rows = []
    t_desc = best(lambda: calc.compute(system, selected_samples=sel), args.repeat)
    rows.append(("featomic SoapPowerSpectrum of the frame (baseline)", t_desc))
    try:
        from dscribe.descriptors import SOAP

        d = SOAP(species=["Ni", "Nb"], r_cut=4.0, n_max=s.n_max, l_max=s.l_max, sigma=1.0, periodic=True)
        a2 = atoms.copy()
        a2.set_chemical_symbols(list(frame.species))
        rows.append(("dscribe SOAP of the frame", best(lambda: d.create(a2, centers=ni.tolist(), n_jobs=2), args.repeat)))
    except ImportError:
        pass
    rows.append(("SOAPMetric.features_of_structure (the map's spectra)",
                 best(lambda: ref.metric.features_of_structure(atoms, ni, frame.species), args.repeat)))
    out = os.path.join(tmp, "out.dump")
    apply_cmd = ["apply", ref_path, args.frame, "-o", out, "--type-names", "1=Ni,2=Nb", "--no-progress"]
    t_apply = best(lambda: giip(apply_cmd), args.repeat)
    rows.append(("giip apply, in this process", t_apply))
    t_proc = best(lambda: subprocess.run([sys.executable, "-m", "giip_plugin.cli", *apply_cmd], check=True,
                                         capture_output=True), args.repeat)
    rows.append(("giip apply, a new process (start-up and imports included)", t_proc))
    t_desc_proc = best(lambda: subprocess.run([sys.executable, "-c", DESCRIPTOR_SCRIPT, args.frame, str(s.n_max),
                                               str(s.l_max)], check=True, capture_output=True), args.repeat)
    rows.append(("the baseline as a new process (ase.io reads the dump, featomic)", t_desc_proc))

    print(f"\nSOAP map of {ref.n_train} environments (built in {t_build:.1f} s), frame {os.path.basename(args.frame)}: "
          f"{len(atoms)} atoms, {len(ni)} Ni centres; best of {args.repeat}\n")
    print("| step | seconds | x descriptor |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {t / t_desc:.2f} |")
    print(f"\ntarget: giip apply <= 2 x descriptor: in process {t_apply / t_desc:.2f}x; new processes "
          f"{t_proc / t_desc_proc:.2f}x the new-process baseline")


if __name__ == "__main__":
    main()
