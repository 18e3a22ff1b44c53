"""Deterministic series for the PromQL oracle test: counters with resets,
gauges with gaps and stale markers, classic histograms, many label
combinations, scraped at 15 s with per-instance offsets and jitter."""

import random

from remote_write import STALE_NAN

STEP_MS = 15_000
MINUTES = 60
LES = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
INSTANCES = ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"]


def _times(t0, offset_ms, rng, start_min=0, end_min=MINUTES):
    out = []
    t = t0 + start_min * 60_000 + offset_ms
    while t < t0 + end_min * 60_000:
        out.append(t + rng.randint(-200, 200))
        t += STEP_MS
    return out


def generate(t0):
    """Returns [(labels, [(ts_ms, value)])] covering [t0, t0 + 60 min)."""
    rng = random.Random(42)
    series = []
    # Counters, some with resets.
    for job in ["api", "web"]:
        for i, inst in enumerate(INSTANCES):
            for method in ["GET", "POST"]:
                for code in ["200", "500"]:
                    labels = {"__name__": "http_requests_total", "job": job, "instance": inst,
                              "method": method, "code": code}
                    v = rng.randint(0, 1000)
                    reset_at = rng.randint(10, 50) if rng.random() < 0.3 else None
                    pts = []
                    for n, t in enumerate(_times(t0, i * 5000, rng)):
                        if reset_at is not None and n == reset_at * 4:
                            v = rng.randint(0, 5)
                        else:
                            v += rng.randint(0, 50 if code == "200" else 5)
                        pts.append((t, float(v)))
                    series.append((labels, pts))
    # Gauges with a gap, an explicit stale marker and a silent end.
    for i, inst in enumerate(INSTANCES):
        for zone in ["a", "b"]:
            labels = {"__name__": "node_temperature_celsius", "job": "node", "instance": inst, "zone": zone}
            v = 40 + rng.random() * 20
            pts = []
            for t in _times(t0, i * 5000 + 2500, rng):
                minute = (t - t0) / 60_000
                if inst == INSTANCES[0] and zone == "a" and 20 <= minute < 30:
                    continue
                if inst == INSTANCES[1] and zone == "b" and minute >= 45:
                    break
                v += rng.uniform(-1.5, 1.5)
                pts.append((t, round(v, 3)))
            if inst == INSTANCES[2] and zone == "a":
                pts = [p for p in pts if (p[0] - t0) < 40 * 60_000]
                pts.append((pts[-1][0] + STEP_MS, STALE_NAN))
            series.append((labels, pts))
    # Classic histograms.
    for job in ["api", "web"]:
        for i, inst in enumerate(INSTANCES):
            counts = [0] * len(LES)
            total = 0.0
            times = _times(t0, i * 5000 + 1000, rng)
            per_le = {le: [] for le in LES}
            sums, cnts = [], []
            for t in times:
                for _ in range(rng.randint(0, 30)):
                    x = rng.expovariate(4.0)
                    total += x
                    for k, le in enumerate(LES):
                        if le == "+Inf" or x <= float(le):
                            counts[k] += 1
                for k, le in enumerate(LES):
                    per_le[le].append((t, float(counts[k])))
                sums.append((t, total))
                cnts.append((t, float(counts[-1])))
            base = {"job": job, "instance": inst}
            for le in LES:
                series.append(({**base, "__name__": "request_duration_seconds_bucket", "le": le}, per_le[le]))
            series.append(({**base, "__name__": "request_duration_seconds_sum"}, sums))
            series.append(({**base, "__name__": "request_duration_seconds_count"}, cnts))
    # Integer gauges for count_values/topk, and an info metric for joins.
    for q in ["q1", "q2", "q3", "q4"]:
        pts = [(t, float(rng.randint(0, 4))) for t in _times(t0, 7000, rng)]
        series.append(({"__name__": "queue_depth", "job": "worker", "queue": q}, pts))
    for job, version in [("api", "1.2.3"), ("web", "2.0.0")]:
        pts = [(t, 1.0) for t in _times(t0, 3000, rng)]
        series.append(({"__name__": "build_info", "job": job, "version": version}, pts))
    return series


def time_slices(series, slice_ms=60_000):
    """Splits the series into requests of increasing time (Prometheus'
    TSDB only accepts samples in order per series)."""
    start = min(p[0] for _, pts in series for p in pts)
    end = max(p[0] for _, pts in series for p in pts)
    t = start
    while t <= end:
        batch = []
        for labels, pts in series:
            chunk = [p for p in pts if t <= p[0] < t + slice_ms]
            if chunk:
                batch.append((labels, chunk))
        yield batch
        t += slice_ms
