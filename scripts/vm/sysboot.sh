#!/usr/bin/env bash
# Boots the systemd test VM (scripts/vm/sysimage.sh prepares it): Debian bookworm with systemd as
# PID 1 on a copy-on-write view of the cached disk image (qemu -snapshot: every boot starts from
# the pristine image and nothing is written back), Debian's kernel under qemu TCG. DIR is shared
# read-write as /share in the guest; once multi-user.target is reached the image's runner
# executes /share/guest.sh (output on the console and in DIR/guest.log), prints
# `IOV-VM-EXIT: <status>` and powers off.
#
#   scripts/vm/sysboot.sh --share DIR [--timeout SECONDS]
#
# `no_timer_check`: a loaded host can make TCG slow enough that the kernel's IO-APIC timer check
# fails and it panics at boot; the check is pointless on a virtual timer.
#
# The serial console goes to stdout. Exit status: guest.sh's own; 125 if no status came (boot
# failure, timeout: the reason is in the console output).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IOV_CACHE:-$HOME/.cache/iov-gateway}"
env_file="$cache/sysvm/env"
timeout_s="${IOV_VM_TIMEOUT:-600}"
share=""
while [ $# -gt 0 ]; do
  case "$1" in
    --share) share="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    *) echo "usage: $0 --share DIR [--timeout SECONDS]" >&2; exit 2 ;;
  esac
done
[ -n "$share" ] || { echo "usage: $0 --share DIR [--timeout SECONDS]" >&2; exit 2; }
if [ ! -f "$env_file" ]; then
  echo "vm/sysboot: the systemd VM is not prepared ($env_file missing): run $here/sysimage.sh" >&2
  exit 125
fi
# shellcheck disable=SC1090
. "$env_file"
for f in "$IOV_SYSVM_KERNEL" "$IOV_SYSVM_INITRD" "$IOV_SYSVM_DISK"; do
  [ -f "$f" ] || { echo "vm/sysboot: $f missing: run $here/sysimage.sh" >&2; exit 125; }
done
share="$(cd "$share" && pwd -P)"
console="$(mktemp "${TMPDIR:-/tmp}/iov-sysvm-console.XXXXXX")"
trap 'rm -f "$console"' EXIT

set +e
timeout --kill-after=5 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -m "${IOV_VM_MEMORY_MB:-1024}" -smp 1 \
  -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$IOV_SYSVM_KERNEL" -initrd "$IOV_SYSVM_INITRD" \
  -append "console=ttyS0 panic=-1 quiet no_timer_check systemd.show_status=error" \
  -drive "file=$IOV_SYSVM_DISK,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$share,mount_tag=share,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | tee "$console"
qemu_status="${PIPESTATUS[0]}"
set -e

status="$(tr -d '\r' <"$console" | sed -n 's/^.*IOV-VM-EXIT: \([0-9][0-9]*\)$/\1/p' | tail -n1)"
if [ -z "$status" ]; then
  if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
    echo "vm/sysboot: timed out after ${timeout_s}s without an exit marker" >&2
  else
    echo "vm/sysboot: the guest reported no exit status (qemu exited with $qemu_status)" >&2
  fi
  exit 125
fi
exit "$status"
