#!/bin/busybox sh
# /init of the systemd test VM's initramfs (built by scripts/vm/sysimage.sh; sysboot.sh boots it).
#
# Loads the virtio, ext4, 9p and CAN modules (the root filesystem carries no kernel modules: the
# kernel is the cached Debian one), mounts /dev/vda (the Debian image) on /newroot and hands over
# to systemd as PID 1 with switch_root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

fail() {
  echo "iov-sysvm init: $*" >/dev/console
  printf '\nIOV-VM-EXIT: 125\n' >/dev/console
  sync
  poweroff -f
}

while read -r m; do
  [ -n "$m" ] || continue
  insmod "/modules/$m.ko" || fail "insmod $m failed"
done </modules/order

mkdir -p /newroot
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ "$i" -le 50 ] || fail "no /dev/vda"
  sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
[ -e /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || fail "no /sbin/init on /dev/vda"
umount /proc /sys
umount /dev 2>/dev/null
exec switch_root /newroot /sbin/init
