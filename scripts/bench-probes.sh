#!/usr/bin/env bash
# eBPF probe overhead: a CPU-bound workload (ebpf-probes/tests/workload/hot.rs,
# fixed work) timed with no Sightline, with Sightline and probes off, and
# with probes on at default settings; then Sightline's own CPU and memory
# on an idle machine with probes off and on. Needs root and a build with
# `--features ebpf` (scripts/run.sh does that when the toolchain is there).
#   scripts/bench-probes.sh [rounds] [idle seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-150}
idle=${2:-60}
bin=${SIGHTLINE_BIN:-${CARGO_TARGET_DIR:-target}/release/sightline}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
rustc -O -g -C force-frame-pointers=yes --crate-name hot ebpf-probes/tests/workload/hot.rs -o "$tmp/hot"

start() { # $1 = probes enabled (true/false)
  "$bin" run --data-dir "$tmp/data-$1" --http-addr 127.0.0.1:18181 --otlp-grpc-addr 127.0.0.1:18182 \
    --otlp-http-addr 127.0.0.1:18183 --postgres-enabled false --probes-enabled "$1" >"$tmp/log-$1" 2>&1 &
  pid=$!
  until curl -sf 127.0.0.1:18181/-/ready >/dev/null; do sleep 0.1; done
  sleep 2
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
work() { # median of 5 timed runs, seconds
  for _ in 1 2 3 4 5; do
    /usr/bin/time -f %e "$tmp/hot" --rounds "$rounds" 2>&1 >/dev/null
  done | sort -n | sed -n 3p
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "| setting | workload time (median of 5) |"
echo "|---|---|"
echo "| no Sightline | $(work) s |"
start false; echo "| Sightline, probes off | $(work) s |"; stop
start true; grep -o 'eBPF probes running.*' "$tmp/log-true" >&2 || true
echo "| Sightline, probes on (default) | $(work) s |"; stop

echo
echo "| idle ${idle} s | Sightline CPU | share of one core | RSS |"
echo "|---|---|---|---|"
for probes in false true; do
  start "$probes"
  t0=$(cpu_ticks "$pid"); sleep "$idle"; t1=$(cpu_ticks "$pid")
  cpu=$(echo "scale=2; ($t1 - $t0) / 100" | bc)
  share=$(echo "scale=2; 100 * ($t1 - $t0) / 100 / $idle" | bc)
  echo "| probes $probes | ${cpu} s | ${share} % | $(( $(rss_kib "$pid") / 1024 )) MiB |"
  stop
done
