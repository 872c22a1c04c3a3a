#!/usr/bin/env bash
# Prepares everything the SocketCAN test VM needs, idempotently (anything present is skipped):
#
#   - Debian packages: qemu-system-x86 busybox-static cpio kmod can-utils (installed if missing)
#   - Debian's kernel (the package `linux-image-amd64` depends on), `apt-get download`ed and
#     unpacked with `dpkg -x` into $IOV_CACHE/vm/kernel
#   - an initramfs (busybox + CAN, vcan and 9p modules + scripts/vm/init.sh as /init) in
#     $IOV_CACHE/vm/initrd-<kernel version>.gz
#
# Prints nothing but progress; the paths `run.sh` needs are in $IOV_CACHE/vm/env.
# Usage: scripts/vm/prepare.sh            (IOV_CACHE defaults to ~/.cache/iov-gateway)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IOV_CACHE:-$HOME/.cache/iov-gateway}"
vmdir="$cache/vm"
packages=(qemu-system-x86 busybox-static cpio kmod can-utils)
# Load order matters (insmod does not resolve dependencies).
modules=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  netfs fscache 9pnet 9pnet_virtio 9p
  can can-raw can-dev vcan
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

log() { echo "vm/prepare: $*" >&2; }

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

# The kernel image package `linux-image-amd64` points at, e.g. linux-image-6.1.0-57-amd64.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}

fetch_kernel() {
  local pkg="$1" dest="$vmdir/kernel/$pkg"
  if compgen -G "$dest/boot/vmlinuz-*" >/dev/null; then
    log "kernel $pkg present"
    return
  fi
  log "downloading and unpacking $pkg"
  local tmp
  tmp="$(mktemp -d "$vmdir/download.XXXXXX")"
  # apt warns that its sandbox user cannot write here (a root-only cache); the download still works.
  (cd "$tmp" && apt-get download -q "$pkg" 2>&1 >/dev/null | grep -v 'Download is performed unsandboxed' >&2 || true)
  rm -rf "$dest.partial"
  mkdir -p "$vmdir/kernel"
  compgen -G "$tmp/${pkg}_*.deb" >/dev/null || { log "apt-get download $pkg failed"; rm -rf "$tmp"; exit 1; }
  dpkg -x "$tmp"/"$pkg"_*.deb "$dest.partial"
  rm -rf "$tmp"
  mv "$dest.partial" "$dest"
}

build_initrd() {
  local kdir="$1" version="$2" out="$3"
  local stamp
  # Rebuild when the init script or this script changed.
  stamp="$(cat "$here/init.sh" "$here/prepare.sh" | sha256sum | cut -c1-16)"
  if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "initramfs present ($out)"
    return
  fi
  log "building the initramfs for $version"
  local root
  root="$(mktemp -d "$vmdir/initrd.XXXXXX")"
  mkdir -p "$root"/{bin,dev,proc,sys,host,modules}
  cp /bin/busybox "$root/bin/busybox"
  for m in "${modules[@]}"; do
    local f
    f="$(find "$kdir/lib/modules/$version" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
      -o -name "${m//-/_}.ko" -o -name "${m//-/_}.ko.xz" -o -name "${m//-/_}.ko.zst" \) | head -n1)"
    if [ -z "$f" ]; then
      log "module $m not found under $kdir/lib/modules/$version"
      exit 1
    fi
    case "$f" in
      *.xz) xz -dc "$f" >"$root/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" >"$root/modules/$m.ko" ;;
      *) cp "$f" "$root/modules/$m.ko" ;;
    esac
  done
  printf '%s\n' "${modules[@]}" >"$root/modules/order"
  cp "$here/init.sh" "$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.partial"
  mv "$out.partial" "$out"
  echo "$stamp" >"$out.stamp"
  rm -rf "$root"
}

main() {
  install_packages
  mkdir -p "$vmdir"
  local pkg
  pkg="$(kernel_package)"
  if [ -z "$pkg" ]; then
    log "cannot tell which kernel linux-image-amd64 depends on (apt-cache depends linux-image-amd64); run apt-get update"
    exit 1
  fi
  fetch_kernel "$pkg"
  local kdir="$vmdir/kernel/$pkg"
  local vmlinuz version
  vmlinuz="$(ls "$kdir"/boot/vmlinuz-* | head -n1)"
  version="${vmlinuz##*/vmlinuz-}"
  local initrd="$vmdir/initrd-$version.gz"
  build_initrd "$kdir" "$version" "$initrd"
  cat >"$vmdir/env.partial" <<ENV
IOV_VM_KERNEL=$vmlinuz
IOV_VM_INITRD=$initrd
IOV_VM_KERNEL_VERSION=$version
ENV
  mv "$vmdir/env.partial" "$vmdir/env"
  log "ready: $vmdir/env"
}

main "$@"
