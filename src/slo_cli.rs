//! `sightline slo lint <files>` and `sightline slo rules <files>`.

use std::path::PathBuf;

use alerts::evaluator::load_files;
use clap::{Args, Subcommand, ValueEnum};

/// `sightline slo` subcommands.
#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Check SLO files: errors name the file, line and field. With
    /// `--server`, also check that the SLI queries find data.
    Lint(LintArgs),
    /// Generate Prometheus recording and alerting rules (Sloth-compatible).
    Rules(RulesArgs),
}

/// `sightline slo lint` arguments.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// SLO files or directories.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Base URL of a running Sightline HTTP API to check queries against,
    /// e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "SIGHTLINE_URL")]
    pub server: Option<String>,
}

/// Rule output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RulesFormat {
    /// A Prometheus rule file.
    Prometheus,
}

/// `sightline slo rules` arguments.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// SLO files or directories.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "prometheus")]
    pub format: RulesFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs a `sightline slo` subcommand.
pub async fn run(cmd: SloCommand) -> anyhow::Result<()> {
    match cmd {
        SloCommand::Lint(args) => lint(args).await,
        SloCommand::Rules(args) => rules(args),
    }
}

async fn lint(args: LintArgs) -> anyhow::Result<()> {
    let (slos, errors) = load_files(&args.files);
    for e in &errors {
        println!("error: {e}");
    }
    let mut failed = !errors.is_empty();
    if let Some(server) = &args.server {
        let findings = alerts::lint::check_data(&slos, server)
            .await
            .map_err(|e| anyhow::anyhow!("cannot check queries against {server}: {e}"))?;
        for f in findings {
            let level = if f.error { "error" } else { "warning" };
            println!("{level}: {}", f.problem);
            failed |= f.error;
        }
    }
    if failed {
        anyhow::bail!("SLO files have errors");
    }
    println!("{} SLO(s) OK", slos.len());
    Ok(())
}

fn rules(args: RulesArgs) -> anyhow::Result<()> {
    let (slos, errors) = load_files(&args.files);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!("SLO files have errors; no rules generated");
    }
    let RulesFormat::Prometheus = args.format;
    let (file, skipped) = alerts::rules::generate(&slos);
    for s in &skipped {
        eprintln!("warning: no Prometheus rules for {s}");
    }
    let yaml = alerts::rules::to_yaml(&file);
    match args.output {
        Some(p) => std::fs::write(&p, yaml)?,
        None => print!("{yaml}"),
    }
    Ok(())
}
