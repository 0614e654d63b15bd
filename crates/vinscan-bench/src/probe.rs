//! Memory figures of a fresh process: the benchmark runs itself again with the hidden
//! `--rss-probe`, which loads the model with one projector, extracts the smallest page once and
//! prints its peak RSS as one JSON line.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vinscan_llama::read_projector_meta;

use crate::machine::{file_mb, peak_rss_mb};
use crate::measure::{Work, vinscan_page};
use crate::pages::smallest;
use crate::report::{Probe, VinscanRun};
use crate::setup::Setup;

/// What the probe process prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeOutput {
    page: String,
    load_ms: f64,
    run: VinscanRun,
    peak_rss_mb: f64,
}

/// The probe process (`--rss-probe`): `--mmproj` is the projector probed.
pub fn run_probe(setup: &Setup) -> anyhow::Result<()> {
    let small = smallest(&setup.units)?;
    let (model, load_ms) = setup.load(&setup.inputs.mmproj, setup.args.parallel)?;
    let work = Work::real(&setup.pipeline, setup.args.real_tokens);
    let run = vinscan_page(&model, &setup.extractor, &work, small)?;
    let out = ProbeOutput {
        page: small.name.clone(),
        load_ms,
        run,
        peak_rss_mb: peak_rss_mb()?,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// The weight type of a projector as the report names it (`f16`, `q8_0`, …).
pub fn projector_type(mmproj: &Path) -> anyhow::Result<String> {
    let meta = read_projector_meta(mmproj)?;
    Ok(meta.weight_type.unwrap_or("unknown type").to_owned())
}

/// How the probe process runs the language model's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmAttention {
    /// As vinscan's engine chooses (on the CPU: the faster of the two, timed at load).
    Engine,
    /// Flash attention on, as llama.cpp's default runs it.
    Flash,
    /// Flash attention off: the plain path's vectorised matrix products.
    Plain,
}

/// Runs a fresh `vinscan-bench --rss-probe` with projector `mmproj`.
pub fn probe(setup: &Setup, mmproj: &Path, attention: LlmAttention) -> anyhow::Result<Probe> {
    let args = &setup.args;
    let mut cmd = Command::new(std::env::current_exe()?);
    if let (Some(p), Some(s)) = (&args.pipelines_dir, &args.schemas_dir) {
        cmd.arg("--pipelines-dir").arg(p).arg("--schemas-dir").arg(s);
    }
    // the engine's setting is the run's own: a forced one is forced in the probe as well
    let forced = match attention {
        LlmAttention::Engine => args.llm_flash_attention,
        LlmAttention::Flash => Some(true),
        LlmAttention::Plain => Some(false),
    };
    if let Some(on) = forced {
        cmd.arg(format!("--llm-flash-attention={on}"));
    }
    let out = cmd
        .arg("--rss-probe")
        .arg("--pages")
        .arg(&setup.inputs.pages)
        .arg("--model")
        .arg(&setup.inputs.model)
        .arg("--mmproj")
        .arg(mmproj)
        .args(["--threads", &args.threads.to_string()])
        .args(["--ctx-size", &args.ctx_size.to_string()])
        .args(["--parallel", &args.parallel.to_string()])
        .args(["--real-tokens", &args.real_tokens.to_string()])
        .args(["--pipeline", &args.pipeline])
        .arg("--work-dir")
        .arg(args.work_dir.join("probe"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!(
            "the memory probe of {} ({attention:?} attention) failed ({})",
            mmproj.display(),
            out.status
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let p: ProbeOutput = serde_json::from_str(line.trim()).context("the memory probe's report")?;
    Ok(Probe {
        page: p.page,
        mmproj: mmproj.to_path_buf(),
        projector: projector_type(mmproj)?,
        mmproj_mb: file_mb(mmproj)?,
        load_ms: p.load_ms,
        run: p.run,
        peak_rss_mb: p.peak_rss_mb,
    })
}
