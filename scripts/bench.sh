#!/usr/bin/env bash
# Whole-system ingest benchmark: builds release, starts `sightline run` on a
# scratch directory and drives it with `sightline bench`. Extra arguments go
# to `sightline bench` (see `sightline bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build `make run` makes (with the probes when their toolchain is
# there), so the figures are those of the binary users run.
read -r -a features <<<"$(scripts/ebpf-toolchain.sh --check)"
cargo build --release --bin sightline "${features[@]}"
exec "${CARGO_TARGET_DIR:-target}/release/sightline" bench "$@"
