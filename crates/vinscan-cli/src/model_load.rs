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
    /// The Vintern files, or why they could not be found (a run whose pipeline reads with the
    /// text stage needs none).
    files: Result<ModelFiles, String>,
    settings: ModelSettings,
    model: OnceLock<Arc<dyn VisionModel>>,
    /// Why loading failed: kept, so the workers in flight when it failed get the same error
    /// instead of each loading the model again (a model too large for the GPU would fail once
    /// per worker, minutes each).
    failed: OnceLock<String>,
    /// Held while loading, so workers asking at once load it once.
    loading: std::sync::Mutex<()>,
}

impl LazyModel {
    pub fn new(files: anyhow::Result<ModelFiles>, settings: ModelSettings) -> Self {
        Self {
            files: files.map_err(|e| format!("{e:#}")),
            settings,
            model: OnceLock::new(),
            failed: OnceLock::new(),
            loading: std::sync::Mutex::new(()),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.model.get().is_some()
    }

    /// The model, loading it the first time; after a failed load, that failure's error.
    pub fn get(&self) -> anyhow::Result<&dyn VisionModel> {
        self.get_or_load(load_model)
    }

    /// [`LazyModel::get`] with the loader given (a unit test counts its calls).
    fn get_or_load(
        &self,
        load: impl FnOnce(&ModelFiles, ModelSettings) -> anyhow::Result<Arc<dyn VisionModel>>,
    ) -> anyhow::Result<&dyn VisionModel> {
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
        if let Some(why) = self.failed.get() {
            anyhow::bail!("{why}");
        }
        let files = self.files.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        match load(files, self.settings) {
            Ok(loaded) => Ok(self.model.get_or_init(|| loaded).as_ref()),
            Err(e) => {
                let why = self.failed.get_or_init(|| format!("{e:#}"));
                anyhow::bail!("{why}")
            }
        }
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
        match &self.files {
            Ok(f) => (&f.model_sha256, &f.mmproj_sha256),
            Err(_) => ("", ""),
        }
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

/// The text stage's model, loaded on first use; its file and hash are known before.
pub struct LazyTextModel {
    info: vinscan_core::TextModelInfo,
    settings: ModelSettings,
    model: OnceLock<Result<Arc<dyn vinscan_core::TextModel>, vinscan_core::Error>>,
}

impl LazyTextModel {
    /// `path`'s model with a context of `ctx_size` tokens; hashes the file now.
    pub fn new(given: &std::path::Path, ctx_size: u32, settings: ModelSettings) -> anyhow::Result<Self> {
        let path = crate::model_files::resolve_text_model(given)?;
        let path = path.as_path();
        #[cfg(feature = "llama")]
        vinscan_llama::check_text_model_file(path)?;
        Ok(Self {
            info: vinscan_core::TextModelInfo {
                name: None,
                file: path.display().to_string(),
                sha256: vinscan_core::hash::sha256_file(path)?,
                ctx_size,
            },
            settings,
            model: OnceLock::new(),
        })
    }

    /// Loads the model now (the daemon does at start), or says why it cannot.
    #[cfg_attr(
        not(feature = "kafka"),
        allow(dead_code, reason = "only the daemon (`kafka`) loads at start")
    )]
    pub fn load(&self) -> anyhow::Result<()> {
        self.get()
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("text model {}: {e}", self.info.file))
    }

    fn get(&self) -> Result<&Arc<dyn vinscan_core::TextModel>, vinscan_core::Error> {
        self.model
            .get_or_init(|| load_text_model(&self.info, self.settings))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl vinscan_core::TextModel for LazyTextModel {
    fn info(&self) -> &vinscan_core::TextModelInfo {
        match self.model.get() {
            Some(Ok(m)) => m.info(),
            _ => &self.info,
        }
    }

    fn complete(&self, request: vinscan_core::TextRequest) -> vinscan_core::Result<vinscan_core::Generation> {
        self.get()?.complete(request)
    }
}

#[cfg(feature = "llama")]
fn load_text_model(
    info: &vinscan_core::TextModelInfo,
    settings: ModelSettings,
) -> Result<Arc<dyn vinscan_core::TextModel>, vinscan_core::Error> {
    let config = vinscan_llama::TextConfig {
        model: info.file.clone().into(),
        threads: settings
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32)),
        ctx_size: info.ctx_size,
        gpu_layers: settings.gpu_layers,
        sha256: Some(info.sha256.clone()),
    };
    Ok(Arc::new(vinscan_llama::LlamaTextModel::load(config)?))
}

#[cfg(not(feature = "llama"))]
fn load_text_model(
    _: &vinscan_core::TextModelInfo,
    _: ModelSettings,
) -> Result<Arc<dyn vinscan_core::TextModel>, vinscan_core::Error> {
    Err(vinscan_core::Error::new(
        vinscan_core::ErrorKind::Config,
        "this vinscan was built without the `llama` feature: it cannot run a text model",
    ))
}

/// `extractor` with the text model at `path` (a GGUF path or a pulled name), when one is
/// given; the file is hashed now and loaded on first use.
pub fn with_text_model(
    extractor: vinscan_core::Extractor,
    path: Option<&std::path::Path>,
    ctx_size: u32,
    settings: ModelSettings,
) -> anyhow::Result<vinscan_core::Extractor> {
    Ok(match path {
        Some(path) => extractor.with_text_model(Arc::new(LazyTextModel::new(path, ctx_size, settings)?)),
        None => extractor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy() -> LazyModel {
        let files = ModelFiles {
            model: "model.gguf".into(),
            mmproj: "mmproj.gguf".into(),
            model_sha256: String::new(),
            mmproj_sha256: String::new(),
        };
        let settings = ModelSettings {
            threads: None,
            ctx_size: 4096,
            gpu_layers: 0,
            parallel: 4,
        };
        LazyModel::new(Ok(files), settings)
    }

    #[test]
    fn a_failed_load_is_not_tried_again() {
        let model = lazy();
        let mut loads = 0;
        let first = model
            .get_or_load(|_, _| {
                loads += 1;
                anyhow::bail!("out of GPU memory")
            })
            .err()
            .map(|e| e.to_string());
        let second = model
            .get_or_load(|_, _| {
                loads += 1;
                anyhow::bail!("another error")
            })
            .err()
            .map(|e| e.to_string());
        assert_eq!(loads, 1);
        assert_eq!(first.as_deref(), Some("out of GPU memory"));
        assert_eq!(second, first);
        assert!(!model.is_loaded());
    }
}
