//! Sightline's SLO stage.
//!
//! SLOs are read from YAML ([`spec`]: Sloth, OpenSLO and Sightline's own
//! span- and histogram-based SLIs). From them Sightline either generates
//! Prometheus rules ([`rules`], for users who keep Prometheus) or evaluates
//! them itself ([`evaluator`]): event counts per time bucket through the
//! query engine ([`sli`], [`buckets`]), burn rates per window, alert states
//! ([`state`]), notifications to Alertmanager ([`notify`]), SLO metrics
//! written back into the store ([`metrics`]), and the Prometheus
//! `/api/v1/rules` and `/api/v1/alerts` endpoints ([`api`]).

pub mod api;
pub mod buckets;
pub mod evaluator;
pub mod events;
pub mod lint;
pub mod metrics;
pub mod notify;
pub mod rules;
pub mod sli;
pub mod spec;
pub mod state;
pub mod windows;
pub mod yaml;

pub use evaluator::{Evaluator, SloConfig};
