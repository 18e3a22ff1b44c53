"""Kernel probes through the whole binary: run-queue latency histograms
reach PromQL, and without privileges Sightline says which probes are off
and serves OTLP as usual. (The probe's numbers are checked against bpftrace
in ebpf-probes/tests/runqueue_vs_bpftrace.rs.)"""

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
        log = wait_for(lambda: "eBPF probes off (runqueue, block_io, tcp)" in server.log() and server.log(), what="the warning")
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
def test_profile_command_writes_a_flame_graph_of_the_hot_functions(tmp_path):
    from conftest import BIN, ROOT
    workload = tmp_path / "hot"
    subprocess.run(["rustc", "-O", "-g", "-C", "force-frame-pointers=yes", "--crate-name", "hot",
                    str(ROOT / "ebpf-probes" / "tests" / "workload" / "hot.rs"), "-o", str(workload)], check=True)
    proc = subprocess.Popen([str(workload), "6"], stdout=subprocess.DEVNULL)
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
