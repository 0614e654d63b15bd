//! `vinscan model convert` and `vinscan model trace`: arguments to `vinscan-convert`'s calls
//! (the checkpoint to the GGUF pair; a record of what llama.cpp computes for one page, for the
//! parity tests against the reference implementation, docs/FIDELITY.md).

use std::process::ExitCode;

use anyhow::Context;
use vinscan_convert::fidelity::{TraceRequest, trace_page};
use vinscan_convert::{ConvertOptions, WeightType, convert};

use crate::cli::{ConvertArgs, TraceArgs};
use crate::model_files::ModelFiles;

pub fn run_convert(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let weights: WeightType = args.weights.parse().map_err(anyhow::Error::msg)?;
    let mmproj_weights = match &args.mmproj_type {
        None => None,
        Some(t) => Some(t.parse().map_err(anyhow::Error::msg)?),
    };
    let mut options = ConvertOptions {
        weights,
        mmproj_weights,
        upstream_position_order: args.upstream_position_order,
        ..ConvertOptions::default()
    };
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }
    let started = std::time::Instant::now();
    let done = convert(&args.hf_dir, &args.out, &options)
        .with_context(|| format!("converting {}", args.hf_dir.display()))?;
    tracing::info!(
        model = %done.model.display(),
        mmproj = %done.mmproj.display(),
        weights = %done.weights,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "converted"
    );
    println!("{}", serde_json::to_string(&done)?);
    Ok(ExitCode::SUCCESS)
}

pub fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let files = ModelFiles::resolve(args.model.model.as_deref(), args.model.mmproj.as_deref())?;
    let threads = args
        .model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let summary = trace_page(&TraceRequest {
        image: args.image.clone(),
        out: args.out.clone(),
        model: files.model,
        mmproj: files.mmproj,
        threads,
        ctx_size: args.model.ctx_size,
        system: args.system.clone(),
        prompt: args.prompt.clone(),
        teacher_tokens: args.teacher_tokens,
        greedy_tokens: args.greedy_tokens,
        max_tiles: args.max_tiles,
    })?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
