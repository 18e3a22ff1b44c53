#!/usr/bin/env bash
# The whole test suite: lint, Rust unit and integration tests, then the
# end-to-end tests that drive the real binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The eBPF programs are built and tested when the toolchain is there.
read -r -a features <<<"$(scripts/ebpf-toolchain.sh --check)"
export SIGHTLINE_EBPF=$([[ ${#features[@]} -gt 0 ]] && echo 1 || echo 0)
echo "== eBPF probes: $([[ $SIGHTLINE_EBPF == 1 ]] && echo built || echo 'not built (toolchain missing)')"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
echo "== cargo build"
# --all-targets unifies features with the dev-dependencies (as clippy and the
# tests do), so the tests reuse this build instead of compiling DataFusion a
# second time with different features.
cargo build --workspace --all-targets "${features[@]}"
echo "== Rust tests (nextest)"
cargo nextest run --workspace --no-fail-fast "${features[@]}"
echo "== doc tests"
cargo test --workspace --doc -q "${features[@]}"
echo "== end-to-end tests (pytest)"
SIGHTLINE_BIN="${CARGO_TARGET_DIR:-target}/debug/sightline" \
  .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider "$@"
