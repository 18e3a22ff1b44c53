"""SQL aggregations over spans: Sightline (DataFusion over its Parquet
files) against DuckDB reading the very same files.

Loads at least `--spans` spans with `sightline bench` (realistic generated
traces over OTLP/gRPC), restarts the server so everything is in Parquet,
then times each query (median of `--repeat` runs, alternating between the
two engines) through
`POST /api/v1/sql` and through DuckDB's `read_parquet(..., hive_partitioning)`.

    .venv/bin/python benches/sql_vs_duckdb.py --spans 10000000

Needs a built `sightline` (release: `cargo build --release`).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import Server  # noqa: E402

sys.path.insert(0, str(ROOT / "benches"))
from promql_vs_prometheus import settle  # noqa: E402

# (name, Sightline SQL, DuckDB SQL over the view `spans`)
QUERIES = [
    ("count by service",
     "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
     "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"),
    ("p99 duration by service and name",
     "SELECT service_name, name, approx_percentile_cont(duration_ns, 0.99) AS p99 FROM spans GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20",
     "SELECT service_name, name, approx_quantile(duration_ns, 0.99) AS p99 FROM spans GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20"),
    ("errors per minute of one service",
     "SELECT date_trunc('minute', start_time) AS m, count(*) FILTER (WHERE status_code = 2) AS errors, count(*) AS n "
     "FROM spans WHERE service_name = '{svc}' GROUP BY 1 ORDER BY 1",
     # DuckDB has no date_trunc for nanosecond timestamps: cast to microsecond TIMESTAMPTZ (UTC, as Sightline's); epoch ms so Python needs no pytz.
     "SELECT epoch_ms(date_trunc('minute', start_time::TIMESTAMPTZ)) AS m, count(*) FILTER (WHERE status_code = 2) AS errors, count(*) AS n "
     "FROM spans WHERE service_name = '{svc}' GROUP BY 1 ORDER BY 1"),
    ("slowest routes (HTTP)",
     "SELECT http_route, avg(duration_ns) AS avg_ns, max(duration_ns) AS max_ns FROM spans "
     "WHERE http_route IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
     "SELECT http_route, avg(duration_ns) AS avg_ns, max(duration_ns) AS max_ns FROM spans "
     "WHERE http_route IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 10"),
    ("one trace by id",
     "SELECT name, span_id, duration_ns FROM spans WHERE trace_id = '{trace}'",
     "SELECT name, span_id, duration_ns FROM spans WHERE trace_id = from_hex('{trace}')"),
]


def sightline_sql(server, sql):
    r = requests.post(server.api("/api/v1/sql"), data=sql, timeout=600)
    r.raise_for_status()
    return r.json()["rows"]


def timed_pair(a, b, repeat):
    """Median seconds and last result of `a` and of `b`, run alternately so
    that the VM's speed drifting during the run weighs on both alike."""
    times, outs = ([], []), [None, None]
    for _ in range(repeat):
        for i, fn in enumerate((a, b)):
            start = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), outs[0], statistics.median(times[1]), outs[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "sightline"))
    ap.add_argument("--dir", type=Path,
                    help="work directory to keep (data in DIR/data): a later run with the same DIR and "
                         "another --bin times the very same files without loading again")
    args = ap.parse_args()
    import conftest
    conftest.BIN = args.bin
    tmp = args.dir or Path(tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    server = Server(tmp / "data", ["--memory-limit-bytes", str(1 << 30), "--storage-flush-interval", "10s",
                                   "--storage-compaction-interval", "10s"]).start()
    total = sightline_sql(server, "SELECT count(*) AS n FROM spans")[0]["n"]
    while total < args.spans:
        # Fresh ids per request: a re-sent pool would put each trace in the
        # files ~20 times over (and make the trace lookup find it 20 times).
        subprocess.run([args.bin, "bench", "--endpoint", f"http://{server.grpc_endpoint}", "--duration", "30s",
                        "--fresh-ids"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = sightline_sql(server, "SELECT count(*) AS n FROM spans")[0]["n"]
        print(f"loaded {total} spans", file=sys.stderr)
    assert server.stop() == 0
    server.start()
    # Time the steady state: a running server's files are compacted but for
    # the last minutes, and a merge running beside the queries would slow
    # both engines.
    settle(tmp / "data" / "tables" / "spans")
    svc = sightline_sql(server, "SELECT service_name FROM spans LIMIT 1")[0]["service_name"]
    trace = sightline_sql(server, "SELECT trace_id FROM spans LIMIT 1")[0]["trace_id"]
    duck = duckdb.connect()
    duck.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet('{tmp}/data/tables/spans/**/*.parquet', hive_partitioning=true)")
    # While compaction swaps files a glob can see a merged file and its
    # sources at once.
    # `total` was counted while the last acknowledged spans were still being
    # converted; after the restart everything is in Parquet.
    total = sightline_sql(server, "SELECT count(*) AS n FROM spans")[0]["n"]
    for _ in range(120):
        try:
            if duck.execute("SELECT count(*) FROM spans").fetchone()[0] == total:
                break
        except duckdb.Error:
            pass
        time.sleep(1)
    else:
        seen = duck.execute("SELECT count(*) FROM spans").fetchone()[0]
        raise AssertionError(f"DuckDB counts {seen} spans, Sightline {total}")
    files = list((tmp / "data" / "tables" / "spans").rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    print(f"{args.bin}: {total} spans in {len(files)} Parquet files, {size / 2**20:.0f} MiB; median of {args.repeat} alternating runs, warm caches")
    print("| query | DuckDB | Sightline | rows |")
    print("|---|---|---|---|")
    for name, mine, theirs in QUERIES:
        mine, theirs = mine.format(svc=svc, trace=trace), theirs.format(svc=svc, trace=trace)
        td, dr, ts, sr = timed_pair(lambda: duck.execute(theirs).fetchall(),
                                    lambda: sightline_sql(server, mine), args.repeat)
        assert len(dr) == len(sr), (name, len(dr), len(sr))
        print(f"| {name} | {td * 1000:.0f} ms | {ts * 1000:.0f} ms | {len(sr)} |")
    server.stop()


if __name__ == "__main__":
    main()
