//! `sightline slo lint`: spec errors with file, line and field, and — given
//! a running server — whether the SLI queries find any data.

use serde_json::Value;

use crate::spec::{Sli, Slo, SpecError, render_window};

/// A finding about a spec that loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Fatal (`error`) or advisory (`warning`).
    pub error: bool,
    /// Where and what.
    pub problem: SpecError,
}

/// Checks the SLIs of `slos` against the server at `base` (its HTTP API,
/// e.g. `http://localhost:8080`): queries must return series, histogram
/// thresholds should be bucket boundaries, span SLIs need spans.
pub async fn check_data(slos: &[Slo], base: &str) -> Result<Vec<Finding>, String> {
    let client = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let mut out = Vec::new();
    for slo in slos {
        let mut report = |error: bool, field: &str, message: String| {
            out.push(Finding {
                error,
                problem: SpecError {
                    file: slo.origin.file.clone(),
                    line: slo.origin.line,
                    field: field.to_string(),
                    message: format!("{}: {message}", slo.id),
                },
            })
        };
        match &slo.sli {
            Sli::Events { total_query, .. } => {
                let q = render_window(total_query, "1h");
                if series(&client, base, &q).await?.is_empty() {
                    report(
                        true,
                        "sli.events.total_query",
                        format!("query returns no series: {q}"),
                    );
                }
            }
            Sli::Raw { error_ratio_query } => {
                let q = render_window(error_ratio_query, "1h");
                if series(&client, base, &q).await?.is_empty() {
                    report(
                        true,
                        "sli.raw.error_ratio_query",
                        format!("query returns no series: {q}"),
                    );
                }
            }
            Sli::Histogram(h) => {
                let bounds: Vec<(f64, String)> =
                    series(&client, base, &crate::sli::bounds_query(h))
                        .await?
                        .iter()
                        .filter_map(|s| {
                            let le = s["metric"]["le"].as_str()?;
                            le.parse().ok().map(|b| (b, le.to_string()))
                        })
                        .collect();
                if bounds.is_empty() {
                    report(
                        true,
                        "sli.histogram.metric",
                        format!("no {}_bucket series in the last day", h.metric),
                    );
                } else if let (_, Some(warning)) = crate::sli::snap(h, bounds) {
                    report(false, "sli.histogram.threshold", warning);
                }
            }
            Sli::Spans(s) => {
                let sql = format!(
                    "SELECT count(*) AS n FROM spans WHERE service_name = '{}' AND start_time > now() - INTERVAL '1 day'",
                    s.service.replace('\'', "''")
                );
                let body: Value = client
                    .post(format!("{base}/api/v1/sql"))
                    .body(sql)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if body["rows"][0]["n"].as_i64().unwrap_or(0) == 0 {
                    report(
                        true,
                        "sli.spans.service",
                        format!("no spans of service {:?} in the last day", s.service),
                    );
                }
            }
        }
    }
    Ok(out)
}

async fn series(client: &reqwest::Client, base: &str, q: &str) -> Result<Vec<Value>, String> {
    let body: Value = client
        .post(format!("{base}/api/v1/query"))
        .form(&[("query", q)])
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{q}: {}", body["error"]));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}
