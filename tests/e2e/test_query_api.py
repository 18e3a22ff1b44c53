"""The query layer end to end: spans sent by the OpenTelemetry SDK are
queryable by SQL over HTTP (JSON and Arrow IPC, read with pyarrow) and over
the PostgreSQL wire protocol with the real `psql`, before and after they
reach Parquet; bad queries get the right error and leave the server up."""

import json
import subprocess
import time

import pyarrow as pa
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from conftest import wait_for


def send_spans(server, n=20, service="checkout"):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("query-e2e")
    trace_ids = []
    for i in range(n):
        with tracer.start_as_current_span(f"GET /item/{i % 3}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.route", f"/item/{i % 3}")
            span.set_attribute("http.response.status_code", 500 if i % 5 == 0 else 200)
            span.set_attribute("cart.items", i)
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return trace_ids


def sql(server, query, **kw):
    return requests.post(server.api("/api/v1/sql"), data=query.encode(), headers={"Content-Type": "text/plain", **kw.pop("headers", {})}, timeout=30, **kw)


def rows(server, query):
    r = sql(server, query)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


@pytest.mark.parametrize("flushed", [False, True])
def test_sql_reads_spans_fresh_and_from_parquet(make_server, flushed):
    # A long flush interval keeps spans in memory; a short one moves them to Parquet.
    server = make_server("--storage-flush-interval", "1s" if flushed else "1h")
    trace_ids = send_spans(server)
    if flushed:
        server.wait_rows("spans", 20)
    # Acknowledged spans are queryable within a second.
    got = wait_for(lambda: (lambda r: r if r and r[0]["n"] == 20 else None)(
        rows(server, "SELECT count(*) AS n FROM spans")), timeout=5, what="20 spans")
    assert got[0]["n"] == 20
    # Trace ids compare as hex strings and come back as hex.
    r = rows(server, f"SELECT trace_id, name FROM spans WHERE trace_id = '{trace_ids[3]}'")
    assert [x["trace_id"] for x in r] == [trace_ids[3]]
    # Attribute maps are readable as text with [].
    r = rows(server, "SELECT attributes['cart.items'] AS items, http_route FROM spans WHERE attributes['cart.items'] = '7'")
    assert r == [{"items": "7", "http_route": "/item/1"}]
    # Timestamps are SQL timestamps: time arithmetic and functions work.
    r = rows(server, "SELECT count(*) AS n FROM spans WHERE start_time > now() - INTERVAL '1 hour' AND date_trunc('minute', start_time) <= now()")
    assert r[0]["n"] == 20
    r = rows(server, "SELECT http_response_status_code AS code, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1")
    assert r == [{"code": 200, "n": 16}, {"code": 500, "n": 4}]


def test_sql_arrow_ipc_stream(make_server):
    server = make_server("--storage-flush-interval", "1h")
    send_spans(server, n=5)
    # Acknowledged spans become visible once converted (milliseconds later).
    wait_for(lambda: rows(server, "SELECT count(*) AS n FROM spans")[0]["n"] == 5, what="5 spans visible")
    r = sql(server, "SELECT name, duration_ns, start_time FROM spans ORDER BY name", headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.num_rows == 5
    assert pa.types.is_timestamp(table.schema.field("start_time").type)
    assert table.column("name").to_pylist() == sorted(table.column("name").to_pylist())


def test_sql_errors_are_precise_and_counted(make_server):
    server = make_server()
    cases = [
        ("SELEC 1", 400, "bad_data"),
        ("SELECT nope FROM spans", 400, "bad_data"),
        ("SELECT * FROM no_such_table", 400, "bad_data"),
        ("DROP TABLE spans", 400, "bad_data"),
        ("INSERT INTO spans (name) VALUES ('x')", 400, "bad_data"),
        ("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'", 400, "bad_data"),
        ("", 400, "bad_data"),
    ]
    for query, status, kind in cases:
        r = sql(server, query)
        assert r.status_code == status, (query, r.status_code, r.text)
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == kind, (query, body)
        assert body["error"], query
    assert server.metric("sightline_queries_total", api="sql", outcome="bad_data") == len(cases)
    # The row cap turns a huge answer into a clear error.
    r = sql(server, "SELECT * FROM generate_series(1, 200000)")
    assert r.status_code == 422 and "LIMIT" in r.json()["error"]
    assert rows(server, "SELECT 1 AS one") == [{"one": 1}]


def test_promql_errors_match_prometheus_shapes(make_server):
    server = make_server()
    q = lambda path, **p: requests.get(server.api(path), params=p, timeout=30)
    r = q("/api/v1/query", query="sum(")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    r = q("/api/v1/query", query="no_such_function(up)")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    r = q("/api/v1/query_range", query="up", start=0, end=10_000_000, step=1)
    assert r.status_code == 400 and "11,000 points" in r.json()["error"]
    r = q("/api/v1/query_range", query="up", start=100, end=10, step=1)
    assert r.status_code == 400
    r = q("/api/v1/query", query="up", time="yesterday")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    r = requests.post(server.api("/api/v1/query"), data={"query": "vector(42)", "time": "100"}, timeout=30)
    assert r.json() == {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [100, "42"]}]}}
    r = q("/api/v1/series")
    assert r.status_code == 400
    assert q("/api/v1/status/buildinfo").json()["data"]["version"]
    assert q("/-/ready").status_code == 200


def psql(server, *args):
    cmd = ["psql", "-h", "127.0.0.1", "-p", str(server.pg_port), "-U", "sightline", "-d", "sightline",
           "-v", "ON_ERROR_STOP=1", "-X", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_psql_lists_tables_and_queries(make_server):
    server = make_server("--storage-flush-interval", "1s")
    trace_ids = send_spans(server, n=10, service="cart")
    server.wait_rows("spans", 10)
    r = psql(server, "-c", r"\dt")
    assert r.returncode == 0, r.stderr
    for table in ["spans", "logs", "metrics_gauge", "metrics_histogram"]:
        assert table in r.stdout
    r = psql(server, "-c", r"\d spans")
    assert r.returncode == 0, r.stderr
    assert "trace_id" in r.stdout and "start_time" in r.stdout
    r = psql(server, "-A", "-t", "-c", "SELECT service_name, count(*) FROM spans GROUP BY service_name")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cart|10"
    r = psql(server, "-A", "-t", "-c", f"SELECT count(*) FROM spans WHERE trace_id = '{trace_ids[0]}'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    # Extended protocol with bound parameters (what drivers and Grafana use;
    # Debian's psql 15 has no \\bind, so psycopg sends it).
    import psycopg
    with psycopg.connect(host="127.0.0.1", port=server.pg_port, user="sightline", dbname="sightline") as conn:
        got = conn.execute("SELECT count(*) FROM spans WHERE service_name = %s AND http_response_status_code >= %s",
                           ["cart", 500]).fetchone()
        assert got == (2,)
    r = psql(server, "-A", "-t", "-c", "SELECT count(*) FROM spans WHERE start_time >= now() - interval '1 hour' AND start_time <= now()")
    assert r.stdout.strip() == "10", r.stderr
    # What Grafana's $__timeFilter(start_time) expands to.
    r = psql(server, "-A", "-t", "-c",
             "SELECT count(*) FROM spans WHERE start_time BETWEEN '2020-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'")
    assert r.stdout.strip() == "10", r.stderr
    r = psql(server, "-c", "DELETE FROM spans")
    assert r.returncode != 0 and "read-only" in r.stderr
    r = psql(server, "-c", "SELECT * FROM nope")
    assert r.returncode != 0
    # The server is unaffected.
    assert psql(server, "-A", "-t", "-c", "SELECT 1").stdout.strip() == "1"


def test_query_cli_prints_table_csv_and_json(make_server):
    from conftest import BIN
    server = make_server("--storage-flush-interval", "1h")
    send_spans(server, n=4, service="cli")
    wait_for(lambda: rows(server, "SELECT count(*) AS n FROM spans")[0]["n"] == 4, what="4 spans visible")
    base = [BIN, "query", "--server", f"127.0.0.1:{server.http_port}"]
    q = "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name"
    out = subprocess.run([*base, "--format", "csv", q], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["service_name,n", "cli,4"]
    out = subprocess.run([*base, "--format", "json", q], capture_output=True, text=True, timeout=60)
    assert [json.loads(l) for l in out.stdout.splitlines()] == [{"service_name": "cli", "n": 4}]
    out = subprocess.run([*base, q], capture_output=True, text=True, timeout=60)
    assert "| cli" in out.stdout and "| 4" in out.stdout
    out = subprocess.run([*base, "SELECT nope"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "query failed (HTTP 400)" in out.stderr


def test_query_timeout_cancels_sql_and_promql(make_server):
    server = make_server("--query-timeout", "300ms")
    r = sql(server, "SELECT count(*) FROM generate_series(1, 3000000000)")
    assert r.status_code == 503 and r.json()["errorType"] == "timeout", r.text
    # 86,400 inner steps for each of 86,400 outer steps: far beyond any
    # machine's 300 ms, so only the deadline can end it.
    nested = "sum_over_time(sum_over_time(vector(1)[1d:1s])[1d:1s])"
    r = requests.get(server.api("/api/v1/query"), params={"query": nested, "time": 1e9}, timeout=30)
    assert r.status_code == 503 and r.json()["errorType"] == "timeout", r.text
    assert server.metric("sightline_queries_total", outcome="timeout") == 2
    assert rows(server, "SELECT 2 AS two") == [{"two": 2}]


def test_remote_write_bad_input_is_refused_and_counted(make_server):
    import cramjam
    from remote_write import write
    server = make_server()
    url = server.api("/api/v1/write")
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    r = requests.post(url, data=b"not snappy at all", headers=headers, timeout=10)
    assert r.status_code == 400 and "snappy" in r.text
    r = requests.post(url, data=bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), headers=headers, timeout=10)
    assert r.status_code == 400 and "protobuf" in r.text
    r = requests.post(url, data=b"x", headers={**headers, "Content-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 415
    r = write(url, [({"job": "x"}, [(1_700_000_000_000, 1.0)])])
    assert r.status_code == 400 and "__name__" in r.text
    assert server.metric("sightline_remote_write_samples_total", outcome="refused") == 4
    # Good samples after the bad ones are stored and queryable.
    now = int(time.time() * 1000)
    assert write(url, [({"__name__": "up", "job": "x"}, [(now, 1.0)])]).status_code == 204
    got = wait_for(lambda: requests.get(server.api("/api/v1/query"), params={"query": "up", "time": now / 1000},
                                        timeout=10).json()["data"]["result"] or None, timeout=5, what="up")
    assert got == [{"metric": {"__name__": "up", "job": "x"}, "value": [now / 1000, "1"]}]
