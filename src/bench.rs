//! `sightline bench`: a load generator (filled in by the benchmark work).

use clap::Args;

/// Flags of `sightline bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
