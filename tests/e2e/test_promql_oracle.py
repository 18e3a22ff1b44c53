"""PromQL oracle: the same series go to a real Prometheus (Debian's
`prometheus`, remote-write receiver on) and to Sightline over remote write;
every query in `promql_corpus.txt` must give the same answer from both, as
instant queries at several times and as a range query."""

import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import Server, free_port
from promql_data import MINUTES, generate, time_slices
from remote_write import write

CORPUS = Path(__file__).with_name("promql_corpus.txt")
# Queries whose right answer is empty or an error (checked too, but they
# cannot show that data flows).
NOT_EXPECTED_TO_HAVE_DATA = {
    "nonexistent_metric",
    "clamp(node_temperature_celsius, 55, 45)",
    "absent(node_temperature_celsius)",
    "atan2(node_temperature_celsius, 10)",
    'label_replace(http_requests_total, "method", "", "method", ".*")',
    'absent_over_time(node_temperature_celsius{zone="a"}[5m])',
}
REL_TOL = 1e-6
ABS_TOL = 1e-9


def corpus():
    return [l.strip() for l in CORPUS.read_text().splitlines() if l.strip() and not l.startswith("#")]


class Prometheus:
    def __init__(self, tmp):
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  evaluation_interval: 1m\n")
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.api("/-/ready"), timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus did not start")

    def api(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if not shutil.which("prometheus"):
        pytest.fail("Debian's prometheus is not installed: run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("oracle")
    prom = Prometheus(tmp)
    # A short flush interval so queries read Parquet files and the buffer.
    sl = Server(tmp / "sightline", ["--storage-flush-interval", "2s"]).start()
    now_ms = int(time.time() * 1000)
    t0 = (now_ms - (MINUTES + 30) * 60_000) // 60_000 * 60_000
    series = generate(t0)
    for batch in time_slices(series):
        for url in (prom.api("/api/v1/write"), sl.api("/api/v1/write")):
            r = write(url, batch)
            assert r.status_code in (200, 204), (url, r.status_code, r.text)
    time.sleep(3)  # let one flush happen; the rest stays buffered
    yield prom, sl, t0
    prom.stop()
    sl.stop()


def close(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def normalize(data):
    kind = data["resultType"]
    res = data["result"]
    if kind in ("scalar", "string"):
        return kind, res
    if kind == "vector":
        return kind, {tuple(sorted(s["metric"].items())): [s["value"]] for s in res}
    return kind, {tuple(sorted(s["metric"].items())): s["values"] for s in res}


def same(a, b):
    """None when the two answers agree, else a description of the difference."""
    if a["status"] != b["status"]:
        return f"status {a['status']} vs {b['status']}: {a.get('error')} | {b.get('error')}"
    if a["status"] != "success":
        return None if a.get("errorType") == b.get("errorType") else f"errorType {a.get('errorType')} vs {b.get('errorType')}"
    ka, va = normalize(a["data"])
    kb, vb = normalize(b["data"])
    if ka != kb:
        return f"resultType {ka} vs {kb}"
    if ka in ("scalar", "string"):
        if ka == "string":
            return None if va == vb else f"{va} vs {vb}"
        ok = va[0] == vb[0] and close(float(va[1]), float(vb[1]))
        return None if ok else f"{va} vs {vb}"
    if set(va) != set(vb):
        only_a = sorted(set(va) - set(vb))[:3]
        only_b = sorted(set(vb) - set(va))[:3]
        return f"series differ: only in prometheus {only_a}, only in sightline {only_b}"
    for k in va:
        pa_, pb = va[k], vb[k]
        if [p[0] for p in pa_] != [p[0] for p in pb]:
            return f"{k}: timestamps differ {[p[0] for p in pa_][:5]} vs {[p[0] for p in pb][:5]}"
        for x, y in zip(pa_, pb):
            if not close(float(x[1]), float(y[1])):
                return f"{k} at {x[0]}: {x[1]} vs {y[1]}"
    return None


def has_data(answer):
    if answer["status"] != "success":
        return False
    return answer["data"]["resultType"] in ("scalar", "string") or bool(answer["data"]["result"])


def ask(base, path, params):
    r = requests.get(base + path, params=params, timeout=60)
    try:
        return r.json()
    except ValueError:
        return {"status": "error", "errorType": f"http {r.status_code}", "error": r.text}


@pytest.mark.parametrize("query", corpus())
def test_promql_matches_prometheus(pair, query):
    prom, sl, t0 = pair
    t_mid = (t0 + 27 * 60_000 + 13_000) / 1000
    q = query.replace("{T_MID}", f"{t_mid:.3f}")
    end = (t0 + MINUTES * 60_000) / 1000
    failures = []
    with_data = 0
    for t in (t0 / 1000 + 600, t_mid, t0 / 1000 + 41 * 60 + 7, end):
        a = ask(prom.api(""), "/api/v1/query", {"query": q, "time": t})
        b = ask(sl.api(""), "/api/v1/query", {"query": q, "time": t})
        with_data += has_data(a)
        diff = same(a, b)
        if diff:
            failures.append(f"instant at {t}: {diff}")
    params = {"query": q, "start": t0 / 1000 + 300, "end": end + 120, "step": 60}
    a = ask(prom.api(""), "/api/v1/query_range", params)
    b = ask(sl.api(""), "/api/v1/query_range", params)
    with_data += has_data(a)
    diff = same(a, b)
    if diff:
        failures.append(f"range: {diff}")
    assert not failures, f"{q}:\n" + "\n".join(failures)
    if query not in NOT_EXPECTED_TO_HAVE_DATA:
        assert with_data > 0, f"{q}: Prometheus answered no data at any time; the test data does not exercise it"


def test_corpus_is_large_enough():
    assert len(corpus()) >= 150
