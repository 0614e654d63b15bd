//! Model files, model loading, the PDF renderer and the catalog, as the commands need them.
//! Loading is lazy: a run that finds nothing to do never loads the model.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use vinscan_core::hash::sha256_file;
use vinscan_core::{Catalog, Error, ErrorKind, Limits, PdfRenderer, RenderedPage, VisionModel};

use crate::cli::{GlobalArgs, ModelArgs};

pub const DEFAULT_REPO: &str = "ngxson/Vintern-1B-v3_5-GGUF";
pub const DEFAULT_MODEL_FILE: &str = "Vintern-1B-v3_5-Q8_0.gguf";
pub const DEFAULT_MMPROJ_FILE: &str = "mmproj-Vintern-1B-v3_5-Q8_0.gguf";

/// The schemas and pipelines of this run.
pub fn catalog(global: &GlobalArgs) -> anyhow::Result<Catalog> {
    let catalog = match (&global.pipelines_dir, &global.schemas_dir) {
        (Some(p), Some(s)) => Catalog::from_dirs(p, s)?,
        _ => Catalog::embedded()?,
    };
    Ok(catalog)
}

/// Model and projector paths with their sha256.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "llama"), allow(dead_code))]
pub struct ModelFiles {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub model_sha256: String,
    pub mmproj_sha256: String,
}

fn cached(file: &str) -> Option<PathBuf> {
    hf_hub::Cache::from_env()
        .repo(hf_hub::Repo::model(DEFAULT_REPO.to_owned()))
        .get(file)
}

impl ModelFiles {
    /// Paths from the arguments, else the files `vinscan model pull` put in the Hub cache.
    pub fn resolve(args: &ModelArgs) -> anyhow::Result<Self> {
        let pick = |given: &Option<PathBuf>, default: &str, flag: &str| -> anyhow::Result<PathBuf> {
            match given {
                Some(p) => Ok(p.clone()),
                None => cached(default).with_context(|| {
                    format!("no {flag} given and {default} is not in the Hugging Face cache: pass {flag} (or its env var) or run `vinscan model pull`")
                }),
            }
        };
        let model = pick(&args.model, DEFAULT_MODEL_FILE, "--model")?;
        let mmproj = pick(&args.mmproj, DEFAULT_MMPROJ_FILE, "--mmproj")?;
        for (p, what) in [(&model, "model"), (&mmproj, "mmproj")] {
            if !p.is_file() {
                bail!("{what} file {} not found", p.display());
            }
        }
        let model_sha256 = sha256_file(&model)?;
        let mmproj_sha256 = sha256_file(&mmproj)?;
        Ok(Self {
            model,
            mmproj,
            model_sha256,
            mmproj_sha256,
        })
    }
}

/// The model, loaded on first use.
pub struct LazyModel<'a> {
    files: ModelFiles,
    args: &'a ModelArgs,
    model: OnceLock<Arc<dyn VisionModel>>,
    /// Held while loading, so workers asking at once load it once.
    loading: std::sync::Mutex<()>,
}

impl<'a> LazyModel<'a> {
    pub fn new(files: ModelFiles, args: &'a ModelArgs) -> Self {
        Self {
            files,
            args,
            model: OnceLock::new(),
            loading: std::sync::Mutex::new(()),
        }
    }

    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    pub fn is_loaded(&self) -> bool {
        self.model.get().is_some()
    }

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
        let loaded = load_model(&self.files, self.args)?;
        Ok(self.model.get_or_init(|| loaded).as_ref())
    }
}

/// Loads the model now (blocking).
#[cfg(feature = "llama")]
pub fn load_model(files: &ModelFiles, args: &ModelArgs) -> anyhow::Result<Arc<dyn VisionModel>> {
    let mut config = vinscan_llama::LlamaConfig::new(files.model.clone(), files.mmproj.clone());
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    config.ctx_size = args.ctx_size;
    config.gpu_layers = args.gpu_layers;
    config.parallel = args.parallel;
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
pub fn load_model(_: &ModelFiles, _: &ModelArgs) -> anyhow::Result<Arc<dyn VisionModel>> {
    bail!("this vinscan was built without the `llama` feature: it cannot run a model")
}

/// Binds pdfium the first time a PDF arrives; the reason it is missing becomes the error of
/// that document.
#[derive(Default)]
pub struct LazyPdf {
    #[cfg(feature = "pdf")]
    inner: OnceLock<Result<vinscan_pdfium::PdfiumRenderer, Error>>,
}

impl LazyPdf {
    #[cfg(feature = "pdf")]
    fn renderer(&self) -> vinscan_core::Result<&dyn PdfRenderer> {
        match self.inner.get_or_init(vinscan_pdfium::PdfiumRenderer::load) {
            Ok(r) => Ok(r),
            Err(e) => Err(e.clone()),
        }
    }

    #[cfg(not(feature = "pdf"))]
    fn renderer(&self) -> vinscan_core::Result<&dyn PdfRenderer> {
        Err(Error::new(
            ErrorKind::Config,
            "this vinscan was built without the `pdf` feature",
        ))
    }
}

impl PdfRenderer for LazyPdf {
    fn page_count(&self, pdf: &[u8]) -> vinscan_core::Result<u32> {
        self.renderer()?.page_count(pdf)
    }

    fn render_page(
        &self,
        pdf: &[u8],
        index: u32,
        dpi: f32,
        limits: &Limits,
    ) -> vinscan_core::Result<RenderedPage> {
        self.renderer()?.render_page(pdf, index, dpi, limits)
    }
}

/// Reads an input file, refusing it before reading when it exceeds the byte limit.
pub fn read_input(path: &Path, limits: &Limits) -> vinscan_core::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(&e, path.display()))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    if meta.len() > limits.max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{}: {} bytes exceeds the limit of {} bytes",
                path.display(),
                meta.len(),
                limits.max_bytes
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::from_io(&e, path.display()))
}
