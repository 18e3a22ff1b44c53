//! Prometheus recording and alerting rules equivalent to Sloth's, for users
//! who keep evaluating SLOs in Prometheus (`sightline slo rules`).
//!
//! Per SLO: one recording rule per alert window
//! (`slo:sli_error:ratio_rate<window>`), the period's ratio averaged from
//! the shortest window, the metadata series (`slo:objective:ratio`,
//! `slo:error_budget:ratio`, burn rates, remaining budget) and the page and
//! ticket alerts, each an `or` of window pairs.

use serde::Serialize;

use crate::spec::{AlertSpec, Sli, Slo, render_window};
use crate::windows::{self, format_duration};

/// A rule file (`groups:`).
#[derive(Debug, Serialize)]
pub struct RuleFile {
    /// Rule groups, three per SLO.
    pub groups: Vec<Group>,
}

/// One rule group.
#[derive(Debug, Serialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Rules, evaluated in order.
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// Recording rule output name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Alerting rule name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL.
    pub expr: String,
    /// Pending duration of an alert.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Annotations (alerts).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Why an SLO has no Prometheus rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{id}: {reason}")]
pub struct Skipped {
    /// SLO id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// Generates the rules of `slos`; SLOs that Prometheus cannot evaluate
/// (span SLIs, time-slice budgets) are listed in the second value.
pub fn generate(slos: &[Slo]) -> (RuleFile, Vec<Skipped>) {
    let mut groups = Vec::new();
    let mut skipped = Vec::new();
    for slo in slos {
        match slo_groups(slo) {
            Ok(mut g) => groups.append(&mut g),
            Err(reason) => skipped.push(Skipped {
                id: slo.id.clone(),
                reason,
            }),
        }
    }
    (RuleFile { groups }, skipped)
}

/// The rule file as YAML.
pub fn to_yaml(file: &RuleFile) -> String {
    serde_yaml::to_string(file).expect("rule files always serialise")
}

/// The SLI's bad-event ratio over `window` as PromQL, or why there is none.
pub fn error_ratio_query(sli: &Sli, window: &str) -> Result<String, String> {
    match sli {
        Sli::Events { error_query, total_query } => Ok(format!(
            "(\n  {}\n)\n/\n(\n  {}\n)",
            render_window(error_query, window),
            render_window(total_query, window)
        )),
        Sli::Raw { error_ratio_query } => Ok(render_window(error_ratio_query, window)),
        Sli::Histogram(h) => {
            let (bad, total) = crate::sli::histogram_queries(h, h.threshold_seconds);
            Ok(format!(
                "(\n  {}\n)\n/\n(\n  {}\n)",
                render_window(&bad, window),
                render_window(&total, window)
            ))
        }
        Sli::Spans(_) => Err(
            "span-based SLIs read the spans table, which Prometheus does not have; Sightline evaluates them itself".into(),
        ),
    }
}

/// `sloth_id`, `sloth_service`, `sloth_slo` and the SLO's own labels.
pub fn slo_labels(slo: &Slo) -> std::collections::BTreeMap<String, String> {
    let mut l: std::collections::BTreeMap<String, String> = slo.labels.iter().cloned().collect();
    l.insert("sloth_id".into(), slo.id.clone());
    l.insert("sloth_service".into(), slo.service.clone());
    l.insert("sloth_slo".into(), slo.name.clone());
    l
}

fn selector(slo: &Slo) -> String {
    format!(
        "{{sloth_id=\"{}\", sloth_service=\"{}\", sloth_slo=\"{}\"}}",
        escape(&slo.id),
        escape(&slo.service),
        escape(&slo.name)
    )
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn record(name: String, expr: String, labels: std::collections::BTreeMap<String, String>) -> Rule {
    Rule {
        record: Some(name),
        alert: None,
        expr,
        for_: None,
        labels,
        annotations: Default::default(),
    }
}

fn slo_groups(slo: &Slo) -> Result<Vec<Group>, String> {
    if !matches!(slo.budgeting, crate::spec::Budgeting::Occurrences) {
        return Err("time-slice budgets have no Prometheus rule equivalent; Sightline evaluates them itself".into());
    }
    let mut wins = windows::distinct(slo.alerts.iter().flat_map(|a| a.windows.iter().copied()));
    if wins.is_empty() {
        wins.push(300_000);
    }
    let shortest = format_duration(wins[0]);
    let period = format_duration(slo.period.ms);
    let sel = selector(slo);
    let mut sli_rules = Vec::new();
    for w in &wins {
        let w = format_duration(*w);
        let mut labels = slo_labels(slo);
        labels.insert("sloth_window".into(), w.clone());
        sli_rules.push(record(
            format!("slo:sli_error:ratio_rate{w}"),
            error_ratio_query(&slo.sli, &w)?,
            labels,
        ));
    }
    let mut period_labels = slo_labels(slo);
    period_labels.insert("sloth_window".into(), period.clone());
    sli_rules.push(record(
        format!("slo:sli_error:ratio_rate{period}"),
        format!(
            "sum_over_time(slo:sli_error:ratio_rate{shortest}{sel}[{period}])\n/ ignoring (sloth_window)\ncount_over_time(slo:sli_error:ratio_rate{shortest}{sel}[{period}])"
        ),
        period_labels,
    ));
    let on = "on (sloth_id, sloth_slo, sloth_service) group_left";
    let meta = vec![
        record(
            "slo:objective:ratio".into(),
            format!("vector({})", slo.objective),
            slo_labels(slo),
        ),
        record(
            "slo:error_budget:ratio".into(),
            format!("vector(1 - {})", slo.objective),
            slo_labels(slo),
        ),
        record(
            "slo:time_period:days".into(),
            format!("vector({})", slo.period.ms as f64 / 86_400_000.0),
            slo_labels(slo),
        ),
        record(
            "slo:current_burn_rate:ratio".into(),
            format!("slo:sli_error:ratio_rate{shortest}{sel}\n/ {on}\nslo:error_budget:ratio{sel}"),
            slo_labels(slo),
        ),
        record(
            "slo:period_burn_rate:ratio".into(),
            format!("slo:sli_error:ratio_rate{period}{sel}\n/ {on}\nslo:error_budget:ratio{sel}"),
            slo_labels(slo),
        ),
        record(
            "slo:period_error_budget_remaining:ratio".into(),
            format!("1 - slo:period_burn_rate:ratio{sel}"),
            slo_labels(slo),
        ),
    ];
    let alerts = slo
        .alerts
        .iter()
        .map(|a| alert_rule(slo, a, &sel))
        .collect();
    Ok(vec![
        Group {
            name: format!("sloth-slo-sli-recordings-{}", slo.id),
            rules: sli_rules,
        },
        Group {
            name: format!("sloth-slo-meta-recordings-{}", slo.id),
            rules: meta,
        },
        Group {
            name: format!("sloth-slo-alerts-{}", slo.id),
            rules: alerts,
        },
    ])
}

fn alert_rule(slo: &Slo, a: &AlertSpec, sel: &str) -> Rule {
    let budget = 1.0 - slo.objective;
    let pairs: Vec<String> = a
        .windows
        .iter()
        .map(|w| {
            let threshold = format!("({} * {})", w.factor, crate::evaluator::round_budget(budget));
            format!(
                "(\n  max(slo:sli_error:ratio_rate{short}{sel} >= {threshold}) without (sloth_window)\n  and\n  max(slo:sli_error:ratio_rate{long}{sel} >= {threshold}) without (sloth_window)\n)",
                short = format_duration(w.short_ms),
                long = format_duration(w.long_ms),
            )
        })
        .collect();
    Rule {
        record: None,
        alert: Some(a.name.clone()),
        expr: pairs.join("\nor\n"),
        for_: (a.for_ms > 0).then(|| format_duration(a.for_ms)),
        // `alertname` comes from `alert:`; the `sloth_*` ids from the series.
        labels: crate::evaluator::alert_labels(slo, a)
            .into_iter()
            .filter(|(k, _)| k != "alertname")
            .collect(),
        annotations: crate::evaluator::alert_annotations(slo, a)
            .into_iter()
            .collect(),
    }
}
