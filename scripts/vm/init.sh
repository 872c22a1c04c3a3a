#!/bin/busybox sh
# /init of the test VM's initramfs (built by scripts/vm/prepare.sh; run.sh boots it).
#
# Loads the virtio/9p and CAN modules, creates vcan0 and vcan1 (CAN FD capable, MTU 72), mounts
# the host's root read-only on /host and the share directory read-write at the same path inside
# it, runs the command file chrooted into /host, prints the exit marker and powers off.
#
# Parameters come from the kernel command line (unknown `key=value` words become environment
# variables of init): iov_cmd (a script on the host, run with /bin/sh), iov_share (a host
# directory, or empty).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

marker() {
  # On a line of its own: the firmware leaves escape sequences without a newline on the console.
  printf '\nIOV-VM-EXIT: %s\n' "$1" >/dev/console
  sync
  poweroff -f
}

fail() {
  echo "iov-vm init: $*" >/dev/console
  marker 125
}

while read -r m; do
  [ -n "$m" ] || continue
  insmod "/modules/$m.ko" || fail "insmod $m failed"
done </modules/order

for i in vcan0 vcan1; do
  ip link add dev "$i" type vcan || fail "cannot create $i"
  ip link set "$i" mtu 72 || fail "cannot set $i mtu 72 (CAN FD)"
  ip link set "$i" up || fail "cannot bring $i up"
done
ip link set lo up

mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || fail "cannot mount the host root (9p)"
mount -t proc proc /host/proc || fail "cannot mount /host/proc"
mount -t sysfs sys /host/sys || fail "cannot mount /host/sys"
mount -t devtmpfs dev /host/dev || fail "cannot mount /host/dev"
mount -t tmpfs tmp /host/tmp || fail "cannot mount a tmpfs on /host/tmp"
mount -t tmpfs run /host/run 2>/dev/null
if [ -n "$iov_share" ]; then
  mkdir -p "/host$iov_share" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share "/host$iov_share" ||
    fail "cannot mount the share $iov_share (9p)"
fi
[ -n "$iov_cmd" ] || fail "no iov_cmd on the kernel command line"

# The command file lives in the share (run.sh writes it there), or on the read-only host root.
HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  chroot /host /bin/sh "$iov_cmd" </dev/null >/dev/console 2>&1
marker $?
