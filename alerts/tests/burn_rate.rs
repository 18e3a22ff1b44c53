//! The alerting behaviour the SRE Workbook promises, replayed with an
//! evaluation clock the test controls over backfilled spans and metrics:
//! a full outage pages within two minutes, a slow 2x burn opens a ticket
//! but never pages, a short burst does not page, alerts resolve after
//! recovery, the low-traffic guard holds, and a restart neither loses nor
//! repeats a firing alert.

use alerts::evaluator::{Evaluator, SloConfig, SloReport};
use alerts::spec::{Severity, load_str};
use alerts::state::{Phase, Transition};
use collector::otlp::Payload;
use collector::receive::Transport;
use collector::receive::remote_write::{Label, Sample, TimeSeries, WriteRequest, to_otlp};
use collector::self_metrics::SelfMetrics;
use collector::{CollectorConfig, Ingest};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use query::{QueryConfig, QueryEngine};

const S: i64 = 1000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// A time safely in the past, so the whole scenario (up to a day after it)
/// is history and within the default 7-day retention.
fn t0() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now % HOUR - 26 * HOUR
}

struct Harness {
    _dir: tempfile::TempDir,
    engine: QueryEngine,
    state: std::path::PathBuf,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let ingest = Ingest::start(config, SelfMetrics::new()).await.unwrap();
    let engine = QueryEngine::new(ingest, QueryConfig::default()).unwrap();
    let state = dir.path().join("alerts/state.json");
    Harness {
        _dir: dir,
        engine,
        state,
    }
}

use collector::otlp::string_kv as kv;

/// Server spans of `checkout` every `every` ms in `[from, to)`; `bad(i, t)`
/// says which fail.
async fn spans(h: &Harness, from: i64, to: i64, every: i64, bad: impl Fn(i64, i64) -> bool) {
    let mut batch = Vec::new();
    let mut i = 0i64;
    let mut t = from;
    while t < to {
        let error = bad(i, t);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i + 1).to_be_bytes());
        id[8..].copy_from_slice(&t.to_be_bytes());
        batch.push(Span {
            trace_id: id.to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: "POST /cart".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: (t * 1_000_000) as u64,
            end_time_unix_nano: (t * 1_000_000 + 20_000_000) as u64,
            status: Some(Status {
                code: if error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Ok as i32
                },
                message: String::new(),
            }),
            ..Default::default()
        });
        if batch.len() == 20_000 {
            export_spans(h, std::mem::take(&mut batch)).await;
        }
        i += 1;
        t += every;
    }
    export_spans(h, batch).await;
    settle(h, "spans", i).await;
}

/// Waits until the table holds `n` rows (conversion runs after the
/// acknowledgement), then flushes them to Parquet.
async fn settle(h: &Harness, table: &str, n: i64) {
    let sql = format!("SELECT count(*) FROM {table}");
    for _ in 0..500 {
        let (_, b) = h.engine.sql(&sql).await.unwrap();
        let got = datafusion::arrow::array::AsArray::as_primitive::<
            datafusion::arrow::datatypes::Int64Type,
        >(b[0].column(0))
        .value(0);
        if got >= n {
            h.engine.ingest().flush(true).await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{table} never reached {n} rows");
}

async fn export_spans(h: &Harness, spans: Vec<Span>) {
    if spans.is_empty() {
        return;
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rejected = h
        .engine
        .ingest()
        .export(Transport::Grpc, Payload::Traces(req), None)
        .await
        .unwrap();
    assert_eq!(rejected.count, 0, "{}", rejected.message);
}

const SPAN_SLO: &str = r#"
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
"#;

fn evaluator(h: &Harness, spec: &str) -> Evaluator {
    let slos = load_str("test.yaml", spec).unwrap();
    let config = SloConfig {
        write_metrics: false,
        ..Default::default()
    };
    Evaluator::new(h.engine.clone(), slos, Vec::new(), config, h.state.clone())
}

fn report(ev: &Evaluator) -> SloReport {
    ev.status().read().unwrap().slos[0]
        .report
        .clone()
        .expect("evaluated")
}

fn phase(r: &SloReport, severity: Severity) -> Phase {
    r.alerts
        .iter()
        .find(|a| a.spec.severity == severity)
        .unwrap()
        .state
        .phase
}

/// Steps the clock from `from` to `to` by `step`; returns the first time
/// `severity` fires and, after that, the first time it resolves.
async fn run(
    ev: &mut Evaluator,
    from: i64,
    to: i64,
    step: i64,
    severity: Severity,
) -> (Option<i64>, Option<i64>, Vec<SloReport>) {
    let (mut fired, mut resolved) = (None, None);
    let mut reports = Vec::new();
    let mut t = from;
    while t <= to {
        ev.evaluate(t).await;
        let r = report(ev);
        let a = r
            .alerts
            .iter()
            .find(|a| a.spec.severity == severity)
            .unwrap();
        match a.transition {
            Transition::Fired if fired.is_none() => fired = Some(t),
            Transition::Resolved if fired.is_some() && resolved.is_none() => resolved = Some(t),
            _ => {}
        }
        reports.push(r);
        t += step;
    }
    (fired, resolved, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outage_pages_within_two_minutes_and_resolves_after_recovery() {
    let h = harness().await;
    let t = t0();
    // An hour of good traffic, ten minutes of failures, then good again.
    spans(&h, t - 7 * HOUR, t + HOUR, 5 * S, |_, ts| {
        (t..t + 10 * MIN).contains(&ts)
    })
    .await;
    let mut ev = evaluator(&h, SPAN_SLO);
    let (fired, resolved, reports) =
        run(&mut ev, t - MIN, t + 50 * MIN, 10 * S, Severity::Page).await;
    let fired = fired.expect("the outage pages");
    // The workbook: 14.4 × 0.1 % of an hour of traffic is 52 s of errors.
    assert!(
        fired >= t + 50 * S,
        "paged too early: {} s",
        (fired - t) / S
    );
    assert!(fired <= t + 2 * MIN, "paged after {} s", (fired - t) / S);
    // The 6 h/30 m pair holds until the 30 m window has < 0.6 % errors:
    // 10 minutes of errors leave it 30 minutes after they began plus.
    let resolved = resolved.expect("the page resolves after recovery");
    assert!(resolved > t + 10 * MIN, "resolved during the outage");
    assert!(
        resolved <= t + 42 * MIN,
        "resolved only after {} min",
        (resolved - t) / MIN
    );
    assert!(
        resolved >= t + 38 * MIN,
        "resolved after {} min, before the 30 m window cleared",
        (resolved - t) / MIN
    );
    let before = &reports[0];
    assert_eq!(phase(before, Severity::Page), Phase::Inactive);
    assert_eq!(before.windows[0].counts.bad, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_two_x_burn_opens_a_ticket_but_never_pages() {
    let h = harness().await;
    let t = t0();
    // A day of clean traffic, then 0.2 % errors (every 500th span): a 2x
    // burn at 99.9 %. The 3 d/6 h ticket pair needs 0.1 % over three days,
    // reached about a day later.
    spans(&h, t - DAY, t + 25 * HOUR, 10 * S, |i, ts| {
        ts >= t && i % 500 == 0
    })
    .await;
    let mut ev = evaluator(&h, SPAN_SLO);
    let (ticket, _, reports) = run(&mut ev, t, t + 25 * HOUR, 10 * MIN, Severity::Ticket).await;
    let ticket = ticket.expect("a sustained 2x burn opens a ticket");
    assert!(
        ticket >= t + 20 * HOUR && ticket <= t + 25 * HOUR,
        "ticket after {} h",
        (ticket - t) / HOUR
    );
    for r in &reports {
        assert_eq!(
            phase(r, Severity::Page),
            Phase::Inactive,
            "paged at +{} min",
            (r.time - t) / MIN
        );
    }
    // The measured 3-day ratio is the injected 0.2 % diluted by clean days.
    let last = reports.last().unwrap();
    let three_days = last
        .windows
        .iter()
        .find(|w| w.window_ms == 3 * DAY)
        .unwrap();
    let ratio = three_days.ratio.unwrap();
    assert!((0.0009..0.0012).contains(&ratio), "3 d ratio {ratio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_minute_burst_of_five_percent_errors_does_not_page() {
    let h = harness().await;
    let t = t0();
    // 10 spans/s; for one minute every 20th fails.
    spans(&h, t - 90 * MIN, t + 30 * MIN, 100, |i, ts| {
        (t..t + MIN).contains(&ts) && i % 20 == 0
    })
    .await;
    let mut ev = evaluator(&h, SPAN_SLO);
    let (fired, _, reports) = run(&mut ev, t - MIN, t + 20 * MIN, 10 * S, Severity::Page).await;
    assert_eq!(fired, None, "a 1-minute burst paged");
    // The burst is seen: the 5 m window peaks at about 1 % bad.
    let peak = reports
        .iter()
        .filter_map(|r| r.windows[0].ratio)
        .fold(0.0, f64::max);
    assert!(peak > 0.008 && peak < 0.0144, "5 m peak ratio {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_events_do_not_page_when_guarded() {
    let h = harness().await;
    let t = t0();
    // One span every 5 minutes at night; one of them fails.
    spans(&h, t - 2 * HOUR, t + 20 * MIN, 5 * MIN, |_, ts| ts == t).await;
    let guarded = SPAN_SLO.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n    min_events: 20\n",
    );
    let mut ev = evaluator(&h, &guarded);
    let (fired, _, _) = run(&mut ev, t, t + 10 * MIN, 30 * S, Severity::Page).await;
    assert_eq!(fired, None, "paged on a handful of events");
    // Without the guard the same data pages: the guard is what held.
    let h2 = harness().await;
    spans(&h2, t - 2 * HOUR, t + 20 * MIN, 5 * MIN, |_, ts| ts == t).await;
    let mut ev = evaluator(&h2, SPAN_SLO);
    let (fired, _, _) = run(&mut ev, t, t + 10 * MIN, 30 * S, Severity::Page).await;
    assert!(fired.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_firing_alert_and_does_not_fire_it_again() {
    let h = harness().await;
    let t = t0();
    spans(&h, t - 2 * HOUR, t + 30 * MIN, 5 * S, |_, ts| ts >= t).await;
    let mut ev = evaluator(&h, SPAN_SLO);
    let (fired, _, _) = run(&mut ev, t, t + 5 * MIN, 30 * S, Severity::Page).await;
    let fired = fired.unwrap();
    let first = report(&ev);
    let active_at = first.alerts[0].state.active_at;
    drop(ev);
    // A new process: same state file, buckets rebuilt from the store.
    let mut ev = evaluator(&h, SPAN_SLO);
    let round = ev.evaluate(t + 6 * MIN).await;
    let r = report(&ev);
    let page = r
        .alerts
        .iter()
        .find(|a| a.spec.severity == Severity::Page)
        .unwrap();
    assert_eq!(page.state.phase, Phase::Firing);
    assert_eq!(
        page.transition,
        Transition::None,
        "the restart fired the alert again"
    );
    assert_eq!(page.state.active_at, active_at);
    assert_eq!(page.state.fired_at, Some(fired));
    // Alertmanager sees the same alert (same labels and startsAt).
    let n = round
        .notifications
        .iter()
        .find(|n| n.labels["sloth_severity"] == "page")
        .unwrap();
    assert_eq!(n.starts_at, alerts::notify::rfc3339(active_at.unwrap()));
    assert!(!n.resolved);
}

/// `http_requests_total{code}` every 15 s: 10 req/s, all failing from `t`.
async fn counters(h: &Harness, from: i64, to: i64, t: i64) {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let (mut n_ok, mut n_bad) = (0.0, 0.0);
    let mut ts = from;
    while ts < to {
        if ts < t {
            n_ok += 150.0
        } else {
            n_bad += 150.0
        }
        ok.push(Sample {
            value: n_ok,
            timestamp: ts,
        });
        bad.push(Sample {
            value: n_bad,
            timestamp: ts,
        });
        ts += 15 * S;
    }
    let series = |code: &str, samples| TimeSeries {
        labels: vec![
            label("__name__", "http_requests_total"),
            label("job", "checkout"),
            label("code", code),
        ],
        samples,
    };
    let ok_len = ok.len() as i64;
    let req = WriteRequest {
        timeseries: vec![series("200", ok), series("500", bad)],
    };
    let n = 2 * ok_len;
    h.engine
        .ingest()
        .export(
            Transport::RemoteWrite,
            Payload::Metrics(to_otlp(req).unwrap()),
            None,
        )
        .await
        .unwrap();
    settle(h, "metrics_gauge", n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_slis_page_within_two_minutes_too() {
    let h = harness().await;
    let t = t0();
    counters(&h, t - 2 * HOUR, t + 10 * MIN, t).await;
    let spec = r#"
version: prometheus/v1
service: checkout
slos:
  - name: requests
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
    alerting:
      name: CheckoutErrors
"#;
    let mut ev = evaluator(&h, spec);
    let (fired, _, reports) = run(&mut ev, t - MIN, t + 5 * MIN, 10 * S, Severity::Page).await;
    let fired = fired.expect("pages");
    assert!(
        fired > t && fired <= t + 2 * MIN,
        "paged after {} s",
        (fired - t) / S
    );
    // Before the outage the SLI saw traffic and no errors.
    let before = &reports[0];
    assert!(
        before.windows.iter().all(|w| w.ratio == Some(0.0)),
        "{:?}",
        before.windows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spans_are_counted_once_the_buckets_are_re_read() {
    let h = harness().await;
    let t = t0();
    spans(&h, t - 2 * HOUR, t + 20 * MIN, 10 * S, |_, _| false).await;
    let mut ev = evaluator(&h, SPAN_SLO);
    ev.evaluate(t).await;
    // Failed spans from 5 to 3 minutes ago arrive only now (a retried export).
    let before = report(&ev)
        .windows
        .iter()
        .find(|w| w.window_ms == HOUR)
        .unwrap()
        .counts;
    let late: Vec<i64> = (0..12).map(|k| t - 5 * MIN + k * 10 * S).collect();
    export_spans(
        &h,
        late.iter()
            .map(|ts| Span {
                trace_id: [7u8; 16].to_vec(),
                span_id: ts.to_be_bytes().to_vec(),
                name: "POST /cart".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: (*ts * 1_000_000) as u64,
                end_time_unix_nano: (*ts * 1_000_000 + 1_000_000) as u64,
                status: Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: String::new(),
                }),
                ..Default::default()
            })
            .collect(),
    )
    .await;
    settle(&h, "spans", 140 * 6 + 12).await;
    let hour = |ev: &Evaluator| {
        report(ev)
            .windows
            .iter()
            .find(|w| w.window_ms == HOUR)
            .unwrap()
            .counts
    };
    // The next rounds re-read only the newest buckets…
    ev.evaluate(t + MIN).await;
    assert_eq!(hour(&ev).bad, 0.0);
    // …and the periodic full re-read picks the late spans up, once.
    ev.evaluate(t + 11 * MIN).await;
    let after = hour(&ev);
    assert_eq!(after.bad, 12.0);
    ev.evaluate(t + 12 * MIN).await;
    assert_eq!(hour(&ev).bad, 12.0);
    assert!(before.total > 0.0);
}

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric,
    ResourceMetrics, ScopeMetrics, exponential_histogram_data_point, metric,
};

/// Cumulative OTLP histograms every 15 s for two hours: a classic one with
/// bounds 0.1/0.2/0.5/1 s (per step 80, 10, 8, 2, 0 requests) and an
/// exponential one at scale 0 (per step 50, 30, 15, 5 requests in
/// (1/16, 1/8], (1/8, 1/4], (1/4, 1/2], (1/2, 1]).
async fn histograms(h: &Harness, from: i64, to: i64) -> i64 {
    let (mut classic, mut expo) = (Vec::new(), Vec::new());
    let mut k = 0u64;
    let mut ts = from;
    while ts < to {
        k += 1;
        let time = (ts * 1_000_000) as u64;
        let start = (from * 1_000_000) as u64 - 1;
        classic.push(HistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: 100 * k,
            sum: Some(10.0 * k as f64),
            bucket_counts: vec![80 * k, 10 * k, 8 * k, 2 * k, 0],
            explicit_bounds: vec![0.1, 0.2, 0.5, 1.0],
            ..Default::default()
        });
        expo.push(ExponentialHistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: 100 * k,
            sum: Some(20.0 * k as f64),
            scale: 0,
            positive: Some(exponential_histogram_data_point::Buckets {
                offset: -4,
                bucket_counts: vec![50 * k, 30 * k, 15 * k, 5 * k],
            }),
            ..Default::default()
        });
        ts += 15 * S;
    }
    let n = classic.len() as i64;
    let m = |name: &str, data| Metric {
        name: name.into(),
        unit: "s".into(),
        data: Some(data),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    m(
                        "http.server.request.duration",
                        metric::Data::Histogram(Histogram {
                            data_points: classic,
                            aggregation_temporality: 2,
                        }),
                    ),
                    m(
                        "rpc.server.duration",
                        metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: expo,
                            aggregation_temporality: 2,
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    h.engine
        .ingest()
        .export(Transport::Grpc, Payload::Metrics(req), None)
        .await
        .unwrap();
    settle(h, "metrics_histogram", n).await;
    settle(h, "metrics_exponential_histogram", n).await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_latency_slis_snap_the_threshold_to_a_bucket() {
    let h = harness().await;
    let t = t0();
    histograms(&h, t - 2 * HOUR, t + MIN).await;
    let spec = r#"
version: sightline/v1
service: checkout
slos:
  - name: classic
    objective: 99
    sli:
      histogram:
        metric: http_server_request_duration_seconds
        selector: '{job="checkout"}'
        threshold: 250ms
  - name: exponential
    objective: 99
    sli:
      histogram:
        metric: rpc_server_duration_seconds
        threshold: 250ms
"#;
    let mut ev = evaluator(&h, spec);
    ev.evaluate(t).await;
    let status = ev.status().read().unwrap().clone();
    let by_name = |n: &str| {
        status
            .slos
            .iter()
            .find(|s| s.slo.name == n)
            .unwrap()
            .clone()
    };
    let classic = by_name("classic");
    assert_eq!(classic.error, None);
    // 250 ms is not a bound of 0.1/0.2/0.5/1: snapped down to 0.2, with a
    // warning; 10 of every 100 requests are slower than 0.2 s (8 + 2).
    assert_eq!(classic.warnings.len(), 1, "{:?}", classic.warnings);
    assert!(
        classic.warnings[0].contains("le=\"0.2\""),
        "{:?}",
        classic.warnings
    );
    let ratio = |s: &alerts::evaluator::SloStatus| {
        s.report
            .as_ref()
            .unwrap()
            .windows
            .iter()
            .find(|w| w.window_ms == HOUR)
            .unwrap()
            .ratio
            .unwrap()
    };
    assert!((ratio(&classic) - 0.10).abs() < 1e-6, "{}", ratio(&classic));
    // Exponential buckets at scale 0 have a bound at 0.25: no warning;
    // 20 of every 100 are slower (15 + 5).
    let expo = by_name("exponential");
    assert_eq!(expo.error, None);
    assert!(expo.warnings.is_empty(), "{:?}", expo.warnings);
    assert!((ratio(&expo) - 0.20).abs() < 1e-6, "{}", ratio(&expo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openslo_time_slices_page_after_enough_bad_minutes() {
    let h = harness().await;
    let t = t0();
    counters(&h, t - 7 * HOUR, t + 20 * MIN, t).await;
    let spec = r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: good-minutes
spec:
  service: checkout
  indicator:
    metadata:
      name: requests
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: Prometheus
            spec:
              query: http_requests_total{job="checkout",code="500"}
        total:
          metricSource:
            type: Prometheus
            spec:
              query: http_requests_total{job="checkout"}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - target: 0.99
      timeSliceTarget: 0.95
      timeSliceWindow: 1m
"#;
    let mut ev = evaluator(&h, spec);
    let (fired, _, reports) = run(&mut ev, t, t + 15 * MIN, 30 * S, Severity::Page).await;
    // Every minute from the one ending at t (its last sample already counts
    // failures) is a bad slice; the 1 h window pages at 14.4 × 1 % of its
    // 60 slices, i.e. at the 9th bad minute (the 5 m window long before).
    let fired = fired.expect("pages");
    assert!(
        (t + 8 * MIN..=t + 9 * MIN).contains(&fired),
        "paged after {} s",
        (fired - t) / S
    );
    let hour = reports
        .last()
        .unwrap()
        .windows
        .iter()
        .find(|w| w.window_ms == HOUR)
        .unwrap()
        .counts;
    assert!(
        (59.0..=60.0).contains(&hour.total),
        "one slice per minute: {hour:?}"
    );
}
