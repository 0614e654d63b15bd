//! The model thread: loads llama.cpp handles, then serves generation requests until the
//! command channel closes. Everything llama.cpp is created, used and dropped here.

use std::ffi::{CStr, CString};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunkType, MtmdInputText, mtmd_default_marker,
};
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use vinscan_core::hash::sha256_file;
use vinscan_core::{
    Error, ErrorKind, GenerateRequest, Generation, ModelInfo, ModelTimings, Result, StopReason,
};

use crate::{Command, LlamaConfig, read_projector_meta};

/// Tokens per image chunk are decoded in batches of this size.
const N_BATCH: u32 = 2048;

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            let b = LlamaBackend::init().map_err(|e| e.to_string())?;
            // SAFETY: returns a pointer to a static NUL-terminated string owned by llama.cpp.
            let info = unsafe { CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
            tracing::info!(system_info = %info.to_string_lossy().trim(), "llama.cpp backend ready");
            Ok(b)
        })
        .as_ref()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("llama.cpp backend: {e}")))
}

fn system_info() -> String {
    // SAFETY: as above.
    unsafe { CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) }
        .to_string_lossy()
        .trim()
        .to_owned()
}

fn internal(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::new(ErrorKind::Internal, format!("{what}: {e}"))
}

fn file_name(p: &Path) -> String {
    p.display().to_string()
}

/// Thread body: load, report readiness, serve.
pub(crate) fn run(
    config: LlamaConfig,
    ready: mpsc::SyncSender<Result<ModelInfo>>,
    commands: mpsc::Receiver<Command>,
) {
    let loaded = catch_unwind(AssertUnwindSafe(|| serve(&config, &ready, &commands)));
    if loaded.is_err() {
        let _ = ready.send(Err(Error::new(ErrorKind::Internal, "the model thread panicked")));
    }
}

fn serve(
    config: &LlamaConfig,
    ready: &mpsc::SyncSender<Result<ModelInfo>>,
    commands: &mpsc::Receiver<Command>,
) {
    let mut engine = match Engine::load(config) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let model_info = engine.info.clone();
    if ready.send(Ok(model_info)).is_err() {
        return;
    }
    let model = engine.model.take();
    let Some(model) = model else { return };
    let mut state = match engine.session(&model, config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the llama.cpp context");
            return;
        }
    };
    while let Ok(command) = commands.recv() {
        match command {
            Command::Generate(request, reply) => {
                let result = catch_unwind(AssertUnwindSafe(|| state.generate(&model, *request)))
                    .unwrap_or_else(|_| {
                        Err(Error::new(ErrorKind::Internal, "llama.cpp generation panicked"))
                    });
                let _ = reply.send(result);
            }
        }
    }
}

struct Engine {
    info: ModelInfo,
    model: Option<LlamaModel>,
}

/// Per-thread state that borrows the model.
struct Session<'m> {
    ctx: LlamaContext<'m>,
    mtmd: MtmdContext,
    factory: Arc<ParserFactory>,
    n_vocab: i32,
}

impl Engine {
    fn load(config: &LlamaConfig) -> Result<Self> {
        let backend = backend()?;
        let meta = read_projector_meta(&config.mmproj)?;
        if !config.model.is_file() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{}: model file not found", config.model.display()),
            ));
        }
        let model_sha256 = match &config.model_sha256 {
            Some(s) => s.clone(),
            None => sha256_file(&config.model)?,
        };
        let mmproj_sha256 = match &config.mmproj_sha256 {
            Some(s) => s.clone(),
            None => sha256_file(&config.mmproj)?,
        };
        let t = Instant::now();
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model = LlamaModel::load_from_file(backend, &config.model, &params).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{}: cannot load model: {e}", config.model.display()),
            )
        })?;
        let name = model.meta_val_str("general.name").ok();
        tracing::info!(
            model = %config.model.display(),
            n_vocab = model.n_vocab(),
            n_embd = model.n_embd(),
            elapsed_ms = t.elapsed().as_millis() as u64,
            "model loaded"
        );
        let info = ModelInfo {
            name,
            model_file: file_name(&config.model),
            model_sha256,
            mmproj_file: file_name(&config.mmproj),
            mmproj_sha256,
            max_tiles: meta.max_tiles.min(vinscan_core::tiling::MAX_TILES_LIMIT),
            image_size: meta.image_size,
            system_info: system_info(),
        };
        Ok(Self {
            info,
            model: Some(model),
        })
    }

    fn session<'m>(&self, model: &'m LlamaModel, config: &LlamaConfig) -> Result<Session<'m>> {
        let backend = backend()?;
        let threads = i32::try_from(config.threads.max(1)).unwrap_or(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.ctx_size.max(1024)))
            .with_n_batch(N_BATCH)
            .with_n_ubatch(512)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| internal("llama context")(e.to_string()))?;
        let t = Instant::now();
        let mtmd_params = MtmdContextParams {
            use_gpu: config.gpu_layers > 0,
            print_timings: false,
            n_threads: threads,
            media_marker: CString::new(mtmd_default_marker())
                .map_err(|e| internal("marker")(e.to_string()))?,
            image_min_tokens: -1,
            image_max_tokens: -1,
        };
        let path = config.mmproj.to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{}: path is not UTF-8", config.mmproj.display()),
            )
        })?;
        let mtmd = MtmdContext::init_from_file(path, model, &mtmd_params).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{}: cannot load projector: {e}", config.mmproj.display()),
            )
        })?;
        if !mtmd.support_vision() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{}: projector has no vision encoder", config.mmproj.display()),
            ));
        }
        let env = LlamaSampler::llguidance_tok_env(model);
        let factory = ParserFactory::new_simple(&env).map_err(|e| internal("llguidance")(e.to_string()))?;
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "projector and grammar engine ready"
        );
        Ok(Session {
            ctx,
            mtmd,
            factory: Arc::new(factory),
            n_vocab: model.n_vocab(),
        })
    }
}

/// The schema with llguidance options: compact JSON (no free whitespace between tokens: a model
/// could otherwise emit blanks until `max_tokens`) and no `\u` escapes (text comes out as UTF-8).
pub(crate) fn compact_json_grammar(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(map) = schema.as_object_mut() {
        map.insert(
            "x-guidance".to_owned(),
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ",",
                "key_separator": ":",
                "json_allowed_escapes": "nrbtf\"\\",
            }),
        );
    }
    schema
}

/// ChatML as Vintern's template writes it; mtmd replaces the marker with `<img>`, one embedding
/// chunk per tile and the thumbnail, then `</img>`.
pub(crate) fn chatml_prompt(system: &str, user: &str) -> String {
    format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{}\n{user}<|im_end|>\n<|im_start|>assistant\n",
        mtmd_default_marker()
    )
}

impl Session<'_> {
    fn generate(&mut self, model: &LlamaModel, req: GenerateRequest) -> Result<Generation> {
        let started = Instant::now();
        let grammar = TopLevelGrammar::from_json_schema(compact_json_grammar(&req.grammar));
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("schema cannot be compiled to a grammar: {e}"),
            )
        })?;
        let matcher = Matcher::new(Ok(parser));
        let bitmap = MtmdBitmap::from_image_data(req.width, req.height, &req.rgb)
            .map_err(|e| internal("image bitmap")(e.to_string()))?;
        let text = MtmdInputText {
            text: chatml_prompt(&req.system_prompt, &req.user_prompt),
            add_special: true,
            parse_special: true,
        };
        let chunks = self
            .mtmd
            .tokenize(text, &[&bitmap])
            .map_err(|e| internal("mtmd tokenize")(e.to_string()))?;
        let (mut images, mut image_tokens) = (0u32, 0u32);
        for i in 0..chunks.len() {
            if let Some(c) = chunks.get(i)
                && c.chunk_type() == MtmdInputChunkType::Image
            {
                images += 1;
                image_tokens += c.n_tokens() as u32;
            }
        }
        let prompt_tokens = chunks.total_tokens() as u32;
        let n_ctx = self.ctx.n_ctx();
        if prompt_tokens + 1 >= n_ctx {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the page needs {prompt_tokens} prompt tokens but the context holds {n_ctx}; raise --ctx-size or lower the pipeline's max tiles"
                ),
            ));
        }
        let budget = req.max_tokens.min(n_ctx - prompt_tokens - 1);

        self.ctx.clear_kv_cache();
        let mut n_past = chunks
            .eval_chunks(&mut self.mtmd, &mut self.ctx, 0, 0, N_BATCH as i32, true)
            .map_err(|e| internal("vision encode and prefill")(e.to_string()))?;
        let encode_prefill_ms = started.elapsed().as_secs_f64() * 1e3;

        let mut samplers = Vec::with_capacity(3);
        if req.repeat_penalty > 1.0 {
            let last_n = i32::try_from(req.repeat_last_n).unwrap_or(i32::MAX);
            samplers.push(LlamaSampler::penalties(
                self.n_vocab,
                last_n,
                req.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        samplers.push(LlamaSampler::from(matcher));
        samplers.push(LlamaSampler::greedy());
        let mut sampler = LlamaSampler::chain_simple(samplers);

        let gen_started = Instant::now();
        let mut sample_ms = 0.0;
        let mut out = Vec::<u8>::new();
        let mut batch = LlamaBatch::new(1, 1);
        let mut generated = 0u32;
        let mut stop = StopReason::MaxTokens;
        while generated < budget {
            let t = Instant::now();
            let token = sampler.sample(&self.ctx, -1);
            sample_ms += t.elapsed().as_secs_f64() * 1e3;
            if model.vocab().is_eog(token) {
                stop = StopReason::EndOfOutput;
                break;
            }
            out.extend(model.vocab().token_to_piece(token, false, None));
            generated += 1;
            batch.clear();
            batch
                .add(token, n_past, &[0], true)
                .map_err(|e| internal("batch")(e.to_string()))?;
            self.ctx
                .decode(&mut batch)
                .map_err(|e| internal("decode")(e.to_string()))?;
            n_past += 1;
        }
        let generate_ms = gen_started.elapsed().as_secs_f64() * 1e3;
        let text = String::from_utf8(out)
            .map_err(|_| Error::new(ErrorKind::InvalidOutput, "model output is not valid UTF-8"))?;
        Ok(Generation {
            text,
            stop,
            prompt_tokens,
            image_tokens,
            images,
            generated_tokens: generated,
            timings: ModelTimings {
                encode_prefill_ms,
                generate_ms,
                sample_ms,
            },
        })
    }
}
