# The two commands a newcomer needs:
#   make demo   three vehicles replay real CAN recordings through gateways, two ledgers, a dead zone
#   make test   everything CI checks: formatting, clippy, all tests (with the reference oracles)
#
# Builds share one cargo profile (release) and a target directory outside the checkout, so heavy
# dependencies compile once per machine and survive fresh clones.

SHELL := /bin/bash
IOV_CACHE ?= $(HOME)/.cache/iov-gateway
export CARGO_TARGET_DIR ?= $(IOV_CACHE)/target
export IOV_ORACLE_PYTHON ?= $(IOV_CACHE)/venv/bin/python
export IOV_CACHE
CARGO ?= cargo
PROFILE := --release

GPS_DBC := fixtures/dbc/css-electronics/canmod-gps.dbc
GPS_TRACE := fixtures/traces/canmod_gps_3BA199E2.log.gz

.PHONY: demo test deps deps-system deps-vm check lint unit vm-test package bench fuzz-smoke clean-cache help

help:
	@sed -n '1,4p' Makefile

# iov-sim starts the gateway, ledger and iovctl binaries from its own target folder.
demo: deps-system
	$(CARGO) build $(PROFILE) -q -p gateway -p ledger-node -p iovctl -p sim --bins
	$(CARGO) run $(PROFILE) -q -p sim --bin iov-sim -- demo

test: deps lint unit fuzz-smoke

deps:
	scripts/deps.sh all

deps-system:
	scripts/deps.sh system

deps-vm:
	scripts/deps.sh vm

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets -- -D warnings

# `unit` includes the SocketCAN tests in the VM (gateway/tests/vcan.rs: 7 boots, about 1.5 minutes;
# gateway/tests/vcan_daemon.rs: 1 boot, about 20 s), the daemon crash test (about a minute) and the
# packages on a booted Debian with systemd (gateway/tests/deb_vm.rs: 1 boot; docs/INSTALL.md).
unit:
	$(CARGO) test $(PROFILE) --workspace --all-targets --no-fail-fast
	$(CARGO) test $(PROFILE) --workspace --doc

# Only the tests that boot a VM (docs/testing-vm.md).
vm-test: deps-vm
	$(CARGO) test $(PROFILE) -p gateway --test vcan --test vcan_daemon --test deb_vm

# The Debian packages iovctl, iov-gateway and iov-ledger (packaging/build-deb.sh; installing,
# upgrading and removing them: docs/INSTALL.md). They land in $(CARGO_TARGET_DIR)/debian.
package: deps-system
	packaging/build-deb.sh

# Decode speed against cantools, sealing and bytes per frame, Merkle proofs, the gateway daemon's
# ingest on one core, CPU share at 25k frames/s and peak RSS, the ledger node (uploads, many
# gateways at once, an hour's catch-up against link rates, queries); figures go to
# docs/BENCHMARKS.md by hand.
bench: deps
	$(CARGO) run $(PROFILE) -q -p can-decoders --example bench -- --dbc $(GPS_DBC) --trace $(GPS_TRACE)
	$(CARGO) run $(PROFILE) -q -p ledger --example lane_bench
	$(CARGO) run $(PROFILE) -q -p ledger --features rocks --example store_bench
	$(CARGO) run $(PROFILE) -q -p ledger --example merkle_speed
	$(CARGO) build $(PROFILE) -q -p gateway --bin iov-gateway
	$(CARGO) run $(PROFILE) -q -p gateway --example gateway_bench -- --soak 120
	scripts/deps.sh vm && scripts/vm/bench-coalesce.sh
	$(CARGO) run $(PROFILE) -q -p ledger-node --example sync_bench
	$(CARGO) build $(PROFILE) -q -p ledger-node --bin iov-ledger
	$(CARGO) run $(PROFILE) -q -p gateway --example sync_load
	$(CARGO) run $(PROFILE) -q -p gateway --example sync_catchup

# A short coverage-guided run of every fuzz target (cargo-fuzz, stable toolchain).
FUZZ_SECONDS ?= 10
fuzz-smoke:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	set -o pipefail; cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 cargo fuzz list); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | tail -4 || exit 1; \
	done

clean-cache:
	rm -rf $(IOV_CACHE)
