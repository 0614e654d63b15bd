//! OCR through Tesseract, loaded the first time a pipeline transcribes a page by OCR: a run
//! that never does never loads it, and a missing language model becomes the error of the pages
//! that need it.

use std::sync::OnceLock;

use vinscan_core::{Ocr, OcrPage, Result};

/// The language Tesseract reads: Vietnamese (`tesseract-ocr-vie`).
pub const OCR_LANGUAGE: &str = "vie";

/// An [`Ocr`] that loads Tesseract on first use.
#[derive(Default)]
pub struct LazyOcr {
    inner: OnceLock<Result<vinscan_ocr::Tesseract>>,
}

impl LazyOcr {
    fn engine_or_error(&self) -> Result<&vinscan_ocr::Tesseract> {
        let loaded = self.inner.get_or_init(|| {
            vinscan_ocr::Tesseract::load(OCR_LANGUAGE, vinscan_ocr::tessdata_from_env().as_deref())
        });
        match loaded {
            Ok(t) => Ok(t),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Ocr for LazyOcr {
    fn recognise(&self, width: u32, height: u32, rgb: &[u8]) -> Result<OcrPage> {
        self.engine_or_error()?.recognise(width, height, rgb)
    }

    fn engine(&self) -> String {
        self.engine_or_error()
            .map_or_else(|_| format!("tesseract {OCR_LANGUAGE}"), Ocr::engine)
    }
}
