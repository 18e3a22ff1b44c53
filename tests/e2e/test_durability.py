"""Durability: SIGKILL during sustained ingest loses no acknowledged span and
stores none twice; overload answers with retryable errors and drops nothing;
SIGTERM flushes and exits 0."""

import signal
import subprocess
import threading
import time
from collections import Counter

import grpc
import requests

from conftest import BIN
from otlp_payloads import spans_request


def server_bin():
    return BIN

PB = {"Content-Type": "application/x-protobuf"}
# Frequent flushes and compactions so kills land in every phase: WAL append,
# flush, WAL truncation and compaction.
CHURN = ("--storage-flush-interval", "200ms", "--storage-flush-rows", "3000",
         "--storage-compaction-interval", "1s", "--storage-compaction-min-files", "2",
         "--wal-segment-bytes", "262144")


def load(server, stop, acked, errors, spans_per_request=50):
    session = requests.Session()
    url = server.otlp_http("/v1/traces")
    while not stop.is_set():
        req, ids = spans_request(spans_per_request)
        try:
            r = session.post(url, data=req.SerializeToString(), headers=PB, timeout=5)
        except requests.RequestException:
            continue  # the server died mid-request: not acknowledged
        if r.status_code == 200:
            acked.extend(ids)
        else:
            errors.append(r.status_code)


def span_id_counts(server):
    t = server.table("spans")
    return Counter(t.column("span_id").to_pylist()) if t is not None else Counter()


def test_sigkill_during_ingest_loses_and_duplicates_nothing(make_server):
    server = make_server(*CHURN)
    acked = []
    for round_ in range(3):
        stop, errors = threading.Event(), []
        threads = [threading.Thread(target=load, args=(server, stop, acked, errors)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5 + 0.3 * round_)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        assert not errors, f"unexpected refusals: {errors[:5]}"
        server.start()
    assert len(acked) > 1000, "the load generator should have been acknowledged many times"
    assert server.stop() == 0, "SIGTERM exits 0 after flushing"
    counts = span_id_counts(server)
    missing = [s for s in acked if counts[s] == 0]
    dupes = {s: n for s, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged spans lost"
    assert not dupes, f"{len(dupes)} spans stored more than once"


def test_overload_is_refused_with_retryable_errors_and_nothing_is_lost(make_server):
    server = make_server("--memory-limit-bytes", "300000", "--storage-flush-interval", "1h",
                         "--storage-flush-rows", "100000000")
    acked, statuses = [], []
    for _ in range(200):
        req, ids = spans_request(100)
        r = requests.post(server.otlp_http("/v1/traces"), data=req.SerializeToString(), headers=PB)
        statuses.append(r.status_code)
        if r.status_code == 200:
            acked.extend(ids)
        else:
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            break
    assert statuses[-1] == 503 and acked, statuses
    # Over budget, a request is refused by its size before it is decoded.
    r = requests.post(server.otlp_http("/v1/traces"), data=b"\xff" * 50_000, headers=PB)
    assert r.status_code == 503, "refused before decoding, so not a 400"

    # Conversions finishing may free a little room; keep sending until gRPC refuses too.
    with grpc.insecure_channel(server.grpc_endpoint) as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        refusal = None
        for _ in range(200):
            req, ids = spans_request(100)
            try:
                call(req.SerializeToString(), timeout=10)
                acked.extend(ids)
            except grpc.RpcError as e:
                refusal = e
                break
        assert refusal is not None and refusal.code() == grpc.StatusCode.UNAVAILABLE
        details = dict(refusal.trailing_metadata() or ())
        assert "grpc-status-details-bin" in details, "RetryInfo travels in the status details"

    assert server.metric("sightline_receiver_overload_rejections_total") >= 2
    assert requests.get(server.api("/-/ready")).status_code == 200
    assert server.stop() == 0
    counts = span_id_counts(server)
    assert all(counts[s] == 1 for s in acked)
    assert sum(counts.values()) == len(acked)


def test_restart_replays_unflushed_data_once(make_server):
    server = make_server("--storage-flush-interval", "1h", "--storage-flush-rows", "100000000")
    req, ids = spans_request(20)
    assert requests.post(server.otlp_http("/v1/traces"), data=req.SerializeToString(), headers=PB).status_code == 200
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    assert server.table("spans") is None, "nothing was flushed before the kill"
    server.start()
    assert server.metric("sightline_wal_replayed_records_total") == 1
    server.stop()
    server.start()
    assert server.metric("sightline_wal_replayed_records_total") == 0, "flushed records are not replayed again"
    server.stop()
    counts = span_id_counts(server)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}


def test_second_process_on_the_same_data_dir_is_refused(make_server):
    server = make_server()
    second = subprocess.run(
        [server_bin(), "run", "--data-dir", str(server.data_dir), "--http-addr", "127.0.0.1:0",
         "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode != 0
    assert "in use by another sightline process" in second.stderr
    assert requests.get(server.api("/-/ready")).status_code == 200
