"""OTLP metrics under their Prometheus names (OpenTelemetry's Prometheus
compatibility rules): suffixes, job/instance, histogram buckets (classic and
exponential) for histogram_quantile, summaries, and delta sums turned
cumulative so rate()/increase() are right."""

import math
import time

import requests
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

S = 1_000_000_000


def post(server, req):
    body = req if isinstance(req, bytes) else req.SerializeToString()
    r = requests.post(server.otlp_http("/v1/metrics"), data=body,
                      headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert r.status_code == 200, r.text


def instant(server, q, t):
    """The answer, once non-empty: conversion runs after the acknowledgement,
    so rows become visible shortly (well within a second) after it."""
    deadline = time.time() + 2
    while True:
        r = requests.get(server.api("/api/v1/query"), params={"query": q, "time": t}, timeout=30)
        assert r.status_code == 200, r.text
        got = {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in r.json()["data"]["result"]}
        if got or time.time() > deadline:
            return got
        time.sleep(0.05)


def test_sdk_metrics_get_prometheus_names_and_quantiles(make_server):
    server = make_server("--storage-flush-interval", "1s")
    reader = InMemoryMetricReader()
    views = [
        View(instrument_name="rpc.latency", aggregation=ExponentialBucketHistogramAggregation(max_size=160)),
        View(instrument_name="http.server.duration", aggregation=ExplicitBucketHistogramAggregation([0.1, 0.5, 1, 5])),
    ]
    provider = MeterProvider(resource=Resource.create({"service.name": "shop", "service.namespace": "eu",
                                                       "service.instance.id": "pod-1"}),
                             metric_readers=[reader], views=views)
    meter = provider.get_meter("orders", "2.1")
    requests_counter = meter.create_counter("http.server.requests", unit="{request}")
    duration = meter.create_histogram("http.server.duration", unit="s")
    latency = meter.create_histogram("rpc.latency", unit="ms")
    values = [i * 0.37 % 100 + 1 for i in range(1000)]
    for i, v in enumerate(values):
        requests_counter.add(1, {"http.route": "/cart" if i % 4 else "/pay"})
        duration.record(v / 100)
        latency.record(v)
    post(server, encode_metrics(reader.get_metrics_data()))
    t = time.time()
    base = {"job": "eu/shop", "instance": "pod-1", "otel_scope_name": "orders", "otel_scope_version": "2.1"}

    got = instant(server, "http_server_requests_total", t)
    assert got == {
        tuple(sorted({**base, "__name__": "http_server_requests_total", "http_route": "/cart"}.items())): 750.0,
        tuple(sorted({**base, "__name__": "http_server_requests_total", "http_route": "/pay"}.items())): 250.0,
    }
    # Classic buckets: every le plus +Inf, cumulative.
    got = instant(server, "http_server_duration_seconds_bucket", t)
    by_le = {dict(k)["le"]: v for k, v in got.items()}
    assert by_le["+Inf"] == 1000 and by_le["5"] == 1000 and by_le["0.1"] < by_le["0.5"] < by_le["1"]
    assert instant(server, "http_server_duration_seconds_count", t)[tuple(sorted({**base, "__name__": "http_server_duration_seconds_count"}.items()))] == 1000
    # histogram_quantile over exponential buckets lands near the true quantile.
    (q,) = instant(server, "histogram_quantile(0.9, rpc_latency_milliseconds_bucket)", t).values()
    true = sorted(values)[899]
    assert abs(q - true) / true < 0.05, (q, true)
    (q,) = instant(server, "histogram_quantile(0.5, http_server_duration_seconds_bucket)", t).values()
    assert 0.1 <= q <= 1.0
    # target_info carries the other resource attributes.
    ((labels, value),) = instant(server, "target_info", t).items()
    d = dict(labels)
    assert value == 1 and d["job"] == "eu/shop" and d["instance"] == "pod-1"
    assert d["telemetry_sdk_language"] == "python" and "service_name" not in d
    # Metadata and label values use the same names.
    meta = requests.get(server.api("/api/v1/metadata"), timeout=10).json()["data"]
    assert meta["http_server_requests_total"][0]["type"] == "counter"
    assert meta["rpc_latency_milliseconds"][0]["type"] == "histogram"
    names = requests.get(server.api("/api/v1/label/__name__/values"), timeout=10).json()["data"]
    assert "rpc_latency_milliseconds_bucket" in names and "http_server_requests_total" in names
    labels = requests.get(server.api("/api/v1/labels"), params={"match[]": "http_server_requests_total"}, timeout=10).json()["data"]
    assert labels == sorted(["__name__", "http_route", "instance", "job", "otel_scope_name", "otel_scope_version"])
    series = requests.get(server.api("/api/v1/series"), params={"match[]": 'http_server_requests_total{http_route="/pay"}'}, timeout=10).json()["data"]
    assert series == [{**base, "__name__": "http_server_requests_total", "http_route": "/pay"}]


def delta_sum(t0_ns, deltas):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="batch"))
    m = rm.scope_metrics.add().metrics.add(name="jobs.done", unit="1")
    m.sum.aggregation_temporality = 1  # delta
    m.sum.is_monotonic = True
    for i, d in enumerate(deltas):
        m.sum.data_points.add(start_time_unix_nano=t0_ns + i * 15 * S, time_unix_nano=t0_ns + (i + 1) * 15 * S, as_int=d)
    return req


def test_delta_sums_become_cumulative_for_rate(make_server):
    server = make_server("--storage-flush-interval", "1s")
    t0 = (int(time.time()) - 600) * S
    deltas = [5, 7, 3, 10, 0, 4]
    post(server, delta_sum(t0, deltas))
    end = (t0 + len(deltas) * 15 * S) / S
    key = (("__name__", "jobs_done_total"), ("job", "batch"))
    assert instant(server, "jobs_done_total", end) == {key: float(sum(deltas))}
    assert instant(server, "resets(jobs_done_total[10m])", end) == {(("job", "batch"),): 0.0}
    # The increase between the first and last point is the sum of the later deltas.
    got = instant(server, "idelta(jobs_done_total[1m])", end)
    assert got == {(("job", "batch"),): float(deltas[-1])}


def test_summaries_have_quantile_series(make_server):
    server = make_server("--storage-flush-interval", "1s")
    t = int(time.time()) - 30
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="legacy"))
    m = rm.scope_metrics.add().metrics.add(name="rpc.duration", unit="s")
    dp = m.summary.data_points.add(time_unix_nano=t * S, count=10, sum=4.5)
    dp.quantile_values.add(quantile=0.5, value=0.3)
    dp.quantile_values.add(quantile=0.99, value=1.2)
    post(server, req)
    got = instant(server, "rpc_duration_seconds", t)
    assert {dict(k)["quantile"]: v for k, v in got.items()} == {"0.5": 0.3, "0.99": 1.2}
    assert list(instant(server, "rpc_duration_seconds_sum", t).values()) == [4.5]
    assert list(instant(server, "rpc_duration_seconds_count", t).values()) == [10.0]
    assert not math.isnan(list(instant(server, "rpc_duration_seconds_count / rpc_duration_seconds_sum", t).values())[0])


def test_exemplars_link_series_to_traces(make_server):
    server = make_server("--storage-flush-interval", "1s")
    t = int(time.time()) - 60
    trace_id, span_id = bytes(range(16)), bytes(range(8))
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="api"))
    sm = rm.scope_metrics.add()
    h = sm.metrics.add(name="req.latency", unit="s")
    h.histogram.aggregation_temporality = 2
    dp = h.histogram.data_points.add(time_unix_nano=t * S, count=3, sum=1.1, bucket_counts=[1, 2, 0],
                                     explicit_bounds=[0.1, 0.5])
    dp.exemplars.add(time_unix_nano=(t - 1) * S, as_double=0.3, trace_id=trace_id, span_id=span_id)
    c = sm.metrics.add(name="orders")
    c.sum.aggregation_temporality = 2
    c.sum.is_monotonic = True
    dp = c.sum.data_points.add(time_unix_nano=t * S, as_int=7)
    dp.exemplars.add(time_unix_nano=t * S, as_int=1, trace_id=trace_id)
    post(server, req)
    q = {"query": "histogram_quantile(0.9, rate(req_latency_seconds_bucket[5m])) or orders_total",
         "start": t - 300, "end": t + 300}
    deadline = time.time() + 2
    while True:
        r = requests.get(server.api("/api/v1/query_exemplars"), params=q, timeout=10)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        if len(data) == 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    by_name = {d["seriesLabels"]["__name__"]: d for d in data}
    bucket = by_name["req_latency_seconds_bucket"]
    assert bucket["seriesLabels"]["le"] == "0.5" and bucket["seriesLabels"]["job"] == "api"
    assert bucket["exemplars"] == [{"labels": {"span_id": span_id.hex(), "trace_id": trace_id.hex()},
                                    "value": "0.3", "timestamp": t - 1}]
    assert by_name["orders_total"]["exemplars"] == [{"labels": {"trace_id": trace_id.hex()}, "value": "1", "timestamp": t}]
    r = requests.get(server.api("/api/v1/query_exemplars"), params={"query": "sum("}, timeout=10)
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
