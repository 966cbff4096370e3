#!/usr/bin/env bash
# Set up, then run the main job on a small example (the paper's first system, scaled down):
#   1. LAMMPS: a 2D Lennard-Jones crystal with edge dislocations and vacancies (lammps_examples);
#   2. giip build: a reference map (classes + diffusion map) from 120 training environments;
#   3. giip apply: every atom gets its class, diffusion coordinates and reference distance;
#   4. OVITO: a PNG of the crystal coloured by GIIP class.
# Results go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
OUT=out/demo
mkdir -p "$OUT"
echo "== 1. LAMMPS: 2D LJ crystal with dislocations"
python lammps_examples/run_example.py lj2d_dislocations --var nx=40 --var ny=23 --var nhalf=4 \
    --var nsteps=2000 --out "$OUT/lammps" > "$OUT/lammps.json"
DUMP="$OUT/lammps/lj2d_dislocations.dump"
echo "== 2. giip build (paper parameters: weights 1 below 1.3, 0 at 1.75; sigma 0.5; O(2); eps 1.0)"
giip build "$DUMP" -o "$OUT/lj2d.h5" --r-inner 1.3 --r-outer 1.75 --sigma 0.5 --species none \
    --group O2 --n-train 120 --epsilon 1.0 --max-diameter 1.0 --no-progress
giip info "$OUT/lj2d.h5" | head -40
echo "== 3. giip apply"
giip apply "$OUT/lj2d.h5" "$DUMP" -o "$OUT/lj2d_giip.dump" --no-progress
echo "== 4. OVITO: render the crystal coloured by class"
python ovito_modifier/examples/render_classes.py "$DUMP" "$OUT/lj2d.h5" -o "$OUT/lj2d_classes.png" \
    --camera-dir 0,0,-1 --flat --no-cell
echo "Done: $OUT/lj2d_giip.dump (per-atom d_giip_class, d2_giip_dc[1..k], d_giip_ref_distance; open it in OVITO)"
echo "      $OUT/lj2d_classes.png"
