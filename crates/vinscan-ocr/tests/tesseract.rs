//! Real Tesseract 5 with the Vietnamese model (Debian `tesseract-ocr-vie`; `ops/setup.sh`
//! installs it) on the receipt page of `tests/fixtures/cases`: the text, the words' boxes, a
//! blank page, a missing language, and instances shared by threads.

use std::path::PathBuf;
use std::sync::Arc;

use vinscan_core::grounding::ground_page;
use vinscan_core::{ErrorKind, Ocr, PageTranscript, TranscriptSource, transcript::nfc};
use vinscan_ocr::Tesseract;

fn receipt() -> image::RgbImage {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cases/expected/receipt-rgb.png");
    image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_rgb8()
}

fn vie() -> Tesseract {
    Tesseract::load("vie", vinscan_ocr::tessdata_from_env().as_deref())
        .expect("Tesseract with the Vietnamese model (apt-get install tesseract-ocr-vie)")
}

#[test]
fn the_receipt_is_read_with_its_words_where_they_are() {
    let page = receipt();
    let (w, h) = page.dimensions();
    let read = vie().recognise(w, h, page.as_raw()).expect("reads");
    let text = nfc(&read.text);
    for line in [
        "CỬA HÀNG TẠP HOÁ MINH ANH",
        "MST: 0312345678",
        "Cảm ơn quý khách!",
    ] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    let mst = read
        .words
        .iter()
        .find(|word| word.text == "0312345678")
        .expect("the tax code is a word");
    let [left, top, right, bottom] = mst.bbox;
    assert!(
        left < right && right <= w && top < bottom && bottom <= h,
        "{:?}",
        mst.bbox
    );
    // the header's third line: in the top third, past the left margin, one line high
    assert!(
        bottom < h / 3 && left > w / 10 && bottom - top < 40,
        "{:?}",
        mst.bbox
    );
    assert!(mst.confidence > 0.5, "{}", mst.confidence);
    let label = read.words.iter().find(|word| word.text == "MST:").expect("label");
    assert!(label.bbox[2] <= left, "the label is left of the number");
    assert!(
        read.words
            .iter()
            .all(|word| word.bbox[2] <= w && word.bbox[3] <= h)
    );
}

#[test]
fn values_on_the_scan_are_grounded_to_tesseracts_word_boxes() {
    let page = receipt();
    let (w, h) = page.dimensions();
    let read = vie().recognise(w, h, page.as_raw()).expect("reads");
    let box_of = |text: &str| {
        read.words
            .iter()
            .find(|word| word.text == text)
            .map(|word| word.bbox)
    };
    let transcript = PageTranscript::new(
        TranscriptSource::Tesseract,
        &read.text,
        read.words.clone(),
        "t".into(),
        0.0,
    );
    let data = serde_json::json!({
        "tax_code": "0312345678",
        // written with the old tone placement: the page prints "HOÁ"
        "merchant_name": "Cửa hàng tạp hóa Minh Anh",
        "cashier": "Trần Thị Lan"
    });
    let g = ground_page(&data, "hoa-don.png", 1, Some(&transcript));
    assert_eq!(g["/tax_code"].bbox, box_of("0312345678"), "{:?}", g["/tax_code"]);
    let name = &g["/merchant_name"];
    assert!(name.found, "{name:?}");
    let [l, t, r, b] = name.bbox.expect("a box");
    let first = box_of("CỬA").expect("CỬA");
    let last = box_of("ANH").expect("ANH");
    assert_eq!((l, t), (first[0], first[1].min(last[1])), "from the first word");
    assert_eq!(r, last[2], "to the last");
    assert!(b >= first[3].max(last[3]));
    let cashier = &g["/cashier"];
    assert!(
        !cashier.found && cashier.bbox.is_none(),
        "not on the page: {cashier:?}"
    );
}

#[test]
fn a_blank_page_has_no_words() {
    let page = image::RgbImage::from_pixel(600, 400, image::Rgb([255, 255, 255]));
    let read = vie().recognise(600, 400, page.as_raw()).expect("reads");
    assert!(read.words.is_empty(), "{:?}", read.words);
    assert!(read.text.trim().is_empty(), "{:?}", read.text);
}

#[test]
fn a_missing_language_is_a_deployment_error() {
    let e = Tesseract::load("xx-no-such", None).expect_err("no model");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("tesseract-ocr-xx-no-such"), "{e}");
}

#[test]
fn threads_share_one_engine() {
    let ocr = Arc::new(vie());
    let page = Arc::new(receipt());
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (ocr, page) = (Arc::clone(&ocr), Arc::clone(&page));
            std::thread::spawn(move || {
                let (w, h) = page.dimensions();
                ocr.recognise(w, h, page.as_raw()).expect("reads").words.len()
            })
        })
        .collect();
    let counts: Vec<usize> = readers.into_iter().map(|r| r.join().expect("thread")).collect();
    assert!(counts.iter().all(|&n| n > 20 && n == counts[0]), "{counts:?}");
}
