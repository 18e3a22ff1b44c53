"""The OpenTelemetry Python SDK sends traces, metrics and logs over gRPC and
HTTP; pyarrow and DuckDB (readers we did not write) read the Parquet back."""

import logging

import duckdb
import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from grpc import Compression as GrpcCompression
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter, Histogram, MeterProvider, ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.metrics import Observation
from opentelemetry.trace import Link, Status, StatusCode


FLUSH = ("--storage-flush-interval", "1s")


def span_exporter(server, transport):
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=server.grpc_endpoint, insecure=True, compression=GrpcCompression.Gzip)
    return HttpSpanExporter(endpoint=server.otlp_http("/v1/traces"), compression=HttpCompression.Gzip)


def resource(service):
    return Resource.create({"service.name": service, "host.name": "node-1", "deployment.region": "eu-1"})


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_spans_with_events_links_and_attributes(make_server, transport):
    server = make_server(*FLUSH)
    provider = TracerProvider(resource=resource(f"checkout-{transport}"))
    provider.add_span_processor(SimpleSpanProcessor(span_exporter(server, transport)))
    tracer = provider.get_tracer("e2e", "1.2.3")
    with tracer.start_as_current_span("warmup") as other:
        pass
    link_ctx = other.get_span_context()
    with tracer.start_as_current_span("POST /checkout", kind=trace_api.SpanKind.SERVER, links=[Link(link_ctx, {"why": "retry-of"})]) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("http.response.status_code", 500)
        root.set_attribute("http.route", "/checkout")
        root.set_attribute("cart.items", 3)
        root.set_attribute("cart.total", 99.5)
        root.set_attribute("cart.gift", True)
        root.set_attribute("cart.skus", ["a", "b"])
        root.add_event("retry", {"attempt": 2})
        root.set_status(Status(StatusCode.ERROR, "payment declined"))
        with tracer.start_as_current_span("SELECT orders", kind=trace_api.SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "postgresql")
    provider.shutdown()
    trace_id = root.get_span_context().trace_id.to_bytes(16, "big")

    t = server.wait_rows("spans", 3)
    rows = {r["name"]: r for r in t.to_pylist()}
    assert set(rows) == {"warmup", "POST /checkout", "SELECT orders"}
    r = rows["POST /checkout"]
    assert r["service_name"] == f"checkout-{transport}"
    assert r["host_name"] == "node-1"
    assert dict(r["resource_attributes"])["deployment.region"]["string"] == "eu-1"
    assert r["trace_id"] == trace_id
    assert r["parent_span_id"] is None
    assert r["kind"] == 2 and r["status_code"] == 2 and r["status_message"] == "payment declined"
    assert (r["http_request_method"], r["http_response_status_code"], r["http_route"]) == ("POST", 500, "/checkout")
    attrs = dict(r["attributes"])
    assert attrs["cart.items"]["int"] == 3
    assert attrs["cart.total"]["double"] == 99.5
    assert attrs["cart.gift"]["bool"] is True
    assert '"a"' in attrs["cart.skus"]["json"] and '"b"' in attrs["cart.skus"]["json"]
    assert "http.route" not in attrs, "promoted keys leave the map"
    assert [e["name"] for e in r["events"]] == ["retry"]
    assert dict(r["events"][0]["attributes"])["attempt"]["int"] == 2
    assert r["links"][0]["span_id"] == link_ctx.span_id.to_bytes(8, "big")
    assert dict(r["links"][0]["attributes"])["why"]["string"] == "retry-of"
    assert r["scope_name"] == "e2e" and r["scope_version"] == "1.2.3"
    assert r["duration_ns"] > 0
    child = rows["SELECT orders"]
    assert child["parent_span_id"] == root.get_span_context().span_id.to_bytes(8, "big")
    assert child["db_system"] == "postgresql"

    # DuckDB reads the same files with Hive partitions and no extra code.
    path = server.data_dir / "tables" / "spans" / "**" / "*.parquet"
    [(n, dates)] = duckdb.sql(
        f"select count(*), count(distinct date) from read_parquet('{path}', hive_partitioning=true) "
        f"where hex(trace_id) = '{trace_id.hex().upper()}'"
    ).fetchall()
    assert n == 2 and dates == 1
    assert server.metric("sightline_receiver_accepted_items_total", signal="traces", transport=transport) == 3


def metric_exporter(server, transport, temporality=None):
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=server.grpc_endpoint, insecure=True, preferred_temporality=temporality)
    return HttpMetricExporter(endpoint=server.otlp_http("/v1/metrics"), preferred_temporality=temporality)


@pytest.mark.parametrize("transport,temporality", [("grpc", "cumulative"), ("http", "delta")])
def test_every_metric_instrument(make_server, transport, temporality):
    server = make_server(*FLUSH)
    pref = None
    if temporality == "delta":
        pref = {c: AggregationTemporality.DELTA for c in (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)}
    reader = PeriodicExportingMetricReader(metric_exporter(server, transport, pref), export_interval_millis=3_600_000)
    views = [View(instrument_name="latency_exp", aggregation=ExponentialBucketHistogramAggregation())]
    provider = MeterProvider(resource=resource("pricing"), metric_readers=[reader], views=views)
    meter = provider.get_meter("e2e-meter")
    meter.create_counter("requests", unit="1").add(5, {"route": "/a"})
    meter.create_up_down_counter("queue_depth").add(-2)
    h = meter.create_histogram("latency", unit="ms")
    tracer = TracerProvider().get_tracer("exemplars")
    with tracer.start_as_current_span("sampled") as sampled:
        # Recorded inside a sampled span: the SDK attaches an exemplar.
        for v in (3, 30, 300):
            h.record(v, {"route": "/a"})
    e = meter.create_histogram("latency_exp", unit="ms")
    for v in (1.5, 2.5, 1000):
        e.record(v)
    meter.create_gauge("temperature").set(21.5, {"room": "lab"})
    meter.create_observable_gauge("cpu_temp", callbacks=[lambda _o: [Observation(55.0)]])
    meter.create_observable_counter("bytes_sent", callbacks=[lambda _o: [Observation(1024)]])
    meter.create_observable_up_down_counter("connections", callbacks=[lambda _o: [Observation(7)]])
    provider.shutdown()

    want_temporality = 1 if temporality == "delta" else 2
    sums = server.wait_rows("metrics_sum", 4)
    by_name = {r["metric_name"]: r for r in sums.to_pylist()}
    assert by_name["requests"]["value_int"] == 5 and by_name["requests"]["is_monotonic"] is True
    assert by_name["requests"]["aggregation_temporality"] == want_temporality
    assert dict(by_name["requests"]["attributes"])["route"]["string"] == "/a"
    assert by_name["requests"]["metric_unit"] == "1"
    assert by_name["queue_depth"]["value_int"] == -2 and by_name["queue_depth"]["is_monotonic"] is False
    assert by_name["bytes_sent"]["value_int"] == 1024
    assert by_name["connections"]["value_int"] == 7
    assert by_name["requests"]["service_name"] == "pricing"
    assert by_name["requests"]["scope_name"] == "e2e-meter"

    gauges = {r["metric_name"]: r for r in server.wait_rows("metrics_gauge", 2).to_pylist()}
    assert gauges["temperature"]["value_double"] == 21.5
    assert gauges["cpu_temp"]["value_double"] == 55.0

    hist = server.wait_rows("metrics_histogram").to_pylist()
    (lat,) = [r for r in hist if r["metric_name"] == "latency"]
    assert lat["count"] == 3 and lat["sum"] == 333 and lat["min"] == 3 and lat["max"] == 300
    assert len(lat["bucket_counts"]) == len(lat["explicit_bounds"]) + 1 and sum(lat["bucket_counts"]) == 3
    assert lat["aggregation_temporality"] == want_temporality
    assert lat["exemplars"], "exemplars are stored"
    ex = lat["exemplars"][0]
    assert ex["trace_id"] == sampled.get_span_context().trace_id.to_bytes(16, "big")
    assert ex["span_id"] == sampled.get_span_context().span_id.to_bytes(8, "big")
    assert ex["value_double"] in (3.0, 30.0, 300.0) or ex["value_int"] in (3, 30, 300)

    exp = server.wait_rows("metrics_exponential_histogram").to_pylist()
    (le,) = exp
    assert le["metric_name"] == "latency_exp" and le["count"] == 3 and le["sum"] == 1004.0
    assert sum(le["positive_bucket_counts"]) + le["zero_count"] == 3


def test_summary_points_from_raw_otlp(make_server):
    """No SDK instrument produces summaries; send one encoded by the OTLP protobuf classes."""
    server = make_server(*FLUSH)
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="legacy"))
    m = rm.scope_metrics.add().metrics.add(name="rpc_duration_seconds")
    dp = m.summary.data_points.add(time_unix_nano=1_700_000_000_000_000_000, count=10, sum=4.5)
    dp.quantile_values.add(quantile=0.5, value=0.3)
    dp.quantile_values.add(quantile=0.99, value=1.2)
    resp = requests.post(server.otlp_http("/v1/metrics"), data=req.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert resp.status_code == 200
    rows = server.wait_rows("metrics_summary").to_pylist()
    assert rows[0]["count"] == 10 and rows[0]["sum"] == 4.5
    assert [(q["quantile"], q["value"]) for q in rows[0]["quantile_values"]] == [(0.5, 0.3), (0.99, 1.2)]
    assert rows[0]["date"] == "2023-11-14" and rows[0]["hour"] == 22


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_logs_with_trace_context(make_server, transport):
    server = make_server(*FLUSH)
    if transport == "grpc":
        exporter = GrpcLogExporter(endpoint=server.grpc_endpoint, insecure=True)
    else:
        exporter = HttpLogExporter(endpoint=server.otlp_http("/v1/logs"))
    provider = LoggerProvider(resource=resource("payments"))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = logging.getLogger(f"e2e.{transport}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    log.addHandler(handler)
    tp = TracerProvider()
    with tp.get_tracer("t").start_as_current_span("op") as span:
        log.error("payment failed", extra={"order.id": 42})
    log.info("all good")
    provider.shutdown()
    log.removeHandler(handler)

    rows = server.wait_rows("logs", 2).to_pylist()
    by_body = {r["body"]["string"]: r for r in rows}
    err = by_body["payment failed"]
    assert err["severity_text"] == "ERROR" and err["severity_number"] == 17
    assert err["service_name"] == "payments"
    assert dict(err["attributes"])["order.id"]["int"] == 42
    assert err["trace_id"] == span.get_span_context().trace_id.to_bytes(16, "big")
    assert err["span_id"] == span.get_span_context().span_id.to_bytes(8, "big")
    assert by_body["all good"]["trace_id"] is None
    assert by_body["all good"]["severity_number"] == 9
