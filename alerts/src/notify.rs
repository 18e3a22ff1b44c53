//! Delivering alerts: Prometheus Alertmanager's v2 API
//! (`POST /api/v2/alerts`) and generic webhooks (Alertmanager's webhook
//! payload shape), with retries and exponential backoff.
//!
//! Every round re-sends the firing alerts (and those resolved in the last
//! 15 minutes), as Prometheus does, so a delivery that fails for good is
//! repaired by the next round, and Alertmanager's de-duplication (labels +
//! `startsAt`) keeps receivers from hearing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use collector::self_metrics::SelfMetrics;
use serde::Serialize;

/// One alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Identity of the alert.
    pub labels: BTreeMap<String, String>,
    /// Descriptions.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 start.
    pub starts_at: String,
    /// RFC 3339 end: in the past for a resolved alert, a few resend
    /// intervals ahead for a firing one (so it expires if Sightline dies).
    pub ends_at: String,
    /// Link back to the SLO.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Whether this announces the end of the alert.
    #[serde(skip)]
    pub resolved: bool,
}

/// Formats milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where alerts go.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    alertmanagers: Vec<String>,
    webhooks: Vec<String>,
    attempts: u32,
    metrics: SelfMetrics,
}

/// A delivery that failed after every retry.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct DeliveryError {
    /// Receiver.
    pub url: String,
    /// Last failure.
    pub message: String,
}

impl Notifier {
    /// A notifier for Alertmanager base URLs (`http://am:9093`) and webhook
    /// URLs.
    pub fn new(
        alertmanagers: Vec<String>,
        webhooks: Vec<String>,
        metrics: SelfMetrics,
    ) -> Notifier {
        Notifier {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a TLS backend is compiled in"),
            alertmanagers: alertmanagers
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            webhooks,
            attempts: 4,
            metrics,
        }
    }

    /// Whether any receiver is configured.
    pub fn is_empty(&self) -> bool {
        self.alertmanagers.is_empty() && self.webhooks.is_empty()
    }

    /// Sends `alerts` to every receiver (concurrently); returns the
    /// receivers that failed after all retries.
    pub async fn send(&self, alerts: &[Notification]) -> Vec<DeliveryError> {
        if alerts.is_empty() {
            return Vec::new();
        }
        let am = self.alertmanagers.iter().map(|base| {
            let url = format!("{base}/api/v2/alerts");
            let body = serde_json::to_value(alerts).expect("alerts serialise");
            self.deliver("alertmanager", url, body)
        });
        let hooks = self
            .webhooks
            .iter()
            .map(|url| self.deliver("webhook", url.clone(), webhook_body(alerts)));
        let all: Vec<_> = am.chain(hooks).collect();
        futures::future::join_all(all)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    async fn deliver(
        &self,
        kind: &'static str,
        url: String,
        body: serde_json::Value,
    ) -> Result<(), DeliveryError> {
        let mut delay = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    self.metrics
                        .slo_notifications
                        .with_label_values(&[kind, "success"])
                        .inc();
                    return Ok(());
                }
                // A 4xx other than 429 will not get better by retrying.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    last = format!(
                        "HTTP {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    break;
                }
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
        self.metrics
            .slo_notifications
            .with_label_values(&[kind, "failure"])
            .inc();
        tracing::warn!(receiver = kind, %url, error = %last, "alert delivery failed; the next round sends again");
        Err(DeliveryError { url, message: last })
    }
}

/// Alertmanager's webhook shape, so receivers written for it work.
fn webhook_body(alerts: &[Notification]) -> serde_json::Value {
    let firing = alerts.iter().any(|a| !a.resolved);
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let status = if a.resolved { "resolved" } else { "firing" };
            serde_json::json!({
                "status": status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "endsAt": a.ends_at,
                "generatorURL": a.generator_url,
            })
        })
        .collect();
    serde_json::json!({
        "version": "4",
        "receiver": "sightline",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": items,
    })
}
