//! Sloth's `prometheus/v1` spec, and `sightline/v1`: the same layout plus
//! span and histogram SLIs, per-SLO periods, alert windows and `for`, and
//! the low-traffic guard.

use super::{
    AlertSpec, Budgeting, HistogramSli, Origin, Period, Severity, Sli, Slo, SpanSli,
    check_label_names, check_promql, default_alerts, duration_ms, objective_percent,
};
use crate::windows::BurnWindow;
use crate::yaml::{Field, FieldError};

const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;

/// Parses one document. `native` enables the `sightline/v1` fields.
pub fn parse(file: &str, root: &Field, native: bool) -> Result<Vec<Slo>, Vec<FieldError>> {
    let top = Top::parse(root, native).map_err(|e| vec![e])?;
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    let slos_field = root.req("slos").map_err(|e| vec![e])?;
    let list = slos_field.items().map_err(|e| vec![e])?;
    if list.is_empty() {
        return Err(vec![slos_field.error("no SLOs listed")]);
    }
    for item in list {
        match parse_slo(file, &top, &item, native) {
            Ok(slo) => slos.push(slo),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        Err(errors)
    }
}

/// Fields shared by all SLOs of a document.
struct Top {
    service: String,
    labels: Vec<(String, String)>,
    period_ms: i64,
    min_events: f64,
}

impl Top {
    fn parse(root: &Field, native: bool) -> Result<Top, FieldError> {
        let mut known = vec!["version", "service", "labels", "slos"];
        if native {
            known.extend(["period", "min_events"]);
        }
        root.only(&known)?;
        let service = root.req("service")?.str()?.to_string();
        let labels = match root.get("labels")? {
            Some(f) => labels(&f)?,
            None => Vec::new(),
        };
        Ok(Top {
            service,
            labels,
            period_ms: match root.get("period")? {
                Some(f) => period(&f)?,
                None => THIRTY_DAYS_MS,
            },
            min_events: match root.get("min_events")? {
                Some(f) => non_negative(&f)?,
                None => 0.0,
            },
        })
    }
}

fn labels(f: &Field) -> Result<Vec<(String, String)>, FieldError> {
    let l = f.string_map()?;
    check_label_names(f, &l)?;
    Ok(l)
}

fn period(f: &Field) -> Result<i64, FieldError> {
    let ms = duration_ms(f)?;
    if ms < 86_400_000 {
        return Err(
            f.error("an SLO period shorter than a day leaves no room for burn-rate windows")
        );
    }
    Ok(ms)
}

fn non_negative(f: &Field) -> Result<f64, FieldError> {
    let v = f.f64()?;
    if v < 0.0 {
        return Err(f.error("must not be negative"));
    }
    Ok(v)
}

fn parse_slo(file: &str, top: &Top, f: &Field, native: bool) -> Result<Slo, FieldError> {
    let mut known = vec![
        "name",
        "objective",
        "description",
        "labels",
        "sli",
        "alerting",
    ];
    if native {
        known.extend(["period", "min_events"]);
    }
    f.only(&known)?;
    let name = f.req("name")?.str()?.to_string();
    let objective = objective_percent(&f.req("objective")?)?;
    let mut slo_labels = top.labels.clone();
    if let Some(l) = f.get("labels")? {
        slo_labels.extend(labels(&l)?);
    }
    let period_ms = match f.get("period")? {
        Some(p) => period(&p)?,
        None => top.period_ms,
    };
    let sli = parse_sli(&f.req("sli")?, &top.service, native)?;
    let alerts = match f.get("alerting")? {
        Some(a) => parse_alerting(&a, period_ms, native)?,
        None => default_alerts("SLOErrorBudgetBurn", period_ms),
    };
    Ok(Slo {
        id: format!("{}-{name}", top.service),
        service: top.service.clone(),
        name,
        description: match f.get("description")? {
            Some(d) => d.str()?.to_string(),
            None => String::new(),
        },
        objective,
        period: Period {
            ms: period_ms,
            calendar: false,
        },
        budgeting: Budgeting::Occurrences,
        sli,
        labels: slo_labels,
        alerts,
        min_events: match f.get("min_events")? {
            Some(m) => non_negative(&m)?,
            None => top.min_events,
        },
        origin: Origin {
            file: file.to_string(),
            line: f.line(),
        },
    })
}

fn parse_sli(f: &Field, service: &str, native: bool) -> Result<Sli, FieldError> {
    let kinds: &[&str] = if native {
        &["events", "raw", "spans", "histogram"]
    } else {
        &["events", "raw", "plugin"]
    };
    f.only(kinds)?;
    let entries = f.entries()?;
    let [(kind, body)] = entries.as_slice() else {
        return Err(f.error(format!(
            "exactly one SLI kind is needed: one of {}",
            kinds.join(", ")
        )));
    };
    match *kind {
        "events" => {
            body.only(&["error_query", "total_query"])?;
            Ok(Sli::Events {
                error_query: check_promql(&body.req("error_query")?, true)?,
                total_query: check_promql(&body.req("total_query")?, true)?,
            })
        }
        "raw" => {
            body.only(&["error_ratio_query"])?;
            Ok(Sli::Raw {
                error_ratio_query: check_promql(&body.req("error_ratio_query")?, true)?,
            })
        }
        "spans" => parse_spans(body, service).map(Sli::Spans),
        "histogram" => parse_histogram(body).map(Sli::Histogram),
        _ => Err(body.error(
            "Sloth SLI plugins are Go code and cannot run here: write the plugin's queries as sli.events",
        )),
    }
}

fn parse_spans(f: &Field, service: &str) -> Result<SpanSli, FieldError> {
    f.only(&["service", "span_name", "span_kind", "latency_threshold"])?;
    Ok(SpanSli {
        service: match f.get("service")? {
            Some(s) => s.str()?.to_string(),
            None => service.to_string(),
        },
        span_name: f
            .get("span_name")?
            .map(|s| s.str().map(str::to_string))
            .transpose()?,
        span_kind: f.get("span_kind")?.map(|k| span_kind(&k)).transpose()?,
        latency_threshold_ns: f
            .get("latency_threshold")?
            .map(|d| duration_ms(&d).map(|ms| ms * 1_000_000))
            .transpose()?,
    })
}

fn span_kind(f: &Field) -> Result<i32, FieldError> {
    Ok(match f.str()?.to_ascii_lowercase().as_str() {
        "internal" | "1" => 1,
        "server" | "2" => 2,
        "client" | "3" => 3,
        "producer" | "4" => 4,
        "consumer" | "5" => 5,
        other => {
            return Err(f.error(format!(
                "unknown span kind {other:?} (internal, server, client, producer, consumer)"
            )));
        }
    })
}

fn parse_histogram(f: &Field) -> Result<HistogramSli, FieldError> {
    f.only(&["metric", "selector", "threshold"])?;
    let metric_f = f.req("metric")?;
    let metric = metric_f.str()?.trim_end_matches("_bucket").to_string();
    let matchers = match f.get("selector")? {
        Some(s) => {
            let text = s.str()?.trim();
            let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
            let Some(inner) = inner else {
                return Err(
                    s.error("a selector is label matchers in braces, e.g. {job=\"checkout\"}")
                );
            };
            inner.trim().to_string()
        }
        None => String::new(),
    };
    let probe = format!("{metric}_bucket{{{matchers}}}");
    promql_parser::parser::parse(&probe)
        .map_err(|e| metric_f.error(format!("{probe} does not parse as a PromQL selector: {e}")))?;
    let threshold = f.req("threshold")?;
    Ok(HistogramSli {
        metric,
        matchers,
        threshold_seconds: duration_ms(&threshold)? as f64 / 1000.0,
    })
}

fn parse_alerting(f: &Field, period_ms: i64, native: bool) -> Result<Vec<AlertSpec>, FieldError> {
    f.only(&[
        "name",
        "labels",
        "annotations",
        "page_alert",
        "ticket_alert",
    ])?;
    let name = match f.get("name")? {
        Some(n) => n.str()?.to_string(),
        None => "SLOErrorBudgetBurn".to_string(),
    };
    let common_labels = f
        .get("labels")?
        .map(|l| labels(&l))
        .transpose()?
        .unwrap_or_default();
    let common_ann = f
        .get("annotations")?
        .map(|a| a.string_map())
        .transpose()?
        .unwrap_or_default();
    let mut alerts = Vec::new();
    for mut alert in default_alerts(&name, period_ms) {
        let key = match alert.severity {
            Severity::Page => "page_alert",
            Severity::Ticket => "ticket_alert",
        };
        alert.labels = common_labels.clone();
        alert.annotations = common_ann.clone();
        if let Some(a) = f.get(key)?
            && !customise(&a, &mut alert, native)?
        {
            continue;
        }
        alerts.push(alert);
    }
    Ok(alerts)
}

/// Applies a `page_alert`/`ticket_alert` block; false when disabled.
fn customise(f: &Field, alert: &mut AlertSpec, native: bool) -> Result<bool, FieldError> {
    let mut known = vec!["labels", "annotations", "disable"];
    if native {
        known.extend(["windows", "for"]);
    }
    f.only(&known)?;
    if let Some(d) = f.get("disable")?
        && d.bool()?
    {
        return Ok(false);
    }
    if let Some(l) = f.get("labels")? {
        alert.labels.extend(labels(&l)?);
    }
    if let Some(a) = f.get("annotations")? {
        alert.annotations.extend(a.string_map()?);
    }
    if let Some(w) = f.get("windows")? {
        alert.windows = w.items()?.iter().map(window).collect::<Result<_, _>>()?;
        if alert.windows.is_empty() {
            return Err(w.error("at least one window pair is needed (or disable: true)"));
        }
    }
    if let Some(d) = f.get("for")? {
        alert.for_ms = super::duration_or_zero_ms(&d)?;
    }
    Ok(true)
}

fn window(f: &Field) -> Result<BurnWindow, FieldError> {
    f.only(&["long", "short", "burn_rate"])?;
    let long = f.req("long")?;
    let long_ms = duration_ms(&long)?;
    let short_ms = match f.get("short")? {
        Some(s) => duration_ms(&s)?,
        None => long_ms / 12,
    };
    if short_ms > long_ms {
        return Err(long.error("the long window must not be shorter than the short one"));
    }
    let factor_f = f.req("burn_rate")?;
    let factor = factor_f.f64()?;
    if factor <= 0.0 {
        return Err(factor_f.error("a burn rate threshold must be positive"));
    }
    Ok(BurnWindow {
        long_ms,
        short_ms,
        factor,
    })
}
