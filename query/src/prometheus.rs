//! The Prometheus HTTP API, as Grafana's built-in Prometheus datasource
//! calls it: queries, series, labels, metadata and build info, by GET or
//! form-encoded POST, with Prometheus' response and error JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::Matchers;
use promql_parser::parser::Expr;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::events::QueryFinished;
use crate::promql::value::{Labels, Series, Value, format_value};
use crate::promql::{self, Range, select};

/// The Prometheus-compatible API level Sightline answers as (what Grafana
/// reads from `buildinfo` to pick its features).
pub const PROMETHEUS_VERSION: &str = "2.42.0";

/// Prometheus' cap on points per series in a range query.
const MAX_POINTS: i64 = 11_000;

/// The Prometheus API routes.
pub fn router(engine: QueryEngine) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .with_state(engine)
}

/// Request parameters from the query string and a form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn from(method: &Method, raw: Option<String>, body: &[u8]) -> Result<Params, QueryError> {
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
                .map_err(|e| QueryError::BadQuery(format!("invalid query string: {e}")))?;
        if *method == Method::POST && !body.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| QueryError::BadQuery(format!("invalid form body: {e}")))?;
            pairs.extend(form);
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name)
            .ok_or_else(|| QueryError::BadQuery(format!("invalid parameter \"{name}\": missing")))
    }

    fn required_time(&self, name: &str) -> Result<i64, QueryError> {
        let v = self.required(name)?;
        parse_time(v).ok_or_else(|| {
            QueryError::BadQuery(format!(
                "invalid parameter \"{name}\": cannot parse {v:?} to a valid timestamp"
            ))
        })
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, QueryError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                QueryError::BadQuery(format!(
                    "invalid parameter \"{name}\": cannot parse {v:?} to a valid timestamp"
                ))
            }),
        }
    }
}

/// The `query` parameter, for the log line of a failed query.
fn query_text(params: &Result<Params, QueryError>) -> String {
    params
        .as_ref()
        .ok()
        .and_then(|p| p.get("query"))
        .unwrap_or("")
        .to_string()
}

/// Parses a Prometheus API time: Unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Parses a step or timeout: float seconds or a Prometheus duration (`15s`, `1m30s`).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return (f.is_finite() && f < 9e15).then(|| (f * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .ok()
        .map(|d| d.as_millis() as i64)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn json_time(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
        s.trim_end_matches('0').to_string()
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn labels_json(l: &Labels) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_str(k), json_str(v));
    }
    out.push('}');
    out
}

fn point_json(t: i64, v: f64) -> String {
    format!("[{},\"{}\"]", json_time(t), format_value(v))
}

/// Prometheus JSON for an instant query result.
pub fn value_json(v: &Value, t: i64) -> String {
    let (kind, result) = match v {
        Value::Scalar(x) => ("scalar", point_json(t, *x)),
        Value::String(s) => ("string", format!("[{},{}]", json_time(t), json_str(s))),
        Value::Vector(samples) => {
            let items: Vec<String> = samples
                .iter()
                .map(|s| {
                    format!(
                        "{{\"metric\":{},\"value\":{}}}",
                        labels_json(&s.labels),
                        point_json(t, s.value)
                    )
                })
                .collect();
            ("vector", format!("[{}]", items.join(",")))
        }
        Value::Matrix(m) => ("matrix", matrix_items(m)),
    };
    format!("{{\"resultType\":\"{kind}\",\"result\":{result}}}")
}

fn matrix_items(m: &[Series]) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|s| {
            let points: Vec<String> = s.points.iter().map(|(t, v)| point_json(*t, *v)).collect();
            format!(
                "{{\"metric\":{},\"values\":[{}]}}",
                labels_json(&s.labels),
                points.join(",")
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn success(data: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"success\",\"data\":{data}}}"),
    )
        .into_response()
}

fn finish(
    engine: &QueryEngine,
    api: &'static str,
    query: &str,
    started: Instant,
    r: Result<String, QueryError>,
) -> Response {
    QueryFinished {
        api,
        query,
        elapsed: started.elapsed(),
        error: r.as_ref().err(),
    }
    .emit(engine.ingest().metrics());
    match r {
        Ok(data) => success(data),
        Err(e) => crate::sql::error_response(&e),
    }
}

async fn query(
    State(engine): State<QueryEngine>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let params = Params::from(&method, raw, &body);
    let text = query_text(&params);
    let r = async {
        let p = params?;
        let q = p.required("query")?;
        let t = p.time("time", now_ms())?;
        let v = promql::instant(&engine, q, t).await?;
        Ok(value_json(&v, t))
    }
    .await;
    finish(&engine, "promql", &text, started, r)
}

async fn query_range(
    State(engine): State<QueryEngine>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let params = Params::from(&method, raw, &body);
    let text = query_text(&params);
    let r = async {
        let p = params?;
        let q = p.required("query")?;
        let bad = |m: &str| QueryError::BadQuery(m.to_string());
        let start = p.required_time("start")?;
        let end = p.required_time("end")?;
        if end < start {
            return Err(bad("invalid parameter \"end\": end timestamp must not be before start time"));
        }
        let step = p
            .get("step")
            .and_then(parse_duration_ms)
            .ok_or_else(|| bad("invalid parameter \"step\": cannot parse to a valid duration"))?;
        if step <= 0 {
            return Err(bad("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
        }
        let m = promql::range(&engine, q, Range { start, end, step }).await?;
        Ok(format!("{{\"resultType\":\"matrix\",\"result\":{}}}", matrix_items(&m)))
    }
    .await;
    finish(&engine, "promql", &text, started, r)
}

fn selectors(p: &Params) -> Result<Vec<Matchers>, QueryError> {
    p.all("match[]")
        .into_iter()
        .map(|m| match promql::parse(m)? {
            Expr::VectorSelector(vs) => Ok(promql::eval::selector_matchers(&vs)),
            _ => Err(QueryError::BadQuery(format!(
                "invalid parameter \"match[]\": {m:?} is not a series selector"
            ))),
        })
        .collect()
}

/// The label sets matching any of `sels` (every series when empty).
async fn matching_series(
    engine: &QueryEngine,
    sels: &[Matchers],
    start: i64,
    end: i64,
) -> Result<BTreeSet<Labels>, QueryError> {
    let all = [promql::eval::selector_matchers(
        &promql_parser::parser::VectorSelector::new(
            None,
            Matchers::new(vec![promql_parser::label::Matcher::new(
                promql_parser::label::MatchOp::Re(
                    regex::Regex::new("^(?:.+)$").expect("static regex"),
                ),
                "__name__",
                ".+",
            )]),
        ),
    )];
    let sels = if sels.is_empty() { &all[..] } else { sels };
    let mut out = BTreeSet::new();
    for sel in sels {
        for s in select::series_labels(engine, sel, start, end).await? {
            out.insert(s);
        }
    }
    Ok(out)
}

async fn series(
    State(engine): State<QueryEngine>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let r = async {
        let p = Params::from(&method, raw, &body)?;
        let sels = selectors(&p)?;
        if sels.is_empty() {
            return Err(QueryError::BadQuery("no match[] parameter provided".into()));
        }
        let (start, end) = (p.time("start", 0)?, p.time("end", now_ms())?);
        let set = matching_series(&engine, &sels, start, end).await?;
        let items: Vec<String> = set.iter().map(labels_json).collect();
        Ok(format!("[{}]", items.join(",")))
    }
    .await;
    finish(&engine, "series", "", started, r)
}

async fn labels(
    State(engine): State<QueryEngine>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let r = async {
        let p = Params::from(&method, raw, &body)?;
        let sels = selectors(&p)?;
        let (start, end) = (p.time("start", 0)?, p.time("end", now_ms())?);
        let set = matching_series(&engine, &sels, start, end).await?;
        let names: BTreeSet<&str> = set.iter().flat_map(|l| l.iter().map(|(k, _)| k)).collect();
        Ok(serde_json::to_string(&names).unwrap_or_default())
    }
    .await;
    finish(&engine, "labels", "", started, r)
}

async fn label_values(
    State(engine): State<QueryEngine>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let r = async {
        let p = Params::from(&Method::GET, raw, &[])?;
        let sels = selectors(&p)?;
        let (start, end) = (p.time("start", 0)?, p.time("end", now_ms())?);
        let values: BTreeSet<String> = if name == "__name__" && sels.is_empty() {
            select::catalog(&engine, start, end)
                .await?
                .iter()
                .flat_map(|e| e.names())
                .collect()
        } else {
            let set = matching_series(&engine, &sels, start, end).await?;
            set.iter()
                .map(|l| l.get(&name).to_string())
                .filter(|v| !v.is_empty())
                .collect()
        };
        Ok(serde_json::to_string(&values).unwrap_or_default())
    }
    .await;
    finish(&engine, "label_values", "", started, r)
}

async fn metadata(State(engine): State<QueryEngine>, RawQuery(raw): RawQuery) -> Response {
    let started = Instant::now();
    let r = async {
        let p = Params::from(&Method::GET, raw, &[])?;
        let only = p.get("metric");
        let limit: usize = p
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for e in select::catalog(&engine, 0, now_ms()).await? {
            if only.is_some_and(|m| m != e.base)
                || (out.len() >= limit && !out.contains_key(&e.base))
            {
                continue;
            }
            let item = serde_json::json!({"type": e.prom_type(), "help": e.help, "unit": e.unit});
            let list = out.entry(e.base.clone()).or_default();
            if !list.contains(&item) {
                list.push(item);
            }
        }
        Ok(serde_json::to_string(&out).unwrap_or_default())
    }
    .await;
    finish(&engine, "metadata", "", started, r)
}

async fn exemplars(
    State(engine): State<QueryEngine>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let params = Params::from(&method, raw, &body);
    let text = query_text(&params);
    let r = async {
        let p = params?;
        let expr = promql::parse(p.required("query")?)?;
        let (start, end) = (p.time("start", 0)?, p.time("end", now_ms())?);
        let mut selectors = Vec::new();
        collect_selectors(&expr, &mut selectors);
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        for m in selectors {
            for (labels, ex) in select::exemplars(&engine, &m, start, end).await? {
                if !seen.insert(labels.clone()) {
                    continue;
                }
                let list: Vec<String> = ex
                    .iter()
                    .map(|e| {
                        format!(
                            "{{\"labels\":{},\"value\":\"{}\",\"timestamp\":{}}}",
                            labels_json(&e.labels),
                            format_value(e.value),
                            json_time(e.time)
                        )
                    })
                    .collect();
                items.push(format!(
                    "{{\"seriesLabels\":{},\"exemplars\":[{}]}}",
                    labels_json(&labels),
                    list.join(",")
                ));
            }
        }
        Ok(format!("[{}]", items.join(",")))
    }
    .await;
    finish(&engine, "exemplars", &text, started, r)
}

/// Every vector selector in `e` (range selectors included).
fn collect_selectors(e: &Expr, out: &mut Vec<Matchers>) {
    match e {
        Expr::VectorSelector(vs) => out.push(promql::eval::selector_matchers(vs)),
        Expr::MatrixSelector(m) => out.push(promql::eval::selector_matchers(&m.vs)),
        Expr::Aggregate(a) => collect_selectors(&a.expr, out),
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        _ => {}
    }
}

async fn buildinfo() -> Response {
    success(
        serde_json::json!({
            "version": PROMETHEUS_VERSION,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "application": "sightline",
            "sightlineVersion": env!("CARGO_PKG_VERSION"),
        })
        .to_string(),
    )
}
