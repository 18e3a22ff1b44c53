#!/usr/bin/env bash
# A/B of query latency between server builds or settings on the same data:
# for each COMMAND (a sightline binary, optionally prefixed with `env VAR=…`),
# starts `COMMAND run` on DATA_DIR (e.g. one kept by
# `sql_vs_duckdb.py --dir`), warms up, and prints the median of 21 timings
# of each query through POST /api/v1/sql plus the server's peak RSS.
#
#   benches/sql_ab.sh /tmp/sqlbench/data target/release/sightline \
#       "env MIMALLOC_ALLOW_THP=1 target/release/sightline"
#
# Give each command twice, interleaved: the VM's speed drifts.
set -euo pipefail
data=$1
shift
queries=(
  "SELECT http_route, avg(duration_ns) AS avg_ns, max(duration_ns) AS max_ns FROM spans WHERE http_route IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
  "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"
)
api=http://127.0.0.1:18080
sql() {
  curl -sf -o /dev/null -w "%{time_total}\n" -X POST -H "Content-Type: application/sql" \
    --data "$1" "$api/api/v1/sql"
}
for cmd in "$@"; do
  # shellcheck disable=SC2086 # the command is split on purpose
  $cmd run --data-dir "$data" --probes-enabled false --postgres-enabled false \
    --storage-compaction-interval 1h --memory-limit-bytes 1073741824 \
    --http-addr 127.0.0.1:18080 --otlp-grpc-addr 127.0.0.1:14317 \
    --otlp-http-addr 127.0.0.1:14318 >/dev/null 2>&1 &
  pid=$!
  until curl -sf "$api/-/ready" >/dev/null; do sleep 0.2; done
  line="$cmd:"
  for q in "${queries[@]}"; do
    for _ in 1 2 3; do sql "$q" >/dev/null; done
    median=$(for _ in $(seq 21); do sql "$q"; done | sort -n | sed -n 11p)
    line+=" ${q:7:24}… ${median}s;"
  done
  echo "$line peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")"
  kill -TERM "$pid"
  wait "$pid" || true
done
