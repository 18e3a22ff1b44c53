//! Sightline's query stage.
//!
//! [`QueryEngine`] is one DataFusion session whose tables
//! ([`catalog::StoreTable`]) union the rows still buffered by the ingest
//! stage with the Parquet files it wrote. On top of it:
//!
//! - [`sql`] — `POST /api/v1/sql` (JSON rows or an Arrow IPC stream);
//! - [`promql`] — a PromQL evaluator that loads only the series and time
//!   ranges a query selects, through DataFusion scans;
//! - [`prometheus`] — the Prometheus HTTP API Grafana's built-in datasource
//!   calls, and remote write;
//! - [`profiles`] — CPU flame graphs from `profile_samples` (SVG, folded,
//!   pprof, Grafana nested set) and Sightline's own `/debug/pprof/profile`;
//! - [`view_groups`] — `GROUP BY` one string column without hashing every
//!   row's string (a physical optimizer rule the engine installs).

pub mod catalog;
pub mod engine;
pub mod error;
pub mod events;
pub mod hex_ids;
pub mod hold;
pub mod indexed_reader;
pub mod pgwire;
pub mod profiles;
pub mod prometheus;
pub mod promql;
pub mod sql;
pub mod text;
pub mod view_groups;
pub mod views;

pub use engine::{QueryConfig, QueryEngine};
pub use error::QueryError;
