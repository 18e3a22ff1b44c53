#!/usr/bin/env bash
# Whole-system ingest benchmark: builds release, starts `sightline run` on a
# scratch directory and drives it with `sightline bench`. Extra arguments go
# to `sightline bench` (see `sightline bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin sightline
exec "${CARGO_TARGET_DIR:-target}/release/sightline" bench "$@"
