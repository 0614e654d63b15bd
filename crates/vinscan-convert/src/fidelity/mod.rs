//! Fidelity tools: a record of what llama.cpp computes for one page, for the parity tests
//! against the reference implementation (`ops/reference/parity.py`, docs/FIDELITY.md) and for
//! the benchmark's vision-encode figure. `vinscan model trace` is [`trace_page`].
//!
//! The tracer drives llama.cpp's C API directly (see the crate docs for why); the page goes
//! through the same tiling as extraction, and the prompt is the text generation feeds llama.cpp.

mod npy;
mod tracer;

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;
use vinscan_core::document::{Decoders, Document};
use vinscan_core::tiling::{TILE_SIZE, TiledPage, resize_bicubic, tile_page};
use vinscan_core::{Error, ErrorKind, Limits, Result};

pub use npy::write_npy;
pub use tracer::{PromptPiece, TokenizedImage, TraceConfig, Tracer, argmax};

use npy::f32_bytes;

/// What to trace.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// The page: an image file (the first page of a TIFF; PDF is not rendered here).
    pub image: PathBuf,
    /// Output directory: `tiles.npy`, `embeddings.npy`, `logits.npy`, `trace.json`.
    pub out: PathBuf,
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub threads: u32,
    pub ctx_size: u32,
    pub system: String,
    /// The user prompt (the image marker goes before it, as in Vintern's template).
    pub prompt: String,
    /// Teacher-forced continuation length: logits are recorded after the prompt and each token.
    pub teacher_tokens: usize,
    /// Greedy continuation length.
    pub greedy_tokens: usize,
    /// Most tiles (default: the projector's `preproc_max_tiles`).
    pub max_tiles: Option<u32>,
}

/// What a trace wrote.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub out: PathBuf,
    pub tiles: usize,
    pub logit_rows: usize,
}

/// One piece of the prompt in `trace.json`: `{"text": [ids]}` or `{"image": n_tokens}`.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum PieceRecord {
    Text(Vec<i32>),
    Image(usize),
}

/// `trace.json`, as `ops/reference/parity.py` reads it.
#[derive(Serialize)]
struct TraceRecord<'a> {
    image: &'a Path,
    model: &'a Path,
    mmproj: &'a Path,
    grid: [u32; 2],
    max_tiles: u32,
    system: &'a str,
    prompt: &'a str,
    prompt_pieces: Vec<PieceRecord>,
    teacher: Vec<i32>,
    greedy: Vec<i32>,
    n_vocab: usize,
    n_embd: usize,
}

/// The images vinscan hands the encoder for a tiled page: crops of the stretched page (mtmd
/// copies them as they are), then the thumbnail resampled from the stretched page as mtmd does.
pub fn encoder_tiles(tiled: &TiledPage) -> Result<Vec<RgbImage>> {
    let mut tiles = Vec::new();
    for r in 0..tiled.grid.rows {
        for c in 0..tiled.grid.cols {
            let (x, y) = (c * TILE_SIZE, r * TILE_SIZE);
            tiles.push(image::imageops::crop_imm(&tiled.image, x, y, TILE_SIZE, TILE_SIZE).to_image());
        }
    }
    if tiled.grid.has_thumbnail() {
        tiles.push(resize_bicubic(&tiled.image, TILE_SIZE, TILE_SIZE)?);
    }
    Ok(tiles)
}

/// Each tile encoded on its own (a 448 px image is one chunk, no resampling): one row of
/// embeddings per tile, and the tokens each takes.
fn encode_tiles(tracer: &mut Tracer, tiles: &[RgbImage]) -> Result<(Vec<Vec<f32>>, usize)> {
    let mut embeddings = Vec::new();
    let mut n_tokens = 0;
    for t in tiles {
        let mut chunks = tracer.encode_image(t.as_raw(), TILE_SIZE, TILE_SIZE)?;
        if chunks.len() != 1 {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("a 448 px tile became {} image chunks", chunks.len()),
            ));
        }
        let e = chunks.remove(0);
        n_tokens = e.len() / tracer.n_embd().max(1);
        embeddings.push(e);
    }
    Ok((embeddings, n_tokens))
}

/// The teacher-forced continuation: byte tokens (ids below 256 are single bytes in Qwen2's
/// vocabulary and in the toy ones), spread over that range.
fn teacher_tokens(n: usize) -> Vec<i32> {
    (0..n).map(|i| ((17 + 7919 * i) % 256) as i32).collect()
}

/// Traces one page: writes the encoder's tiles, per-tile embeddings, teacher-forced logits and
/// `trace.json` (prompt pieces, teacher and greedy tokens) into `request.out`.
pub fn trace_page(request: &TraceRequest) -> Result<TraceSummary> {
    let meta = vinscan_llama::read_projector_meta(&request.mmproj)?;
    let bytes = std::fs::read(&request.image).map_err(|e| Error::from_io(&e, request.image.display()))?;
    let limits = Limits::default();
    let doc = Document::open(
        &request.image.display().to_string(),
        bytes,
        &limits,
        Decoders::default(),
    )?;
    let page = doc.page(0, 200.0, &limits, Decoders::default())?.image;
    let max_tiles = request.max_tiles.unwrap_or(meta.max_tiles);
    let tiled = tile_page(&page, 1, max_tiles)?;
    let out = &request.out;
    std::fs::create_dir_all(out).map_err(|e| Error::from_io(&e, out.display()))?;

    let tiles = encoder_tiles(&tiled)?;
    let tile_bytes: Vec<u8> = tiles.iter().flat_map(|t| t.as_raw().iter().copied()).collect();
    let side = TILE_SIZE as usize;
    write_npy(
        &out.join("tiles.npy"),
        "|u1",
        &[tiles.len(), side, side, 3],
        &tile_bytes,
    )?;

    let mut tracer = Tracer::load(&TraceConfig {
        model: request.model.clone(),
        mmproj: request.mmproj.clone(),
        threads: request.threads,
        ctx_size: request.ctx_size,
        gpu_layers: 0,
    })?;
    let (embeddings, n_tokens) = encode_tiles(&mut tracer, &tiles)?;
    let shape = [tiles.len(), n_tokens, tracer.n_embd()];
    write_npy(
        &out.join("embeddings.npy"),
        "<f4",
        &shape,
        &f32_bytes(&embeddings),
    )?;

    let prompt = Tracer::chat_prompt(&request.system, &request.prompt);
    let (w, h) = tiled.image.dimensions();
    let rgb = tiled.image.as_raw();
    let pieces = tracer.prompt(&prompt, rgb, w, h)?;
    let images = pieces
        .iter()
        .filter(|p| matches!(p, PromptPiece::Image { .. }))
        .count();
    if images != tiles.len() {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "mtmd cut the page into {images} image chunks, vinscan's grid has {}",
                tiles.len()
            ),
        ));
    }
    let teacher = teacher_tokens(request.teacher_tokens);
    let logits = tracer.teacher_forced_logits(&prompt, rgb, w, h, &teacher)?;
    let shape = [logits.len(), tracer.n_vocab()];
    write_npy(&out.join("logits.npy"), "<f4", &shape, &f32_bytes(&logits))?;
    let greedy = tracer.greedy(&prompt, rgb, w, h, request.greedy_tokens)?;

    let record = TraceRecord {
        image: &request.image,
        model: &request.model,
        mmproj: &request.mmproj,
        grid: [tiled.grid.cols, tiled.grid.rows],
        max_tiles,
        system: &request.system,
        prompt: &request.prompt,
        prompt_pieces: pieces
            .into_iter()
            .map(|p| match p {
                PromptPiece::Text(ids) => PieceRecord::Text(ids),
                PromptPiece::Image { n_tokens } => PieceRecord::Image(n_tokens),
            })
            .collect(),
        teacher,
        greedy,
        n_vocab: tracer.n_vocab(),
        n_embd: tracer.n_embd(),
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("trace.json: {e}")))?;
    let path = out.join("trace.json");
    std::fs::write(&path, json).map_err(|e| Error::from_io(&e, path.display()))?;
    Ok(TraceSummary {
        out: out.clone(),
        tiles: tiles.len(),
        logit_rows: logits.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_tokens_are_single_bytes() {
        let t = teacher_tokens(200);
        assert_eq!(t.len(), 200);
        assert_eq!(t[0], 17);
        assert!(t.iter().all(|id| (0..256).contains(id)));
    }

    #[test]
    fn prompt_pieces_keep_the_shape_parity_py_reads() {
        let pieces = vec![PieceRecord::Text(vec![1, 2]), PieceRecord::Image(256)];
        let json = serde_json::to_string(&pieces).unwrap_or_default();
        assert_eq!(json, r#"[{"text":[1,2]},{"image":256}]"#);
    }

    #[test]
    fn a_wide_page_gives_its_tiles_and_the_thumbnail() {
        let page = RgbImage::new(1200, 600);
        let tiled = tile_page(&page, 1, 6).expect("tile");
        let tiles = encoder_tiles(&tiled).expect("tiles");
        assert_eq!(tiles.len() as u32, tiled.grid.images());
        assert!(tiles.iter().all(|t| t.dimensions() == (TILE_SIZE, TILE_SIZE)));
    }
}
