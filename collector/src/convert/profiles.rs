//! Profile samples → the `profile_samples` table.
//!
//! Samples come from Sightline's own CPU profiler (the `ebpf-probes`
//! crate), not from OTLP, so they arrive as [`ProfileSample`] values. One
//! row is one distinct (process, stack) seen in a drain window with how
//! many times it was sampled.

use std::sync::Arc;

use arrow::array::{Int64Builder, ListBuilder, RecordBatch, StringBuilder};

use super::batch_from_columns;
use super::columns::{Column, ColumnsExt, timestamp_builder};

/// One aggregated CPU profile sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileSample {
    /// End of the window the samples were counted in (unix nanoseconds).
    pub time_unix_nano: i64,
    /// Host that ran the process.
    pub host_name: String,
    /// The process's `OTEL_SERVICE_NAME` (or `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`), so profiles join spans by service.
    pub service_name: Option<String>,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread name at the time of the sample.
    pub comm: String,
    /// Container id parsed from `/proc/<pid>/cgroup`.
    pub container_id: Option<String>,
    /// Kubernetes pod uid from the cgroup path.
    pub k8s_pod_uid: Option<String>,
    /// Frames from the root to the leaf; kernel frames end in `_[k]`.
    pub stack: Vec<String>,
    /// Times this stack was sampled.
    pub count: u64,
    /// Nanoseconds of CPU time one sample stands for (1e9 / frequency).
    pub period_nanos: i64,
}

/// Builds `profile_samples` batches.
pub struct ProfileSamplesBuilder {
    time: arrow::array::TimestampNanosecondBuilder,
    host_name: StringBuilder,
    service_name: StringBuilder,
    pid: Int64Builder,
    comm: StringBuilder,
    container_id: StringBuilder,
    k8s_pod_uid: StringBuilder,
    stack: ListBuilder<StringBuilder>,
    count: Int64Builder,
    period_nanos: Int64Builder,
}

impl Default for ProfileSamplesBuilder {
    fn default() -> Self {
        let item = Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Utf8,
            false,
        ));
        ProfileSamplesBuilder {
            time: timestamp_builder(),
            host_name: StringBuilder::new(),
            service_name: StringBuilder::new(),
            pid: Int64Builder::new(),
            comm: StringBuilder::new(),
            container_id: StringBuilder::new(),
            k8s_pod_uid: StringBuilder::new(),
            stack: ListBuilder::new(StringBuilder::new()).with_field(item),
            count: Int64Builder::new(),
            period_nanos: Int64Builder::new(),
        }
    }
}

impl ProfileSamplesBuilder {
    /// Appends one sample.
    pub fn append(&mut self, s: &ProfileSample) {
        self.time.append_value(s.time_unix_nano);
        self.host_name.append_value(&s.host_name);
        self.service_name.append_option(s.service_name.as_deref());
        self.pid.append_value(s.pid.into());
        self.comm.append_value(&s.comm);
        self.container_id.append_option(s.container_id.as_deref());
        self.k8s_pod_uid.append_option(s.k8s_pod_uid.as_deref());
        for frame in &s.stack {
            self.stack.values().append_value(frame);
        }
        self.stack.append(true);
        self.count
            .append_value(i64::try_from(s.count).unwrap_or(i64::MAX));
        self.period_nanos.append_value(s.period_nanos);
    }

    /// The batch of everything appended so far.
    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<Column> = Vec::new();
        cols.add("time", false, Arc::new(self.time.finish()));
        cols.add("host_name", false, Arc::new(self.host_name.finish()));
        cols.add("service_name", true, Arc::new(self.service_name.finish()));
        cols.add("pid", false, Arc::new(self.pid.finish()));
        cols.add("comm", false, Arc::new(self.comm.finish()));
        cols.add("container_id", true, Arc::new(self.container_id.finish()));
        cols.add("k8s_pod_uid", true, Arc::new(self.k8s_pod_uid.finish()));
        cols.add("stack", false, Arc::new(self.stack.finish()));
        cols.add("count", false, Arc::new(self.count.finish()));
        cols.add("period_nanos", false, Arc::new(self.period_nanos.finish()));
        batch_from_columns(cols)
    }
}

/// The batch holding `samples`.
pub fn profile_batch(samples: &[ProfileSample]) -> RecordBatch {
    let mut b = ProfileSamplesBuilder::default();
    samples.iter().for_each(|s| b.append(s));
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn one_row_per_sample_with_the_stack_as_a_list() {
        let batch = profile_batch(&[ProfileSample {
            time_unix_nano: 5,
            host_name: "h".into(),
            service_name: Some("checkout".into()),
            pid: 42,
            comm: "app".into(),
            stack: vec!["main".into(), "work".into()],
            count: 3,
            period_nanos: 10,
            ..Default::default()
        }]);
        assert_eq!(batch.num_rows(), 1);
        let stack = batch.column_by_name("stack").unwrap().as_list::<i32>();
        let frames = stack.value(0);
        let frames = frames.as_string::<i32>();
        assert_eq!(frames.value(0), "main");
        assert_eq!(frames.value(1), "work");
        assert!(batch.column_by_name("container_id").unwrap().is_null(0));
    }
}
