#!/usr/bin/env bash
# Boots the SocketCAN test VM (Debian's kernel under qemu TCG, busybox initramfs), runs one command
# in it and powers off. Inside the guest: vcan0 and vcan1 exist and are up (CAN FD capable, MTU
# 72), the host's root is mounted read-only and the command runs chrooted into it, so the host's
# own binaries (cargo-built tests, can-utils, ip) run unchanged; DIR (if given) is mounted
# read-write at the same path, the only place the command can leave results for the host.
#
#   scripts/vm/run.sh [--share DIR] [--timeout SECONDS] [--] COMMAND [ARG...]
#
# The guest's serial console (the command's stdout and stderr, then kernel messages) goes to this
# script's stdout. Exit status: the command's own status; 125 if the guest did not report one (boot
# failure, kernel panic, timeout: the reason is in the console output). The working directory is
# kept when it is visible in the guest. Run scripts/vm/prepare.sh first (idempotent).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IOV_CACHE:-$HOME/.cache/iov-gateway}"
env_file="$cache/vm/env"
timeout_s="${IOV_VM_TIMEOUT:-300}"
share=""

usage() {
  echo "usage: $0 [--share DIR] [--timeout SECONDS] [--] COMMAND [ARG...]" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --share) [ $# -ge 2 ] || usage; share="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage

if [ ! -f "$env_file" ]; then
  echo "vm/run: the VM is not prepared ($env_file missing): run $here/prepare.sh" >&2
  exit 125
fi
# shellcheck disable=SC1090
. "$env_file"
for f in "$IOV_VM_KERNEL" "$IOV_VM_INITRD"; do
  [ -f "$f" ] || { echo "vm/run: $f missing: run $here/prepare.sh" >&2; exit 125; }
done

# An initramfs built from an older init.sh would run different steps: refuse it.
stamp="$(cat "$here/init.sh" "$here/prepare.sh" | sha256sum | cut -c1-16)"
if [ "$(cat "$IOV_VM_INITRD.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "vm/run: the initramfs is older than scripts/vm/init.sh or prepare.sh: run $here/prepare.sh" >&2
  exit 125
fi

own_share=""
if [ -z "$share" ]; then
  share="$(mktemp -d "${TMPDIR:-/tmp}/iov-vm.XXXXXX")"
  own_share="$share"
fi
share="$(cd "$share" && pwd -P)"
case "$share" in
  *[[:space:]]*) echo "vm/run: the share path must not contain whitespace: $share" >&2; exit 2 ;;
esac

cmd_file="$share/.iov-vm-cmd.$$.sh"
cleanup() {
  rm -f "$cmd_file"
  [ -z "$own_share" ] || rm -rf "$own_share"
}
trap cleanup EXIT
{
  echo "cd $(printf '%q' "$PWD") 2>/dev/null || cd /"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$cmd_file"

console="$(mktemp "${TMPDIR:-/tmp}/iov-vm-console.XXXXXX")"
trap 'cleanup; rm -f "$console"' EXIT

set +e
timeout --kill-after=5 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -m "${IOV_VM_MEMORY_MB:-512}" -smp 1 \
  -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$IOV_VM_KERNEL" -initrd "$IOV_VM_INITRD" \
  -append "console=ttyS0 quiet panic=-1 no_timer_check iov_cmd=$cmd_file iov_share=$share" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$share,mount_tag=share,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | tee "$console"
qemu_status="${PIPESTATUS[0]}"
set -e

status="$(tr -d '\r' <"$console" | sed -n 's/^.*IOV-VM-EXIT: \([0-9][0-9]*\)$/\1/p' | tail -n1)"
if [ -z "$status" ]; then
  if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
    echo "vm/run: timed out after ${timeout_s}s without an exit marker" >&2
  else
    echo "vm/run: the guest reported no exit status (qemu exited with $qemu_status)" >&2
  fi
  exit 125
fi
exit "$status"
