//! PDF open and render through pdfium, as the product does: any bytes opened as a document with
//! the pdfium renderer, then up to four pages rendered at 72 dpi under small pixel limits.
//! Errors are fine; panics, aborts, hangs and allocations past the limits are not.
//!
//! pdfium itself is a prebuilt library (the pypdfium2 wheel's, found as the product finds it)
//! without sanitizer coverage, so libFuzzer's feedback comes from vinscan's side of the calls:
//! page counts, sizes and the bitmaps pdfium hands back. A crash inside pdfium still stops the
//! run and leaves its input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vinscan_core::{Decoders, Document, Limits};
use vinscan_pdfium::PdfiumRenderer;

static RENDERER: OnceLock<PdfiumRenderer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let renderer = RENDERER.get_or_init(|| match PdfiumRenderer::load() {
        Ok(r) => r,
        Err(e) => panic!("pdf target needs pdfium: {e}"),
    });
    let limits = Limits {
        max_pixels: 2_000_000,
        max_dimension: 2048,
        max_pages: 4,
        ..Limits::default()
    };
    let decoders = Decoders {
        pdf: Some(renderer),
        tiff: None,
    };
    if let Ok(doc) = Document::open("fuzz.pdf", data.to_vec(), &limits, decoders) {
        for index in 0..doc.page_count().min(4) {
            let _ = doc.page(index, 72.0, &limits, decoders);
        }
    }
});
