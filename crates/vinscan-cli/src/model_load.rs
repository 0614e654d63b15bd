//! Loading the model: now (the daemon), or on first use (`extract`, `batch`: a run that finds
//! nothing to do never loads it).

use std::sync::{Arc, OnceLock};

#[cfg(not(feature = "llama"))]
use anyhow::bail;
use vinscan_core::VisionModel;

use crate::model_files::ModelFiles;

/// How to run the model: the settings `ModelArgs` and the daemon's `[model]` share.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "llama"), allow(dead_code))]
pub struct ModelSettings {
    /// CPU threads (default: all cores).
    pub threads: Option<u32>,
    pub ctx_size: u32,
    pub gpu_layers: u32,
    /// Pages decoded together.
    pub parallel: u32,
}

/// The model, loaded on first use.
pub struct LazyModel {
    files: ModelFiles,
    settings: ModelSettings,
    model: OnceLock<Arc<dyn VisionModel>>,
    /// Held while loading, so workers asking at once load it once.
    loading: std::sync::Mutex<()>,
}

impl LazyModel {
    pub fn new(files: ModelFiles, settings: ModelSettings) -> Self {
        Self {
            files,
            settings,
            model: OnceLock::new(),
            loading: std::sync::Mutex::new(()),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.model.get().is_some()
    }

    /// The model, loading it the first time.
    pub fn get(&self) -> anyhow::Result<&dyn VisionModel> {
        if let Some(m) = self.model.get() {
            return Ok(m.as_ref());
        }
        let _guard = self
            .loading
            .lock()
            .map_err(|_| anyhow::anyhow!("model loading panicked in another worker"))?;
        if let Some(m) = self.model.get() {
            return Ok(m.as_ref());
        }
        let loaded = load_model(&self.files, self.settings)?;
        Ok(self.model.get_or_init(|| loaded).as_ref())
    }
}

impl vinscan_batch::ModelOnDemand for LazyModel {
    fn model(&self) -> Result<&dyn VisionModel, vinscan_core::Error> {
        self.get()
            .map_err(|e| vinscan_core::Error::new(vinscan_core::ErrorKind::Config, format!("{e:#}")))
    }

    fn loaded(&self) -> bool {
        self.is_loaded()
    }

    fn files_sha256(&self) -> (&str, &str) {
        (&self.files.model_sha256, &self.files.mmproj_sha256)
    }
}

/// Loads the model now (blocking).
#[cfg(feature = "llama")]
pub fn load_model(files: &ModelFiles, settings: ModelSettings) -> anyhow::Result<Arc<dyn VisionModel>> {
    let mut config = vinscan_llama::LlamaConfig::new(files.model.clone(), files.mmproj.clone());
    if let Some(t) = settings.threads {
        config.threads = t.max(1);
    }
    config.ctx_size = settings.ctx_size;
    config.gpu_layers = settings.gpu_layers;
    config.parallel = settings.parallel;
    config.model_sha256 = Some(files.model_sha256.clone());
    config.mmproj_sha256 = Some(files.mmproj_sha256.clone());
    let model = vinscan_llama::LlamaVisionModel::load(config)?;
    let info = model.info();
    tracing::info!(
        model = %info.model_file,
        mmproj = %info.mmproj_file,
        max_tiles = info.max_tiles,
        system_info = %info.system_info,
        "model ready"
    );
    Ok(Arc::new(model))
}

#[cfg(not(feature = "llama"))]
pub fn load_model(_: &ModelFiles, _: ModelSettings) -> anyhow::Result<Arc<dyn VisionModel>> {
    bail!("this vinscan was built without the `llama` feature: it cannot run a model")
}
