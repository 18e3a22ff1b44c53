#!/usr/bin/env bash
# Installs what is missing, builds Sightline (release) and runs it with the
# embedded defaults (data in ./sightline-data). Extra arguments go to
# `sightline run`, e.g. scripts/run.sh --config sightline.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
read -r -a features <<<"$(scripts/ebpf-toolchain.sh --check)"
cargo build --release --bin sightline "${features[@]}"
exec "${CARGO_TARGET_DIR:-target}/release/sightline" run "$@"
