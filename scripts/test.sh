#!/usr/bin/env bash
# The whole test suite: lint, Rust unit and integration tests, then the
# end-to-end tests that drive the real binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build"
# --all-targets unifies features with the dev-dependencies (as clippy and the
# tests do), so the tests reuse this build instead of compiling DataFusion a
# second time with different features.
cargo build --workspace --all-targets
echo "== Rust tests (nextest)"
cargo nextest run --workspace --no-fail-fast
echo "== doc tests"
cargo test --workspace --doc -q
echo "== end-to-end tests (pytest)"
SIGHTLINE_BIN="${CARGO_TARGET_DIR:-target}/debug/sightline" \
  .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider "$@"
