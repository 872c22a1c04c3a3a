#!/usr/bin/env bash
# Builds the Debian packages from the release binaries (docs/INSTALL.md; `make package`):
#
#   iovctl        /usr/bin/iovctl (the operator tool both services' docs use)
#   iov-gateway   /usr/bin/iov-gateway, its unit, sysusers.d/tmpfiles.d entries, the commented
#                 default config /etc/iov/gateway.toml (a conffile; `iov-gateway
#                 print-default-config`), maintainer scripts; depends on iovctl
#   iov-ledger    the same for /usr/bin/iov-ledger and /etc/iov/ledger.toml
#
# Plain dpkg-deb (no debhelper or cargo-deb needed): the layout below is the whole package.
# Library dependencies come from dpkg-shlibdeps. Nothing is enabled or started on install.
# Binaries are installed stripped (`install -s`, as dh_strip would): the release profile keeps
# line tables, and the statically linked RocksDB carries its own debug info, 160 MB a binary.
#
#   packaging/build-deb.sh [--no-build] [--fast] [--out DIR]
#
# Default DIR: $CARGO_TARGET_DIR/debian. Prints the paths of the three .deb files. --fast
# compresses with gzip -1 instead of xz (tests: seconds instead of a minute; same contents).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-${IOV_CACHE:-$HOME/.cache/iov-gateway}/target}"
out="$target/debian"
build=1
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--no-build] [--fast] [--out DIR]" >&2; exit 2 ;;
  esac
done

log() { echo "package: $*" >&2; }

if [ "$build" -eq 1 ]; then
  log "cargo build --release (iov-gateway, iov-ledger, iovctl)"
  (cd "$top" && CARGO_TARGET_DIR="$target" "${CARGO:-cargo}" build --release -q -p gateway -p ledger-node -p iovctl --bins)
fi
bin="$target/release"
for b in iov-gateway iov-ledger iovctl; do
  [ -x "$bin/$b" ] || { log "$bin/$b missing: build it (cargo build --release) or drop --no-build"; exit 1; }
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)"
arch="$(dpkg --print-architecture)"
maintainer="IoV gateway maintainers <iov-gateway@example.invalid>"
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/iov-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Library dependencies of the binaries, as dpkg-shlibdeps computes them.
shlibdeps() {
  local d="$work/shlibdeps"
  mkdir -p "$d/debian"
  printf 'Source: iov\n\nPackage: iov\nArchitecture: any\n' >"$d/debian/control"
  (cd "$d" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

doc() {
  local root="$1" pkg="$2"
  install -d "$root/usr/share/doc/$pkg"
  install -m 0644 "$top/docs/INSTALL.md" "$root/usr/share/doc/$pkg/INSTALL.md"
  cat >"$root/usr/share/doc/$pkg/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: iov-gateway
Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY
  printf '%s (%s) unstable; urgency=medium\n\n  * Built from the iov-gateway workspace.\n\n -- %s  %s\n' \
    "$pkg" "$version" "$maintainer" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}")" |
    gzip -9n >"$root/usr/share/doc/$pkg/changelog.gz"
}

control() {
  local root="$1" pkg="$2" depends="$3" desc="$4"
  local size
  size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
  cat >"$root/DEBIAN/control" <<CTL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Homepage: https://example.invalid/iov-gateway
Description: $desc
CTL
}

finish() {
  local root="$1" pkg="$2"
  local deb="$out/${pkg}_${version}_${arch}.deb"
  find "$root" -path "$root/DEBIAN" -prune -o -type f -print0 | sort -z |
    xargs -0 md5sum | sed "s|$root/||" >"$root/DEBIAN/md5sums"
  dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
  echo "$deb"
}

# --- iovctl
r="$work/iovctl"
install -d "$r/DEBIAN" "$r/usr/bin"
install -m 0755 -s "$bin/iovctl" "$r/usr/bin/iovctl"
doc "$r" iovctl
control "$r" iovctl "$(shlibdeps -e"$r/usr/bin/iovctl")" "operator tool for the IoV gateway and ledgers
 iovctl generates keys, verifies gateway stores and transparency logs, decodes CAN traces and
 shows the status and history of the gateway running on this machine."
finish "$r" iovctl

# --- the two services
service_pkg() {
  local pkg="$1" binary="$2" conf="$3" desc="$4"
  local r="$work/$pkg"
  install -d "$r/DEBIAN" "$r/usr/bin" "$r/lib/systemd/system" "$r/usr/lib/sysusers.d" \
    "$r/usr/lib/tmpfiles.d" "$r/etc/iov/keys"
  install -m 0755 -s "$bin/$binary" "$r/usr/bin/$binary"
  install -m 0644 "$top/systemd/$pkg.service" "$r/lib/systemd/system/$pkg.service"
  install -m 0644 "$top/systemd/$pkg.sysusers" "$r/usr/lib/sysusers.d/$pkg.conf"
  install -m 0644 "$top/systemd/$pkg.tmpfiles" "$r/usr/lib/tmpfiles.d/$pkg.conf"
  "$bin/$binary" print-default-config >"$r/etc/iov/$conf"
  chmod 0644 "$r/etc/iov/$conf"
  echo "/etc/iov/$conf" >"$r/DEBIAN/conffiles"
  for s in postinst prerm postrm; do
    sed "s/@PKG@/$pkg/g" "$here/maintscript/$s" >"$r/DEBIAN/$s"
    chmod 0755 "$r/DEBIAN/$s"
  done
  doc "$r" "$pkg"
  local deps
  deps="$(shlibdeps -e"$r/usr/bin/$binary")"
  control "$r" "$pkg" "${deps:+$deps, }iovctl (= $version), systemd (>= 247) | adduser" "$desc"
  finish "$r" "$pkg"
}

service_pkg iov-gateway iov-gateway gateway.toml "IoV edge gateway daemon (CAN/MQTT to sealed, signed blocks)
 Reads SocketCAN interfaces, MQTT brokers and CAN traces, decodes them with DBC files, splits
 the data into per-audience lanes, seals them into encrypted, signed blocks in a local log and
 syncs them to the organisations' ledgers. Runs as the systemd service iov-gateway (not enabled
 on install)."
service_pkg iov-ledger iov-ledger ledger.toml "IoV ledger node (witness and mirror of gateway logs)
 The node an organisation runs: it cosigns enrolled gateways' checkpoints and mirrors their
 logs (headers and this organisation's lanes). Runs as the systemd service iov-ledger (not
 enabled on install)."
