"""PromQL range queries: Sightline against Prometheus on the same data.

Writes `--series` counter series (and classic histograms for a tenth of
them) at a 15 s interval over `--hours` to both over remote write, then
times range queries (median of `--repeat` runs) at a 15 s step.

    .venv/bin/python benches/promql_vs_prometheus.py --series 1000 --hours 2

Needs Debian's `prometheus` (scripts/setup.sh) and a built `sightline`
(release recommended: `cargo build --release`, `--bin target/release/sightline`).
"""

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import Server, free_port  # noqa: E402
from remote_write import write  # noqa: E402

LES = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
QUERIES = [
    "sum by (service) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "topk(5, rate(http_requests_total[5m]))",
]


def series_batches(n, hours, t0, slice_ms=300_000):
    """Yields remote-write batches of increasing time."""
    rng = random.Random(1)
    values = [0.0] * n
    hist = [[0.0] * len(LES) for _ in range(max(1, n // 10))]
    end = t0 + hours * 3_600_000
    t = t0
    while t < end:
        batch = []
        steps = list(range(t, min(t + slice_ms, end), 15_000))
        for i in range(n):
            pts = []
            for ts in steps:
                values[i] += rng.randint(0, 10)
                pts.append((ts, values[i]))
            labels = {"__name__": "http_requests_total", "job": "bench", "instance": f"host-{i % 50}",
                      "service": f"svc-{i % 20}", "route": f"/r/{i}"}
            batch.append((labels, pts))
        for h, counts in enumerate(hist):
            per_le = {le: [] for le in LES}
            for ts in steps:
                x = rng.expovariate(4.0)
                for k, le in enumerate(LES):
                    if le == "+Inf" or x <= float(le):
                        counts[k] += 1
                    per_le[le].append((ts, counts[k]))
            for le in LES:
                batch.append(({"__name__": "request_duration_seconds_bucket", "job": "bench",
                               "instance": f"host-{h}", "le": le}, per_le[le]))
        yield batch
        t += slice_ms


def timed(url, params, repeat):
    """Median and first (cold) time of `repeat` runs, and the series count."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = requests.get(url, params=params, timeout=600)
        times.append(time.perf_counter() - start)
        assert r.ok, (url, r.status_code, r.text[:500])
    return statistics.median(times), times[0], len(r.json()["data"]["result"])


def parquet_files(root):
    return sum(1 for _ in Path(root).rglob("*.parquet"))


def settle(root, quiet_s=30, limit_s=600):
    """Waits until compaction has merged the flushed files (the file count
    holds still for `quiet_s`), as it has for all but the last minutes of a
    running server's data."""
    start = last_change = time.time()
    n = parquet_files(root)
    while time.time() - last_change < quiet_s and time.time() - start < limit_s:
        time.sleep(5)
        m = parquet_files(root)
        if m != n:
            n, last_change = m, time.time()
    print(f"{n} Parquet files after compaction ({time.time() - start:.0f} s)", file=sys.stderr)


def profile(sl, params, seconds, out):
    """Profiles Sightline while it answers the query once more."""
    import threading
    got = {}
    seconds = max(1, int(seconds + 1.5))

    def fetch():
        got["r"] = requests.get(sl.api("/debug/pprof/profile"),
                                params={"seconds": seconds, "format": "folded"}, timeout=seconds + 60)
    th = threading.Thread(target=fetch)
    th.start()
    time.sleep(0.3)
    requests.get(sl.api("/api/v1/query_range"), params=params, timeout=600)
    th.join()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(got["r"].text)
    print(f"profile: {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "sightline"))
    ap.add_argument("--profile", metavar="DIR",
                    help="also profile Sightline (/debug/pprof/profile) during one more run of each "
                         "query and write its folded stacks to DIR/<n>.folded")
    args = ap.parse_args()
    import conftest
    conftest.BIN = args.bin
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    (tmp / "prom.yml").write_text("global:\n  evaluation_interval: 1m\n")
    prom = subprocess.Popen([shutil.which("prometheus"), f"--config.file={tmp / 'prom.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--web.enable-remote-write-receiver",
                             # The default (50M) refuses range queries over 10k series x 24 h.
                             "--query.max-samples=2000000000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sl = Server(tmp / "sightline", ["--storage-flush-interval", "10s", "--storage-compaction-interval", "10s",
                                    "--query-max-samples", "2000000000"])
    sl.start()
    prom_url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(prom_url + "/-/ready", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    t0 = (int(time.time() * 1000) - (args.hours * 3_600_000 + 600_000)) // 60_000 * 60_000
    loaded = 0
    load_start = time.time()
    for batch in series_batches(args.series, args.hours, t0):
        for url in (prom_url + "/api/v1/write", sl.api("/api/v1/write")):
            # As Prometheus' own sender: 429 and 5xx are retried with backoff.
            for attempt in range(60):
                r = write(url, batch, timeout=300)
                if r.status_code not in (429, 503):
                    break
                time.sleep(min(5.0, float(r.headers.get("Retry-After", "1")) * (1 + attempt / 10)))
            assert r.status_code in (200, 204), (url, r.status_code, r.text[:200])
        loaded += sum(len(p) for _, p in batch)
        print(f"loaded {loaded} samples per server ({time.time() - load_start:.0f} s)", file=sys.stderr)
    time.sleep(12)
    settle(tmp / "sightline")
    print(f"{loaded} samples per server; {args.series} counter series + {max(1, args.series // 10)} histograms; "
          f"{args.hours} h at 15 s step")
    print("| query | Prometheus 2.42 | Sightline | Sightline, first run | series |")
    print("|---|---|---|---|---|")
    end = (t0 + args.hours * 3_600_000) / 1000
    for q in QUERIES:
        params = {"query": q, "start": t0 / 1000 + 300, "end": end, "step": 15}
        tp, _, n = timed(prom_url + "/api/v1/query_range", params, args.repeat)
        ts, cold, m = timed(sl.api("/api/v1/query_range"), params, args.repeat)
        print(f"| `{q}` | {tp * 1000:.0f} ms | {ts * 1000:.0f} ms | {cold * 1000:.0f} ms | {n}/{m} |")
        if args.profile:
            profile(sl, params, ts, Path(args.profile) / f"{QUERIES.index(q)}.folded")
    prom.terminate()
    sl.stop()


if __name__ == "__main__":
    main()
