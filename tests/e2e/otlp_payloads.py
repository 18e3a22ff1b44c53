"""OTLP requests encoded with the OpenTelemetry protobuf classes (the same
encoder the SDK exporters use), for tests that need exact control."""

import os
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2


def spans_request(n, service="load", trace_id=None, start_ns=None, span_ids=None):
    """A request with `n` spans; returns (request, [span_id bytes])."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value=service))
    ss = rs.scope_spans.add()
    ids = span_ids or [os.urandom(8) for _ in range(n)]
    now = start_ns or time.time_ns()
    tid = trace_id or os.urandom(16)
    for i, sid in enumerate(ids):
        s = ss.spans.add(trace_id=tid, span_id=sid, name=f"op-{i % 7}", kind=2,
                         start_time_unix_nano=now + i, end_time_unix_nano=now + i + 1_000_000)
        s.attributes.add(key="http.route", value=common_pb2.AnyValue(string_value=f"/r/{i % 5}"))
        s.attributes.add(key="http.response.status_code", value=common_pb2.AnyValue(int_value=200))
    return req, ids
