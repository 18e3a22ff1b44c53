//! `GET /api/v1/rules` and `GET /api/v1/alerts` in Prometheus' format, so
//! Grafana's alerting views list the SLO alerts next to Prometheus' own.
//! Each SLO is a rule group holding its alerting rules and one recording
//! rule per SLI window (the `sightline_slo_*` series written to the store).

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::evaluator::{SharedStatus, SloStatus, alert_annotations, alert_labels};
use crate::notify::rfc3339;
use crate::state::Phase;
use crate::windows::format_duration;

/// The two routes, reading the evaluator's latest round.
pub fn router(status: SharedStatus) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .with_state(status)
}

#[derive(Deserialize)]
struct RulesParams {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn ok(data: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({"status": "success", "data": data}).to_string(),
    )
        .into_response()
}

/// Prometheus formats alert values with `%e` and ten digits.
fn prom_float(v: f64) -> String {
    let s = format!("{v:.10e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let exp: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        }
        None => s,
    }
}

fn alert_instances(s: &SloStatus, i: usize) -> Vec<Value> {
    let Some(report) = &s.report else {
        return Vec::new();
    };
    let Some(a) = report.alerts.get(i) else {
        return Vec::new();
    };
    if a.state.phase == Phase::Inactive {
        return Vec::new();
    }
    vec![json!({
        "labels": alert_labels(&s.slo, &a.spec).into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "annotations": alert_annotations(&s.slo, &a.spec).into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "state": a.state.phase.as_str(),
        "activeAt": a.state.active_at.map(rfc3339),
        "value": prom_float(a.state.value),
    })]
}

fn group(s: &SloStatus, interval: f64, kind: Option<&str>) -> Value {
    let last = s
        .report
        .as_ref()
        .map(|r| rfc3339(r.time))
        .unwrap_or_else(|| rfc3339(0));
    let health = if s.error.is_some() {
        "err"
    } else if s.report.is_some() {
        "ok"
    } else {
        "unknown"
    };
    let last_error = s.error.clone().unwrap_or_default();
    let mut rules = Vec::new();
    if kind != Some("record") {
        for (i, a) in s.slo.alerts.iter().enumerate() {
            let instances = alert_instances(s, i);
            let state = instances
                .first()
                .and_then(|v| v["state"].as_str())
                .unwrap_or("inactive")
                .to_string();
            rules.push(json!({
                "state": state,
                "name": a.name,
                "query": condition_text(s, a),
                "duration": a.for_ms as f64 / 1000.0,
                "keepFiringFor": 0,
                "labels": alert_labels(&s.slo, a).into_iter().filter(|(k, _)| k != "alertname").map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
                "annotations": alert_annotations(&s.slo, a).into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
                "alerts": instances,
                "health": health,
                "lastError": last_error,
                "evaluationTime": 0,
                "lastEvaluation": last,
                "type": "alerting",
            }));
        }
    }
    if kind != Some("alert") {
        let windows = s
            .report
            .as_ref()
            .map(|r| r.windows.clone())
            .unwrap_or_default();
        for w in windows {
            rules.push(json!({
                "name": "sightline_slo_sli_ratio",
                "query": sli_text(s, w.window_ms),
                "labels": {"window": format_duration(w.window_ms)},
                "health": health,
                "lastError": last_error,
                "evaluationTime": 0,
                "lastEvaluation": last,
                "type": "recording",
            }));
        }
    }
    json!({
        "name": s.slo.id,
        "file": s.slo.origin.file,
        "rules": rules,
        "interval": interval,
        "limit": 0,
        "evaluationTime": 0,
        "lastEvaluation": last,
    })
}

fn sli_text(s: &SloStatus, window_ms: i64) -> String {
    match crate::rules::error_ratio_query(&s.slo.sli, &format_duration(window_ms)) {
        Ok(q) => q,
        Err(_) => match &s.slo.sli {
            crate::spec::Sli::Spans(sp) => {
                let bad = match sp.latency_threshold_ns {
                    Some(ns) => format!("duration > {}", format_duration(ns / 1_000_000)),
                    None => "status_code = ERROR or http.response.status_code >= 500".into(),
                };
                format!(
                    "spans of service {:?}: share with {bad} over {}",
                    sp.service,
                    format_duration(window_ms)
                )
            }
            _ => String::new(),
        },
    }
}

fn condition_text(s: &SloStatus, a: &crate::spec::AlertSpec) -> String {
    let budget = 1.0 - s.slo.objective;
    a.windows
        .iter()
        .map(|w| {
            format!(
                "(sightline_slo_burn_rate{{sloth_id=\"{id}\", window=\"{l}\"}} >= {f} and sightline_slo_burn_rate{{sloth_id=\"{id}\", window=\"{sh}\"}} >= {f})",
                id = s.slo.id,
                l = format_duration(w.long_ms),
                sh = format_duration(w.short_ms),
                f = w.factor,
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
        + &format!(" # error budget {}", crate::evaluator::round_budget(budget))
}

async fn rules(State(status): State<SharedStatus>, Query(p): Query<RulesParams>) -> Response {
    // As Prometheus: only `alert` and `record` filter; anything else is an error.
    if let Some(kind) = p
        .kind
        .as_deref()
        .filter(|k| !matches!(*k, "alert" | "record" | ""))
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json!({
                "status": "error",
                "errorType": "bad_data",
                "error": format!("unsupported type {kind:?}: use alert or record"),
            })
            .to_string(),
        )
            .into_response();
    }
    let st = status.read().map(|s| s.clone()).unwrap_or_default();
    let interval = st.interval.as_secs_f64();
    let groups: Vec<Value> = st
        .slos
        .iter()
        .map(|s| group(s, interval, p.kind.as_deref()))
        .collect();
    ok(json!({ "groups": groups }))
}

async fn alerts(State(status): State<SharedStatus>) -> Response {
    let st = status.read().map(|s| s.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for s in &st.slos {
        for i in 0..s.slo.alerts.len() {
            out.extend(alert_instances(s, i));
        }
    }
    ok(json!({ "alerts": out }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_like_prometheus() {
        assert_eq!(super::prom_float(14.4), "1.4400000000e+01");
        assert_eq!(super::prom_float(0.002), "2.0000000000e-03");
    }
}
