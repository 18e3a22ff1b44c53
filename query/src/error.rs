//! Query errors, each with the HTTP status and Prometheus `errorType` it is
//! reported with.

use std::time::Duration;

use datafusion::error::DataFusionError;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is wrong (syntax, unknown table/column/function,
    /// wrong types, a forbidden statement).
    #[error("{0}")]
    BadQuery(String),
    /// The query ran longer than the configured timeout.
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    /// The query needed more memory than the pool allows even with spilling.
    #[error("query needs more memory than allowed: {0}")]
    ResourcesExhausted(String),
    /// The result is larger than the row cap.
    #[error("query returns more than {0} rows; add a LIMIT or narrow the time range")]
    TooManyRows(usize),
    /// A PromQL query touches more series or samples than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Evaluation failed on the data (e.g. duplicate series in a match
    /// group), as Prometheus' `execution` errors.
    #[error("{0}")]
    Eval(String),
    /// Execution failed for another reason (I/O, corrupt file, internal).
    #[error("{0}")]
    Execution(String),
    /// A single-use resource (the self-profiler) is busy.
    #[error("{0}")]
    Conflict(String),
}

impl QueryError {
    /// Classifies a DataFusion error.
    pub fn from_datafusion(e: DataFusionError) -> QueryError {
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(..) => QueryError::BadQuery(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(..) => {
                QueryError::ResourcesExhausted(e.strip_backtrace())
            }
            _ => QueryError::Execution(e.strip_backtrace()),
        }
    }

    /// HTTP status for this error (Prometheus API conventions).
    pub fn status(&self) -> u16 {
        match self {
            QueryError::BadQuery(_) => 400,
            QueryError::Timeout(_) => 503,
            QueryError::ResourcesExhausted(_)
            | QueryError::TooManyRows(_)
            | QueryError::TooLarge(_)
            | QueryError::Eval(_) => 422,
            QueryError::Execution(_) => 500,
            QueryError::Conflict(_) => 409,
        }
    }

    /// Prometheus `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadQuery(_) => "bad_data",
            QueryError::Timeout(_) => "timeout",
            QueryError::ResourcesExhausted(_)
            | QueryError::TooManyRows(_)
            | QueryError::TooLarge(_)
            | QueryError::Eval(_) => "execution",
            QueryError::Execution(_) => "internal",
            QueryError::Conflict(_) => "unavailable",
        }
    }
}
