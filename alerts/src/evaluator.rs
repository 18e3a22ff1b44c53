//! The SLO evaluator: every `eval_interval`, refresh each SLO's event
//! buckets through the query engine, compute the SLI ratio and burn rate
//! per window and the remaining error budget, move each alert through
//! inactive → pending → firing → resolved, persist the states, write the
//! SLO metrics back into the store and notify.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use collector::self_metrics::SelfMetrics;
use serde::{Deserialize, Serialize};

use crate::buckets::{self, Buckets, COARSE_MS};
use crate::notify::{Notification, Notifier, rfc3339};
use crate::sli::{self, Counts, PromqlSli};
use crate::spec::{AlertSpec, Sli, Slo, SpecError};
use crate::state::{AlertState, Phase, StateFile, Transition};
use crate::windows::{self, format_duration};
use query::{QueryEngine, QueryError};

/// Evaluator settings (`slo:` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// SLO files or directories of `*.yaml` files.
    pub files: Vec<PathBuf>,
    /// How often SLOs are evaluated.
    #[serde(with = "humantime_serde")]
    pub eval_interval: Duration,
    /// Width of the event buckets SLIs are counted in. PromQL SLIs need at
    /// least two samples per bucket (scrape or export interval at most half
    /// of it).
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
    /// Alertmanager base URLs (`http://alertmanager:9093`).
    pub alertmanager_urls: Vec<String>,
    /// Webhook URLs that receive Alertmanager-style webhook payloads.
    pub webhook_urls: Vec<String>,
    /// How often firing alerts are sent again.
    #[serde(with = "humantime_serde")]
    pub resend_delay: Duration,
    /// Write `sightline_slo_*` metrics into the store.
    pub write_metrics: bool,
    /// Base URL of this server, for alert links.
    pub external_url: String,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            files: Vec::new(),
            eval_interval: Duration::from_secs(30),
            bucket: Duration::from_secs(60),
            alertmanager_urls: Vec::new(),
            webhook_urls: Vec::new(),
            resend_delay: Duration::from_secs(60),
            write_metrics: true,
            external_url: String::new(),
        }
    }
}

/// How long resolved alerts are re-announced (Prometheus does the same).
const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// Each round re-reads the newest two buckets (late spans, scrape jitter);
/// this often the fine buckets are re-read in full, so data that arrives
/// later still than that (retried exports, backfills) is counted.
const REBUILD_MS: i64 = 10 * 60_000;

/// SLI ratio and burn rate over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowReport {
    /// Window length (ms).
    pub window_ms: i64,
    /// Bad and total events in it.
    pub counts: Counts,
    /// Bad ratio; `None` without events.
    pub ratio: Option<f64>,
    /// Ratio over the error budget (1 spends the budget exactly).
    pub burn_rate: Option<f64>,
}

/// One alert's outcome in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReport {
    /// The alert.
    pub spec: AlertSpec,
    /// Whether some window pair burned too fast.
    pub condition: bool,
    /// Its state after the round.
    pub state: AlertState,
    /// What the round changed.
    pub transition: Transition,
}

/// One SLO at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct SloReport {
    /// Evaluation time (ms).
    pub time: i64,
    /// Per alert window, shortest first.
    pub windows: Vec<WindowReport>,
    /// Over the SLO period (or since the calendar period began).
    pub period: WindowReport,
    /// 1 − period burn rate (negative once the budget is overspent).
    pub budget_remaining: f64,
    /// Per alert.
    pub alerts: Vec<AlertReport>,
}

/// What the API shows about one SLO.
#[derive(Debug, Clone)]
pub struct SloStatus {
    /// The spec.
    pub slo: Slo,
    /// Last successful evaluation.
    pub report: Option<SloReport>,
    /// Last evaluation error, if the last round failed.
    pub error: Option<String>,
    /// Non-fatal remarks (e.g. a threshold snapped to a bucket).
    pub warnings: Vec<String>,
}

/// Everything the API shows.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Per SLO.
    pub slos: Vec<SloStatus>,
    /// Files refused at load.
    pub load_errors: Vec<SpecError>,
    /// Evaluation interval.
    pub interval: Duration,
}

/// Shared view of the evaluator's latest round.
pub type SharedStatus = Arc<RwLock<Status>>;

struct Runtime {
    slo: Slo,
    promql: Option<PromqlSli>,
    buckets: Buckets,
    last_floor: Option<i64>,
    rebuilt_at: i64,
    warnings: Vec<String>,
    error: Option<String>,
    report: Option<SloReport>,
}

impl Runtime {
    /// The first fine bucket end to re-read at `t`.
    fn refresh_from(&self, t: i64) -> i64 {
        let width = self.buckets.width();
        let full = Buckets::fine_start(t) + width;
        match self.last_floor {
            Some(last) if t - self.rebuilt_at < REBUILD_MS => (last - 2 * width).max(full),
            _ => full,
        }
    }
}

/// The result of one round.
#[derive(Debug, Default)]
pub struct Round {
    /// Alerts to send.
    pub notifications: Vec<Notification>,
    /// Whether any alert started or stopped firing.
    pub changed: bool,
    /// SLOs that failed.
    pub errors: usize,
}

/// Evaluates a set of SLOs.
pub struct Evaluator {
    engine: QueryEngine,
    config: SloConfig,
    slos: Vec<Runtime>,
    state: StateFile,
    status: SharedStatus,
    metrics: SelfMetrics,
    last_sent: Option<i64>,
}

/// Reads SLO files; refused files are logged, counted and listed.
pub fn load_files(paths: &[PathBuf]) -> (Vec<Slo>, Vec<SpecError>) {
    let files = match crate::spec::expand_paths(paths) {
        Ok(f) => f,
        Err(e) => {
            return (
                Vec::new(),
                vec![SpecError {
                    file: paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    line: 0,
                    field: "(file)".into(),
                    message: e.to_string(),
                }],
            );
        }
    };
    let mut slos: Vec<Slo> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match crate::spec::load_file(&f) {
            Ok(mut s) => {
                if let Some(dup) = s.iter().find(|n| slos.iter().any(|o| o.id == n.id)) {
                    errors.push(SpecError {
                        file: f.display().to_string(),
                        line: dup.origin.line,
                        field: "name".into(),
                        message: format!("SLO id {:?} is already defined in another file", dup.id),
                    });
                    continue;
                }
                slos.append(&mut s)
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    (slos, errors)
}

impl Evaluator {
    /// An evaluator of `slos`, keeping alert states in `state_path`.
    pub fn new(
        engine: QueryEngine,
        slos: Vec<Slo>,
        load_errors: Vec<SpecError>,
        config: SloConfig,
        state_path: PathBuf,
    ) -> Evaluator {
        let metrics = engine.ingest().metrics().clone();
        let mut files: Vec<&str> = load_errors.iter().map(|e| e.file.as_str()).collect();
        files.dedup();
        metrics.slo_files_invalid.set(files.len() as i64);
        metrics.slos.set(slos.len() as i64);
        for e in &load_errors {
            tracing::error!(error = %e, "refusing SLO file: its SLOs are not evaluated");
        }
        let width = config.bucket.as_millis().max(1000) as i64;
        let slos: Vec<Runtime> = slos
            .into_iter()
            .map(|slo| Runtime {
                promql: PromqlSli::new(&slo.sli, None),
                buckets: Buckets::new(width, slo.period.ms + COARSE_MS, slo.budgeting),
                slo,
                last_floor: None,
                rebuilt_at: 0,
                warnings: Vec::new(),
                error: None,
                report: None,
            })
            .collect();
        let status = Arc::new(RwLock::new(Status {
            slos: Vec::new(),
            load_errors,
            interval: config.eval_interval,
        }));
        let mut ev = Evaluator {
            engine,
            config,
            slos,
            state: StateFile::load(&state_path),
            status,
            metrics,
            last_sent: None,
        };
        ev.publish();
        ev
    }

    /// The status the API serves.
    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// Evaluates every SLO at `t` (ms since the epoch). Data after `t` is
    /// ignored, so tests can replay history with a clock they control.
    pub async fn evaluate(&mut self, t: i64) -> Round {
        let started = Instant::now();
        let mut round = Round::default();
        if let Err(e) = self.refresh_spans(t).await {
            for rt in self.slos.iter_mut().filter(|r| r.promql.is_none()) {
                rt.error = Some(e.to_string());
            }
        }
        self.refresh_promql(t).await;
        let mut state_changed = false;
        for i in 0..self.slos.len() {
            if self.slos[i].error.is_some() {
                round.errors += 1;
                continue;
            }
            let report = self.assess(i, t);
            for a in &report.alerts {
                if a.transition != Transition::None {
                    state_changed = true;
                    crate::events::AlertTransition {
                        slo: &self.slos[i].slo,
                        alert: a,
                        time: t,
                    }
                    .emit();
                }
                round.changed |= matches!(a.transition, Transition::Fired | Transition::Resolved);
            }
            self.slos[i].report = Some(report);
        }
        if state_changed && let Err(e) = self.state.save() {
            tracing::error!(error = %e, "cannot persist alert states");
        }
        round.notifications = self.notifications(t);
        self.write_metrics(t).await;
        self.publish();
        let outcome = if round.errors == 0 {
            "success"
        } else {
            "error"
        };
        self.metrics
            .slo_evaluations
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .slo_evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        round
    }

    /// One grouped scan for every span SLI: backfill for new ones, the
    /// newest buckets for the others.
    async fn refresh_spans(&mut self, t: i64) -> Result<(), query::QueryError> {
        let width = self.width();
        let (new, old): (Vec<usize>, Vec<usize>) = (0..self.slos.len())
            .filter(|i| matches!(self.slos[*i].slo.sli, Sli::Spans(_)))
            .partition(|i| self.slos[*i].last_floor.is_none());
        let fine_start = Buckets::fine_start(t);
        if !new.is_empty() {
            let retention = new
                .iter()
                .map(|i| self.slos[*i].slo.period.ms + COARSE_MS)
                .max()
                .unwrap_or(0);
            let slis = self.span_slis(&new);
            let coarse = sli::span_buckets(
                &self.engine,
                &slis,
                fine_start - retention,
                fine_start - 1,
                COARSE_MS,
            )
            .await?;
            for (k, i) in new.iter().enumerate() {
                for (end, c) in &coarse[k] {
                    self.slos[*i].buckets.set_coarse(*end, *c);
                }
            }
            self.apply_fine(&new, fine_start, t).await?;
        }
        if !old.is_empty() {
            let from = old
                .iter()
                .map(|i| self.slos[*i].refresh_from(t))
                .min()
                .unwrap_or(t)
                - width;
            self.apply_fine(&old, from, t).await?;
        }
        for i in new.into_iter().chain(old) {
            if self.slos[i].refresh_from(t) == fine_start + width {
                self.slos[i].rebuilt_at = t;
            }
            self.slos[i].last_floor = Some(buckets::floor(t, width));
            self.slos[i].buckets.roll(t);
            self.slos[i].error = None;
        }
        Ok(())
    }

    async fn apply_fine(
        &mut self,
        which: &[usize],
        from: i64,
        t: i64,
    ) -> Result<(), query::QueryError> {
        let width = self.width();
        let slis = self.span_slis(which);
        let fine = sli::span_buckets(&self.engine, &slis, from, t, width).await?;
        let floor = buckets::floor(t, width);
        for (k, i) in which.iter().enumerate() {
            let b = &mut self.slos[*i].buckets;
            let (head, done): (Vec<_>, Vec<_>) = fine[k].iter().partition(|(end, _)| *end > floor);
            b.replace_fine(
                buckets::floor(from, width) + width,
                floor,
                done.into_iter().copied(),
            );
            b.set_head(
                floor,
                t,
                head.first().map_or_else(Counts::default, |(_, c)| *c),
            );
        }
        Ok(())
    }

    fn span_slis(&self, which: &[usize]) -> Vec<crate::spec::SpanSli> {
        which
            .iter()
            .map(|i| match &self.slos[*i].slo.sli {
                Sli::Spans(s) => s.clone(),
                _ => unreachable!("span SLOs only"),
            })
            .collect()
    }

    fn width(&self) -> i64 {
        self.config.bucket.as_millis().max(1000) as i64
    }

    /// Ratios, burn rates and alert transitions of SLO `i` at `t`.
    fn assess(&mut self, i: usize, t: i64) -> SloReport {
        let rt = &self.slos[i];
        let slo = &rt.slo;
        let budget = 1.0 - slo.objective;
        let report_for = |window_ms: i64| {
            let counts = rt.buckets.sum(t, window_ms);
            let ratio = (counts.total > 0.0).then(|| counts.bad / counts.total);
            WindowReport {
                window_ms,
                counts,
                ratio,
                burn_rate: ratio.map(|r| r / budget),
            }
        };
        let windows: Vec<WindowReport> =
            windows::distinct(slo.alerts.iter().flat_map(|a| a.windows.iter().copied()))
                .into_iter()
                .map(report_for)
                .collect();
        let period = report_for(period_window(slo, t));
        let budget_remaining = 1.0 - period.burn_rate.unwrap_or(0.0);
        let guard = !matches!(slo.sli, Sli::Raw { .. });
        let mut alerts = Vec::new();
        for spec in &slo.alerts {
            let burn = |ms: i64| {
                windows
                    .iter()
                    .find(|w| w.window_ms == ms)
                    .and_then(|w| w.burn_rate)
            };
            let events = |ms: i64| {
                windows
                    .iter()
                    .find(|w| w.window_ms == ms)
                    .map_or(0.0, |w| w.counts.total)
            };
            let mut condition = false;
            let mut value: f64 = 0.0;
            for w in &spec.windows {
                let pair = burn(w.long_ms)
                    .unwrap_or(0.0)
                    .min(burn(w.short_ms).unwrap_or(0.0));
                value = value.max(pair);
                let enough = !guard || events(w.short_ms) >= slo.min_events;
                condition |= pair >= w.factor && enough;
            }
            let key = state_key(slo, spec);
            let state = self.state.alerts.entry(key).or_default();
            let transition = state.step(condition, t, spec.for_ms);
            state.value = value;
            alerts.push(AlertReport {
                spec: spec.clone(),
                condition,
                state: state.clone(),
                transition,
            });
        }
        SloReport {
            time: t,
            windows,
            period,
            budget_remaining,
            alerts,
        }
    }

    /// Firing alerts, and those resolved recently, when it is time to send.
    fn notifications(&mut self, t: i64) -> Vec<Notification> {
        let resend = self.config.resend_delay.as_millis() as i64;
        let lifetime = 4 * resend.max(self.config.eval_interval.as_millis() as i64);
        let mut out = Vec::new();
        for rt in &self.slos {
            for spec in &rt.slo.alerts {
                let Some(state) = self.state.alerts.get(&state_key(&rt.slo, spec)) else {
                    continue;
                };
                let n = |starts: i64, ends: i64, resolved: bool| Notification {
                    labels: alert_labels(&rt.slo, spec).into_iter().collect(),
                    annotations: alert_annotations(&rt.slo, spec).into_iter().collect(),
                    starts_at: rfc3339(starts),
                    ends_at: rfc3339(ends),
                    generator_url: format!(
                        "{}/api/v1/rules",
                        self.config.external_url.trim_end_matches('/')
                    ),
                    resolved,
                };
                if state.phase == Phase::Firing {
                    out.push(n(state.active_at.unwrap_or(t), t + lifetime, false));
                } else if let Some((starts, ended)) = state.resolved
                    && t - ended <= RESOLVED_RETENTION_MS
                {
                    out.push(n(starts, ended, true));
                }
            }
        }
        out
    }

    /// Writes the SLO metrics at `t` through the ingest pipeline.
    async fn write_metrics(&self, t: i64) {
        if !self.config.write_metrics {
            return;
        }
        let reports: Vec<(&Slo, &SloReport)> = self
            .slos
            .iter()
            .filter_map(|r| {
                r.report
                    .as_ref()
                    .filter(|rep| rep.time == t)
                    .map(|rep| (&r.slo, rep))
            })
            .collect();
        if reports.is_empty() {
            return;
        }
        let req = crate::metrics::export_request(&reports, t);
        let payload = collector::otlp::Payload::Metrics(req);
        if let Err(e) = self
            .engine
            .ingest()
            .export(collector::receive::Transport::Internal, payload, None)
            .await
        {
            tracing::warn!(error = %e, "SLO metrics not stored this round");
        }
    }

    /// Updates the shared status and the alert gauges.
    fn publish(&mut self) {
        let (mut pending, mut firing) = (0, 0);
        for s in self.state.alerts.values() {
            match s.phase {
                Phase::Pending => pending += 1,
                Phase::Firing => firing += 1,
                Phase::Inactive => {}
            }
        }
        self.metrics
            .slo_alerts
            .with_label_values(&["pending"])
            .set(pending);
        self.metrics
            .slo_alerts
            .with_label_values(&["firing"])
            .set(firing);
        let slos = self
            .slos
            .iter()
            .map(|r| SloStatus {
                slo: r.slo.clone(),
                report: r.report.clone(),
                error: r.error.clone(),
                warnings: r.warnings.clone(),
            })
            .collect();
        if let Ok(mut s) = self.status.write() {
            s.slos = slos;
        }
    }

    /// Evaluates every `eval_interval` until `stop`, sending notifications.
    pub async fn run(mut self, notifier: Notifier, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.eval_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sending: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let t = chrono::Utc::now().timestamp_millis();
            let round = self.evaluate(t).await;
            let due = self
                .last_sent
                .is_none_or(|s| t - s >= self.config.resend_delay.as_millis() as i64);
            if notifier.is_empty() || round.notifications.is_empty() || !(round.changed || due) {
                continue;
            }
            if let Some(h) = sending.take() {
                if !h.is_finished() && !round.changed {
                    sending = Some(h);
                    continue;
                }
                let _ = h.await;
            }
            self.last_sent = Some(t);
            let n = notifier.clone();
            sending = Some(tokio::spawn(async move {
                n.send(&round.notifications).await;
            }));
        }
        if let Some(h) = sending {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

/// Refreshes PromQL SLO `rt` when it is new: snaps a histogram threshold
/// and backfills the hourly buckets of its period.
async fn backfill_promql(engine: &QueryEngine, rt: &mut Runtime, t: i64) -> Result<(), QueryError> {
    if let Sli::Histogram(h) = &rt.slo.sli {
        let (le, warning) = sli::snap_threshold(engine, h, t).await?;
        rt.promql = PromqlSli::new(&rt.slo.sli, Some(&le));
        rt.warnings = warning.into_iter().collect();
        for w in &rt.warnings {
            tracing::warn!(slo = %rt.slo.id, "{w}");
        }
    }
    let fine_start = Buckets::fine_start(t);
    let first = buckets::floor(t - rt.slo.period.ms - COARSE_MS, COARSE_MS) + COARSE_MS;
    if first <= fine_start {
        let q = rt.promql.as_ref().expect("PromQL SLO");
        for (end, c) in q.buckets(engine, first, fine_start, COARSE_MS).await? {
            rt.buckets.set_coarse(end, c);
        }
    }
    Ok(())
}

/// Bucket counts for the SLOs `which` (indices into `slos`) in one batch;
/// when the batch fails, each SLO alone, so one bad query only fails its
/// own SLO.
async fn batch(
    engine: &QueryEngine,
    slos: &[Runtime],
    which: &[usize],
    first: i64,
    last: i64,
    width: i64,
) -> Vec<Result<Vec<(i64, Counts)>, String>> {
    let slis: Vec<&PromqlSli> = which
        .iter()
        .filter_map(|i| slos[*i].promql.as_ref())
        .collect();
    match sli::promql_buckets(engine, &slis, first, last, width).await {
        Ok(all) => all.into_iter().map(Ok).collect(),
        Err(_) => {
            let mut out = Vec::with_capacity(slis.len());
            for s in slis {
                out.push(
                    s.buckets(engine, first, last, width)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            out
        }
    }
}

impl Evaluator {
    /// Refreshes every PromQL SLO: backfills new ones, then one batch per
    /// refresh range and one for the buckets in progress.
    async fn refresh_promql(&mut self, t: i64) {
        let width = self.width();
        let floor = buckets::floor(t, width);
        let fine_start = Buckets::fine_start(t);
        let mut live = Vec::new();
        for i in 0..self.slos.len() {
            if self.slos[i].promql.is_none() {
                continue;
            }
            self.slos[i].error = None;
            if self.slos[i].last_floor.is_none()
                && let Err(e) = backfill_promql(&self.engine, &mut self.slos[i], t).await
            {
                self.fail(i, e.to_string());
                continue;
            }
            live.push(i);
        }
        let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for i in &live {
            groups
                .entry(self.slos[*i].refresh_from(t))
                .or_default()
                .push(*i);
        }
        for (first, members) in groups.into_iter().filter(|(f, _)| *f <= floor) {
            let got = batch(&self.engine, &self.slos, &members, first, floor, width).await;
            for (i, r) in members.into_iter().zip(got) {
                match r {
                    Ok(buckets) => self.slos[i].buckets.replace_fine(first, floor, buckets),
                    Err(e) => self.fail(i, e),
                }
            }
        }
        live.retain(|i| self.slos[*i].error.is_none());
        let heads = if t - floor >= 1000 {
            batch(&self.engine, &self.slos, &live, t, t, t - floor).await
        } else {
            live.iter().map(|_| Ok(Vec::new())).collect()
        };
        for (i, head) in live.into_iter().zip(heads) {
            let head = match head {
                Ok(h) => h.first().map(|(_, c)| *c).unwrap_or_default(),
                Err(e) => {
                    self.fail(i, e);
                    continue;
                }
            };
            let rt = &mut self.slos[i];
            if rt.refresh_from(t) == fine_start + width {
                rt.rebuilt_at = t;
            }
            rt.buckets.set_head(floor, t, head);
            rt.buckets.roll(t);
            rt.last_floor = Some(floor);
        }
    }

    fn fail(&mut self, i: usize, error: String) {
        tracing::warn!(slo = %self.slos[i].slo.id, %error, "SLI query failed");
        self.slos[i].error = Some(error);
    }
}

/// The window the error budget is measured over at `t`.
fn period_window(slo: &Slo, t: i64) -> i64 {
    if !slo.period.calendar {
        return slo.period.ms;
    }
    use chrono::{Datelike, TimeZone, Utc};
    let now = Utc.timestamp_millis_opt(t).single().unwrap_or_default();
    let day = 86_400_000;
    let start = match slo.period.ms / day {
        1 => buckets::floor(t, day),
        7 => buckets::floor(t, day) - now.weekday().num_days_from_monday() as i64 * day,
        90 => {
            let m = (now.month0() / 3) * 3 + 1;
            Utc.with_ymd_and_hms(now.year(), m, 1, 0, 0, 0)
                .single()
                .map_or(t, |d| d.timestamp_millis())
        }
        365 => Utc
            .with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0)
            .single()
            .map_or(t, |d| d.timestamp_millis()),
        30 => Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single()
            .map_or(t, |d| d.timestamp_millis()),
        _ => buckets::floor(t, slo.period.ms),
    };
    (t - start).max(1)
}

fn state_key(slo: &Slo, a: &AlertSpec) -> String {
    format!("{}/{}", slo.id, a.severity.as_str())
}

/// Labels of an alert: `alertname`, Sloth's `sloth_*` labels, the SLO's and
/// the alert's own.
pub fn alert_labels(slo: &Slo, a: &AlertSpec) -> Vec<(String, String)> {
    let mut l: std::collections::BTreeMap<String, String> = crate::rules::slo_labels(slo);
    l.insert("alertname".into(), a.name.clone());
    l.insert("sloth_severity".into(), a.severity.as_str().into());
    for (k, v) in &a.labels {
        l.insert(k.clone(), v.clone());
    }
    l.into_iter().collect()
}

/// Annotations of an alert: a title and summary unless the spec sets them.
pub fn alert_annotations(slo: &Slo, a: &AlertSpec) -> Vec<(String, String)> {
    let mut m: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let windows: Vec<String> = a
        .windows
        .iter()
        .map(|w| {
            format!(
                "{}x over {} and {}",
                w.factor,
                format_duration(w.long_ms),
                format_duration(w.short_ms)
            )
        })
        .collect();
    m.insert(
        "title".into(),
        format!(
            "({}) {} {} SLO error budget burn rate is too fast",
            a.severity.as_str(),
            slo.service,
            slo.name
        ),
    );
    m.insert(
        "summary".into(),
        format!(
            "{} {}: errors are spending the {} error budget of a {}% objective too fast (burn rate {})",
            slo.service,
            slo.name,
            format_duration(slo.period.ms),
            round_budget(slo.objective * 100.0),
            windows.join(", or ")
        ),
    );
    for (k, v) in &a.annotations {
        m.insert(k.clone(), v.clone());
    }
    m.into_iter().collect()
}

/// The error budget as a short decimal (0.0010000000000000009 → 0.001).
pub fn round_budget(b: f64) -> f64 {
    (b * 1e12).round() / 1e12
}
