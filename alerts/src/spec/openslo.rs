//! OpenSLO `openslo/v1`: `SLO` documents with inline or referenced `SLI`s
//! and `AlertPolicy`s (other kinds, such as `Service`, are accepted and
//! ignored).

use super::{
    AlertSpec, Budgeting, Origin, Period, Severity, Sli, Slo, check_label_names, default_alerts,
};
use crate::windows::BurnWindow;
use crate::yaml::{Field, FieldError, Kind};

/// Parses the OpenSLO documents of one file together (so references between
/// them resolve).
pub fn parse(file: &str, docs: &[Field]) -> Result<Vec<Slo>, Vec<FieldError>> {
    let mut slos = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        let kind = match doc.req("kind").and_then(|k| k.str().map(str::to_string)) {
            Ok(k) => k,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if kind == "SLO" {
            match parse_slo(file, doc, docs) {
                Ok(mut s) => slos.append(&mut s),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(slos)
    } else {
        Err(errors)
    }
}

/// The document of `kind` named `name` among `docs`.
fn find<'a>(docs: &'a [Field<'a>], kind: &str, name: &str) -> Option<&'a Field<'a>> {
    docs.iter().find(|d| {
        let k = d.get("kind").ok().flatten().and_then(|k| k.str().ok());
        let n = d
            .get("metadata")
            .ok()
            .flatten()
            .and_then(|m| m.get("name").ok().flatten())
            .and_then(|n| n.str().ok());
        k == Some(kind) && n == Some(name)
    })
}

fn parse_slo(file: &str, doc: &Field, docs: &[Field]) -> Result<Vec<Slo>, FieldError> {
    doc.only(&["apiVersion", "kind", "metadata", "spec"])?;
    let meta = doc.req("metadata")?;
    let name = meta.req("name")?.str()?.to_string();
    let labels = match meta.get("labels")? {
        Some(l) => openslo_labels(&l)?,
        None => Vec::new(),
    };
    let spec = doc.req("spec")?;
    let service = spec.req("service")?.str()?.to_string();
    let sli = indicator(&spec, docs)?;
    let period = time_window(&spec.req("timeWindow")?)?;
    let method = match spec.get("budgetingMethod")? {
        Some(m) => m,
        None => spec.req("budgetingMethod")?,
    };
    let method_name = method.str()?.to_string();
    let alerts = match spec.get("alertPolicies")? {
        Some(p) => alert_policies(&p, docs)?,
        None => default_alerts("SLOErrorBudgetBurn", period.ms),
    };
    let objectives = spec.req("objectives")?;
    let items = objectives.items()?;
    if items.is_empty() {
        return Err(objectives.error("at least one objective is needed"));
    }
    let mut out = Vec::new();
    for (i, o) in items.iter().enumerate() {
        let (objective, budgeting) = objective(o, &method_name, &method)?;
        let suffix = match (items.len(), o.get("displayName")?) {
            (1, _) => String::new(),
            (_, Some(d)) => format!("-{}", d.str()?),
            (_, None) => format!("-{i}"),
        };
        out.push(Slo {
            id: format!("{service}-{name}{suffix}"),
            service: service.clone(),
            name: format!("{name}{suffix}"),
            description: spec
                .get("description")?
                .map(|d| d.str().map(str::to_string))
                .transpose()?
                .unwrap_or_default(),
            objective,
            period,
            budgeting,
            sli: sli.clone(),
            labels: labels.clone(),
            alerts: alerts.clone(),
            min_events: 0.0,
            origin: Origin {
                file: file.to_string(),
                line: doc.line(),
            },
        });
    }
    Ok(out)
}

/// OpenSLO labels are a map of strings or of string lists (joined by `,`).
fn openslo_labels(f: &Field) -> Result<Vec<(String, String)>, FieldError> {
    let mut out = Vec::new();
    for (k, v) in f.entries()? {
        let value = match &v.node().kind {
            Kind::Seq(_) => v
                .items()?
                .iter()
                .map(|i| i.str().map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => v.str()?.to_string(),
        };
        out.push((k.to_string(), value));
    }
    check_label_names(f, &out)?;
    Ok(out)
}

fn indicator(spec: &Field, docs: &[Field]) -> Result<Sli, FieldError> {
    if let Some(inline) = spec.get("indicator")? {
        return sli_spec(&inline.req("spec")?);
    }
    let r = spec.req("indicatorRef")?;
    let name = r.str()?;
    let doc = find(docs, "SLI", name)
        .ok_or_else(|| r.error(format!("no SLI document named {name:?} in this file")))?;
    sli_spec(&doc.req("spec")?)
}

fn sli_spec(spec: &Field) -> Result<Sli, FieldError> {
    if spec.get("thresholdMetric")?.is_some() {
        return Err(spec.error("thresholdMetric SLIs are not supported: use ratioMetric"));
    }
    let ratio = spec.req("ratioMetric")?;
    ratio.only(&["counter", "good", "bad", "total", "rawType", "raw"])?;
    if ratio.get("raw")?.is_some() {
        let raw = ratio.req("raw")?;
        let q = query(&raw, false)?;
        return Ok(
            match ratio
                .get("rawType")?
                .map(|t| t.str().map(str::to_string))
                .transpose()?
                .as_deref()
            {
                Some("success") => Sli::Raw {
                    error_ratio_query: format!("1 - ({q})"),
                },
                _ => Sli::Raw {
                    error_ratio_query: q,
                },
            },
        );
    }
    let total = query(&ratio.req("total")?, true)?;
    let error_query = match (ratio.get("bad")?, ratio.get("good")?) {
        (Some(bad), _) => query(&bad, true)?,
        (None, Some(good)) => format!("({total}) - ({})", query(&good, true)?),
        (None, None) => {
            return Err(ratio.error("a ratioMetric needs `good` or `bad` next to `total`"));
        }
    };
    Ok(Sli::Events {
        error_query,
        total_query: total,
    })
}

/// A Prometheus `metricSource` query as a `{{.window}}` template. A bare
/// counter selector is wrapped in `sum(increase(…[{{.window}}]))`.
fn query(f: &Field, counter: bool) -> Result<String, FieldError> {
    let src = f.req("metricSource")?;
    let ty = src.req("type")?;
    if !ty.str()?.eq_ignore_ascii_case("prometheus") {
        return Err(ty.error(format!(
            "metric source type {:?} is not supported (Prometheus is)",
            ty.str()?
        )));
    }
    let qf = src.req("spec")?.req("query")?;
    let q = qf.str()?.trim().to_string();
    if super::render_window(&q, "\u{0}") != q {
        return super::check_promql(&qf, true);
    }
    match promql_parser::parser::parse(&q) {
        Ok(promql_parser::parser::Expr::VectorSelector(_)) if counter => {
            Ok(format!("sum(increase({q}[{{{{.window}}}}]))"))
        }
        Ok(_) => Err(qf.error("the query needs a {{.window}} placeholder (or be a bare counter selector, which is summed with increase over the window)")),
        Err(e) => Err(qf.error(format!("PromQL does not parse: {e}"))),
    }
}

fn time_window(f: &Field) -> Result<Period, FieldError> {
    let items = f.items()?;
    let [w] = items.as_slice() else {
        return Err(f.error("exactly one time window is needed"));
    };
    let d = w.req("duration")?;
    let ms = calendar_duration(&d)?;
    let rolling = match w.get("isRolling")? {
        Some(r) => r.bool()?,
        None => w.get("calendar")?.is_none(),
    };
    if ms < 86_400_000 {
        return Err(
            d.error("an SLO period shorter than a day leaves no room for burn-rate windows")
        );
    }
    Ok(Period {
        ms,
        calendar: !rolling,
    })
}

/// OpenSLO durations: a number and one of m h d w M Q Y (months are 30
/// days, quarters 90, years 365 for burn-rate purposes).
fn calendar_duration(f: &Field) -> Result<i64, FieldError> {
    let s = f.str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let day = 86_400_000i64;
    let size = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => day,
        "w" => 7 * day,
        "M" => 30 * day,
        "Q" => 90 * day,
        "Y" => 365 * day,
        _ => 0,
    };
    match n.parse::<i64>() {
        Ok(n) if n > 0 && size > 0 => Ok(n * size),
        _ => Err(f.error(format!(
            "unknown duration {s:?} (a number and one of s m h d w M Q Y)"
        ))),
    }
}

fn objective(o: &Field, method: &str, method_f: &Field) -> Result<(f64, Budgeting), FieldError> {
    let target = match (o.get("target")?, o.get("targetPercent")?) {
        (Some(t), _) => {
            let v = t.f64()?;
            if !(v > 0.0 && v < 1.0) {
                return Err(t.error(format!("objective target {v} is out of range: a ratio strictly between 0 and 1 (e.g. 0.999)")));
            }
            v
        }
        (None, Some(p)) => super::objective_percent(&p)?,
        (None, None) => return Err(o.req("target").unwrap_err()),
    };
    let budgeting = match method {
        "Occurrences" => Budgeting::Occurrences,
        "Timeslices" => {
            let tf = o.req("timeSliceTarget")?;
            let t = tf.f64()?;
            if !(t > 0.0 && t <= 1.0) {
                return Err(tf.error("timeSliceTarget is a ratio in (0, 1]"));
            }
            let wf = o.req("timeSliceWindow")?;
            let slice_ms = super::duration_ms(&wf)?;
            if slice_ms % 60_000 != 0 {
                return Err(wf.error("time slices must be whole minutes"));
            }
            Budgeting::Timeslices {
                slice_ms,
                target: t,
            }
        }
        other => {
            return Err(method_f.error(format!(
                "budgeting method {other:?} is not supported (Occurrences, Timeslices)"
            )));
        }
    };
    Ok((target, budgeting))
}

fn alert_policies(f: &Field, docs: &[Field]) -> Result<Vec<AlertSpec>, FieldError> {
    let mut alerts: Vec<AlertSpec> = Vec::new();
    for p in f.items()? {
        let policy = match &p.node().kind {
            Kind::Scalar { .. } => {
                let name = p.str()?;
                find(docs, "AlertPolicy", name)
                    .ok_or_else(|| p.error(format!("no AlertPolicy named {name:?} in this file")))?
                    .clone()
            }
            _ => match p.get("alertPolicyRef")? {
                Some(r) => {
                    let name = r.str()?;
                    find(docs, "AlertPolicy", name)
                        .ok_or_else(|| {
                            r.error(format!("no AlertPolicy named {name:?} in this file"))
                        })?
                        .clone()
                }
                None => p,
            },
        };
        let name = policy.req("metadata")?.req("name")?.str()?.to_string();
        for c in policy.req("spec")?.req("conditions")?.items()? {
            let (severity, window, for_ms) = condition(&c, docs)?;
            match alerts
                .iter_mut()
                .find(|a| a.name == name && a.severity == severity)
            {
                Some(a) => a.windows.push(window),
                None => alerts.push(AlertSpec {
                    severity,
                    name: name.clone(),
                    labels: Vec::new(),
                    annotations: Vec::new(),
                    windows: vec![window],
                    for_ms,
                }),
            }
        }
    }
    Ok(alerts)
}

fn condition(c: &Field, docs: &[Field]) -> Result<(Severity, BurnWindow, i64), FieldError> {
    let c = match c.get("conditionRef")? {
        Some(r) => {
            let name = r.str()?;
            find(docs, "AlertCondition", name)
                .ok_or_else(|| r.error(format!("no AlertCondition named {name:?} in this file")))?
                .clone()
        }
        None => c.clone(),
    };
    let spec = c.req("spec")?;
    let severity = match spec.req("severity")?.str()?.to_ascii_lowercase().as_str() {
        "page" | "critical" | "high" => Severity::Page,
        _ => Severity::Ticket,
    };
    let cond = spec.req("condition")?;
    let kind = cond.req("kind")?;
    if !kind.str()?.eq_ignore_ascii_case("burnrate") {
        return Err(kind.error("only burnrate alert conditions are supported"));
    }
    let threshold = cond.req("threshold")?.f64()?;
    let long_ms = super::duration_ms(&cond.req("lookbackWindow")?)?;
    let for_ms = match cond.get("alertAfter")? {
        Some(a) => super::duration_or_zero_ms(&a)?,
        None => 0,
    };
    Ok((
        severity,
        BurnWindow {
            long_ms,
            short_ms: long_ms / 12,
            factor: threshold,
        },
        for_ms,
    ))
}
