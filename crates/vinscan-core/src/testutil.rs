//! Test helpers that build inputs in memory (compiled for tests only).

/// A JPEG with an EXIF APP1 segment carrying `orientation` inserted after SOI.
pub(crate) fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // TIFF header (little endian) + IFD0 with one entry: Orientation (0x0112), SHORT, 1 value.
    let mut tiff = vec![b'I', b'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00];
    tiff.extend_from_slice(&[0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]);
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A stand-in PDF renderer for unit tests (no pdfium here): a document is the bytes
/// `%PDF-fake N`, and page `i` of it renders as a 900 × 600 grey page of value `40 + i`.
pub(crate) struct FakePdf;

/// The bytes of a [`FakePdf`] document of `pages` pages.
pub(crate) fn fake_pdf(pages: u32) -> Vec<u8> {
    format!("%PDF-fake {pages}").into_bytes()
}

impl crate::PdfRenderer for FakePdf {
    fn page_count(&self, pdf: &[u8]) -> crate::Result<u32> {
        let text = std::str::from_utf8(pdf).expect("fake pdf");
        Ok(text.trim_start_matches("%PDF-fake ").parse().expect("page count"))
    }

    fn render_page(
        &self,
        _pdf: &[u8],
        index: u32,
        _dpi: f32,
        _limits: &crate::Limits,
    ) -> crate::Result<crate::RenderedPage> {
        Ok(crate::RenderedPage {
            width: 900,
            height: 600,
            rgb: vec![40 + index as u8; 900 * 600 * 3],
        })
    }

    fn page_text(&self, _pdf: &[u8], index: u32, _size: (u32, u32)) -> crate::Result<crate::TextLayer> {
        Ok(crate::TextLayer {
            text: format!("Trang {} của tài liệu quét thử nghiệm", index + 1),
            words: Vec::new(),
        })
    }
}

/// An extractor whose PDF renderer is [`FakePdf`].
pub(crate) fn fake_pdf_extractor() -> crate::Extractor {
    crate::Extractor::new(Some(std::sync::Arc::new(FakePdf)), None)
}
