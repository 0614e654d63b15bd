//! The JPEG and content-detection cases of `tests/fixtures/cases` (from `../shared/cases`):
//! a phone photo with data after its image is read whole, an arithmetic-coded JPEG is refused
//! by name, and detection is no stricter than the decoders behind it. (The TIFF cases are
//! in `vinscan-tiff`, the PDF one in `vinscan-pdfium`: they need their native libraries.)

use std::path::PathBuf;

use image::RgbImage;
use vinscan_core::{Decoders, Document, ErrorKind, Format, Limits};

fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_jpeg_with_a_motion_photo_after_it_is_the_photo() {
    let bytes = fixture("cases/jpeg_motion_photo_trailer.jpg");
    let doc = Document::open("motion.jpg", bytes, &Limits::default(), Decoders::default()).expect("opens");
    assert_eq!(doc.page_count(), 1);
    let page = doc
        .page(0, 150.0, &Limits::default(), Decoders::default())
        .expect("the photo decodes")
        .image;
    let want: RgbImage = image::load_from_memory(&fixture("cases/expected/receipt-rgb.png"))
        .expect("expected")
        .to_rgb8();
    assert_eq!(page.dimensions(), want.dimensions());
    let diff: u64 = page
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let mean = diff as f64 / page.as_raw().len() as f64;
    assert!(mean < 1.5, "mean difference {mean} from the expected page");
    // colours in place: red top-right, blue bottom-left
    let (w, h) = page.dimensions();
    let tr = page.get_pixel(w - 9, 8).0;
    let bl = page.get_pixel(8, h - 9).0;
    assert!(tr[0] > 200 && tr[2] < 60, "top-right {tr:?}");
    assert!(bl[2] > 200 && bl[0] < 60, "bottom-left {bl:?}");
    // the same file cut inside its image data is still refused
    let bytes = fixture("cases/jpeg_motion_photo_trailer.jpg");
    let cut = bytes[..bytes.len() / 3].to_vec();
    let doc = Document::open("cut.jpg", cut, &Limits::default(), Decoders::default()).expect("header");
    let e = doc
        .page(0, 150.0, &Limits::default(), Decoders::default())
        .expect_err("cut");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("truncated JPEG"), "{e}");
}

#[test]
fn an_arithmetic_coded_jpeg_is_refused_by_name() {
    let bytes = fixture("cases/jpeg_arithmetic.jpg");
    let doc = Document::open("arith.jpg", bytes, &Limits::default(), Decoders::default()).expect("opens");
    let e = doc
        .page(0, 150.0, &Limits::default(), Decoders::default())
        .expect_err("unsupported");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("arithmetic-coded JPEG"), "{e}");
    assert!(
        e.to_string().contains("arith.jpg page 1"),
        "names the file and page: {e}"
    );
}

#[test]
fn detection_is_no_stricter_than_the_decoders() {
    assert_eq!(
        Format::sniff(&fixture("cases/bigtiff_lzw.tif")),
        Some(Format::Tiff)
    );
    assert_eq!(
        Format::sniff(b"MM\0+\0\x08\0\0"),
        Some(Format::Tiff),
        "big-endian BigTIFF"
    );
    assert_eq!(
        Format::sniff(&fixture("cases/pdf_leading_utf8_bom.pdf")),
        Some(Format::Pdf)
    );
    let mut late = vec![b'X'; Format::PDF_HEADER_WINDOW];
    late.extend_from_slice(b"%PDF-1.4\n");
    assert_eq!(
        Format::sniff(&late),
        Some(Format::Pdf),
        "header starting at byte 1024"
    );
    let mut too_late = vec![b'X'; Format::PDF_HEADER_WINDOW + 1];
    too_late.extend_from_slice(b"%PDF-1.4\n");
    assert_eq!(Format::sniff(&too_late), None, "header past the window");
    // junk that starts with the BMP signature
    assert_eq!(Format::sniff(b"BM scan 2024\r\n%PDF-1.7\n"), Some(Format::Pdf));
    // without its decoder a TIFF is the deployment's fault, not the file's
    let e = Document::open(
        "a.tif",
        fixture("cases/bigtiff_lzw.tif"),
        &Limits::default(),
        Decoders::default(),
    )
    .expect_err("no TIFF decoder");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
