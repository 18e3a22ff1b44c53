//! The `sightline` binary: one process per node that receives OTLP, stores
//! it as Parquet and (in later stages) answers queries and evaluates SLOs.

mod bench;
mod config;
mod run;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Sightline: an observability pipeline in one binary.
#[derive(Debug, Parser)]
#[command(name = "sightline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector: OTLP receivers, WAL, Parquet storage and the HTTP API.
    Run(Box<config::RunArgs>),
    /// Generate realistic OTLP traces and send them over gRPC as fast as possible.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => {
            let config = args.load()?;
            rt.block_on(run::run(config))
        }
        Command::Bench(args) => rt.block_on(bench::run(args)),
    }
}
