//! CPU profiles: reading `profile_samples` and rendering what was read.
//!
//! The eBPF profiler (`ebpf-probes`) stores one row per (process, stack)
//! and drain window. [`load`] sums them over a time range and filters into a
//! [`Profile`]; [`render`] turns a profile into folded stacks, a flame graph
//! SVG or Grafana's nested-set rows, and [`pprof`] into the pprof protobuf
//! that `go tool pprof`, Pyroscope and speedscope read. [`api`] serves
//! them over HTTP, with Sightline's own profile on `/debug/pprof/profile`
//! ([`self_profile`]).

pub mod api;
pub mod pprof;
pub mod render;
pub mod self_profile;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use datafusion::functions::expr_fn::starts_with;
use datafusion::functions_aggregate::expr_fn::{max, sum};
use datafusion::prelude::{Expr, col, lit};
use datafusion::scalar::ScalarValue;

use crate::engine::QueryEngine;
use crate::error::QueryError;

/// One stack and how often it was sampled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stack {
    /// Frames from the root (the process name) to the leaf.
    pub frames: Vec<String>,
    /// Samples.
    pub value: u64,
}

/// Aggregated samples over a time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Distinct stacks, sorted by frames.
    pub stacks: Vec<Stack>,
    /// CPU nanoseconds one sample stands for.
    pub period_nanos: i64,
    /// Start of the range (unix nanoseconds).
    pub start_nanos: i64,
    /// Length of the range.
    pub duration_nanos: i64,
}

impl Profile {
    /// Builds a profile from stacks in any order, merging equal ones.
    pub fn from_stacks(
        stacks: impl IntoIterator<Item = Stack>,
        period_nanos: i64,
        start_nanos: i64,
        duration_nanos: i64,
    ) -> Profile {
        let mut merged = std::collections::BTreeMap::<Vec<String>, u64>::new();
        for s in stacks {
            *merged.entry(s.frames).or_default() += s.value;
        }
        Profile {
            stacks: merged
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(frames, value)| Stack { frames, value })
                .collect(),
            period_nanos,
            start_nanos,
            duration_nanos,
        }
    }

    /// All samples.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.value).sum()
    }
}

/// Which samples a flame graph shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFilter {
    /// Range start, unix milliseconds (inclusive).
    pub start_ms: i64,
    /// Range end, unix milliseconds (exclusive).
    pub end_ms: i64,
    /// A pid (all digits) or a process name (`comm`).
    pub process: Option<String>,
    /// A container id or its prefix (the 12-character short id works).
    pub container: Option<String>,
    /// `service.name` of the process (`OTEL_SERVICE_NAME`).
    pub service: Option<String>,
    /// Host name.
    pub host: Option<String>,
}

fn timestamp(ms: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ms.saturating_mul(1_000_000)),
        Some("UTC".into()),
    ))
}

impl ProfileFilter {
    fn predicate(&self) -> Expr {
        let mut e = col("time")
            .gt_eq(timestamp(self.start_ms))
            .and(col("time").lt(timestamp(self.end_ms)));
        if let Some(p) = &self.process {
            e = e.and(match p.parse::<i64>() {
                Ok(pid) => col("pid").eq(lit(pid)),
                Err(_) => col("comm").eq(lit(p.clone())),
            });
        }
        if let Some(c) = &self.container {
            e = e.and(starts_with(col("container_id"), lit(c.clone())));
        }
        if let Some(s) = &self.service {
            e = e.and(col("service_name").eq(lit(s.clone())));
        }
        if let Some(h) = &self.host {
            e = e.and(col("host_name").eq(lit(h.clone())));
        }
        e
    }
}

/// Sums the samples `filter` selects per (process name, stack); the
/// process name becomes the root frame.
pub async fn load(engine: &QueryEngine, filter: &ProfileFilter) -> Result<Profile, QueryError> {
    let df = engine
        .context()
        .table("profile_samples")
        .await?
        .filter(filter.predicate())?
        .aggregate(
            vec![col("comm"), col("stack")],
            vec![
                sum(col("count")).alias("value"),
                max(col("period_nanos")).alias("period"),
            ],
        )?;
    let mut stacks = Vec::new();
    let mut period = 0;
    engine
        .for_each_batch(df, |b| {
            let comm = b.column(0).as_string::<i32>();
            let stack = b.column(1).as_list::<i32>();
            let value = b.column(2).as_primitive::<Int64Type>();
            let p = b.column(3).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let frames = stack.value(i);
                let frames = frames.as_string::<i32>();
                let mut all = Vec::with_capacity(frames.len() + 1);
                all.push(comm.value(i).to_string());
                all.extend(frames.iter().flatten().map(str::to_string));
                stacks.push(Stack {
                    frames: all,
                    value: value.value(i).max(0) as u64,
                });
                if p.is_valid(i) {
                    period = period.max(p.value(i));
                }
            }
            Ok(())
        })
        .await?;
    let start = filter.start_ms.saturating_mul(1_000_000);
    let duration = (filter.end_ms - filter.start_ms).saturating_mul(1_000_000);
    Ok(Profile::from_stacks(stacks, period, start, duration))
}
