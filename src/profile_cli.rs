//! `sightline profile`: one-shot CPU profiling from the command line, written
//! as a flame graph SVG or folded stacks.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ebpf_probes::profile::{Profiler, flamegraph_svg, folded};

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileFormat {
    /// Flame graph SVG.
    Svg,
    /// Folded stacks (`comm;root;…;leaf count`).
    Folded,
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
    /// Output format (default: from the file name, `.svg` or folded).
    #[arg(long, value_enum)]
    pub format: Option<ProfileFormat>,
}

/// Samples, then writes the output.
pub async fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let mut ebpf = ebpf_probes::load().context("cannot start the profiler")?;
    let mut profiler = Profiler::attach(&mut ebpf, args.frequency, args.pid)
        .context("cannot attach the profiler")?;
    eprintln!("sampling {} Hz for {:?}…", args.frequency, args.duration);
    tokio::time::sleep(args.duration).await;
    let (samples, stats) = profiler.drain();
    let total: u64 = samples.iter().map(|s| s.count).sum();
    if stats.without_frame_pointers > 0 {
        eprintln!(
            "{} of {total} samples had a one-frame user stack (no frame pointers): only their leaf is shown",
            stats.without_frame_pointers
        );
    }
    let format = args
        .format
        .unwrap_or(if args.output.extension().is_some_and(|e| e == "svg") {
            ProfileFormat::Svg
        } else {
            ProfileFormat::Folded
        });
    let bytes = match format {
        ProfileFormat::Svg => flamegraph_svg(&samples, "sightline profile")?,
        ProfileFormat::Folded => folded(&samples).into_bytes(),
    };
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("{total} samples written to {}", args.output.display());
    Ok(())
}
