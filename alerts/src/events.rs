//! Observable events of the SLO stage, each emitting its log line.

use crate::evaluator::AlertReport;
use crate::spec::Slo;
use crate::state::Transition;

/// An alert changed state.
pub struct AlertTransition<'a> {
    /// Its SLO.
    pub slo: &'a Slo,
    /// The alert after the change.
    pub alert: &'a AlertReport,
    /// Evaluation time (ms).
    pub time: i64,
}

impl AlertTransition<'_> {
    /// Logs the change (alert gauges are updated by the evaluator).
    pub fn emit(&self) {
        let what = match self.alert.transition {
            Transition::None => return,
            Transition::Pending => "pending",
            Transition::Fired => "firing",
            Transition::Resolved => "resolved",
            Transition::Cancelled => "no longer pending",
        };
        tracing::info!(
            slo = %self.slo.id,
            alert = %self.alert.spec.name,
            severity = self.alert.spec.severity.as_str(),
            burn_rate = self.alert.state.value,
            time = %crate::notify::rfc3339(self.time),
            "SLO alert {what}"
        );
    }
}
