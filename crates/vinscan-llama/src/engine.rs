//! The model thread: loads llama.cpp handles, then serves generation requests until the
//! command channel closes. Everything llama.cpp is created, used and dropped here.

use std::ffi::{CStr, CString};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::mtmd::{MtmdContext, MtmdContextParams, mtmd_default_marker};
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::ParserFactory;
use llguidance::toktrie::{TokEnv, TokTrie, TokenId, TokenizerEnv};
use vinscan_core::hash::sha256_file;
use vinscan_core::{Error, ErrorKind, ModelInfo, Result};

use crate::attention::{AttentionShape, flash_attention_wins, probe_attention};
use crate::health::Health;
use crate::scheduler::Scheduler;
use crate::session::{MAX_PARALLEL, N_BATCH, Session};
use crate::{Command, LlamaConfig, read_projector_meta};

// The smallest context window the engine makes, whatever is configured (the CLI and the
// daemon's config refuse smaller ones before they get here).
use vinscan_core::model::MIN_CTX_SIZE;

/// The flash-attention setting of a language-model context: `forced` when given (the
/// benchmark's comparisons), else llama.cpp's choice (`auto`: on where the device runs it) when
/// layers go to a GPU this build can offload to, and on the CPU what `cpu_choice` says: the
/// engine times both on this CPU ([`crate::attention::probe_attention`], whose docs give the
/// measurements that made it a probe rather than a rule).
///
/// The setting is fixed when the context is made (it decides the V cache's layout), so it
/// follows the pages a context is made for (`--parallel`), not the pages in flight at a given
/// step.
///
/// The vision encoder keeps mtmd's default, flash attention on: at 1,025 tokens per tile its
/// tiled kernel is the faster one (by hand on a 2-core Xeon with the fidelity tracer: 7.3 s
/// per tile with it, 10.2 s without).
pub(crate) fn flash_attention(
    forced: Option<bool>,
    gpu_layers: u32,
    gpu_offload: bool,
    cpu_choice: impl FnOnce() -> bool,
) -> llama_cpp_sys_2::llama_flash_attn_type {
    match forced {
        Some(true) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        Some(false) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        None if gpu_layers > 0 && gpu_offload => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        None if cpu_choice() => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        None => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    }
}

/// Whether the vision model's language model runs flash attention on this CPU when its context
/// is made for `parallel` pages at a time: [`crate::attention::flash_attention_wins`] on
/// [`crate::attention::probe_attention`] for one page and for `parallel` pages at `model`'s
/// attention shape, logged with the times. Should the probe fail, the rule it replaced decides
/// (on for more than one page).
pub(crate) fn cpu_flash_attention(model: &LlamaModel, parallel: u32, threads: u32) -> bool {
    let heads = i64::from(model.n_head());
    let shape = AttentionShape {
        head_dim: if heads > 0 {
            i64::from(model.n_embd()) / heads
        } else {
            0
        },
        n_head: heads,
        n_head_kv: i64::from(model.n_head_kv()),
    };
    let t = Instant::now();
    let probes = probe_attention(shape, 1, threads).and_then(|one| {
        let full = (parallel > 1)
            .then(|| probe_attention(shape, parallel, threads))
            .transpose()?;
        Ok((one, full))
    });
    match probes {
        Ok((one, full)) => {
            let on = flash_attention_wins(&one, full.as_ref());
            tracing::info!(
                parallel,
                one_page_flash_ms = one.flash_ms(),
                one_page_plain_ms = one.plain_ms(),
                full_flash_ms = full.map(|f| f.flash_ms()),
                full_plain_ms = full.map(|f| f.plain_ms()),
                full_pages = full.map(|f| f.pages),
                flash_attention = on,
                elapsed_ms = t.elapsed().as_millis() as u64,
                "attention probe: one page's language-model attention per layer, alone and among the pages in flight, with flash attention and without"
            );
            on
        }
        Err(e) => {
            tracing::warn!(error = %e, "attention probe failed: flash attention follows --parallel");
            parallel > 1
        }
    }
}

/// Refuses a model file that is not GGUF, as [`crate::check_text_model_file`] does for the
/// text model (llama.cpp's own header reader, metadata only), so a wrong `--model` is named as
/// such rather than by llama.cpp's bare "null result".
///
/// # Errors
/// `Config` naming the file.
fn check_gguf(path: &std::path::Path) -> Result<()> {
    llama_cpp_2::gguf::GgufContext::from_file(path)
        .map(|_| ())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{}: not a GGUF model file", path.display()),
            )
        })
}

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

/// Thread body: load, report readiness, serve. However the thread ends other than by its
/// command channel closing (a panic, a load failure after readiness), `health` says so, and
/// every caller from then on gets `Unavailable`.
pub(crate) fn run(
    config: LlamaConfig,
    ready: mpsc::SyncSender<Result<ModelInfo>>,
    commands: mpsc::Receiver<Command>,
    health: Arc<Health>,
) {
    let ended = health.watch_thread();
    let loaded = catch_unwind(AssertUnwindSafe(|| serve(&config, &ready, &commands, &health)));
    match loaded {
        Ok(()) => ended.clean(),
        Err(_) => {
            health.fail("the model thread panicked");
            let _ = ready.send(Err(Error::new(ErrorKind::Internal, "the model thread panicked")));
        }
    }
}

fn serve(
    config: &LlamaConfig,
    ready: &mpsc::SyncSender<Result<ModelInfo>>,
    commands: &mpsc::Receiver<Command>,
    health: &Health,
) {
    let mut engine = match Engine::load(config) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut model_info = engine.info.clone();
    let model = engine.model.take();
    let Some(model) = model else { return };
    // shared with the grammar's tokenizer, which must outlive nothing it borrows
    let model = Arc::new(model);
    let mut session = match engine.session(&model, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    model_info.llm_flash_attention = session.llm_flash_attention;
    if ready.send(Ok(model_info)).is_err() {
        return;
    }
    let mut scheduler = Scheduler::new(config);
    let result = catch_unwind(AssertUnwindSafe(|| scheduler.run(&mut session, &model, commands)));
    let why = match result {
        Ok(Ok(())) => return,
        Ok(Err(why)) => why,
        // the context may be in any state: this thread serves nothing more
        Err(_) => "llama.cpp generation panicked".to_owned(),
    };
    // Not the pages' fault as far as anyone can tell, so they fail as `Unavailable`, not as
    // their own error; requests already queued are answered too, and later ones are refused
    // by the health check before they are sent.
    let why = format!("{why}; the model thread has stopped");
    tracing::error!(reason = %why, "failing the requests in flight");
    health.fail(&why);
    scheduler.fail_all(|| Error::new(ErrorKind::Unavailable, why.clone()));
    while let Ok(Command::Generate(_, reply)) = commands.try_recv() {
        let _ = reply.send(Err(Error::new(ErrorKind::Unavailable, why.clone())));
    }
}

struct Engine {
    info: ModelInfo,
    model: Option<LlamaModel>,
}

impl Engine {
    fn load(config: &LlamaConfig) -> Result<Self> {
        let backend = backend()?;
        let meta = read_projector_meta(&config.mmproj)?;
        if !meta.class_row_last {
            tracing::warn!(
                mmproj = %config.mmproj.display(),
                "the projector does not say its position table is in the graph's order: if llama.cpp's converter made it (a published GGUF), every patch gets its neighbour's position, and `vinscan model repair` writes a copy in the graph's order; if an earlier vinscan converted it, it is right already (convert it again to mark it) (docs/FIDELITY.md)"
            );
        }
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
        check_gguf(&config.model)?;
        if config.gpu_layers > 0 && !backend.supports_gpu_offload() {
            let gpu_layers = if config.gpu_layers == u32::MAX {
                "all".to_owned()
            } else {
                config.gpu_layers.to_string()
            };
            if cfg!(feature = "cuda") {
                tracing::warn!(
                    gpu_layers = %gpu_layers,
                    "llama.cpp found no usable CUDA device (no GPU, or a driver older than the CUDA runtime; its own error says which): --gpu-layers is ignored and every layer runs on the CPU"
                );
            } else {
                tracing::warn!(
                    gpu_layers = %gpu_layers,
                    "this vinscan was built without GPU support (`--features cuda`): --gpu-layers is ignored and every layer runs on the CPU"
                );
            }
        }
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
            mmproj_repaired_from: meta.repaired_from.clone(),
            max_tiles: meta.max_tiles.min(vinscan_core::tiling::MAX_TILES_LIMIT),
            image_size: meta.image_size,
            tokens_per_image: meta.tokens_per_image,
            ctx_size: config.ctx_size.max(MIN_CTX_SIZE),
            system_info: system_info(),
            // set when the context is made (`Engine::session`)
            llm_flash_attention: None,
        };
        Ok(Self {
            info,
            model: Some(model),
        })
    }

    fn session<'m>(&self, model: &'m Arc<LlamaModel>, config: &LlamaConfig) -> Result<Session<'m>> {
        let backend = backend()?;
        let threads = i32::try_from(config.threads.max(1)).unwrap_or(1);
        let parallel = config.parallel.clamp(1, MAX_PARALLEL);
        let flash = flash_attention(
            config.llm_flash_attention,
            config.gpu_layers,
            backend.supports_gpu_offload(),
            || cpu_flash_attention(model, parallel, config.threads),
        );
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.ctx_size.max(MIN_CTX_SIZE)))
            .with_n_batch(N_BATCH)
            .with_n_ubatch(512)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            // one sequence per page in flight, plus one holding the shared prompt prefix; the
            // cells are one pool (`kv_unified`), so a 7-tile page can use what 1-tile pages leave
            .with_n_seq_max(config.parallel.clamp(1, MAX_PARALLEL) + 1)
            .with_kv_unified(true)
            .with_flash_attention_policy(flash);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| internal("llama context")(e.to_string()))?;
        // which attention the language model runs is the engine's choice: say it once
        tracing::info!(
            parallel = config.parallel.clamp(1, MAX_PARALLEL),
            llm_flash_attention = match flash {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED => "on",
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED => "off",
                _ => "auto",
            },
            "language-model context ready"
        );
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
        let env: TokEnv = Arc::new(CanonicalTokEnv {
            trie: LlamaSampler::llguidance_tok_env(model).tok_trie().clone(),
            model: Arc::clone(model),
        });
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
            llm_flash_attention: match flash {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED => Some(true),
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED => Some(false),
                _ => None,
            },
        })
    }
}

/// llguidance's view of the vocabulary, tokenising with llama.cpp's own (canonical BPE)
/// tokenizer: llguidance forces tokens (fast-forward) only when tokenisation is canonical, so
/// the forced tokens are the ones the model was trained to see.
struct CanonicalTokEnv {
    trie: TokTrie,
    model: Arc<LlamaModel>,
}

impl TokenizerEnv for CanonicalTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.model
                .vocab()
                .tokenize(text.as_bytes(), false, false)
                .into_iter()
                .map(|t| t.0.cast_unsigned())
                .collect()
        })
    }

    fn tokenize_is_canonical(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_gguf_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("vinscan-magic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, bytes) in [("fake.png", &b"\x89PNG\r\n\x1a\n"[..]), ("short.gguf", b"GG")] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write");
            let e = check_gguf(&path).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("{name}: not a GGUF model file")), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flash_attention_is_the_cpus_choice_and_llama_cpps_on_the_gpu() {
        use llama_cpp_sys_2::{
            LLAMA_FLASH_ATTN_TYPE_AUTO as AUTO, LLAMA_FLASH_ATTN_TYPE_DISABLED as OFF,
            LLAMA_FLASH_ATTN_TYPE_ENABLED as ON,
        };
        let unasked = || -> bool { panic!("the CPU's choice is not asked for") };
        assert_eq!(flash_attention(None, 0, true, || false), OFF);
        assert_eq!(flash_attention(None, 0, true, || true), ON);
        assert_eq!(flash_attention(None, 99, true, unasked), AUTO);
        // layers asked for the GPU in a build without one run on the CPU
        assert_eq!(flash_attention(None, 99, false, || false), OFF);
        assert_eq!(flash_attention(None, 99, false, || true), ON);
        assert_eq!(flash_attention(Some(true), 0, false, unasked), ON);
        assert_eq!(flash_attention(Some(false), 99, true, unasked), OFF);
        assert_eq!(flash_attention(Some(false), 0, false, unasked), OFF);
    }
}
