//! The tracer: what llama.cpp computes for one page — the prompt's token ids, the
//! projected vision embeddings of each image chunk, next-token logits along a teacher-forced
//! continuation and a greedy continuation — so that the parity tests can hold them against the
//! reference implementation (docs/FIDELITY.md).
//!
//! Not on the serving path. The safe `llama-cpp-2` wrapper exposes neither mtmd's per-chunk
//! output embeddings nor raw handles, so this module drives llama.cpp's C API directly, owning
//! every handle it creates and freeing it on drop. Single-threaded use only (not `Send`).

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;
use vinscan_core::{Error, ErrorKind, Result};

/// What to load.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub threads: u32,
    pub ctx_size: u32,
    /// LLM layers offloaded to the GPU in a `cuda` build; above 0 the projector runs there too.
    pub gpu_layers: u32,
}

/// One piece of a tokenised prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptPiece {
    Text(Vec<i32>),
    /// An image chunk (one tile or the thumbnail) taking this many positions.
    Image {
        n_tokens: usize,
    },
}

fn err(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Internal, what.into())
}

fn c_path(p: &std::path::Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::new(ErrorKind::Config, format!("{}: path contains NUL", p.display())))
}

const N_BATCH: u32 = 2048;

/// llama.cpp model, context and mtmd projector, created and freed together.
pub struct Tracer {
    model: NonNull<sys::llama_model>,
    ctx: NonNull<sys::llama_context>,
    mtmd: NonNull<sys::mtmd_context>,
    n_vocab: usize,
    n_embd: usize,
}

/// A tokenised prompt (owned `mtmd_input_chunks`).
struct Chunks(NonNull<sys::mtmd_input_chunks>);

impl Drop for Chunks {
    fn drop(&mut self) {
        // SAFETY: created by mtmd_input_chunks_init, freed once.
        unsafe { sys::mtmd_input_chunks_free(self.0.as_ptr()) }
    }
}

/// An image tokenised by [`Tracer::tokenize_image`]: its chunks, and its image chunks in order.
pub struct TokenizedImage {
    /// Owns what `images` points into.
    _chunks: Chunks,
    images: Vec<*const sys::mtmd_input_chunk>,
}

impl TokenizedImage {
    /// Image chunks (tiles and the thumbnail).
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// An owned `mtmd_batch` of the tracer's mtmd context (it does not own its chunks).
struct Batch(NonNull<sys::mtmd_batch>);

impl Batch {
    fn new(mtmd: NonNull<sys::mtmd_context>) -> Result<Self> {
        // SAFETY: the context is alive (owned by the tracer that calls this).
        NonNull::new(unsafe { sys::mtmd_batch_init(mtmd.as_ptr()) })
            .map(Self)
            .ok_or_else(|| err("mtmd_batch_init failed"))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: created by mtmd_batch_init, freed once.
        unsafe { sys::mtmd_batch_free(self.0.as_ptr()) }
    }
}

impl Chunks {
    fn len(&self) -> usize {
        // SAFETY: valid chunks handle.
        unsafe { sys::mtmd_input_chunks_size(self.0.as_ptr()) }
    }

    fn get(&self, i: usize) -> *const sys::mtmd_input_chunk {
        // SAFETY: i < len (callers iterate 0..len).
        unsafe { sys::mtmd_input_chunks_get(self.0.as_ptr(), i) }
    }
}

impl Tracer {
    pub fn load(config: &TraceConfig) -> Result<Self> {
        vinscan_llama::tools::init_backend()?;
        let model_path = c_path(&config.model)?;
        let mmproj_path = c_path(&config.mmproj)?;
        let threads = i32::try_from(config.threads.max(1)).unwrap_or(1);
        // SAFETY: default parameter structs are plain data; the paths outlive the calls; each
        // handle is checked for null and owned by the returned value (or freed on error).
        unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = i32::try_from(config.gpu_layers).unwrap_or(i32::MAX);
            let model = sys::llama_model_load_from_file(model_path.as_ptr(), params);
            let model = NonNull::new(model).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("{}: cannot load model", config.model.display()),
                )
            })?;
            let mut cparams = sys::llama_context_default_params();
            cparams.n_ctx = config.ctx_size.max(1024);
            cparams.n_batch = N_BATCH;
            cparams.n_ubatch = 512;
            cparams.n_threads = threads;
            cparams.n_threads_batch = threads;
            let Some(ctx) = NonNull::new(sys::llama_init_from_model(model.as_ptr(), cparams)) else {
                sys::llama_model_free(model.as_ptr());
                return Err(err("llama_init_from_model failed"));
            };
            let mut mparams = sys::mtmd_context_params_default();
            mparams.use_gpu = config.gpu_layers > 0;
            mparams.print_timings = false;
            mparams.n_threads = threads;
            let mtmd = sys::mtmd_init_from_file(mmproj_path.as_ptr(), model.as_ptr(), mparams);
            let Some(mtmd) = NonNull::new(mtmd) else {
                sys::llama_free(ctx.as_ptr());
                sys::llama_model_free(model.as_ptr());
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{}: cannot load projector", config.mmproj.display()),
                ));
            };
            let vocab = sys::llama_model_get_vocab(model.as_ptr());
            let n_vocab = sys::llama_vocab_n_tokens(vocab).max(0) as usize;
            // the width mtmd's outputs have (mtmd.h: llama_model_n_embd_inp × n_tokens floats)
            let n_embd = sys::llama_model_n_embd_inp(model.as_ptr()).max(0) as usize;
            Ok(Self {
                model,
                ctx,
                mtmd,
                n_vocab,
                n_embd,
            })
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Width of the LLM's input embeddings (`llama_model_n_embd_inp`): each row of a projected
    /// image chunk.
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// mtmd's marker: where the image goes in a prompt.
    pub fn marker() -> &'static str {
        vinscan_llama::tools::image_marker()
    }

    /// The prompt text generation uses (ChatML, image marker first in the user turn).
    pub fn chat_prompt(system: &str, user: &str) -> String {
        vinscan_llama::tools::chat_prompt(system, user)
    }

    fn tokenize(&self, text: &str, rgb: &[u8], width: u32, height: u32) -> Result<Chunks> {
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "RGB buffer does not match its size",
            ));
        }
        let text =
            CString::new(text).map_err(|_| Error::new(ErrorKind::InvalidInput, "prompt contains NUL"))?;
        // SAFETY: the bitmap copies `rgb`; every handle is checked and freed; `text` outlives
        // the call.
        unsafe {
            let bitmap = sys::mtmd_bitmap_init(width, height, rgb.as_ptr());
            if bitmap.is_null() {
                return Err(err("mtmd_bitmap_init failed"));
            }
            let chunks =
                NonNull::new(sys::mtmd_input_chunks_init()).ok_or_else(|| err("mtmd_input_chunks_init"));
            let chunks = match chunks {
                Ok(c) => Chunks(c),
                Err(e) => {
                    sys::mtmd_bitmap_free(bitmap);
                    return Err(e);
                }
            };
            let input = sys::mtmd_input_text {
                text: text.as_ptr(),
                text_len: text.as_bytes().len(),
                add_special: true,
                parse_special: true,
            };
            let bitmaps = [bitmap.cast_const()];
            let rc = sys::mtmd_tokenize(self.mtmd.as_ptr(), chunks.0.as_ptr(), &input, bitmaps.as_ptr(), 1);
            sys::mtmd_bitmap_free(bitmap);
            if rc != 0 {
                return Err(err(format!("mtmd_tokenize returned {rc}")));
            }
            Ok(chunks)
        }
    }

    /// The prompt as llama.cpp feeds it: text token ids and image chunks.
    pub fn prompt(&self, text: &str, rgb: &[u8], width: u32, height: u32) -> Result<Vec<PromptPiece>> {
        let chunks = self.tokenize(text, rgb, width, height)?;
        let mut out = Vec::new();
        for i in 0..chunks.len() {
            let chunk = chunks.get(i);
            // SAFETY: chunk belongs to `chunks`, alive here; the token slice is copied.
            unsafe {
                if sys::mtmd_input_chunk_get_type(chunk) == sys::MTMD_INPUT_CHUNK_TYPE_TEXT {
                    let mut n = 0usize;
                    let ptr = sys::mtmd_input_chunk_get_tokens_text(chunk, &mut n);
                    let tokens = if ptr.is_null() {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(ptr, n).to_vec()
                    };
                    out.push(PromptPiece::Text(tokens));
                } else {
                    out.push(PromptPiece::Image {
                        n_tokens: sys::mtmd_input_chunk_get_n_tokens(chunk),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Projected embeddings (`n_tokens × n_embd`, row-major) of each image chunk of `rgb`.
    pub fn encode_image(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<Vec<f32>>> {
        let image = self.tokenize_image(rgb, width, height)?;
        self.encode_tokenized(&image)
    }

    /// `rgb` (`width × height × 3` bytes) preprocessed and cut into mtmd's chunks (InternVL:
    /// one image chunk per tile and the thumbnail), ready to encode.
    pub fn tokenize_image(&self, rgb: &[u8], width: u32, height: u32) -> Result<TokenizedImage> {
        let chunks = self.tokenize(Self::marker(), rgb, width, height)?;
        let images = (0..chunks.len())
            .map(|i| chunks.get(i))
            // SAFETY: the chunks are owned by `chunks`, which the returned value keeps.
            .filter(|c| unsafe { sys::mtmd_input_chunk_get_type(*c) } == sys::MTMD_INPUT_CHUNK_TYPE_IMAGE)
            .collect();
        Ok(TokenizedImage {
            _chunks: chunks,
            images,
        })
    }

    /// [`Tracer::encode_image`]'s work on an image tokenised beforehand: one graph per image
    /// chunk (`mtmd_encode_chunk`), as vinscan's engine encodes.
    pub fn encode_tokenized(&mut self, image: &TokenizedImage) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(image.images.len());
        for &chunk in &image.images {
            // SAFETY: `image` keeps its chunks alive; the output buffer holds n_tokens × n_embd
            // floats after a successful encode and is copied before the next call.
            unsafe {
                let rc = sys::mtmd_encode_chunk(self.mtmd.as_ptr(), chunk);
                if rc != 0 {
                    return Err(err(format!("mtmd_encode_chunk returned {rc}")));
                }
                let n = sys::mtmd_input_chunk_get_n_tokens(chunk) * self.n_embd;
                let ptr = sys::mtmd_get_output_embd(self.mtmd.as_ptr());
                if ptr.is_null() {
                    return Err(err("mtmd_get_output_embd returned null"));
                }
                out.push(std::slice::from_raw_parts(ptr, n).to_vec());
            }
        }
        Ok(out)
    }

    /// As [`Tracer::encode_tokenized`], but through mtmd's batch API (`mtmd_batch_add_chunk` /
    /// `mtmd_batch_encode`, llama.cpp `tools/mtmd/mtmd.h`): as many image chunks per graph as a
    /// batch takes (`batch_max_tokens`, 1,024 by default: four 256-token InternVL tiles).
    /// InternVL's tiles and thumbnail follow one another with no text chunk between them, so
    /// these are the batches `llama-mtmd-cli` encodes (it splits a batch at a text chunk).
    /// Returns the embeddings in chunk order and the size of each batch encoded.
    pub fn encode_tokenized_batched(
        &mut self,
        image: &TokenizedImage,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let images = &image.images;
        let mut out = Vec::with_capacity(images.len());
        let mut sizes = Vec::new();
        let mut next = 0;
        while next < images.len() {
            let batch = Batch::new(self.mtmd)?;
            let mut added = 0;
            // SAFETY: `image` keeps its chunks alive past the batch (dropped at the end of this
            // iteration); the batch belongs to this tracer's mtmd context; each output block
            // holds n_tokens × n_embd floats and is copied before the batch is freed.
            unsafe {
                for &chunk in &images[next..] {
                    match sys::mtmd_batch_add_chunk(batch.0.as_ptr(), chunk) {
                        0 => added += 1,
                        // full (2) or not batchable with the chunks already in it (3)
                        2 | 3 if added > 0 => break,
                        rc => return Err(err(format!("mtmd_batch_add_chunk returned {rc}"))),
                    }
                }
                let rc = sys::mtmd_batch_encode(batch.0.as_ptr());
                if rc != 0 {
                    return Err(err(format!("mtmd_batch_encode returned {rc}")));
                }
                for &chunk in &images[next..next + added] {
                    let n = sys::mtmd_input_chunk_get_n_tokens(chunk) * self.n_embd;
                    let ptr = sys::mtmd_batch_get_output_embd(batch.0.as_ptr(), chunk);
                    if ptr.is_null() {
                        return Err(err("mtmd_batch_get_output_embd returned null"));
                    }
                    out.push(std::slice::from_raw_parts(ptr, n).to_vec());
                }
            }
            sizes.push(added);
            next += added;
        }
        Ok((out, sizes))
    }

    /// Clears the KV cache and evaluates the prompt; returns the next position.
    fn eval_prompt(&mut self, text: &str, rgb: &[u8], width: u32, height: u32) -> Result<i32> {
        let chunks = self.tokenize(text, rgb, width, height)?;
        let mut n_past = 0;
        // SAFETY: valid handles; n_past is written by the helper.
        let rc = unsafe {
            sys::llama_memory_clear(sys::llama_get_memory(self.ctx.as_ptr()), true);
            sys::mtmd_helper_eval_chunks(
                self.mtmd.as_ptr(),
                self.ctx.as_ptr(),
                chunks.0.as_ptr(),
                0,
                0,
                N_BATCH as i32,
                true,
                &mut n_past,
            )
        };
        if rc != 0 {
            return Err(err(format!("mtmd_helper_eval_chunks returned {rc}")));
        }
        Ok(n_past)
    }

    fn logits_row(&self, i: i32) -> Result<Vec<f32>> {
        // SAFETY: the row holds n_vocab floats when non-null.
        unsafe {
            let ptr = sys::llama_get_logits_ith(self.ctx.as_ptr(), i);
            if ptr.is_null() {
                return Err(err(format!("no logits for output {i}")));
            }
            Ok(std::slice::from_raw_parts(ptr, self.n_vocab).to_vec())
        }
    }

    /// Decodes `tokens` at positions from `pos`, with logits for each when `all_logits`.
    fn decode(&mut self, tokens: &[i32], pos: i32, all_logits: bool) -> Result<()> {
        let n = i32::try_from(tokens.len()).map_err(|_| err("too many tokens"))?;
        // SAFETY: the batch is allocated for n tokens and one sequence id each, filled within
        // bounds and freed after the decode.
        unsafe {
            let mut batch = sys::llama_batch_init(n, 0, 1);
            for (i, t) in tokens.iter().enumerate() {
                *batch.token.add(i) = *t;
                *batch.pos.add(i) = pos + i as i32;
                *batch.n_seq_id.add(i) = 1;
                *(*batch.seq_id.add(i)) = 0;
                *batch.logits.add(i) = i8::from(all_logits || i + 1 == tokens.len());
            }
            batch.n_tokens = n;
            let rc = sys::llama_decode(self.ctx.as_ptr(), batch);
            sys::llama_batch_free(batch);
            if rc != 0 {
                return Err(err(format!("llama_decode returned {rc}")));
            }
        }
        Ok(())
    }

    /// Next-token logits after the prompt and after each teacher token: `teacher.len() + 1`
    /// rows of `n_vocab`.
    pub fn teacher_forced_logits(
        &mut self,
        text: &str,
        rgb: &[u8],
        width: u32,
        height: u32,
        teacher: &[i32],
    ) -> Result<Vec<Vec<f32>>> {
        let n_past = self.eval_prompt(text, rgb, width, height)?;
        let mut rows = vec![self.logits_row(-1)?];
        if !teacher.is_empty() {
            self.decode(teacher, n_past, true)?;
            for i in 0..teacher.len() {
                rows.push(self.logits_row(i as i32)?);
            }
        }
        Ok(rows)
    }

    /// `n` tokens of plain greedy decoding (argmax, no grammar, not stopping at end-of-turn).
    pub fn greedy(&mut self, text: &str, rgb: &[u8], width: u32, height: u32, n: usize) -> Result<Vec<i32>> {
        let start = self.eval_prompt(text, rgb, width, height)?;
        let mut out = Vec::with_capacity(n);
        for pos in (start..).take(n) {
            let row = self.logits_row(-1)?;
            let best = argmax(&row) as i32;
            out.push(best);
            self.decode(&[best], pos, true)?;
        }
        Ok(out)
    }
}

/// Index of the largest value (the first on ties, as torch.argmax).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // SAFETY: each handle was created in `load` and is freed once, projector and context
        // before the model they borrow.
        unsafe {
            sys::mtmd_free(self.mtmd.as_ptr());
            sys::llama_free(self.ctx.as_ptr());
            sys::llama_model_free(self.model.as_ptr());
        }
    }
}
