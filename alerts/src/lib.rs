//! Sightline's SLO stage.
//!
//! SLOs are read from YAML ([`spec`]: Sloth, OpenSLO and Sightline's own
//! span- and histogram-based SLIs). From them Sightline either generates
//! Prometheus rules ([`rules`], for users who keep Prometheus) or evaluates
//! them itself ([`evaluator`]): SLI ratios per window through the query
//! engine, burn rates, alert states, notifications to Alertmanager
//! ([`notify`]), SLO metrics written back into the store, and the
//! Prometheus `/api/v1/rules` and `/api/v1/alerts` endpoints ([`api`]).

pub mod spec;
pub mod windows;
pub mod yaml;
