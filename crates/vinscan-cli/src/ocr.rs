//! OCR through Tesseract, loaded the first time a pipeline transcribes a page by OCR: a run
//! that never does never loads it. A failed load (the language model missing) is the error of
//! the pages that needed it and is tried again on the next page, so a daemon holding its jobs
//! for it resumes once the model is installed, without a restart.

use std::sync::{Arc, Mutex};

use vinscan_core::{Error, ErrorKind, Ocr, OcrPage, Result};

/// The language Tesseract reads: Vietnamese (`tesseract-ocr-vie`).
pub const OCR_LANGUAGE: &str = "vie";

/// An [`Ocr`] that loads Tesseract on first use, keeping it once loaded.
#[derive(Default)]
pub struct LazyOcr {
    loaded: Mutex<Option<Arc<vinscan_ocr::Tesseract>>>,
}

impl LazyOcr {
    fn engine_or_error(&self) -> Result<Arc<vinscan_ocr::Tesseract>> {
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "the OCR loader was poisoned by a panic"))?;
        if let Some(t) = loaded.as_ref() {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(vinscan_ocr::Tesseract::load(
            OCR_LANGUAGE,
            vinscan_ocr::tessdata_from_env().as_deref(),
        )?);
        *loaded = Some(Arc::clone(&t));
        Ok(t)
    }
}

impl Ocr for LazyOcr {
    fn recognise(&self, width: u32, height: u32, rgb: &[u8]) -> Result<OcrPage> {
        self.engine_or_error()?.recognise(width, height, rgb)
    }

    fn engine(&self) -> String {
        self.engine_or_error()
            .map_or_else(|_| format!("tesseract {OCR_LANGUAGE}"), |t| t.engine())
    }
}
