//! `vinscan model convert` and `vinscan model trace`: a Hugging Face checkpoint to the GGUF pair,
//! and a record of what llama.cpp computes for one page, for the parity tests against the
//! reference implementation (`ops/reference/parity.py`, docs/FIDELITY.md).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vinscan_core::Limits;
use vinscan_core::document::Document;
use vinscan_core::tiling::{TILE_SIZE, resize_bicubic, tile_page};
use vinscan_llama::convert::{ConvertOptions, WeightType, convert};
use vinscan_llama::read_projector_meta;
use vinscan_llama::trace::{PromptPiece, TraceConfig, Tracer};

use crate::cli::{ConvertArgs, TraceArgs};
use crate::model_files::ModelFiles;

pub fn run_convert(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let weights: WeightType = args.weights.parse().map_err(anyhow::Error::msg)?;
    let mmproj_weights = match &args.mmproj_type {
        None => None,
        Some(t) => match t.parse().map_err(anyhow::Error::msg)? {
            w @ (WeightType::F32 | WeightType::F16 | WeightType::BF16 | WeightType::Q8_0) => Some(w),
            WeightType::Llama { name, .. } => {
                bail!("--mmproj-type {name}: the mmproj takes f32, f16, bf16 or q8_0")
            }
        },
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

/// Writes a NumPy `.npy` file (format 1.0, little-endian, C order).
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> anyhow::Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to 64, ends in \n
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| path.display().to_string())?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    f.flush()?;
    Ok(())
}

fn f32_bytes(rows: &[Vec<f32>]) -> Vec<u8> {
    rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let files = ModelFiles::resolve(args.model.model.as_deref(), args.model.mmproj.as_deref())?;
    let meta = read_projector_meta(&files.mmproj)?;
    let bytes = std::fs::read(&args.image).with_context(|| args.image.display().to_string())?;
    let limits = Limits::default();
    let name = args.image.display().to_string();
    let doc = Document::open(&name, bytes, &limits, None)?;
    let page = doc.page(0, 200.0, &limits, None)?.image;
    let max_tiles = args.max_tiles.unwrap_or(meta.max_tiles);
    let tiled = tile_page(&page, 1, max_tiles)?;
    std::fs::create_dir_all(&args.out)?;

    // The tiles vinscan hands the encoder: crops of the stretched page (mtmd copies them as
    // they are), and the thumbnail resampled from the stretched page as mtmd does.
    let mut tiles = Vec::new();
    for r in 0..tiled.grid.rows {
        for c in 0..tiled.grid.cols {
            tiles.push(
                image::imageops::crop_imm(&tiled.image, c * TILE_SIZE, r * TILE_SIZE, TILE_SIZE, TILE_SIZE)
                    .to_image(),
            );
        }
    }
    if tiled.grid.has_thumbnail() {
        tiles.push(resize_bicubic(&tiled.image, TILE_SIZE, TILE_SIZE)?);
    }
    let tile_bytes: Vec<u8> = tiles.iter().flat_map(|t| t.as_raw().iter().copied()).collect();
    let side = TILE_SIZE as usize;
    write_npy(
        &args.out.join("tiles.npy"),
        "|u1",
        &[tiles.len(), side, side, 3],
        &tile_bytes,
    )?;

    let threads = args
        .model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let mut tracer = Tracer::load(&TraceConfig {
        model: files.model.clone(),
        mmproj: files.mmproj.clone(),
        threads,
        ctx_size: args.model.ctx_size,
    })?;

    // Per tile, each tile encoded on its own (a 448 px image is one chunk, no resampling).
    let mut embeddings = Vec::new();
    let mut n_tokens = 0;
    for t in &tiles {
        let mut chunks = tracer.encode_image(t.as_raw(), TILE_SIZE, TILE_SIZE)?;
        if chunks.len() != 1 {
            bail!("a 448 px tile became {} image chunks", chunks.len());
        }
        let e = chunks.remove(0);
        n_tokens = e.len() / tracer.n_embd();
        embeddings.push(e);
    }
    write_npy(
        &args.out.join("embeddings.npy"),
        "<f4",
        &[tiles.len(), n_tokens, tracer.n_embd()],
        &f32_bytes(&embeddings),
    )?;

    let prompt = Tracer::chat_prompt(&args.system, &args.prompt);
    let (w, h) = tiled.image.dimensions();
    let rgb = tiled.image.as_raw();
    let pieces = tracer.prompt(&prompt, rgb, w, h)?;
    let images = pieces
        .iter()
        .filter(|p| matches!(p, PromptPiece::Image { .. }))
        .count();
    if images != tiles.len() {
        bail!(
            "mtmd cut the page into {images} image chunks, vinscan's grid has {}",
            tiles.len()
        );
    }
    // Byte tokens (ids below 256 are single bytes in Qwen2's vocabulary and in the toy ones).
    let teacher: Vec<i32> = (0..args.teacher_tokens)
        .map(|i| ((17 + 7919 * i) % 256) as i32)
        .collect();
    let logits = tracer.teacher_forced_logits(&prompt, rgb, w, h, &teacher)?;
    write_npy(
        &args.out.join("logits.npy"),
        "<f4",
        &[logits.len(), tracer.n_vocab()],
        &f32_bytes(&logits),
    )?;
    let greedy = tracer.greedy(&prompt, rgb, w, h, args.greedy_tokens)?;

    let pieces_json: Vec<serde_json::Value> = pieces
        .iter()
        .map(|p| match p {
            PromptPiece::Text(ids) => serde_json::json!({"text": ids}),
            PromptPiece::Image { n_tokens } => serde_json::json!({"image": n_tokens}),
        })
        .collect();
    let trace = serde_json::json!({
        "image": args.image,
        "model": files.model,
        "mmproj": files.mmproj,
        "grid": [tiled.grid.cols, tiled.grid.rows],
        "max_tiles": max_tiles,
        "system": args.system,
        "prompt": args.prompt,
        "prompt_pieces": pieces_json,
        "teacher": teacher,
        "greedy": greedy,
        "n_vocab": tracer.n_vocab(),
        "n_embd": tracer.n_embd(),
    });
    std::fs::write(args.out.join("trace.json"), serde_json::to_vec_pretty(&trace)?)?;
    println!(
        "{}",
        serde_json::json!({"out": args.out, "tiles": tiles.len(), "logit_rows": logits.len()})
    );
    Ok(ExitCode::SUCCESS)
}
