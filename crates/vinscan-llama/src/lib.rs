//! Vintern-1B (InternViT + MLP projector + Qwen2) run in-process through `llama-cpp-2` with
//! mtmd's vision path, output constrained to a JSON Schema by llguidance.
//!
//! llama.cpp contexts are not `Send`: one dedicated thread loads the model and the projector
//! and owns every handle; [`LlamaVisionModel`] forwards requests to it over a channel and waits
//! for the reply (the shape of text-embeddings-inference's backends).
//!
//! [`LlamaTextModel`] is the text stage's model (any llama.cpp text model: VinaLLaMA, Gemma),
//! on a thread of its own in the same way.
//!
//! [`tools`] holds what tools off the serving path need from llama.cpp (its quantiser, the
//! file-type names, the prompt text): `vinscan-convert` calls them.
//!
//! Architecture invariant: inference only. It is the crate that names llama.cpp (the other is
//! `vinscan-convert`'s `trace` feature, a fidelity tool); it knows nothing about documents,
//! pipelines or where outputs go.

pub mod attention;
mod engine;
mod files;
mod ggml_probe;
mod health;
pub mod matmul;
mod page;
mod prompt;
mod sampling;
mod scheduler;
mod session;
mod text;
pub mod tools;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use vinscan_core::{Error, ErrorKind, GenerateRequest, Generation, ModelInfo, Result, VisionModel};

pub use files::{
    ProjectorMeta, check_text_model_file, read_projector_meta, trained_context, vision_flops_per_tile,
};
pub use text::{LlamaTextModel, TextConfig};
pub use tools::quantize;

/// How to load the model.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    /// CPU threads for both the LLM and the vision encoder.
    pub threads: u32,
    /// Context window in tokens: image tokens + prompt + output must fit.
    pub ctx_size: u32,
    /// Layers offloaded to the GPU (only with the `cuda` feature; 0 = CPU only).
    pub gpu_layers: u32,
    /// sha256 of the two files when the caller already computed them.
    pub model_sha256: Option<String>,
    pub mmproj_sha256: Option<String>,
    /// Pages decoded together: their output tokens go through the LLM in one batch per step.
    /// Callers get the benefit by calling `generate` from several threads.
    pub parallel: u32,
    /// Feed the tokens the grammar forces (keys, punctuation) without a model step each.
    pub fast_forward: bool,
    /// Compute the KV cells of the prompt prefix pages share (system message) once.
    pub reuse_prefix: bool,
    /// The language model's flash attention: `None` is vinscan's choice (on the CPU the faster
    /// of the two for `parallel` pages, timed at load by [`attention::probe_attention`]; on
    /// the GPU as llama.cpp decides: `engine::flash_attention`); `Some(on)` forces it, for the
    /// benchmark's comparisons. The vision encoder keeps mtmd's default either way.
    pub llm_flash_attention: Option<bool>,
}

impl LlamaConfig {
    pub fn new(model: PathBuf, mmproj: PathBuf) -> Self {
        Self {
            model,
            mmproj,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            ctx_size: vinscan_core::model::DEFAULT_CTX_SIZE,
            gpu_layers: 0,
            model_sha256: None,
            mmproj_sha256: None,
            parallel: 4,
            fast_forward: true,
            reuse_prefix: true,
            llm_flash_attention: None,
        }
    }
}

enum Command {
    Generate(Box<GenerateRequest>, mpsc::SyncSender<Result<Generation>>),
}

/// A Vintern model loaded on its own thread.
pub struct LlamaVisionModel {
    info: ModelInfo,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Option<JoinHandle<()>>,
    health: Arc<health::Health>,
}

/// The environment variable OpenMP reads for its wait policy. ggml's OpenMP threads spin
/// actively by default, and decoding collapses (>10× slower) when cores are shared; `PASSIVE`
/// makes idle threads sleep. libgomp reads it once when it is loaded, before `main`, so the
/// binary re-executes itself with it set (see `vinscan-cli`).
pub const OMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";

static LOGS_TO_TRACING: OnceLock<()> = OnceLock::new();

/// Routes llama.cpp's, ggml's and mtmd's logs to `tracing` (once per process).
pub(crate) fn logs_to_tracing() {
    LOGS_TO_TRACING.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    });
}

impl LlamaVisionModel {
    /// Loads model and projector on a new thread and waits until they are ready.
    pub fn load(config: LlamaConfig) -> Result<Self> {
        logs_to_tracing();
        if std::env::var(OMP_WAIT_POLICY).map_or(true, |v| !v.eq_ignore_ascii_case("passive")) {
            tracing::warn!(
                "OMP_WAIT_POLICY is not PASSIVE: ggml threads will spin and may slow down under load"
            );
        }
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(health::Health::default());
        let thread_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("vinscan-llama".into())
            .spawn(move || engine::run(config, ready_tx, rx, thread_health))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start the model thread: {e}")))?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the model thread stopped while loading",
                ));
            }
        };
        Ok(Self {
            info,
            commands: Mutex::new(Some(tx)),
            thread: Some(thread),
            health,
        })
    }
}

impl VisionModel for LlamaVisionModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation> {
        self.health.check()?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        {
            let guard = self
                .commands
                .lock()
                .map_err(|_| Error::new(ErrorKind::Unavailable, "model command channel poisoned"))?;
            let tx = guard
                .as_ref()
                .ok_or_else(|| Error::new(ErrorKind::Unavailable, "model is shut down"))?;
            tx.send(Command::Generate(Box::new(request), reply_tx))
                .map_err(|_| Error::new(ErrorKind::Unavailable, "the model thread has stopped"))?;
        }
        reply_rx.recv().map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                "the model thread stopped during generation",
            )
        })?
    }

    fn health(&self) -> Result<()> {
        self.health.check()
    }
}

impl Drop for LlamaVisionModel {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.commands.lock() {
            guard.take();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_without_thread() -> (LlamaVisionModel, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let info = ModelInfo {
            name: None,
            model_file: "m.gguf".into(),
            model_sha256: String::new(),
            mmproj_file: "p.gguf".into(),
            mmproj_sha256: String::new(),
            mmproj_repaired_from: None,
            max_tiles: 6,
            image_size: 448,
            tokens_per_image: 256,
            ctx_size: vinscan_core::model::DEFAULT_CTX_SIZE,
            system_info: String::new(),
            llm_flash_attention: None,
        };
        let model = LlamaVisionModel {
            info,
            commands: Mutex::new(Some(tx)),
            thread: None,
            health: Arc::default(),
        };
        (model, rx)
    }

    fn request() -> GenerateRequest {
        GenerateRequest {
            system_prompt: String::new(),
            user_prompt: String::new(),
            images: vec![vinscan_core::RequestImage {
                width: 1,
                height: 1,
                rgb: vec![0; 3],
            }],
            expected_images: 1,
            output: vinscan_core::OutputConstraint::JsonSchema(Arc::new(serde_json::json!({}))),
            max_tokens: 1,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            cancel: vinscan_core::Cancellation::new(),
        }
    }

    /// Regression: a model thread that ended made every later page an `Internal` error, which
    /// the daemon dead-letters; the engine being gone is `Unavailable`, and health says so.
    #[test]
    fn a_stopped_model_thread_is_unavailable_not_internal() {
        let (model, rx) = model_without_thread();
        assert!(model.health().is_ok());
        drop(rx);
        let kind = model.generate(request()).map(|_| ()).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Unavailable));

        let (model, rx) = model_without_thread();
        model.health.fail("llama.cpp generation panicked");
        assert_eq!(model.health().map_err(|e| e.kind()), Err(ErrorKind::Unavailable));
        assert_eq!(
            model.generate(request()).map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::Unavailable)
        );
        assert!(
            rx.try_recv().is_err(),
            "nothing is sent to a thread known to be gone"
        );
    }
}
