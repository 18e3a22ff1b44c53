//! The `sightline` binary: one process per node that receives OTLP, stores
//! it as Parquet, answers queries and evaluates SLOs.

mod allocator;
mod bench;
mod config;
mod profile_cli;
mod query_cli;
mod run;
mod slo_cli;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

// Ingest allocates and frees many large Arrow buffers; glibc's malloc returns
// them to the kernel and pays for zeroed pages again (a third of the CPU in
// profiles). mimalloc keeps and reuses them.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

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
    /// Run SQL on a running server and print the rows.
    Query(query_cli::QueryArgs),
    /// Sample CPU stacks with eBPF and write a flame graph.
    Profile(profile_cli::ProfileArgs),
    /// Check SLO files or turn them into Prometheus rules.
    #[command(subcommand)]
    Slo(slo_cli::SloCommand),
    /// Generate realistic OTLP traces and send them over gRPC as fast as possible.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    allocator::purge_soon();
    allocator::no_transparent_huge_pages();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long an idle blocking-pool thread lives (tokio's default: 10 s).
///
/// Conversions and flushes run on blocking threads; the batches they build
/// are freed later by other threads, and mimalloc hands such memory back only
/// when the thread that allocated it runs the allocator again or exits. While
/// admission refused load, idle conversion threads so held up to ~400 MiB of
/// freed pages with ~50 MiB of live data, and the resident size passed the
/// memory budget (docs/benchmarks.md, "Session 16"). A thread that exits
/// gives its pages back; starting one again costs tens of microseconds.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(250);

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()?;
    match cli.command {
        Command::Run(args) => {
            let config = args.load()?;
            rt.block_on(run::run(config))
        }
        Command::Bench(args) => rt.block_on(bench::run(args)),
        Command::Query(args) => rt.block_on(query_cli::run(args)),
        Command::Slo(cmd) => rt.block_on(slo_cli::run(cmd)),
        Command::Profile(args) => rt.block_on(profile_cli::run(args)),
    }
}
