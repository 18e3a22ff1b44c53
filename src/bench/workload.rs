//! Realistic trace workload: each trace is a tree of spans across services
//! (an HTTP entry point, internal work, RPC calls and database queries) with
//! the attributes real instrumentation libraries set; and the log records
//! written while serving them.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const SERVICES: &[&str] = &[
    "frontend",
    "checkout",
    "cart",
    "payment",
    "shipping",
    "currency",
    "recommendation",
    "ad",
    "email",
    "quote",
    "inventory",
    "auth",
];
const ROUTES: &[&str] = &[
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/recommendations",
    "/api/shipping/quote",
    "/api/currency/convert",
];
const TABLES: &[&str] = &["orders", "carts", "products", "users", "shipments"];

/// A seeded random generator (runs are repeatable).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn resource(service: &str, instance: usize) -> Resource {
    Resource {
        attributes: vec![
            s("service.name", service),
            s("service.version", "1.14.2"),
            s("service.instance.id", &format!("{service}-{instance:04}")),
            s("deployment.environment.name", "production"),
            s("host.name", &format!("node-{}", instance % 5)),
            s("k8s.namespace.name", "shop"),
            s(
                "k8s.pod.name",
                &format!("{service}-7d9f8b6c5-{instance:05x}"),
            ),
            s("k8s.node.name", &format!("node-{}", instance % 5)),
            s(
                "container.id",
                &format!("{:064x}", (instance as u128) * 0x9e3779b97f4a7c15),
            ),
            s("telemetry.sdk.language", "go"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.version", "1.28.0"),
            i("process.pid", 1000 + instance as i64),
        ],
        ..Default::default()
    }
}

/// Builds one trace of `n` spans spread over the given services.
fn trace(rng: &mut StdRng, n: usize, services: usize, start: u64) -> Vec<(usize, Span)> {
    let mut trace_id = [0u8; 16];
    rng.fill_bytes(&mut trace_id);
    let mut out: Vec<(usize, Span)> = Vec::with_capacity(n);
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let error = rng.random_ratio(1, 100);
    for k in 0..n {
        let mut span_id = [0u8; 8];
        rng.fill_bytes(&mut span_id);
        let parent = if k == 0 {
            None
        } else {
            Some(rng.random_range(0..k))
        };
        let svc = if k == 0 {
            0
        } else {
            rng.random_range(0..services)
        };
        let begin = start + k as u64 * rng.random_range(20_000..400_000);
        let dur = rng.random_range(50_000..30_000_000u64);
        let (name, kind, attrs) = match (k, k % 3) {
            (0, _) => (
                format!("GET {route}"),
                SpanKind::Server,
                vec![
                    s("http.request.method", "GET"),
                    s("http.route", route),
                    i("http.response.status_code", if error { 500 } else { 200 }),
                    s("url.scheme", "https"),
                    s("url.path", route),
                    s("server.address", "shop.example.com"),
                    s(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
                    ),
                    s(
                        "client.address",
                        &format!(
                            "10.1.{}.{}",
                            rng.random_range(0..255),
                            rng.random_range(0..255)
                        ),
                    ),
                ],
            ),
            (_, 1) => {
                let table = TABLES[rng.random_range(0..TABLES.len())];
                (
                    format!("SELECT {table}"),
                    SpanKind::Client,
                    vec![
                        s("db.system", "postgresql"),
                        s("db.operation.name", "SELECT"),
                        s("db.collection.name", table),
                        s(
                            "db.query.text",
                            &format!("SELECT * FROM {table} WHERE id = $1"),
                        ),
                        s("server.address", "postgres.shop.svc"),
                        i("server.port", 5432),
                    ],
                )
            }
            (_, 2) => {
                let callee = SERVICES[rng.random_range(0..services)];
                (
                    format!("oteldemo.{callee}/Get"),
                    SpanKind::Client,
                    vec![
                        s("rpc.system", "grpc"),
                        s("rpc.service", &format!("oteldemo.{callee}")),
                        s("rpc.method", "Get"),
                        i("rpc.grpc.status_code", 0),
                        s("server.address", &format!("{callee}.shop.svc")),
                    ],
                )
            }
            _ => (
                "process".to_string(),
                SpanKind::Internal,
                vec![i("items", rng.random_range(1..20))],
            ),
        };
        let events = if k == 0 && error {
            vec![Event {
                time_unix_nano: begin + dur / 2,
                name: "exception".into(),
                attributes: vec![
                    s("exception.type", "TimeoutError"),
                    s("exception.message", "upstream timed out"),
                ],
                dropped_attributes_count: 0,
            }]
        } else {
            vec![]
        };
        let span = Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| out[p].1.span_id.clone()).unwrap_or_default(),
            name,
            kind: kind as i32,
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + dur,
            attributes: attrs,
            events,
            status: Some(Status {
                code: if error && k == 0 {
                    StatusCode::Error as i32
                } else {
                    StatusCode::Unset as i32
                },
                message: String::new(),
            }),
            flags: 0x101,
            ..Default::default()
        };
        out.push((svc, span));
    }
    out
}

/// `count` requests of `batch` spans each: traces of 5–15 spans grouped by
/// service into ResourceSpans, as an SDK's batch processor would send them.
pub fn request_pool(
    count: usize,
    batch: usize,
    services: usize,
    seed: u64,
) -> Vec<ExportTraceServiceRequest> {
    let services = services.clamp(1, SERVICES.len());
    let mut rng = rng(seed);
    let now = collector::ingest::now_nanos();
    (0..count)
        .map(|_| {
            let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); services];
            let mut n = 0;
            while n < batch {
                let len = rng.random_range(5..=15).min(batch - n);
                for (svc, span) in trace(&mut rng, len, services, now) {
                    by_service[svc].push(span);
                }
                n += len;
            }
            let resource_spans = by_service
                .into_iter()
                .enumerate()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(svc, spans)| ResourceSpans {
                    resource: Some(resource(SERVICES[svc], svc * 3 + 1)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
                                .into(),
                            version: "0.53.0".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            ExportTraceServiceRequest { resource_spans }
        })
        .collect()
}

/// Gives a template request fresh ids and current times, keeping each trace's
/// shape (spans of one trace share the new trace id; parents still match).
pub fn refresh(req: &mut ExportTraceServiceRequest, rng: &mut StdRng) {
    let salt_trace: u128 = rng.random();
    let salt_span: u64 = rng.random();
    let shift = collector::ingest::now_nanos();
    let spans = req
        .resource_spans
        .iter_mut()
        .flat_map(|rs| rs.scope_spans.iter_mut())
        .flat_map(|ss| ss.spans.iter_mut());
    let mut base = None;
    for span in spans {
        xor(&mut span.trace_id, &salt_trace.to_le_bytes());
        xor(&mut span.span_id, &salt_span.to_le_bytes());
        if !span.parent_span_id.is_empty() {
            xor(&mut span.parent_span_id, &salt_span.to_le_bytes());
        }
        let b = *base.get_or_insert(span.start_time_unix_nano);
        let d = span.end_time_unix_nano - span.start_time_unix_nano;
        span.start_time_unix_nano = shift + (span.start_time_unix_nano.saturating_sub(b));
        span.end_time_unix_nano = span.start_time_unix_nano + d;
    }
}

fn xor(id: &mut [u8], salt: &[u8]) {
    for (a, b) in id.iter_mut().zip(salt) {
        *a ^= b;
    }
}

/// Spans in a request.
pub fn span_count(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// The log records an application would write while serving `req`'s
/// spans: one per span, in its resource and scope, at the span's start,
/// with its ids and attributes, a message body, and `ERROR` for failed
/// spans.
pub fn logs_of(req: &ExportTraceServiceRequest) -> ExportLogsServiceRequest {
    let record = |span: &Span| {
        let failed = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        let took_ms = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1_000_000;
        LogRecord {
            time_unix_nano: span.start_time_unix_nano,
            observed_time_unix_nano: span.end_time_unix_nano,
            severity_number: if failed { 17 } else { 9 },
            severity_text: if failed { "ERROR" } else { "INFO" }.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "{} finished in {took_ms} ms",
                    span.name
                ))),
            }),
            attributes: span.attributes.clone(),
            flags: 1,
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            ..Default::default()
        }
    };
    let resource_logs = req
        .resource_spans
        .iter()
        .map(|rs| ResourceLogs {
            resource: rs.resource.clone(),
            scope_logs: rs
                .scope_spans
                .iter()
                .map(|ss| ScopeLogs {
                    scope: ss.scope.clone(),
                    log_records: ss.spans.iter().map(record).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}
