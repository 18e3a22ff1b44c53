//! `sightline profile`: one-shot CPU profiling from the command line, written
//! as a flame graph SVG, folded stacks, pprof or Grafana nested-set JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ebpf_probes::profile::Profiler;
use query::profiles::{Profile, Stack, pprof, render};

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileFormat {
    /// Flame graph SVG.
    Svg,
    /// Folded stacks (`comm;root;…;leaf count`).
    Folded,
    /// gzip'd pprof protobuf (`go tool pprof`, Pyroscope, speedscope).
    Pprof,
    /// Nested-set rows (level, value, self, label) for Grafana.
    Json,
}

/// `sightline profile` arguments.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// How long to sample, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Only this process (default: every process).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Samples per second per CPU.
    #[arg(long, default_value_t = 99)]
    pub frequency: u64,
    /// Output file.
    #[arg(long, short, default_value = "flame.svg")]
    pub output: PathBuf,
    /// Output format (default: from the file name: `.svg`, `.pb.gz`/`.pprof`,
    /// `.json`, else folded).
    #[arg(long, value_enum)]
    pub format: Option<ProfileFormat>,
}

fn format_of(path: &std::path::Path) -> ProfileFormat {
    let name = path.to_string_lossy();
    if name.ends_with(".svg") {
        ProfileFormat::Svg
    } else if name.ends_with(".pb.gz") || name.ends_with(".pprof") || name.ends_with(".pb") {
        ProfileFormat::Pprof
    } else if name.ends_with(".json") {
        ProfileFormat::Json
    } else {
        ProfileFormat::Folded
    }
}

/// Samples, then writes the output.
pub async fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let mut ebpf = ebpf_probes::load().context("cannot start the profiler")?;
    let mut profiler = Profiler::attach(&mut ebpf, args.frequency, args.pid)
        .context("cannot attach the profiler")?;
    eprintln!("sampling {} Hz for {:?}…", args.frequency, args.duration);
    let start = collector::ingest::now_nanos() as i64;
    tokio::time::sleep(args.duration).await;
    let (samples, stats) = profiler.drain();
    if stats.without_frame_pointers > 0 {
        eprintln!(
            "{} of {} samples had a one-frame user stack (no frame pointers): only their leaf is shown",
            stats.without_frame_pointers, stats.samples
        );
    }
    let stacks = samples.into_iter().map(|s| {
        let mut frames = vec![s.comm];
        frames.extend(s.frames);
        Stack {
            frames,
            value: s.count,
        }
    });
    let period = 1_000_000_000 / args.frequency.max(1) as i64;
    let profile = Profile::from_stacks(stacks, period, start, args.duration.as_nanos() as i64);
    let bytes = match args.format.unwrap_or_else(|| format_of(&args.output)) {
        ProfileFormat::Svg => render::svg(&profile, "sightline profile")?,
        ProfileFormat::Folded => render::folded(&profile).into_bytes(),
        ProfileFormat::Pprof => pprof::encode(&profile),
        ProfileFormat::Json => serde_json::to_vec(&render::nested_set(&profile))?,
    };
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "{} samples written to {}",
        profile.total(),
        args.output.display()
    );
    Ok(())
}
