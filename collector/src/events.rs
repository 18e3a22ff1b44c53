//! Observable events: each is a typed struct that emits both its log line and
//! its metric, so the two never disagree.

use crate::receive::Transport;
use crate::schema::Signal;
use crate::self_metrics::SelfMetrics;

/// Items refused (invalid, over budget, or not made durable).
pub struct ItemsRejected<'a> {
    /// Signal of the request.
    pub signal: Signal,
    /// Transport it came on.
    pub transport: Transport,
    /// Short reason label: `invalid`, `overloaded`, `wal_error`, `decode`, `too_large`, `unsupported`.
    pub reason: &'static str,
    /// Items refused (0 when the body could not be decoded, so its items are unknown).
    pub count: u64,
    /// Detail for the log line.
    pub message: &'a str,
}

impl ItemsRejected<'_> {
    /// Logs the event and counts it.
    pub fn emit(&self, m: &SelfMetrics) {
        tracing::debug!(signal = %self.signal, transport = self.transport.as_str(), reason = self.reason,
            count = self.count, message = self.message, "items rejected");
        m.items_rejected
            .with_label_values(&[self.signal.as_str(), self.transport.as_str(), self.reason])
            .inc_by(self.count);
    }
}

/// A request finished, with the outcome label used in `sightline_receiver_requests_total`.
pub struct RequestCompleted {
    /// Signal of the request.
    pub signal: Signal,
    /// Transport it came on.
    pub transport: Transport,
    /// `ok`, `partial`, `invalid`, `too_large`, `unsupported`, `overloaded` or `error`.
    pub outcome: &'static str,
    /// Body bytes after decompression (0 when unknown).
    pub bytes: usize,
}

impl RequestCompleted {
    /// Logs the event and counts it.
    pub fn emit(&self, m: &SelfMetrics) {
        tracing::trace!(signal = %self.signal, transport = self.transport.as_str(), outcome = self.outcome,
            bytes = self.bytes, "export request");
        m.requests
            .with_label_values(&[self.signal.as_str(), self.transport.as_str(), self.outcome])
            .inc();
        m.request_bytes
            .with_label_values(&[self.signal.as_str(), self.transport.as_str()])
            .inc_by(self.bytes as u64);
    }
}
