#!/bin/sh
# /usr/local/sbin/iov-vmtest in the systemd test VM image (scripts/vm/sysimage.sh puts it there;
# iov-vmtest.service runs it once multi-user.target is reached). Mounts the host's share (9p, tag
# `share`) on /share, runs /share/guest.sh with its output on the serial console and in
# /share/guest.log, prints `IOV-VM-EXIT: <status>` and powers the machine off.
console=/dev/ttyS0
finish() {
  printf '\nIOV-VM-EXIT: %s\n' "$1" >"$console"
  sync
  systemctl --no-block poweroff
  exit 0
}
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /share || {
  echo "iov-vmtest: cannot mount the share (9p)" >"$console"
  finish 125
}
[ -f /share/guest.sh ] || { echo "iov-vmtest: /share/guest.sh missing" >"$console"; finish 125; }
echo "iov-vmtest: multi-user reached after $(cut -d' ' -f1 /proc/uptime) s" >"$console"
( cd /share && sh /share/guest.sh; echo $? >/share/.guest-status ) 2>&1 | tee /share/guest.log >"$console"
finish "$(cat /share/.guest-status 2>/dev/null || echo 125)"
