//! What every measuring mode starts from: the pipeline, the product's extractor (pdfium for
//! PDF pages), the projector's facts, the pages, and the model loaded as the product loads it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vinscan_core::{Catalog, Extractor, PdfRenderer, Pipeline};
use vinscan_llama::{LlamaConfig, LlamaVisionModel, ProjectorMeta, read_projector_meta};

use crate::args::{BenchArgs, Inputs};
use crate::measure::ms_since;
use crate::pages::units;
use crate::report::Unit;

/// The benchmark's inputs, read and checked.
pub struct Setup {
    pub args: BenchArgs,
    pub inputs: Inputs,
    pub pipeline: Arc<Pipeline>,
    pub extractor: Extractor,
    /// The facts of the projector every peer runs.
    pub meta: ProjectorMeta,
    pub units: Vec<Unit>,
}

impl Setup {
    /// Reads the pipeline, the projector and the pages (rendered pages and grid images go to
    /// `--work-dir`).
    pub fn prepare(args: BenchArgs) -> anyhow::Result<Self> {
        let inputs = args.inputs()?;
        std::fs::create_dir_all(&args.work_dir)?;
        let catalog = match (&args.pipelines_dir, &args.schemas_dir) {
            (Some(p), Some(s)) => Catalog::from_dirs(p, s)?,
            _ => Catalog::embedded()?,
        };
        let pipeline = catalog.pipeline(&args.pipeline)?;
        let extractor = Extractor::new(pdf_renderer(), Some(Arc::new(vinscan_tiff::LibTiff)));
        let meta = read_projector_meta(&inputs.mmproj)?;
        let units = units(
            &inputs.pages,
            &extractor,
            &pipeline,
            meta.max_tiles,
            &args.work_dir,
        )?;
        Ok(Self {
            args,
            inputs,
            pipeline,
            extractor,
            meta,
            units,
        })
    }

    /// Loads the model with projector `mmproj` and `parallel` sequences, as the product does;
    /// returns it and the milliseconds loading took.
    pub fn load(&self, mmproj: &Path, parallel: u32) -> anyhow::Result<(LlamaVisionModel, f64)> {
        let t = Instant::now();
        let mut config = LlamaConfig::new(self.inputs.model.clone(), mmproj.to_path_buf());
        config.threads = self.args.threads;
        config.gpu_layers = self.args.gpu_layers;
        config.ctx_size = self.args.ctx_size;
        config.parallel = parallel;
        config.fast_forward = true;
        config.llm_flash_attention = self.args.llm_flash_attention;
        let model = LlamaVisionModel::load(config)?;
        Ok((model, ms_since(t)))
    }
}

/// pdfium, when it can be loaded; without it a PDF page fails with the product's own message.
fn pdf_renderer() -> Option<Arc<dyn PdfRenderer>> {
    match vinscan_pdfium::PdfiumRenderer::load() {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::warn!(error = %e, "no pdfium: PDF pages cannot be benchmarked");
            None
        }
    }
}
