//! HTTP: `GET /api/v1/profiles/flamegraph` (stored profiles) and
//! `GET /debug/pprof/profile` (Sightline's own).
//!
//! Both answer in the format `format=` names: `svg` (flame graph),
//! `folded` (folded stacks), `pprof` (gzip'd protobuf) or `json` (Grafana's
//! nested-set rows). The flame graph defaults to SVG, or JSON when the
//! client accepts only JSON; the self-profile to pprof, as Go's does.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Profile, ProfileFilter, load, pprof, render, self_profile};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::prometheus::parse_time;
use crate::sql::error_response;

/// The profile routes.
pub fn router(engine: QueryEngine) -> Router {
    Router::new()
        .route("/api/v1/profiles/flamegraph", get(flamegraph))
        .route("/debug/pprof/profile", get(debug_profile))
        .with_state(engine)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Flame graph SVG.
    Svg,
    /// Folded stacks text.
    Folded,
    /// gzip'd pprof protobuf.
    Pprof,
    /// Nested-set rows as JSON.
    Json,
}

impl Format {
    /// Parses `format=`.
    pub fn parse(s: &str) -> Result<Format, QueryError> {
        match s {
            "svg" => Ok(Format::Svg),
            "folded" | "collapsed" => Ok(Format::Folded),
            "pprof" | "proto" => Ok(Format::Pprof),
            "json" => Ok(Format::Json),
            other => Err(QueryError::BadQuery(format!(
                "unknown format {other:?}; use svg, folded, pprof or json"
            ))),
        }
    }
}

/// Encodes `profile` as `format`.
pub fn respond(profile: &Profile, format: Format, title: &str) -> Result<Response, QueryError> {
    Ok(match format {
        Format::Svg => {
            let svg = render::svg(profile, title)
                .map_err(|e| QueryError::Execution(format!("cannot draw the flame graph: {e}")))?;
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Format::Folded => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render::folded(profile),
        )
            .into_response(),
        Format::Pprof => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb.gz\"",
                ),
            ],
            pprof::encode(profile),
        )
            .into_response(),
        Format::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&render::nested_set(profile))
                .map_err(|e| QueryError::Execution(e.to_string()))?,
        )
            .into_response(),
    })
}

fn bad(m: String) -> QueryError {
    QueryError::BadQuery(m)
}

fn time_param(p: &HashMap<String, String>, name: &str, default: i64) -> Result<i64, QueryError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).ok_or_else(|| {
            bad(format!(
                "invalid parameter {name:?}: cannot parse {v:?} to a timestamp"
            ))
        }),
    }
}

/// Reads the flame graph's parameters: `start`/`end` (Unix seconds or
/// RFC 3339; default the last hour), `process` (pid or name), `container`,
/// `service`, `host`.
pub fn filter_params(p: &HashMap<String, String>) -> Result<ProfileFilter, QueryError> {
    let now = chrono::Utc::now().timestamp_millis();
    let end = time_param(p, "end", now)?;
    let start = time_param(p, "start", end - 3_600_000)?;
    if end <= start {
        return Err(bad("end must be after start".into()));
    }
    let text = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(ProfileFilter {
        start_ms: start,
        end_ms: end,
        process: text("process"),
        container: text("container"),
        service: text("service"),
        host: text("host"),
    })
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("image/svg"))
}

async fn flamegraph(
    State(engine): State<QueryEngine>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let started = std::time::Instant::now();
    let result = async {
        let format = match p.get("format") {
            Some(f) => Format::parse(f)?,
            None if wants_json(&headers) => Format::Json,
            None => Format::Svg,
        };
        let filter = filter_params(&p)?;
        let profile = load(&engine, &filter).await?;
        respond(&profile, format, "CPU flame graph")
    }
    .await;
    crate::events::QueryFinished {
        api: "flamegraph",
        query: "",
        elapsed: started.elapsed(),
        error: result.as_ref().err(),
    }
    .emit(engine.ingest().metrics());
    result.unwrap_or_else(|e| error_response(&e))
}

/// Longest self-profile, so a typo cannot hold the profiler for hours.
const MAX_SECONDS: u64 = 300;

async fn debug_profile(Query(p): Query<HashMap<String, String>>) -> Response {
    let result = async {
        let seconds = match p.get("seconds") {
            None => 30,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_SECONDS).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "invalid seconds {s:?}: a whole number from 1 to {MAX_SECONDS}"
                    ))
                })?,
        };
        let format = Format::parse(p.get("format").map_or("pprof", String::as_str))?;
        let profile = tokio::task::spawn_blocking(move || {
            self_profile::profile_self(Duration::from_secs(seconds))
        })
        .await
        .map_err(|e| QueryError::Execution(e.to_string()))?
        .map_err(|e| match e {
            self_profile::SelfProfileError::Busy => QueryError::Conflict(e.to_string()),
            e => QueryError::Execution(e.to_string()),
        })?;
        respond(&profile, format, "sightline CPU profile")
    }
    .await;
    result.unwrap_or_else(|e| error_response(&e))
}
