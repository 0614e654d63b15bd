//! Page transcripts with the real pdfium, the real Tesseract (Vietnamese model) and the tiny
//! test model: `archive-page` (transcriber = "auto") writes `<name>.txt` beside each record,
//! from the text layer of a born-digital PDF page and from OCR of a scan, and provenance says
//! which; `extract --out` and `batch` both write them.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn record(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A folder with a born-digital 2-page PDF and a scanned receipt (PNG).
fn inputs(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let pages = vec![
        vec![
            "UY BAN NHAN DAN TINH QUANG NAM".to_owned(),
            "So: 1234/QD-UBND".to_owned(),
            "QUYET DINH ve viec ban hanh quy che luu tru".to_owned(),
        ],
        vec!["Dieu 2. Quyet dinh nay co hieu luc tu ngay ky.".to_owned()],
    ];
    std::fs::write(dir.join("quyet-dinh.pdf"), text_pdf(&pages)).expect("pdf");
    std::fs::copy(
        repo_root().join("tests/fixtures/cases/expected/receipt-rgb.png"),
        dir.join("hoa-don.png"),
    )
    .expect("png");
}

/// Runs `vinscan ARGS`, which must succeed.
fn succeed(home: &Path, args: &[&std::ffi::OsStr]) {
    let out = run(vinscan(home).args(args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn assert_transcripts(out: &Path) {
    // born digital: the text layer, page by page
    let p1 = record(&out.join("quyet-dinh.pdf.p0001.json"));
    let t = &p1["provenance"]["transcript"];
    assert_eq!(t["transcriber"], "pdf-text", "{t}");
    assert_eq!(t["engine"], "pdfium");
    assert_eq!(t["page"], 1);
    let txt = text(&out.join("quyet-dinh.pdf.p0001.txt"));
    assert!(txt.contains("So: 1234/QD-UBND"), "{txt}");
    assert!(!txt.contains("Dieu 2"), "page 1 only: {txt}");
    let txt2 = text(&out.join("quyet-dinh.pdf.p0002.txt"));
    assert!(txt2.contains("Dieu 2. Quyet dinh nay"), "{txt2}");
    // a scan: Tesseract, with word boxes counted
    let scan = record(&out.join("hoa-don.png.p0001.json"));
    let t = &scan["provenance"]["transcript"];
    assert_eq!(t["transcriber"], "tesseract", "{t}");
    assert!(
        t["engine"]
            .as_str()
            .is_some_and(|e| e.starts_with("tesseract 5") && e.ends_with("vie")),
        "{t}"
    );
    assert!(t["word_boxes"].as_u64().is_some_and(|n| n > 20), "{t}");
    let txt = text(&out.join("hoa-don.png.p0001.txt"));
    for line in ["CỬA HÀNG TẠP HOÁ MINH ANH", "Cảm ơn quý khách!"] {
        assert!(txt.contains(line), "{line:?} not in {txt}");
    }
    // every string of the data is grounded (the tiny model's strings are on no page)
    let grounding = scan["grounding"].as_object().expect("grounding");
    assert!(!grounding.is_empty());
    assert!(
        grounding
            .values()
            .all(|g| g["found"].is_boolean() && g["score"].is_number())
    );
    // the record itself never carries the text
    assert!(!serde_json::to_string(&scan).expect("json").contains("MINH ANH"));
}

#[test]
fn extract_writes_each_pages_transcript_beside_its_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    inputs(&src);
    let out = tmp.path().join("out");
    let (pdf, png) = (src.join("quyet-dinh.pdf"), src.join("hoa-don.png"));
    let pages = [pdf.as_os_str(), png.as_os_str()];
    let to_out = [
        "--pipeline".as_ref(),
        "archive-page".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    succeed(tmp.path(), &[&["extract".as_ref()][..], &pages, &to_out].concat());
    assert_transcripts(&out);

    // the same pages again under `pdf-text`: the scan now has no transcript, and the earlier
    // run's .txt beside its record goes; the born-digital page keeps its own
    let (pipelines, schemas) = (tmp.path().join("pipelines"), tmp.path().join("schemas"));
    for (from, to) in [("pipelines", &pipelines), ("schemas", &schemas)] {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(repo_root().join(from)).expect("read dir") {
            let path = entry.expect("entry").path();
            if !path.is_file() {
                continue;
            }
            let mut text = std::fs::read_to_string(&path).expect("read");
            if path.file_name().is_some_and(|n| n == "archive-page.toml") {
                text = text.replace("transcriber = \"auto\"", "transcriber = \"pdf-text\"");
            }
            std::fs::write(to.join(path.file_name().expect("name")), text).expect("write");
        }
    }
    let dirs = [
        "--pipelines-dir".as_ref(),
        pipelines.as_os_str(),
        "--schemas-dir".as_ref(),
        schemas.as_os_str(),
    ];
    succeed(
        tmp.path(),
        &[&["extract".as_ref()][..], &pages, &to_out, &dirs].concat(),
    );
    assert!(
        !out.join("hoa-don.png.p0001.txt").exists(),
        "a stale transcript was left"
    );
    assert!(
        record(&out.join("hoa-don.png.p0001.json"))["provenance"]
            .get("transcript")
            .is_none()
    );
    assert!(text(&out.join("quyet-dinh.pdf.p0001.txt")).contains("So: 1234/QD-UBND"));
}

#[test]
fn batch_writes_transcripts_beside_its_records() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    inputs(&src);
    let out = tmp.path().join("out");
    let args = [
        "batch".as_ref(),
        src.as_os_str(),
        "--pipeline".as_ref(),
        "archive-page".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    succeed(tmp.path(), &args);
    assert_transcripts(&out);
}
