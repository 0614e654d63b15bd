//! PDF pages through pdfium, bound the first time a PDF arrives: the reason it is missing
//! becomes the error of that document, not of the run.

#[cfg(feature = "pdf")]
use std::sync::OnceLock;

#[cfg(not(feature = "pdf"))]
use vinscan_core::{Error, ErrorKind};
use vinscan_core::{Limits, PdfRenderer, RenderedPage, TextLayer};

/// The product's extractor: PDF pages through pdfium (bound on first use), TIFF pages through
/// libtiff, OCR through Tesseract with the Vietnamese model (loaded when a pipeline first
/// transcribes a page by OCR).
pub fn extractor() -> vinscan_core::Extractor {
    let extractor = vinscan_core::Extractor::new(
        Some(std::sync::Arc::new(LazyPdf::default())),
        Some(std::sync::Arc::new(vinscan_tiff::LibTiff)),
    );
    #[cfg(feature = "ocr")]
    let extractor = extractor.with_ocr(std::sync::Arc::new(crate::ocr::LazyOcr::default()));
    extractor
}

/// A [`PdfRenderer`] that binds `libpdfium.so` on first use.
#[derive(Default)]
pub struct LazyPdf {
    #[cfg(feature = "pdf")]
    inner: OnceLock<Result<vinscan_pdfium::PdfiumRenderer, vinscan_core::Error>>,
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

    fn page_text(&self, pdf: &[u8], index: u32, size: (u32, u32)) -> vinscan_core::Result<TextLayer> {
        self.renderer()?.page_text(pdf, index, size)
    }
}
