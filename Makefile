# The two commands of the README: `make up` runs the system, `make test` runs every test.
# Both install what a fresh machine of this kind lacks first (Debian packages), then call cargo.

# One target directory outside the clone, so CI on this machine reuses earlier builds; a cold
# build on a fresh machine works the same, only slower.
CARGO_TARGET_DIR ?= /var/tmp/govern-target
export CARGO_TARGET_DIR

# librocksdb-dev: the RocksDB we link (a bundled build takes ~18 min on 2 cores).
# libclang-dev: bindgen for librocksdb-sys. m4: GMP, for the threshold-signing crates.
DEB_PACKAGES := librocksdb-dev libclang-dev m4 pkg-config libssl-dev

# What only the tests need: Debian's Chromium (the passkey flow in a real browser, driven by
# playwright-core from tests/browser/package-lock.json) and schemathesis (PyPI) in a venv;
# the commands of the README and docs/auditor-guide.md, which tests/docs.rs runs: curl, jq,
# xxd, python3 (a static file server) and openssl (scripts/forge.py).
# postgresql: the log's PostgreSQL store is tested against a throwaway server of Debian's
# (replay-tests/src/postgres.rs starts one per test, as the postgres user under root).
# patroni, etcd-server: tests/cluster.rs kills the primary of the replicated cluster
# scripts/pg-cluster.sh starts.
CLUSTER_DEB_PACKAGES := postgresql patroni etcd-server
TEST_DEB_PACKAGES := chromium curl jq xxd python3 openssl $(CLUSTER_DEB_PACKAGES)
VENV ?= /var/tmp/govern-venv
SCHEMATHESIS_VERSION := 4.32.5
# tests/signers.rs recovers a signed transaction's sender with an Ethereum implementation
# that is not this project's: eth-account (PyPI), in the same venv.
ETH_ACCOUNT_VERSION := 0.14.0

.PHONY: up test deps test-deps bench fuzz-build clean-data screenshots cluster cluster-down

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call apt_install,$(DEB_PACKAGES))
	@command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

test-deps: deps
	$(call apt_install,$(TEST_DEB_PACKAGES))
	@[ -f tests/browser/node_modules/playwright-core/package.json ] || \
	  (cd tests/browser && npm ci --no-audit --no-fund)
	@$(VENV)/bin/schemathesis --version 2>/dev/null | grep -q "$(SCHEMATHESIS_VERSION)" || \
	  (python3 -m venv $(VENV) && $(VENV)/bin/pip install -q "schemathesis==$(SCHEMATHESIS_VERSION)")
	@$(VENV)/bin/python -c "import eth_account" 2>/dev/null || \
	  $(VENV)/bin/pip install -q "eth-account==$(ETH_ACCOUNT_VERSION)"

up: deps
	cargo run --release --bin govern -- up

test: test-deps
	# The enclave build (real NSM, the key service's master from AWS KMS) cannot run here,
	# but it must keep compiling; its KMS client runs against a local stand-in for KMS.
	cargo check -p govern --no-default-features --features nitro-kms
	cargo nextest run -p govern-api --features nitro-kms --lib --no-fail-fast -E 'test(kms::)'
	GOVERN_TEST_PYTHON=$(VENV)/bin/python cargo nextest run --workspace --no-fail-fast
	# The API against its own OpenAPI document, bounded in time: no 5xx, no response that
	# breaks the schema.
	SCHEMATHESIS=$(VENV)/bin/schemathesis scripts/schemathesis.sh

# The log past one machine, tried on this one (docs/deployment.md): etcd, three PostgreSQL
# members under Patroni and two govern nodes, on loopback, in CLUSTER_DIR.
CLUSTER_DIR ?= /var/tmp/govern-cluster
cluster: deps
	$(call apt_install,$(CLUSTER_DEB_PACKAGES))
	cargo build --release --bin govern
	GOVERN=$(CARGO_TARGET_DIR)/release/govern scripts/pg-cluster.sh up $(CLUSTER_DIR)

cluster-down:
	scripts/pg-cluster.sh down $(CLUSTER_DIR)

# The dashboard's screenshots in docs/screenshots/, taken by its browser test as it runs.
screenshots: test-deps
	GOVERN_SCREENSHOTS=$(CURDIR)/docs/screenshots cargo nextest run -p govern --test dashboard --no-capture

bench: deps
	cargo run --release --bin govern -- bench append
