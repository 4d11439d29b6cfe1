# One entry point. `make test` and `make serve` work on a fresh machine: they build a local
# virtualenv (.venv) with the package installed in editable mode (Rust via setuptools-rust,
# Cython from ext/) the first time, and again whenever the build inputs change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUILD_INPUTS := pyproject.toml setup.py $(wildcard ext/*.pyx) $(shell find rust -name '*.rs' -o -name Cargo.toml -not -path 'rust/target/*')
DATA_DIR ?= tidelog-data

.PHONY: dev serve test lint test-rust test-python kafka-jars system-tools bench fuzz clean

dev: $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tidelog serve --data-dir $(DATA_DIR)

# Kafka's own tools read our files in the tests; fetched once into .cache/ (skipped without Java).
kafka-jars:
	@if command -v java >/dev/null && command -v mvn >/dev/null; then \
		bash bench/kafka/fetch.sh || echo "FETCHING KAFKA'S JARS FAILED: tests against Kafka will be skipped"; \
	else echo "java or mvn missing: tests that need Kafka's jars will be skipped"; fi

# Formatting and lint rules for both languages (ruff; rustfmt and clippy), checked before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	cargo fmt --manifest-path rust/Cargo.toml --all --check
	cargo clippy --manifest-path rust/Cargo.toml --all-targets --quiet -- -D warnings

test-rust:
	cargo test --manifest-path rust/Cargo.toml -p tidelog-storage

# kcat (librdkafka 2.0, a C client) takes part in the client tests, PostgreSQL is the sink
# tests' second database (tests/sink starts its own server), and Prometheus scrapes the metrics
# endpoint in tests/server/test_metrics.py; installed from Debian when root.
system-tools:
	@missing=""; command -v kcat >/dev/null || missing="kcat"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
				|| echo "could not install $$missing: their tests will be skipped"; \
		else echo "$$missing missing and not root: their tests will be skipped"; fi; fi

test-python: $(STAMP) kafka-jars system-tools
	$(BIN)/python -m pytest

test: lint test-rust test-python

bench: $(STAMP)
	$(BIN)/python -m pytest bench/bench_storage.py bench/bench_protocol.py --benchmark-enable -p no:cacheprovider

# Long fuzz runs (docs/operations.md, "Fuzzing"): the stable Rust loop (release build) and the
# Python request-frame loop, FUZZ_SECONDS each; then libFuzzer on the Rust targets when a
# nightly toolchain is present (cargo-fuzz installed from crates.io on first use).
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	TIDELOG_FUZZ_SECONDS=$(FUZZ_SECONDS) cargo test --release --manifest-path rust/Cargo.toml -p tidelog-storage --test fuzz -- --nocapture
	TIDELOG_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/fuzz/test_request_frames.py -k mutated -s -p no:cacheprovider
	@if rustup toolchain list 2>/dev/null | grep -q nightly; then \
		command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked; \
		TIDELOG_FUZZ_SEEDS_OUT=$(CURDIR)/rust/storage/fuzz/corpus cargo test --manifest-path rust/Cargo.toml -p tidelog-storage --test fuzz -- --ignored write_seeds; \
		for target in batches recovery indexes; do \
			cargo +nightly fuzz run --fuzz-dir rust/storage/fuzz $$target rust/storage/fuzz/corpus/$$target -- \
				-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 || exit 1; \
		done; \
	else echo "no nightly toolchain: libFuzzer runs skipped (the stable loops above ran)"; fi

clean:
	rm -rf $(VENV) build rust/target python/tidelog/**/*.so ext/*.c
