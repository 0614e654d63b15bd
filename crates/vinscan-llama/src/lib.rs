//! Vintern-1B (InternViT + MLP projector + Qwen2) run in-process through `llama-cpp-2` with
//! mtmd's vision path, output constrained to a JSON Schema by llguidance.
//!
//! llama.cpp contexts are not `Send`: one dedicated thread loads the model and the projector
//! and owns every handle; [`LlamaVisionModel`] forwards requests to it over a channel and waits
//! for the reply (the shape of text-embeddings-inference's backends).
//!
//! Architecture invariant: this is the only crate that names llama.cpp; it knows nothing about
//! documents, pipelines or where outputs go.

mod engine;
mod files;
mod scheduler;
pub mod tools;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use vinscan_core::{Error, ErrorKind, GenerateRequest, Generation, ModelInfo, Result, VisionModel};

pub use files::{ProjectorMeta, read_projector_meta, vision_flops_per_tile};
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
}

impl LlamaConfig {
    pub fn new(model: PathBuf, mmproj: PathBuf) -> Self {
        Self {
            model,
            mmproj,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            ctx_size: 12288,
            gpu_layers: 0,
            model_sha256: None,
            mmproj_sha256: None,
            parallel: 4,
            fast_forward: true,
            reuse_prefix: true,
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
        let thread = std::thread::Builder::new()
            .name("vinscan-llama".into())
            .spawn(move || engine::run(config, ready_tx, rx))
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
        })
    }
}

impl VisionModel for LlamaVisionModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        {
            let guard = self
                .commands
                .lock()
                .map_err(|_| Error::new(ErrorKind::Internal, "model command channel poisoned"))?;
            let tx = guard
                .as_ref()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "model is shut down"))?;
            tx.send(Command::Generate(Box::new(request), reply_tx))
                .map_err(|_| Error::new(ErrorKind::Internal, "the model thread has stopped"))?;
        }
        reply_rx
            .recv()
            .map_err(|_| Error::new(ErrorKind::Internal, "the model thread stopped during generation"))?
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
