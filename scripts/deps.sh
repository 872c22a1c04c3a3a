#!/usr/bin/env bash
# Installs what the build, the tests and the demo need, idempotently: anything already present is
# skipped. Runs on a fresh Debian machine with a Rust toolchain, as root (or with sudo available).
#
#   scripts/deps.sh system   Debian packages only
#   scripts/deps.sh oracle   the Python virtualenv with the reference tools (cantools, python-can)
#   scripts/deps.sh vm       the SocketCAN test VM: qemu, busybox, can-utils, Debian's kernel and an
#                            initramfs in $IOV_CACHE/vm (scripts/vm/prepare.sh; see docs/testing-vm.md),
#                            and the systemd test VM: debootstrap, a Debian image with systemd in
#                            $IOV_CACHE/sysvm (scripts/vm/sysimage.sh; the packages' test)
#   scripts/deps.sh all      all three (what `make test` uses)
set -euo pipefail

cache="${IOV_CACHE:-$HOME/.cache/iov-gateway}"
venv="$cache/venv"
what="${1:-all}"

# Debian packages: build tools (libclang for RocksDB's bindgen), Python's venv module, and the
# gateway tests' broker (mosquitto, mosquitto-clients) and certificate tool (openssl); packaging:
# dpkg-dev (dpkg-shlibdeps) and systemd (systemd-analyze checks the units; not started).
system_packages=(build-essential pkg-config clang libclang-dev python3 python3-venv mosquitto mosquitto-clients openssl dpkg-dev systemd)

# Versions of the reference implementations our differential tests compare against.
oracle_packages=(cantools==45.1.0 python-can==4.6.1)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_system() {
  local missing=()
  for p in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # A python3 that already has a working venv module (pyenv, for one) needs no Debian python.
  if python3 -c 'import venv, ensurepip' 2>/dev/null; then
    local keep=()
    for p in "${missing[@]}"; do
      case "$p" in python3|python3-venv) ;; *) keep+=("$p") ;; esac
    done
    missing=("${keep[@]}")
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: Debian packages present"
    return
  fi
  echo "deps: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_oracle() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "${oracle_packages[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PY
  then
    echo "deps: oracle virtualenv present ($venv)"
    return
  fi
  echo "deps: creating the oracle virtualenv in $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${oracle_packages[@]}"
}

# The VM's Debian packages (qemu-system-x86 busybox-static cpio kmod can-utils) are installed by
# prepare.sh itself, so that script also works on its own.
install_vm() {
  "$(dirname "${BASH_SOURCE[0]}")/vm/prepare.sh"
  "$(dirname "${BASH_SOURCE[0]}")/vm/sysimage.sh"
}

case "$what" in
  system) install_system ;;
  oracle) install_oracle ;;
  vm) install_vm ;;
  all) install_system; install_oracle; install_vm ;;
  *) echo "usage: $0 system|oracle|vm|all" >&2; exit 2 ;;
esac
