//! `vinscan`: scans of Vietnamese documents in, schema-valid JSON out.
//!
//! Exit codes: 0 success; 1 some inputs failed (see the manifest / stderr); 2 usage or
//! configuration error.

mod catalog;
mod cli;
mod cmd_batch;
#[cfg(feature = "llama")]
mod cmd_convert;
#[cfg(feature = "kafka")]
mod cmd_enqueue;
mod cmd_eval;
mod cmd_export;
mod cmd_extract;
mod cmd_model;
mod cmd_pipelines;
#[cfg(feature = "kafka")]
mod cmd_serve;
mod model_files;
mod model_load;
#[cfg(feature = "ocr")]
mod ocr;
mod ordered;
mod pdf;
mod variants;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    reexec_with_passive_openmp();
    // test builds only: failpoints from FAILPOINTS (see vinscan-daemon's `failpoints` feature)
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = cli::Cli::parse();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Extract(args) => cmd_extract::run(&cli.global, args),
        cli::Command::Batch(args) => cmd_batch::run(&cli.global, args),
        cli::Command::Model { command } => cmd_model::run(command),
        cli::Command::Pipelines(args) => cmd_pipelines::run(&cli.global, args),
        cli::Command::Export(args) => cmd_export::run(args),
        cli::Command::Eval(args) => cmd_eval::run(&cli.global, args),
        #[cfg(feature = "kafka")]
        cli::Command::Serve(args) => cmd_serve::run(&cli.global, args),
        #[cfg(feature = "kafka")]
        cli::Command::Enqueue(args) => cmd_enqueue::run(&cli.global, args),
    }
}

/// libgomp reads `OMP_WAIT_POLICY` once, when the process loads it — before `main`. ggml's
/// default (active spinning) makes decoding collapse when cores are shared, so when the user
/// has not chosen a policy, vinscan re-executes itself once with `PASSIVE`.
fn reexec_with_passive_openmp() {
    #[cfg(all(unix, feature = "llama"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OMP_WAIT_POLICY").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .exec();
        eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE: {err}");
    }
}

fn init_logging(global: &cli::GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = if global.verbose {
        "debug"
    } else {
        "info,llama-cpp-2=warn,llama_cpp_2=warn"
    };
    let filter = EnvFilter::try_from_env("VINSCAN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours only for a terminal: a log file or a collector gets plain text; NO_COLOR
        // (no-color.org) turns them off when it is set and not empty
        .with_ansi(
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    if global.log_format == cli::LogFormat::Json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_target(false).init();
    }
}
