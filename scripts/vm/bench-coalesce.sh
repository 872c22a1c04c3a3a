#!/usr/bin/env bash
# SocketCAN receive coalescing in the test VM (docs/BENCHMARKS.md, D258): the gateway's CAN
# source (through the `can_capture` example) reads FRAMES frames that `cangen` sends into vcan0
# with a GAP_MS gap, once without coalescing and once with the default 20 ms, ROUNDS times each,
# and prints wake-ups, frames per wake-up and the capture process's CPU time for each run.
#
#   scripts/vm/bench-coalesce.sh [FRAMES] [GAP_MS] [ROUNDS]     (default 20000 0.25 2)
#
# The guest is emulated (qemu TCG): its CPU times are many times real hardware's, so only the
# ratio between the two settings means anything. Run scripts/vm/prepare.sh first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/../.." && pwd)"
frames="${1:-20000}"
gap="${2:-0.25}"
rounds="${3:-2}"
target="${CARGO_TARGET_DIR:-${IOV_CACHE:-$HOME/.cache/iov-gateway}/target}"

(cd "$top" && CARGO_TARGET_DIR="$target" cargo build --release -q -p gateway --example can_capture)
share="$(mktemp -d "${TMPDIR:-/tmp}/iov-coalesce.XXXXXX")"
trap 'rm -rf "$share"' EXIT

cat >"$share/guest.sh" <<EOF
set -u
S=$share
CAP=$target/release/examples/can_capture
wait_for() { i=0; until grep -q "\$1" "\$2" 2>/dev/null; do i=\$((i+1)); [ \$i -ge 600 ] && exit 90; sleep 0.05; done; }
for r in \$(seq $rounds); do
  for c in 0 20; do
    \$CAP --iface vcan0 --out \$S/cap.log --count $frames --seconds 300 --coalesce-ms \$c >\$S/cap.out 2>\$S/cap.err &
    wait_for '^ready' \$S/cap.out
    cangen -n $frames -g $gap -p 10 -I 123 -L 8 -D i vcan0 || exit 91
    wait \$! || exit 92
    echo "coalesce_ms=\$c \$(tail -n 1 \$S/cap.out)" >>\$S/results.txt
  done
done
EOF

"$here/run.sh" --share "$share" --timeout 900 -- /bin/sh "$share/guest.sh" >"$share/console.txt" 2>&1 || {
  echo "bench-coalesce: the guest failed; console:" >&2
  tail -n 30 "$share/console.txt" >&2
  exit 1
}
awk '{
  for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  printf "coalesce %2d ms: %d frames, %d wake-ups (%.1f frames each), dropped %d + %d in the kernel, capture CPU %d ms\n",
    v["coalesce_ms"], v["received"], v["wakeups"], v["received"] / (v["wakeups"] > 0 ? v["wakeups"] : 1),
    v["dropped_full"], v["kernel_drops"], v["cpu_ms"]
}' "$share/results.txt"
