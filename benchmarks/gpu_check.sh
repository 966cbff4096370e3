#!/usr/bin/env bash
# The GPU check of issue 22 in one command: the search on CUDA against the CPU, and timed
# (benchmarks/gpu_check.py says what it checks and prints). At most about 5 minutes on one
# H100/H200-class GPU with 16 CPU cores.
#
#   bash benchmarks/gpu_check.sh --dry-run [--out DIR]   # on the CPU, small sizes (CI runs this)
#   bash benchmarks/gpu_check.sh --fetch-wheels          # with network: the wheels a bare GPU image lacks, into .whl/
#   bash benchmarks/gpu_check.sh [--out DIR]             # on the GPU machine
#
# On the GPU machine it runs from this checkout without installing the project (PYTHONPATH; the
# compiled CPU kernel is built at first use with the system's C compiler). Python packages: the
# project's .venv where there is one, else python3; a package of requirements.txt that python3
# lacks is installed from the wheels in .whl/ (GIIP_WHEELS) when there are some (an image without
# network: fetch them beforehand with --fetch-wheels and carry the folder), else from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GIIP_WHEELS:-.whl}
# what a GPU image with PyTorch, numpy, scipy, h5py and tqdm lacks; versions from requirements.txt
NEEDED=(ase vesin)
pins() { for n in "${NEEDED[@]}"; do grep -i "^$n==" requirements.txt; done; }

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$WHEELS"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$WHEELS" $(pins)
  ls -l "$WHEELS"
  exit 0
fi

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c "import ase, vesin, torch, h5py, scipy, tqdm" 2>/dev/null; then
  SITE=${TMPDIR:-/tmp}/giip-gpu-site
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  else
    "$PY" -m pip install -q --no-cache-dir --upgrade --target "$SITE" $(pins)
  fi
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" benchmarks/gpu_check.py "$@"
