"""Malformed and hostile requests get the status the OTLP specification
prescribes, are counted, and the server keeps serving."""

import gzip
import json
import os

import grpc
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otlp_payloads import spans_request

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LIMIT = 64 * 1024
PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def server(make_server):
    return make_server("--otlp-max-request-bytes", str(LIMIT), "--storage-flush-interval", "500ms")


def post(server, body, headers=PB, path="/v1/traces"):
    return requests.post(server.otlp_http(path), data=body, headers=headers, timeout=10)


def status_of(resp):
    s = status_pb2.Status()
    s.ParseFromString(resp.content)
    return s


def raw_grpc(server, body, method=TRACES_METHOD, compression=None):
    with grpc.insecure_channel(server.grpc_endpoint) as ch:
        call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(body, timeout=10, compression=compression)


def test_http_errors_have_the_right_status_and_body(server):
    valid, _ = spans_request(3)
    body = valid.SerializeToString()

    r = post(server, os.urandom(512))
    assert r.status_code == 400 and status_of(r).code == 3 and "protobuf" in status_of(r).message

    r = post(server, body[: len(body) // 2])
    assert r.status_code == 400

    r = post(server, body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415

    r = post(server, b"x" * (LIMIT + 1))
    assert r.status_code == 413

    bomb = gzip.compress(b"\0" * (LIMIT * 20))
    assert len(bomb) < LIMIT
    r = post(server, bomb, headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413, "the limit applies after decompression"

    r = post(server, b"not gzip at all", headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "decompress" in status_of(r).message

    r = post(server, body, headers={**PB, "Content-Encoding": "br"})
    assert r.status_code == 415

    r = post(server, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12}]}]}]}',
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["code"] == 3 and r.json()["message"]

    assert server.metric("sightline_receiver_requests_total", outcome="invalid") >= 4
    assert server.metric("sightline_receiver_requests_total", outcome="too_large") == 2
    assert server.metric("sightline_receiver_requests_total", outcome="unsupported") == 2

    # Still serving, and valid gzip'd data is accepted.
    assert requests.get(server.api("/-/healthy")).status_code == 200
    r = post(server, gzip.compress(body), headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 200
    server.wait_rows("spans", 3)


def test_invalid_items_get_partial_success_and_valid_ones_are_kept(server):
    req, ids = spans_request(4)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"short"
    spans[2].span_id = b""
    r = post(server, req.SerializeToString())
    assert r.status_code == 200
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(r.content)
    assert resp.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes" in resp.partial_success.error_message

    # The same over OTLP/JSON: hex ids, response in JSON.
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "ok",
         "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1700000000000000100},
        {"traceId": "00000000000000000000000000000000", "spanId": "eee19b7ec3c1b175", "name": "zero"},
    ]}]}]}
    r = post(server, json.dumps(doc), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] in (1, "1")

    t = server.wait_rows("spans", 3)
    names = sorted(t.column("name").to_pylist())
    assert names == ["ok", "op-0", "op-3"]
    assert server.metric("sightline_receiver_rejected_items_total", reason="invalid") == 3


def test_grpc_errors(server):
    with pytest.raises(grpc.RpcError) as e:
        raw_grpc(server, os.urandom(300))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.RpcError) as e:
        raw_grpc(server, b"\0" * (LIMIT + 10))
    assert e.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE)

    req, _ = spans_request(2)
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\1" * 8
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(raw_grpc(server, req.SerializeToString(), compression=grpc.Compression.Gzip))
    assert resp.partial_success.rejected_spans == 1

    with pytest.raises(grpc.RpcError) as e:
        raw_grpc(server, b"", method="/opentelemetry.proto.collector.trace.v1.TraceService/Nope")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED

    server.wait_rows("spans", 1)
    assert server.proc.poll() is None


def test_mutated_requests_never_crash_the_server(server):
    """Random byte flips and truncations of valid requests: every answer is
    a success (possibly partial) or a 400, and the server keeps serving."""
    import random

    rnd = random.Random(1234)
    req, _ = spans_request(20)
    body = bytearray(req.SerializeToString())
    codes = {}
    for i in range(300):
        b = bytearray(body)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        if i % 3 == 0:
            b = b[: rnd.randrange(len(b))]
        r = post(server, bytes(b))
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
    assert set(codes) <= {200, 400}, codes
    doc = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x"}]}]}]})
    for i in range(200):
        s = list(doc)
        s[rnd.randrange(len(s))] = rnd.choice('{}[]":,0a\\')
        r = post(server, "".join(s), headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 400), r.text
    assert requests.get(server.api("/-/healthy")).status_code == 200
    assert server.proc.poll() is None
    assert server.metric("process_resident_memory_bytes") > 0, "process metrics are exported"


def test_a_resource_copied_to_many_items_past_the_limit_is_refused(server):
    """Every log record (span, data point) carries its resource's attributes:
    a 62 KB request of 32 KB resource and 15,000 empty records would expand
    to ~480 MB. It is refused as too large, and the server keeps serving."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    def logs(records):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.append(
            KeyValue(key="process.command_args", value=AnyValue(string_value="a" * 32768)))
        rl.scope_logs.add().log_records.extend(records)
        return req.SerializeToString()

    body = logs([LogRecord() for _ in range(15000)])
    assert len(body) < LIMIT
    r = post(server, body, path="/v1/logs")
    assert r.status_code == 413, r.content
    assert "15000 items" in status_of(r).message and status_of(r).code == 8

    with pytest.raises(grpc.RpcError) as e:
        raw_grpc(server, body, method="/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.metric("sightline_receiver_requests_total", outcome="too_large") == 2

    # The same resource over a few records is stored, attribute and all.
    few = [LogRecord(body=AnyValue(string_value=f"line {i}")) for i in range(10)]
    r = post(server, logs(few), path="/v1/logs")
    assert r.status_code == 200
    t = server.wait_rows("logs", 10)
    assert sorted(v["string"] for v in t.column("body").to_pylist()) == sorted(f"line {i}" for i in range(10))
    args = [dict(m)["process.command_args"]["string"] for m in t.column("resource_attributes").to_pylist()]
    assert args == ["a" * 32768] * 10
    assert server.proc.poll() is None
