//! `vinscan-bench`: vinscan against llama.cpp's own `llama-mtmd-cli` (built from the same
//! vendored source), the reference Python code (transformers) and Tesseract, in one run, on the
//! same GGUF, pages and output length; alternating A/B, min/median/max and ratios; writes
//! report.json and docs/BENCHMARKS.md (`ops/bench.sh` drives it and draws the plot).
//!
//! Not part of the product: vinscan's side of every measurement is the product's own
//! extraction call (`Extractor::extract_page`), and everything only a benchmark needs (peer
//! processes, `wait4`, the memory probe) lives here.

mod aggregate;
mod args;
mod machine;
mod machines;
mod measure;
mod mtmd;
mod pages;
mod peers;
mod probe;
mod render;
mod report;
mod runner;
mod server;
mod setup;
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use crate::args::BenchArgs;
use crate::report::Report;
use crate::setup::Setup;

fn main() -> ExitCode {
    reexec_with_passive_openmp();
    let args = BenchArgs::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.rewrite_report {
        let report = Report::load(&args.report_json)?;
        // this CPU's figures are derived from the report: written again, in case their
        // derivation changed with the wording
        let others = save_machine_figures(&report, &args.report_json)?;
        return write_markdown(&report, &others, &args.report);
    }
    let setup = Setup::prepare(args)?;
    if setup.args.rss_probe {
        probe::run_probe(&setup)
    } else if setup.args.aggregate_only {
        aggregate::run_aggregate_only(&setup)
    } else {
        runner::run(&setup, started)
    }
}

/// Writes the report's machine-dependent figures to the machines folder beside `report_json`
/// ([`machines`]) and returns the other CPUs' figures there.
pub(crate) fn save_machine_figures(
    report: &Report,
    report_json: &Path,
) -> anyhow::Result<Vec<machines::CpuFigures>> {
    let dir = machines::dir(report_json);
    let this = render::cpus::figures(report);
    let path = this.save(&dir)?;
    tracing::info!(path = %path.display(), "this CPU's figures written");
    machines::others(&dir, &this)
}

/// Renders the report, with the figures of the other CPUs measured, to `path` (creating its
/// folder).
pub(crate) fn write_markdown(
    report: &Report,
    others: &[machines::CpuFigures],
    path: &Path,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    std::fs::write(path, render::markdown(report, others)).with_context(|| path.display().to_string())
}

/// libgomp reads `OMP_WAIT_POLICY` once, when the process loads it — before `main`. ggml's
/// default (active spinning) makes decoding collapse when cores are shared, so when the user
/// has not chosen a policy the benchmark re-executes itself once with `PASSIVE`, as `vinscan`
/// does: both peers run llama.cpp under the same policy as the product.
fn reexec_with_passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(vinscan_llama::OMP_WAIT_POLICY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(vinscan_llama::OMP_WAIT_POLICY, "PASSIVE")
        .exec();
    eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE: {err}");
}

/// Logs on stderr; `VINSCAN_LOG` takes an EnvFilter directive.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VINSCAN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn,llama_cpp_2=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
