//! SLO specifications: one model ([`Slo`]) read from three formats.
//!
//! - [`sloth`]: Sloth's `version: "prometheus/v1"`, and Sightline's own
//!   `version: sightline/v1`, a superset that adds SLIs computed straight
//!   from spans or histograms and per-SLO alert windows;
//! - [`openslo`]: OpenSLO `apiVersion: openslo/v1` documents.
//!
//! Every error names the file, line and field ([`SpecError`]).

pub mod openslo;
pub mod sloth;

use std::path::{Path, PathBuf};

use crate::windows::{self, BurnWindow};
use crate::yaml::{self, Field, FieldError};

/// One service-level objective, whatever format it was written in.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Unique id, `<service>-<name>` (Sloth's `sloth_id`).
    pub id: String,
    /// Service the SLO belongs to.
    pub service: String,
    /// SLO name, unique within the service.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Objective as a ratio in (0, 1), e.g. 0.999.
    pub objective: f64,
    /// The SLO period (the error budget's window).
    pub period: Period,
    /// Whether the budget counts events or good time slices.
    pub budgeting: Budgeting,
    /// How good and bad events are measured.
    pub sli: Sli,
    /// Labels added to every metric and alert of the SLO.
    pub labels: Vec<(String, String)>,
    /// The enabled alerts (page, ticket).
    pub alerts: Vec<AlertSpec>,
    /// Alerts stay quiet while the short window saw fewer events than this
    /// (the low-traffic guard). Not applicable to raw ratio SLIs.
    pub min_events: f64,
    /// Where the SLO was defined.
    pub origin: Origin,
}

/// Where a spec came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// File path as given.
    pub file: String,
    /// Line of the SLO's definition.
    pub line: usize,
}

/// The error budget's period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// Length in milliseconds.
    pub ms: i64,
    /// Calendar-aligned (the budget resets at the start of each period)
    /// rather than rolling.
    pub calendar: bool,
}

/// How the error budget is counted (OpenSLO `budgetingMethod`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budgeting {
    /// Bad events over all events.
    Occurrences,
    /// Bad time slices over all slices: a slice is bad when its good ratio
    /// is below `target`.
    Timeslices {
        /// Slice length in milliseconds (a whole number of minutes).
        slice_ms: i64,
        /// Good ratio a slice needs to count as good.
        target: f64,
    },
}

/// How an SLI is measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// PromQL counting bad and all events over `{{.window}}`.
    Events {
        /// Bad events.
        error_query: String,
        /// All events.
        total_query: String,
    },
    /// PromQL giving the bad ratio over `{{.window}}` directly.
    Raw {
        /// Bad ratio.
        error_ratio_query: String,
    },
    /// Straight from the `spans` table, no metrics needed.
    Spans(SpanSli),
    /// Latency from a histogram metric (classic or exponential).
    Histogram(HistogramSli),
}

/// A span-based SLI: availability (errors) or latency (slow spans).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSli {
    /// `service.name` of the spans.
    pub service: String,
    /// Only spans with this name.
    pub span_name: Option<String>,
    /// Only spans of this kind (OTLP number: 2 server, 3 client, …).
    pub span_kind: Option<i32>,
    /// Latency SLI: spans longer than this are bad. Without it the SLI is
    /// availability: status ERROR or HTTP status ≥ 500 is bad.
    pub latency_threshold_ns: Option<i64>,
}

/// A histogram latency SLI.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSli {
    /// Prometheus name of the histogram (without `_bucket`).
    pub metric: String,
    /// Label matchers, without braces (`job="checkout", route="/cart"`).
    pub matchers: String,
    /// Requests slower than this many seconds are bad.
    pub threshold_seconds: f64,
}

/// Alert severity: Sloth's two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl Severity {
    /// `page` / `ticket` (the `sloth_severity` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One alert of an SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// Page or ticket.
    pub severity: Severity,
    /// `alertname`.
    pub name: String,
    /// Labels sent with the alert.
    pub labels: Vec<(String, String)>,
    /// Annotations sent with the alert.
    pub annotations: Vec<(String, String)>,
    /// The alert fires when any window pair burns too fast.
    pub windows: Vec<BurnWindow>,
    /// How long the condition must hold before firing (pending until then).
    pub for_ms: i64,
}

/// A spec problem, located in its file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct SpecError {
    /// File path as given.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl SpecError {
    fn from_field(file: &str, e: FieldError) -> SpecError {
        SpecError {
            file: file.to_string(),
            line: e.line,
            field: e.field,
            message: e.message,
        }
    }
}

/// Reads the SLOs of one file. A file with any error yields no SLO: a half
/// loaded file would alert on some objectives and silently not on others.
pub fn load_file(path: &Path) -> Result<Vec<Slo>, Vec<SpecError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![SpecError {
            file: file.clone(),
            line: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    load_str(&file, &text)
}

/// Reads the SLOs of `text`, naming it `file` in errors.
pub fn load_str(file: &str, text: &str) -> Result<Vec<Slo>, Vec<SpecError>> {
    let docs = yaml::parse_documents(text).map_err(|e| {
        vec![SpecError {
            file: file.to_string(),
            line: e.line,
            field: "(yaml)".into(),
            message: e.message,
        }]
    })?;
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    let mut openslo_docs = Vec::new();
    for doc in &docs {
        let root = Field::root(doc);
        match format_of(&root) {
            Ok(Format::Sloth(native)) => match sloth::parse(file, &root, native) {
                Ok(mut s) => slos.append(&mut s),
                Err(e) => errors.extend(e.into_iter().map(|e| SpecError::from_field(file, e))),
            },
            Ok(Format::OpenSlo) => openslo_docs.push(root),
            Err(e) => errors.push(SpecError::from_field(file, e)),
        }
    }
    if !openslo_docs.is_empty() {
        match openslo::parse(file, &openslo_docs) {
            Ok(mut s) => slos.append(&mut s),
            Err(e) => errors.extend(e.into_iter().map(|e| SpecError::from_field(file, e))),
        }
    }
    check_unique(file, &slos, &mut errors);
    if errors.is_empty() {
        Ok(slos)
    } else {
        Err(errors)
    }
}

fn check_unique(file: &str, slos: &[Slo], errors: &mut Vec<SpecError>) {
    for (i, slo) in slos.iter().enumerate() {
        if slos[..i].iter().any(|o| o.id == slo.id) {
            errors.push(SpecError {
                file: file.to_string(),
                line: slo.origin.line,
                field: "name".into(),
                message: format!("SLO id {:?} is defined twice", slo.id),
            });
        }
    }
}

enum Format {
    /// Sloth; `true` for Sightline's superset.
    Sloth(bool),
    OpenSlo,
}

fn format_of(root: &Field) -> Result<Format, FieldError> {
    if let Some(v) = root.get("version")? {
        return match v.str()? {
            "prometheus/v1" => Ok(Format::Sloth(false)),
            "sightline/v1" => Ok(Format::Sloth(true)),
            other => Err(v.error(format!(
                "unknown version {other:?} (expected \"prometheus/v1\" (Sloth) or \"sightline/v1\")"
            ))),
        };
    }
    if let Some(v) = root.get("apiVersion")? {
        return match v.str()? {
            "openslo/v1" => Ok(Format::OpenSlo),
            other => Err(v.error(format!(
                "unknown apiVersion {other:?} (expected \"openslo/v1\")"
            ))),
        };
    }
    Err(root.error(
        "not an SLO document: expected `version: prometheus/v1` (Sloth), `version: sightline/v1` or `apiVersion: openslo/v1`",
    ))
}

/// Expands directories to their `*.yaml`/`*.yml` files (sorted), keeps files.
pub fn expand_paths(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            out.append(&mut files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Parses an objective given as a percentage (Sloth: `99.9`) into a ratio.
pub(crate) fn objective_percent(f: &Field) -> Result<f64, FieldError> {
    let pct = f.f64()?;
    if !(pct > 0.0 && pct < 100.0) {
        return Err(f.error(format!(
            "objective {pct} is out of range: it is a percentage strictly between 0 and 100 (e.g. 99.9)"
        )));
    }
    Ok(pct / 100.0)
}

/// Parses a Prometheus-style duration (`5m`, `1h30m`, `30d`).
pub(crate) fn duration_ms(f: &Field) -> Result<i64, FieldError> {
    let s = f.str()?;
    match promql_parser::util::parse_duration(s.trim()) {
        Ok(d) if d.as_millis() > 0 => Ok(d.as_millis() as i64),
        _ => Err(f.error(format!(
            "unknown duration {s:?} (use Prometheus durations such as 5m, 1h, 30d)"
        ))),
    }
}

/// Like [`duration_ms`] but zero is allowed (`for: 0s`).
pub(crate) fn duration_or_zero_ms(f: &Field) -> Result<i64, FieldError> {
    if f.str()?
        .trim()
        .trim_start_matches('0')
        .chars()
        .all(|c| c.is_ascii_alphabetic())
    {
        return Ok(0);
    }
    duration_ms(f)
}

/// Substitutes Sloth's `{{.window}}` (any spacing) with a PromQL duration.
pub fn render_window(template: &str, window: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        if inner == ".window" {
            out.push_str(window);
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Checks that a `{{.window}}` query parses as PromQL.
pub(crate) fn check_promql(f: &Field, needs_window: bool) -> Result<String, FieldError> {
    let q = f.str()?.to_string();
    if needs_window && render_window(&q, "\u{0}") == q {
        return Err(f.error("query has no {{.window}} placeholder for the SLI window"));
    }
    promql_parser::parser::parse(&render_window(&q, "5m"))
        .map_err(|e| f.error(format!("PromQL does not parse: {e}")))?;
    Ok(q)
}

/// The default page and ticket alerts for a period, named `name`.
pub(crate) fn default_alerts(name: &str, period_ms: i64) -> Vec<AlertSpec> {
    [Severity::Page, Severity::Ticket]
        .into_iter()
        .map(|severity| AlertSpec {
            severity,
            name: name.to_string(),
            labels: Vec::new(),
            annotations: Vec::new(),
            windows: windows::defaults(severity, period_ms),
            for_ms: 0,
        })
        .collect()
}

/// A label name valid in Prometheus.
pub(crate) fn check_label_names(f: &Field, labels: &[(String, String)]) -> Result<(), FieldError> {
    for (k, _) in labels {
        let mut chars = k.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(f.error(format!("{k:?} is not a valid label name")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_placeholder_any_spacing() {
        assert_eq!(
            render_window("rate(x[{{.window}}]) / rate(y[{{ .window }}])", "5m"),
            "rate(x[5m]) / rate(y[5m])"
        );
        assert_eq!(render_window("{{.other}}", "5m"), "{{.other}}");
    }
}
