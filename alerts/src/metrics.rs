//! The SLO metrics written back into the store, so PromQL (and Grafana)
//! can graph them next to the SLIs: `sightline_slo_sli_ratio{window}`,
//! `sightline_slo_burn_rate{window}`,
//! `sightline_slo_error_budget_remaining_ratio` and
//! `sightline_slo_objective_ratio`, labelled like Sloth's series
//! (`sloth_id`, `sloth_service`, `sloth_slo`, the SLO's labels), under
//! `job="sightline"`.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::evaluator::{SloReport, WindowReport};
use crate::spec::Slo;
use crate::windows::format_duration;

use collector::otlp::string_kv as kv;

struct Points {
    t_ns: u64,
    sli: Vec<NumberDataPoint>,
    burn: Vec<NumberDataPoint>,
    budget: Vec<NumberDataPoint>,
    objective: Vec<NumberDataPoint>,
}

impl Points {
    fn point(&self, attrs: &[KeyValue], v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs.to_vec(),
            time_unix_nano: self.t_ns,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn window(&mut self, attrs: &[KeyValue], w: &WindowReport, name: &str) {
        let mut a = attrs.to_vec();
        a.push(kv("window", name));
        if let Some(r) = w.ratio {
            self.sli.push(self.point(&a, r));
        }
        if let Some(b) = w.burn_rate {
            self.burn.push(self.point(&a, b));
        }
    }
}

/// One OTLP request with every SLO's metrics at `t` (ms).
pub fn export_request(reports: &[(&Slo, &SloReport)], t: i64) -> ExportMetricsServiceRequest {
    let mut p = Points {
        t_ns: (t.max(0) as u64) * 1_000_000,
        sli: Vec::new(),
        burn: Vec::new(),
        budget: Vec::new(),
        objective: Vec::new(),
    };
    for (slo, report) in reports {
        let mut attrs = vec![
            kv("sloth_id", &slo.id),
            kv("sloth_service", &slo.service),
            kv("sloth_slo", &slo.name),
        ];
        attrs.extend(slo.labels.iter().map(|(k, v)| kv(k, v)));
        for w in &report.windows {
            p.window(&attrs, w, &format_duration(w.window_ms));
        }
        p.window(&attrs, &report.period, &format_duration(slo.period.ms));
        p.budget.push(p.point(&attrs, report.budget_remaining));
        p.objective.push(p.point(&attrs, slo.objective));
    }
    let gauge = |name: &str, description: &str, data_points: Vec<NumberDataPoint>| Metric {
        name: name.to_string(),
        description: description.to_string(),
        data: Some(metric::Data::Gauge(Gauge { data_points })),
        ..Default::default()
    };
    let metrics = vec![
        gauge(
            "sightline_slo_sli_ratio",
            "Bad-event ratio of the SLI over the window.",
            p.sli,
        ),
        gauge(
            "sightline_slo_burn_rate",
            "Error budget burn rate over the window (1 spends the budget exactly over the period).",
            p.burn,
        ),
        gauge(
            "sightline_slo_error_budget_remaining_ratio",
            "Share of the period's error budget left (negative when overspent).",
            p.budget,
        ),
        gauge(
            "sightline_slo_objective_ratio",
            "The SLO objective as a ratio.",
            p.objective,
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "sightline")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: metrics
                    .into_iter()
                    .filter(|m| match &m.data {
                        Some(metric::Data::Gauge(g)) => !g.data_points.is_empty(),
                        _ => false,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
