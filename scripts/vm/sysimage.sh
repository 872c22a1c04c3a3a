#!/usr/bin/env bash
# Prepares the systemd test VM, idempotently (anything present and current is skipped):
#
#   - Debian packages: debootstrap, e2fsprogs (mkfs.ext4 -d), plus what prepare.sh installs
#     (qemu, busybox-static, cpio, kmod, can-utils) and Debian's kernel (prepare.sh, shared)
#   - a minimal Debian root filesystem with systemd as PID 1, can-utils and iproute2:
#     `debootstrap --variant=minbase` from the mirror in this machine's apt sources, into
#     $IOV_CACHE/sysvm/rootfs (about 300 MB; only when missing: the slow, networked step)
#   - the test runner (scripts/vm/sysrunner.sh as /usr/local/sbin/iov-vmtest and a unit that
#     runs it after multi-user.target) and a 2 GiB ext4 image of it all: $IOV_CACHE/sysvm/disk.img
#     (sparse; rebuilt when the runner or this script changed, a few seconds)
#   - an initramfs (busybox, virtio/ext4/9p/CAN modules, scripts/vm/sysinit.sh as /init) that
#     mounts the image and switch_roots into systemd: $IOV_CACHE/sysvm/initrd.gz
#
# The paths sysboot.sh needs are in $IOV_CACHE/sysvm/env. See docs/testing-vm.md.
# Usage: scripts/vm/sysimage.sh            (IOV_CACHE defaults to ~/.cache/iov-gateway)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IOV_CACHE:-$HOME/.cache/iov-gateway}"
dir="$cache/sysvm"
packages=(debootstrap e2fsprogs)
# What the guest needs besides minbase: systemd as init, udev (device units), ip and the CAN
# tools for vcan0, and the C++ runtime the RocksDB-linked binaries use.
include=systemd,systemd-sysv,udev,iproute2,kmod,can-utils,libstdc++6,libgcc-s1
# Load order matters (insmod does not resolve dependencies).
modules=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
  crc16 mbcache jbd2 crc32c_generic ext4
  netfs fscache 9pnet 9pnet_virtio 9p
  can can-raw can-dev vcan
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

log() { echo "vm/sysimage: $*" >&2; }

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages present"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The Debian mirror and suite this machine's apt uses (deb822 .sources or one-line lists).
mirror() {
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\([^ ]*\).*/\1/p' |
    grep -v -- '-security' | head -n1 || true)"
  if [ -z "$uri" ]; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\) .*/\2/p' | grep -v -- '-security' | head -n1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

suite() {
  (. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
}

build_rootfs() {
  local want
  want="$(suite) $include"
  if [ -f "$dir/rootfs/.iov-complete" ] && [ "$(cat "$dir/rootfs/.iov-complete")" = "$want" ]; then
    log "root filesystem present ($dir/rootfs)"
    return
  fi
  local m
  m="$(mirror)"
  log "debootstrap $(suite) from $m into $dir/rootfs (once; about a minute)"
  as_root rm -rf "$dir/rootfs.partial" "$dir/rootfs"
  mkdir -p "$dir"
  local start=$SECONDS
  as_root debootstrap --variant=minbase --include="$include" "$(suite)" "$dir/rootfs.partial" "$m" \
    >"$dir/debootstrap.log" 2>&1 || {
    log "debootstrap failed; the last lines of $dir/debootstrap.log:"
    tail -n 20 "$dir/debootstrap.log" >&2
    exit 1
  }
  # A fixed identity: no machine-id (systemd makes one per boot), a hostname, no apt caches.
  as_root rm -rf "$dir/rootfs.partial/var/cache/apt/archives/"*.deb "$dir/rootfs.partial/var/lib/apt/lists/"*
  echo "$want" | as_root tee "$dir/rootfs.partial/.iov-complete" >/dev/null
  as_root mv "$dir/rootfs.partial" "$dir/rootfs"
  log "root filesystem built in $((SECONDS - start)) s"
}

image_stamp() {
  cat "$here/sysrunner.sh" "$here/sysimage.sh" "$dir/rootfs/.iov-complete" | sha256sum | cut -c1-16
}

build_image() {
  local stamp
  stamp="$(image_stamp)"
  if [ -f "$dir/disk.img" ] && [ "$(cat "$dir/disk.img.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "disk image present ($dir/disk.img)"
    return
  fi
  log "building the disk image"
  local r="$dir/rootfs"
  install -m 0755 "$here/sysrunner.sh" "$r/usr/local/sbin/iov-vmtest"
  cat >"$r/etc/systemd/system/iov-vmtest.service" <<'UNIT'
[Unit]
Description=IoV VM test runner (/share/guest.sh, results on ttyS0 and in /share)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/iov-vmtest
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/iov-vmtest.service "$r/etc/systemd/system/multi-user.target.wants/iov-vmtest.service"
  # Nothing waits for a login on the console or for a network that is not there.
  ln -sf /dev/null "$r/etc/systemd/system/serial-getty@ttyS0.service"
  ln -sf /dev/null "$r/etc/systemd/system/getty@tty1.service"
  ln -sf /dev/null "$r/etc/systemd/system/systemd-networkd-wait-online.service"
  echo iov-testvm >"$r/etc/hostname"
  : >"$r/etc/machine-id"
  printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$r/etc/fstab"
  rm -f "$dir/disk.img.partial"
  truncate -s 2G "$dir/disk.img.partial"
  mkfs.ext4 -q -L iovroot -d "$r" "$dir/disk.img.partial"
  mv "$dir/disk.img.partial" "$dir/disk.img"
  echo "$stamp" >"$dir/disk.img.stamp"
}

build_initrd() {
  local kdir="$1" version="$2" out="$dir/initrd.gz"
  local stamp
  stamp="$(cat "$here/sysinit.sh" "$here/sysimage.sh" | sha256sum | cut -c1-16)-$version"
  if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "initramfs present ($out)"
    return
  fi
  log "building the initramfs for $version"
  local root
  root="$(mktemp -d "$dir/initrd.XXXXXX")"
  mkdir -p "$root"/{bin,dev,proc,sys,newroot,modules}
  cp /bin/busybox "$root/bin/busybox"
  for m in "${modules[@]}"; do
    local f
    f="$(find "$kdir/lib/modules/$version" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
      -o -name "${m//-/_}.ko" -o -name "${m//-/_}.ko.xz" -o -name "${m//-/_}.ko.zst" \) | head -n1)"
    [ -n "$f" ] || { log "module $m not found under $kdir/lib/modules/$version"; exit 1; }
    case "$f" in
      *.xz) xz -dc "$f" >"$root/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" >"$root/modules/$m.ko" ;;
      *) cp "$f" "$root/modules/$m.ko" ;;
    esac
  done
  printf '%s\n' "${modules[@]}" >"$root/modules/order"
  cp "$here/sysinit.sh" "$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.partial"
  mv "$out.partial" "$out"
  echo "$stamp" >"$out.stamp"
  rm -rf "$root"
}

main() {
  install_packages
  "$here/prepare.sh"
  # shellcheck disable=SC1091
  . "$cache/vm/env"
  local kdir
  kdir="$(dirname "$(dirname "$IOV_VM_KERNEL")")"
  mkdir -p "$dir"
  build_rootfs
  build_image
  build_initrd "$kdir" "$IOV_VM_KERNEL_VERSION"
  cat >"$dir/env.partial" <<ENV
IOV_SYSVM_KERNEL=$IOV_VM_KERNEL
IOV_SYSVM_INITRD=$dir/initrd.gz
IOV_SYSVM_DISK=$dir/disk.img
IOV_SYSVM_STAMP=$(image_stamp)
ENV
  mv "$dir/env.partial" "$dir/env"
  log "ready: $dir/env"
}

main "$@"
