"""SLOs end to end: `sightline slo lint` and `slo rules` (checked by Debian's
promtool), a broken SLO file refused while the others run, and a real
Alertmanager (Debian's prometheus-alertmanager) receiving a page from live
spans sent by the OpenTelemetry SDK, keeping it across a Sightline restart
and seeing it resolve."""

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from conftest import BIN, ROOT, free_port, wait_for

EXAMPLES = ROOT / "alerts" / "examples"


def sightline(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)


def test_examples_lint_clean():
    r = sightline("slo", "lint", str(EXAMPLES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7 SLO(s) OK" in r.stdout


BROKEN = {
    "objective.yaml": (
        'version: "prometheus/v1"\nservice: a\nslos:\n  - name: x\n    objective: 120\n'
        "    sli:\n      raw:\n        error_ratio_query: rate(e[{{.window}}])\n",
        ":5: slos[0].objective: objective 120 is out of range",
    ),
    "window.yaml": (
        "version: sightline/v1\nservice: a\nslos:\n  - name: x\n    objective: 99\n"
        "    sli:\n      spans: {}\n    alerting:\n      page_alert:\n        windows:\n"
        "          - long: 1hour\n            burn_rate: 14.4\n",
        ":11: slos[0].alerting.page_alert.windows[0].long: unknown duration \"1hour\"",
    ),
    "promql.yaml": (
        'version: "prometheus/v1"\nservice: a\nslos:\n  - name: x\n    objective: 99.9\n'
        "    sli:\n      events:\n        error_query: sum(rate(e[{{.window}}])\n"
        "        total_query: sum(rate(t[{{.window}}]))\n",
        ":8: slos[0].sli.events.error_query: PromQL does not parse",
    ),
    "syntax.yaml": (
        "version: sightline/v1\nservice: a\nslos:\n  - name: [x\n",
        "syntax.yaml:",
    ),
    "openslo.yaml": (
        "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: s\nspec:\n  service: a\n"
        "  indicatorRef: missing\n  timeWindow:\n    - duration: 28d\n      isRolling: true\n"
        "  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.999\n",
        ':7: spec.indicatorRef: no SLI document named "missing" in this file',
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_lint_names_file_line_and_field(tmp_path, name):
    text, expected = BROKEN[name]
    path = tmp_path / name
    path.write_text(text)
    r = sightline("slo", "lint", str(path))
    assert r.returncode == 1
    assert str(path) in r.stdout, r.stdout
    assert expected in r.stdout, r.stdout


def test_generated_rules_pass_promtool(tmp_path):
    out = tmp_path / "rules.yml"
    r = sightline("slo", "rules", str(EXAMPLES), "--format", "prometheus", "--output", str(out))
    assert r.returncode == 0, r.stderr
    # Span SLIs and time slices have no Prometheus form and say so.
    assert "no Prometheus rules for checkout-availability" in r.stderr
    check = subprocess.run([shutil.which("promtool"), "check", "rules", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 57 rules found" in check.stdout, check.stdout
    text = out.read_text()
    # The workbook's page condition for a 99.9 % objective, as Sloth writes it.
    assert 'slo:sli_error:ratio_rate1h{sloth_id="checkout-requests-availability"' in text
    assert "(14.4 * 0.001)" in text and "(6 * 0.001)" in text
    # 28-day OpenSLO policy: the 1 h lookback and its 5 m short window.
    assert "slo:sli_error:ratio_rate5m{sloth_id=\"payments-payments-availability\"" in text


def test_broken_file_is_refused_and_the_others_are_evaluated(make_server, tmp_path):
    slo_dir = tmp_path / "slos"
    slo_dir.mkdir()
    (slo_dir / "broken.yaml").write_text(BROKEN["objective.yaml"][0])
    shutil.copy(EXAMPLES / "spans-checkout.yaml", slo_dir / "good.yaml")
    server = make_server("--slo-file", str(slo_dir), "--slo-eval-interval", "1s")
    assert server.metric("sightline_slo_files_invalid") == 1
    assert "broken.yaml:5: slos[0].objective" in server.log()
    groups = wait_for(
        lambda: [g for g in requests.get(server.api("/api/v1/rules")).json()["data"]["groups"] if g["rules"][0]["health"] != "unknown"],
        what="evaluated rule groups",
    )
    assert sorted(g["name"] for g in groups) == ["checkout-availability", "checkout-cart-latency", "checkout-http-latency"]
    assert all(g["file"].endswith("good.yaml") for g in groups)
    assert requests.get(server.api("/-/ready")).status_code == 200


def test_lint_against_a_server_finds_queries_without_data(make_server, tmp_path):
    server = make_server()
    r = sightline("slo", "lint", str(EXAMPLES / "sloth-checkout.yaml"), "--server", server.api(""))
    assert r.returncode == 1
    assert "sli.events.total_query: checkout-requests-availability: query returns no series" in r.stdout, r.stdout
    r = sightline("slo", "lint", str(EXAMPLES / "spans-checkout.yaml"), "--server", server.api(""))
    assert 'sli.spans.service: checkout-availability: no spans of service "checkout"' in r.stdout, r.stdout
    # Once checkout sends spans, the span SLIs lint clean (the histogram one
    # still has no data).
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True)))
    with provider.get_tracer("e2e").start_as_current_span("POST /cart", kind=trace_api.SpanKind.SERVER):
        pass
    provider.shutdown()
    time.sleep(1)
    r = sightline("slo", "lint", str(EXAMPLES / "spans-checkout.yaml"), "--server", server.api(""))
    assert "no spans" not in r.stdout, r.stdout
    assert "sli.histogram.metric: checkout-http-latency: no http_server_request_duration_seconds_bucket series" in r.stdout, r.stdout


class Webhook:
    """Alertmanager's webhook receiver: records every notification."""

    def __init__(self):
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def statuses(self, alertname):
        return [a["status"] for n in self.received for a in n["alerts"] if a["labels"]["alertname"] == alertname]


@pytest.fixture
def alertmanager(tmp_path):
    binary = shutil.which("prometheus-alertmanager")
    if not binary:
        pytest.fail("Debian's prometheus-alertmanager is not installed: run scripts/setup.sh")
    hook = Webhook()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook.port}/\n        send_resolved: true\n"
    )
    port, cluster = free_port(), free_port()
    log = open(tmp_path / "alertmanager.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
         f"--cluster.listen-address=127.0.0.1:{cluster}", "--cluster.advertise-address=127.0.0.1:1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(url + "/-/ready"), what="alertmanager ready")
    yield url, hook
    proc.terminate()
    proc.wait(timeout=10)


def _ok(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


class Traffic:
    """Live server spans of `checkout` from the OpenTelemetry SDK, 20/s."""

    def __init__(self):
        self.failing = False
        self.server = None
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def point_at(self, server):
        provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=2)))
        self.tracer = provider.get_tracer("e2e")

    def run(self):
        while not self.stop:
            with self.tracer.start_as_current_span("POST /cart", kind=trace_api.SpanKind.SERVER) as span:
                if self.failing:
                    span.set_status(Status(StatusCode.ERROR))
            time.sleep(0.05)


SLO = """
version: sightline/v1
service: checkout
slos:
  - name: availability
    objective: 99.9
    sli:
      spans:
        span_kind: server
    alerting:
      name: CheckoutAvailability
      labels:
        team: payments
      annotations:
        runbook: https://runbooks.example.com/checkout
      page_alert:
        # Short windows so the test runs in a minute; the defaults are the
        # workbook's (1h/5m, 6h/30m) and are exercised in alerts/tests.
        windows:
          - long: 2m
            short: 20s
            burn_rate: 14.4
      ticket_alert:
        disable: true
"""


def am_alerts(url):
    return [a for a in requests.get(url + "/api/v2/alerts").json() if a["labels"].get("alertname") == "CheckoutAvailability"]


def test_alertmanager_gets_the_page_keeps_it_across_a_restart_and_sees_it_resolve(make_server, alertmanager, tmp_path):
    am_url, hook = alertmanager
    slo = tmp_path / "slo.yaml"
    slo.write_text(SLO)
    args = ("--slo-file", str(slo), "--slo-eval-interval", "1s", "--slo-bucket", "5s",
            "--alertmanager-url", am_url, "--slo-resend-delay", "2s")
    server = make_server(*args)
    traffic = Traffic()
    traffic.point_at(server)
    traffic.thread.start()
    try:
        time.sleep(8)
        assert requests.get(server.api("/api/v1/alerts")).json()["data"]["alerts"] == []
        assert am_alerts(am_url) == []
        traffic.failing = True
        fired = wait_for(lambda: am_alerts(am_url), timeout=40, what="the page in Alertmanager")[0]
        labels = fired["labels"]
        assert labels["sloth_severity"] == "page"
        assert labels["sloth_service"] == "checkout" and labels["sloth_slo"] == "availability"
        assert labels["team"] == "payments"
        assert fired["annotations"]["runbook"] == "https://runbooks.example.com/checkout"
        starts_at = fired["startsAt"]

        # Sightline's own views agree: Prometheus-style alerts and rules, and
        # the SLO metrics through PromQL.
        mine = requests.get(server.api("/api/v1/alerts")).json()["data"]["alerts"]
        assert [a["state"] for a in mine] == ["firing"]
        rules = requests.get(server.api("/api/v1/rules"), params={"type": "alert"}).json()["data"]["groups"]
        assert rules[0]["rules"][0]["state"] == "firing" and rules[0]["rules"][0]["type"] == "alerting"
        bad = requests.get(server.api("/api/v1/rules"), params={"type": "alerts"})
        assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
        burn = wait_for(lambda: requests.get(server.api("/api/v1/query"), params={
            "query": 'sightline_slo_burn_rate{sloth_id="checkout-availability", window="20s"}'}).json()["data"]["result"],
            what="burn rate series")
        assert float(burn[0]["value"][1]) >= 14.4
        budget = requests.get(server.api("/api/v1/query"), params={
            "query": "sightline_slo_error_budget_remaining_ratio"}).json()["data"]["result"]
        assert budget and float(budget[0]["value"][1]) < 1

        # Restart while still failing: the same alert, same start.
        assert server.stop() == 0
        server.start()
        traffic.point_at(server)
        time.sleep(5)
        after = am_alerts(am_url)
        assert len(after) == 1 and after[0]["startsAt"] == starts_at
        assert requests.get(server.api("/api/v1/alerts")).json()["data"]["alerts"][0]["state"] == "firing"

        traffic.failing = False
        wait_for(lambda: "resolved" in hook.statuses("CheckoutAvailability"), timeout=90, what="a resolved notification")
        assert am_alerts(am_url) == []
        assert hook.statuses("CheckoutAvailability").count("firing") >= 1
        assert server.metric("sightline_slo_notifications_total", receiver="alertmanager", outcome="success") > 0
    finally:
        traffic.stop = True
        traffic.thread.join(timeout=5)
