#!/usr/bin/env bash
# Installs what building, running and testing Sightline needs. Idempotent:
# every step checks first and does nothing when its tool is already there.
#   scripts/setup.sh        everything (build, run, test, bench)
#   scripts/setup.sh run    only what building and running needs
set -euo pipefail
purpose="${1:-all}"
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
# objcopy: a probes test strips a copy of itself (ebpf-probes/src/elf.rs).
command -v objcopy >/dev/null || need_apt+=(binutils)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (rustup, Rust >= 1.89) first" >&2
  exit 1
fi

# Kernel probes: tracefs/bpffs mounted, eBPF toolchain installed when it
# can be (scripts/ebpf-toolchain.sh; optional, Sightline builds without it).
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
scripts/ebpf-toolchain.sh >/dev/null

if [[ $purpose == run ]]; then
  log "done (run only)"
  exit 0
fi

# Oracles and real clients the tests use: Debian's Prometheus (PromQL
# oracle, remote-write receiver, promtool for generated rules), its
# Alertmanager (receives SLO alerts), bpftrace (cross-checks the probes),
# psql (PostgreSQL wire protocol) and Go, whose `go tool pprof` reads the
# pprof profiles Sightline serves.
need_test_apt=()
command -v prometheus >/dev/null || need_test_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_test_apt+=(prometheus-alertmanager)
command -v bpftrace >/dev/null || need_test_apt+=(bpftrace)
command -v perf >/dev/null || need_test_apt+=(linux-perf)
command -v psql >/dev/null || need_test_apt+=(postgresql-client)
command -v go >/dev/null || need_test_apt+=(golang-go)
if ((${#need_test_apt[@]})); then
  log "installing Debian test packages: ${need_test_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The prometheus package would start a system service; the tests start
  # their own instances, so no service is wanted (policy-rc.d may refuse it).
  apt-get install -y -qq --no-install-recommends "${need_test_apt[@]}" >/dev/null
  for svc in prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked
fi

# Python helpers for the end-to-end tests: the OpenTelemetry SDK as the
# sender, pyarrow and DuckDB as independent Parquet readers.
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  log "creating .venv"
  rm -rf .venv
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum tests/e2e/requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing Python test requirements"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
  echo "$want" >"$stamp"
fi
log "done"
