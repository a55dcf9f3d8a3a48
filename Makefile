# The two commands of the README: `make up` runs the system, `make test` runs every test.
# Both install what a fresh machine of this kind lacks first (Debian packages), then call cargo.

# One target directory outside the clone, so CI on this machine reuses earlier builds; a cold
# build on a fresh machine works the same, only slower.
CARGO_TARGET_DIR ?= /var/tmp/govern-target
export CARGO_TARGET_DIR

# librocksdb-dev: the RocksDB we link (a bundled build takes ~18 min on 2 cores).
# libclang-dev: bindgen for librocksdb-sys. m4: GMP, for the threshold-signing crates.
DEB_PACKAGES := librocksdb-dev libclang-dev m4 pkg-config libssl-dev

.PHONY: up test deps bench fuzz-build clean-data

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

up: deps
	cargo run --release --bin govern -- up

test: deps
	# The real-enclave NSM provider cannot run here, but it must keep compiling.
	cargo check -p govern --no-default-features --features nitro
	cargo nextest run --workspace --no-fail-fast

bench: deps
	cargo run --release --bin govern -- bench append
