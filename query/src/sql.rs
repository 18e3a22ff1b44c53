//! `POST /api/v1/sql`: runs one read-only SQL query.
//!
//! The SQL text is the body (`text/plain` or `application/sql`), a JSON
//! object `{"query": "..."}`, or the `query` form field. The answer is JSON
//! (`{"columns": [{"name", "type"}], "rows": [{...}]}`), or an Arrow IPC
//! stream when the request says `Accept: application/vnd.apache.arrow.stream`.
//! Errors use the Prometheus API's error shape.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::engine::QueryEngine;
use crate::error::QueryError;

/// Media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The SQL route.
pub fn router(engine: QueryEngine) -> Router {
    Router::new()
        .route("/api/v1/sql", post(handle))
        .with_state(engine)
}

#[derive(Deserialize)]
struct SqlBody {
    query: String,
}

/// Extracts the SQL text from a request body.
fn sql_text(headers: &HeaderMap, body: &[u8]) -> Result<String, QueryError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let bad = |m: String| QueryError::BadQuery(m);
    let text = if content_type.starts_with("application/json") {
        serde_json::from_slice::<SqlBody>(body)
            .map_err(|e| {
                bad(format!(
                    "invalid JSON body: {e}; expected {{\"query\": \"...\"}}"
                ))
            })?
            .query
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<SqlBody>(body)
            .map_err(|e| bad(format!("invalid form body: {e}; expected query=...")))?
            .query
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| bad("the SQL text is not UTF-8".into()))?
    };
    if text.trim().is_empty() {
        return Err(bad("empty query".into()));
    }
    Ok(text)
}

async fn handle(State(engine): State<QueryEngine>, headers: HeaderMap, body: Bytes) -> Response {
    let arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    let started = std::time::Instant::now();
    let sql = sql_text(&headers, &body);
    let result = match &sql {
        Ok(sql) => engine.sql(sql).await,
        Err(e) => Err(QueryError::BadQuery(e.to_string())),
    };
    let answer = result.and_then(|(schema, batches)| {
        if arrow {
            to_arrow_stream(&schema, &batches)
                .map(|b| ([(header::CONTENT_TYPE, ARROW_STREAM)], b).into_response())
        } else {
            to_json(&schema, &batches)
                .map(|b| ([(header::CONTENT_TYPE, "application/json")], b).into_response())
        }
    });
    crate::events::QueryFinished {
        api: "sql",
        query: sql.as_deref().unwrap_or(""),
        elapsed: started.elapsed(),
        error: answer.as_ref().err(),
    }
    .emit(engine.ingest().metrics());
    answer.unwrap_or_else(|e| error_response(&e))
}

/// The Prometheus-style error body for `e`, with its status.
pub fn error_response(e: &QueryError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "status": "error",
        "errorType": e.error_type(),
        "error": e.to_string(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Encodes batches as an Arrow IPC stream.
pub fn to_arrow_stream(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let ipc = |e: arrow::error::ArrowError| QueryError::Execution(e.to_string());
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema).map_err(ipc)?;
    for b in batches {
        w.write(b).map_err(ipc)?;
    }
    w.finish().map_err(ipc)?;
    drop(w);
    Ok(out)
}

/// Encodes batches as `{"columns": [...], "rows": [...]}`; binary values
/// (ids) are hex strings and timestamps RFC 3339.
pub fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut rows = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut rows);
        for b in batches {
            w.write(b)
                .map_err(|e| QueryError::Execution(e.to_string()))?;
        }
        w.finish()
            .map_err(|e| QueryError::Execution(e.to_string()))?;
    }
    if rows.is_empty() {
        rows.extend_from_slice(b"[]");
    }
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut out = Vec::with_capacity(rows.len() + 64);
    out.extend_from_slice(b"{\"columns\":");
    out.extend_from_slice(
        serde_json::to_string(&columns)
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"rows\":");
    out.extend_from_slice(&rows);
    out.push(b'}');
    Ok(out)
}
