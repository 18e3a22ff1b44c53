//! Sightline's ingest stage.
//!
//! The path of one request through this crate:
//!
//! 1. [`receive`] — OTLP/gRPC and OTLP/HTTP receivers decode the body into an
//!    [`otlp::Payload`] (valid protobuf spans and log records are read
//!    straight into their Arrow batch by [`convert::wire`]);
//! 2. [`ingest::Ingest::export`] validates it (partial success), checks the
//!    [`buffer::MemoryBudget`], appends it to the [`wal`] and acknowledges;
//! 3. [`convert`] turns it into Arrow record batches per [`schema::Table`],
//!    which wait in the [`buffer`];
//! 4. [`storage`] flushes them to Parquet, after which the WAL is truncated;
//!    it also compacts small files and applies retention.
//!
//! [`admin`] serves health, readiness and the [`self_metrics`].

pub mod admin;
pub mod buffer;
pub mod convert;
pub mod events;
pub mod ingest;
pub mod otlp;
pub mod receive;
pub mod schema;
pub mod self_metrics;
pub mod storage;
pub mod wal;

pub use ingest::{CollectorConfig, Ingest};
