//! Rendering with the real pdfium library (found through VINSCAN_PDFIUM_LIB or the pypdfium2
//! wheel; `ops/test.sh` provides it).

use std::path::PathBuf;

use vinscan_core::{Decoders, Document, ErrorKind, Limits, PdfRenderer};
use vinscan_pdfium::PdfiumRenderer;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn renderer() -> PdfiumRenderer {
    PdfiumRenderer::load().expect("pdfium library (set VINSCAN_PDFIUM_LIB or install pypdfium2)")
}

fn with(r: &PdfiumRenderer) -> Decoders<'_> {
    Decoders {
        pdf: Some(r),
        tiff: None,
    }
}

#[test]
fn renders_every_page_of_the_invoice() {
    let r = renderer();
    let pdf = fixture("hoadon.pdf");
    assert_eq!(r.page_count(&pdf).expect("count"), 3);
    let limits = Limits::default();
    let doc = Document::open("hoadon.pdf", pdf, &limits, with(&r)).expect("open");
    for i in 0..3 {
        let page = doc.page(i, 150.0, &limits, with(&r)).expect("render");
        assert_eq!(page.image.dimensions(), (1240, 1753), "page {i}");
        // a rendered invoice page is mostly white paper with dark text on it
        let px = page.image.as_raw();
        let dark = px.chunks_exact(3).filter(|p| p.iter().all(|&c| c < 96)).count();
        let white = px.chunks_exact(3).filter(|p| p.iter().all(|&c| c > 240)).count();
        assert!(white > px.len() / 3 / 2, "page {i}: mostly white");
        assert!(dark > 1000, "page {i}: has text ({dark} dark pixels)");
    }
}

#[test]
fn encrypted_pdf_is_unsupported_with_clear_reason() {
    let e = Document::open(
        "locked.pdf",
        fixture("encrypted.pdf"),
        &Limits::default(),
        with(&renderer()),
    )
    .expect_err("encrypted");
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().starts_with("locked.pdf: encrypted PDF"), "{e}");
}

#[test]
fn truncated_pdf_is_invalid_input() {
    let mut pdf = fixture("hoadon.pdf");
    pdf.truncate(pdf.len() / 3);
    match Document::open("cut.pdf", pdf, &Limits::default(), with(&renderer())) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
        // pdfium repairs some truncations; then rendering must still not crash
        Ok(doc) => {
            for i in 0..doc.page_count() {
                let _ = doc.page(i, 72.0, &Limits::default(), with(&renderer()));
            }
        }
    }
}

#[test]
fn page_limit_refuses_long_documents() {
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let e =
        Document::open("hoadon.pdf", fixture("hoadon.pdf"), &limits, with(&renderer())).expect_err("3 > 2");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
}

#[test]
fn a_pdf_with_bytes_before_its_header_renders_as_without_them() {
    // ../shared/cases: a UTF-8 byte-order mark before `%PDF-`
    let bom = fixture("cases/pdf_leading_utf8_bom.pdf");
    assert_eq!(&bom[..3], b"\xEF\xBB\xBF");
    let r = renderer();
    let limits = Limits::default();
    let with_bom = Document::open("bom.pdf", bom.clone(), &limits, with(&r)).expect("opens");
    let clean = Document::open("clean.pdf", bom[3..].to_vec(), &limits, with(&r)).expect("opens");
    assert!(with_bom.page_count() >= 1);
    assert_eq!(with_bom.page_count(), clean.page_count());
    for i in 0..clean.page_count() {
        let a = with_bom.page(i, 100.0, &limits, with(&r)).expect("renders").image;
        let b = clean.page(i, 100.0, &limits, with(&r)).expect("renders").image;
        assert_eq!(a, b, "page {}", i + 1);
        assert!(a.pixels().any(|p| p.0[0] < 100), "page {} has ink", i + 1);
    }
}

/// A one-page PDF (ISO 32000-1: catalog, pages, Helvetica, one page with `page_extra` in its
/// dictionary and `content` as its content stream, an exact xref table).
fn one_page_pdf(page_extra: &str, content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [4 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] {page_extra} /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>"
        ),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
    ];
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn the_text_layer_is_whole_on_a_rotated_page_and_leaves_out_invisible_text() {
    let r = renderer();
    let lines = "BT /F1 12 Tf 14 TL 40 800 Td (So: 1234/QD-UBND ngay 05 thang 3) Tj T* \
                 (Dieu 1. Ban hanh kem theo Quyet dinh nay) Tj T* (Dieu 2. Hieu luc) Tj ET\n";
    for (rotate, size) in [
        ("", (595, 842)),
        ("/Rotate 90", (842, 595)),
        ("/Rotate 270", (842, 595)),
    ] {
        let layer = r.page_text(&one_page_pdf(rotate, lines), 0, size).expect("text");
        for want in ["So: 1234/QD-UBND", "Dieu 1. Ban hanh", "Dieu 2. Hieu luc"] {
            assert!(
                layer.text.contains(want),
                "{rotate:?}: {want:?} not in {:?}",
                layer.text
            );
        }
        // every word has a box on the page as rendered: a line across an upright page, down a
        // page turned a quarter
        assert_eq!(layer.words.len(), 19, "{rotate:?}: {:?}", layer.words);
        let word = layer
            .words
            .iter()
            .find(|w| w.text == "1234/QD-UBND")
            .expect("the number, whole");
        let [x0, y0, x1, y1] = word.bbox;
        assert!(x1 <= size.0 && y1 <= size.1, "{rotate:?}: {word:?}");
        let (w, h) = (x1 - x0, y1 - y0);
        match rotate {
            // 12 pt Helvetica at 1 px per point, 62 pt from the left, its baseline 42 pt below the top
            "" => assert!(
                w > 3 * h && (55..75).contains(&x0) && (25..42).contains(&y0),
                "{word:?}"
            ),
            // turned clockwise: the line runs down the right-hand side
            "/Rotate 90" => assert!(h > 3 * w && x0 > 780 && (55..75).contains(&y0), "{word:?}"),
            _ => assert!(h > 3 * w && x1 < 62, "{word:?}"),
        }
    }
    // a scanner's searchable PDF: the OCR layer is invisible (3 Tr); only the visible line counts
    let hidden = "BT 3 Tr /F1 12 Tf 40 800 Td (HIDDEN OCR LAYER WITHOUT DIACRITICS) Tj ET\n\
                  BT 0 Tr /F1 12 Tf 40 700 Td (Visible) Tj ET\n";
    let layer = r
        .page_text(&one_page_pdf("", hidden), 0, (595, 842))
        .expect("text");
    assert!(!layer.text.contains("HIDDEN"), "{:?}", layer.text);
    assert!(layer.text.contains("Visible"), "{:?}", layer.text);
    assert_eq!(layer.words.len(), 1, "{:?}", layer.words);
}
