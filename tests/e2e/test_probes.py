"""Kernel probes through the whole binary: run-queue latency histograms
reach PromQL, CPU profiles reach `profile_samples` and come back as flame
graphs in every format (pprof checked with `go tool pprof`), and without
privileges Sightline says which probes are off and serves OTLP as usual.
(The probes' numbers are checked against bpftrace and perf in
ebpf-probes/tests/.)"""

import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from conftest import Server, wait_for

BUILT = os.environ.get("SIGHTLINE_EBPF") == "1"


def promql(server, q):
    r = requests.get(server.api("/api/v1/query"), params={"query": q}, timeout=10).json()
    assert r["status"] == "success", r
    return r["data"]["result"]


@pytest.mark.skipif(not BUILT, reason="built without the eBPF programs (toolchain missing; see DEVELOPERS.md)")
def test_run_queue_latency_is_a_promql_histogram(make_server):
    server = make_server("--probes-enabled", "true", "--probes-drain-interval", "1s")
    wait_for(lambda: server.metric("sightline_probe_up", probe="runqueue") == 1, what="the probe running")
    series = wait_for(lambda: promql(server, "sum by (cgroup) (sightline_runqueue_latency_seconds_count)"),
                      what="run-queue latency series")
    assert all("cgroup" in s["metric"] for s in series)
    assert sum(float(s["value"][1]) for s in series) > 0
    time.sleep(3)
    p99 = wait_for(lambda: promql(server, "histogram_quantile(0.99, sum by (le) (rate(sightline_runqueue_latency_seconds_bucket[1m])))"),
                   what="a p99")
    value = float(p99[0]["value"][1])
    assert math.isfinite(value) and 0 < value < 10, value
    # host.name and the job come with every probe metric.
    info = promql(server, 'target_info{job="sightline"}')
    assert info and info[0]["metric"].get("host_name")


@pytest.fixture(scope="module")
def hot_binary(tmp_path_factory):
    """The profiler workload: known hot functions, built with frame pointers."""
    from conftest import ROOT
    out = tmp_path_factory.mktemp("hot") / "hot"
    subprocess.run(["rustc", "-O", "-g", "-C", "force-frame-pointers=yes", "--crate-name", "hot",
                    str(ROOT / "ebpf-probes" / "tests" / "workload" / "hot.rs"), "-o", str(out)], check=True)
    return out


def parse_folded(text):
    counts = {}
    for line in text.splitlines():
        stack, n = line.rsplit(" ", 1)
        counts[stack] = counts.get(stack, 0) + int(n)
    return counts


def is_hot(stack):
    return "hot::hot_alpha" in stack or "hot::hot_beta" in stack


def flamegraph(server, **params):
    return requests.get(server.api("/api/v1/profiles/flamegraph"), params=params, timeout=30)


@pytest.mark.skipif(not BUILT, reason="built without the eBPF programs (toolchain missing; see DEVELOPERS.md)")
def test_continuous_profiles_are_stored_and_served_as_flame_graphs(make_server, hot_binary, tmp_path):
    server = make_server("--probes-enabled", "true", "--probes-runqueue", "false", "--probes-block-io", "false",
                         "--probes-tcp", "false", "--probes-profiler-frequency", "99",
                         "--probes-drain-interval", "1s")
    wait_for(lambda: server.metric("sightline_probe_up", probe="profiler") == 1, what="the profiler running")
    start = time.time()
    proc = subprocess.Popen([str(hot_binary), "5"], stdout=subprocess.DEVNULL,
                            env={**os.environ, "OTEL_SERVICE_NAME": "hot-svc"})
    time.sleep(4.5)
    # Rows carry the time of the drain that read them; up to here every
    # drain ran while the process was alive, so its stacks had names.
    end = time.time()
    proc.wait()
    window = {"start": f"{start:.3f}", "end": f"{end:.3f}"}

    # Every row of the window was drained before `end`; wait until they
    # are all visible (the count stops changing). How many there are
    # depends on how much CPU the workload got (99 Hz of its CPU time).
    seen = []

    def by_service():
        counts = parse_folded(flamegraph(server, service="hot-svc", format="folded", **window).text)
        seen.append(sum(counts.values()))
        return counts if len(seen) >= 2 and seen[-1] == seen[-2] >= 50 else None
    counts = wait_for(by_service, interval=1.0, what="the workload's samples, found by service")
    total = sum(counts.values())
    hot = sum(n for stack, n in counts.items() if is_hot(stack))
    assert hot / total >= 0.8, counts
    assert all(stack.startswith("hot;") for stack in counts), counts
    # The same samples by pid and by process name.
    assert parse_folded(flamegraph(server, process=str(proc.pid), format="folded", **window).text) == counts
    assert sum(parse_folded(flamegraph(server, process="hot", format="folded", **window).text).values()) >= total

    # Grafana's nested set: depth-first rows whose values add up.
    rows = flamegraph(server, service="hot-svc", format="json", **window).json()
    assert rows[0] == {"level": 0, "value": total, "self": 0, "label": "total"}
    assert sum(r["self"] for r in rows) == total
    assert any(r["label"] == "hot::hot_alpha" for r in rows)
    for i, r in enumerate(rows[1:], 1):
        assert r["level"] <= rows[i - 1]["level"] + 1 and r["value"] >= r["self"]

    svg = flamegraph(server, service="hot-svc", **window)
    assert svg.headers["content-type"] == "image/svg+xml" and "hot::hot_beta" in svg.text

    # pprof, read by Go's own pprof tool.
    pb = tmp_path / "profile.pb.gz"
    pb.write_bytes(flamegraph(server, service="hot-svc", format="pprof", **window).content)
    top = subprocess.run(["go", "tool", "pprof", "-top", "-sample_index=samples", str(pb)],
                         capture_output=True, text=True, timeout=120)
    assert top.returncode == 0, top.stderr
    assert "hot::hot_alpha" in top.stdout and "hot::hot_beta" in top.stdout, top.stdout
    assert f"of {total} total" in top.stdout, top.stdout

    # The samples are ordinary rows: SQL sees them too.
    n = requests.post(server.api("/api/v1/sql"),
                      data="SELECT sum(count) AS n FROM profile_samples WHERE service_name = 'hot-svc' "
                           f"AND time >= to_timestamp({start}) AND time < to_timestamp({end})").json()["rows"][0]["n"]
    assert n == total
    walked = server.metric("sightline_profile_samples_total", user_stack="walked")
    unknown = server.metric("sightline_profile_samples_total", user_stack="none")
    assert walked > 0 and walked + unknown >= total
    assert server.metric("sightline_profile_symbol_lookups_total", result="hit") > 0


def test_flamegraph_bad_parameters_are_400(make_server):
    server = make_server()
    r = flamegraph(server, format="gif")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data" and "svg, folded, pprof or json" in r.json()["error"]
    r = flamegraph(server, start="yesterday")
    assert r.status_code == 400 and "start" in r.json()["error"]
    r = flamegraph(server, start="200", end="100")
    assert r.status_code == 400
    # An empty range is an empty profile, not an error.
    assert flamegraph(server, format="folded", start="0", end="1").text == ""
    assert flamegraph(server, format="json", start="0", end="1").json()[0]["value"] == 0


def test_self_profile_is_pprof_that_go_reads(make_server, tmp_path):
    server = make_server()
    pb = tmp_path / "self.pb.gz"
    import threading
    busy = threading.Event()

    def queries():
        # Give the profiler something to see: SIGPROF counts CPU time only,
        # and the profiler drops samples inside libc, so the load must spend
        # its time in Sightline's own code (~20 ms of DataFusion per query;
        # `count(*)` over an empty store left some runs with no samples).
        while not busy.is_set():
            requests.post(server.api("/api/v1/sql"),
                          data="SELECT sum(value) AS s FROM generate_series(1, 2000000)", timeout=10)
    worker = threading.Thread(target=queries)
    worker.start()
    try:
        r = requests.get(server.api("/debug/pprof/profile"), params={"seconds": "2"}, timeout=30)
        second = requests.get(server.api("/debug/pprof/profile"), params={"seconds": "1"}, timeout=30)
    finally:
        busy.set()
        worker.join()
    assert r.status_code == 200
    pb.write_bytes(r.content)
    assert pb.read_bytes()[:2] == b"\x1f\x8b"
    top = subprocess.run(["go", "tool", "pprof", "-raw", str(pb)], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0, top.stderr
    assert "PeriodType: cpu nanoseconds" in top.stdout and "Period: 10000000" in top.stdout, top.stdout[:2000]
    # Sightline's own threads are in it: the profile's root frame is the
    # thread name, and the queries run on tokio's workers, which tokio 1.54
    # (Cargo.lock) names "tokio-rt-worker". The test used to look for the
    # older "tokio-runtime-worker", so it passed only when some sample had
    # a `sightline::` frame: the flaky failure seen in session 9.
    assert "tokio-rt-worker" in top.stdout or "sightline" in top.stdout, top.stdout[-2000:]
    assert second.status_code == 200
    r = requests.get(server.api("/debug/pprof/profile"), params={"seconds": "9999"}, timeout=10)
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"


def test_unprivileged_start_warns_and_serves_otlp():
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.fail("setpriv (util-linux) is missing")
    # pytest's tmp_path is private to root; nobody needs to reach the data.
    base = Path(tempfile.mkdtemp(prefix="sightline-unpriv-"))
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    shutil.chown(data, "nobody", "nogroup")
    drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    server = Server(data, ["--probes-enabled", "true"], prefix=drop).start()
    try:
        log = wait_for(lambda: "eBPF probes off (runqueue, block_io, tcp, profiler)" in server.log() and server.log(), what="the warning")
        assert server.metric("sightline_probe_up", probe="runqueue") == 0
        if BUILT:
            assert "needs root, or CAP_BPF and CAP_PERFMON" in log
        provider = TracerProvider(resource=Resource.create({"service.name": "unprivileged"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True)))
        with provider.get_tracer("e2e").start_as_current_span("hello"):
            pass
        provider.shutdown()
        rows = wait_for(lambda: requests.post(server.api("/api/v1/sql"),
                                              data="SELECT count(*) AS n FROM spans WHERE service_name = 'unprivileged'").json()["rows"][0]["n"],
                        what="the span stored")
        assert rows == 1
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(not BUILT, reason="built without the eBPF programs (toolchain missing; see DEVELOPERS.md)")
def test_profile_command_writes_a_flame_graph_of_the_hot_functions(tmp_path, hot_binary):
    from conftest import BIN
    proc = subprocess.Popen([str(hot_binary), "6"], stdout=subprocess.DEVNULL)
    try:
        svg, folded = tmp_path / "flame.svg", tmp_path / "stacks.folded"
        for out in (svg, folded):
            r = subprocess.run([BIN, "profile", "--duration", "2s", "--pid", str(proc.pid), "--frequency", "99",
                                "--output", str(out)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
    finally:
        proc.wait()
    text = svg.read_text()
    assert text.startswith("<?xml") and "hot::hot_alpha" in text and "hot::hot_beta" in text
    lines = folded.read_text().splitlines()
    counts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines}
    total = sum(counts.values())
    hot = sum(n for stack, n in counts.items() if "hot::hot_alpha" in stack or "hot::hot_beta" in stack)
    assert total > 100 and hot / total >= 0.8, counts
    assert all(stack.startswith("hot;") for stack in counts)
