//! `vinscan extract` with the real llama.cpp runtime and the tiny test model, over 20 different
//! scans (PNG, JPEG, a multi-page TIFF, a 3-page PDF, …): every file of a document pipeline
//! (invoice, receipt, id-card) and every page of a page pipeline (archive-page) must produce one
//! record whose `data` validates against the pipeline's schema under an independent validator
//! (Python jsonschema).

mod common;

use std::path::PathBuf;

use common::*;
use image::ImageFormat;

/// 20 input files, 25 pages.
fn inputs(dir: &std::path::Path) -> (Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    let mut pages = 0;
    let sizes = [
        (448, 448),
        (1600, 600),
        (600, 900),
        (300, 200),
        (2000, 500),
        (800, 1100),
        (1240, 1754),
        (100, 1500),
        (1024, 768),
        (3000, 2000),
        (640, 480),
        (500, 700),
        (1200, 300),
        (900, 900),
        (720, 1280),
        (256, 1024),
    ];
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let (format, ext) = if i % 2 == 0 {
            (ImageFormat::Png, "png")
        } else {
            (ImageFormat::Jpeg, "jpg")
        };
        let p = dir.join(format!("scan-{i:02}.{ext}"));
        std::fs::write(&p, encode(&scan(w, h, i as u32), format)).expect("write scan");
        files.push(p);
        pages += 1;
    }
    let tiff = dir.join("archive-3pages.tif");
    std::fs::write(
        &tiff,
        multipage_tiff(&[scan(1240, 1754, 100), scan(1754, 1240, 101), scan(600, 800, 102)]),
    )
    .expect("tiff");
    files.push(tiff);
    pages += 3;
    let tiff2 = dir.join("id-card-2sides.tiff");
    std::fs::write(
        &tiff2,
        multipage_tiff(&[scan(1011, 638, 200), scan(1011, 638, 201)]),
    )
    .expect("tiff");
    files.push(tiff2);
    pages += 2;
    let webp = dir.join("phone-photo.webp");
    std::fs::write(&webp, encode(&scan(960, 1280, 300), ImageFormat::WebP)).expect("webp");
    files.push(webp);
    pages += 1;
    files.push(repo_root().join("tests/fixtures/hoadon.pdf"));
    pages += 3;
    (files, pages)
}

/// The checks each pipeline's schema declares: every record carries at least one result of each.
fn declared_checks(pipeline: &str) -> &'static [&'static str] {
    match pipeline {
        "invoice" => &["invoice-totals", "invoice-series", "date", "mst", "vat-rate"],
        "id-card" => &["card-dates", "cccd", "date", "mrz"],
        "receipt" => &["date"],
        _ => &[],
    }
}

/// The image count a record's tiles provenance implies, and the count it says the encoder saw.
fn images(tiles: &serde_json::Value) -> (Option<u64>, Option<u64>) {
    let expected = tiles["cols"].as_u64().unwrap_or(0) * tiles["rows"].as_u64().unwrap_or(0)
        + u64::from(tiles["thumbnail"].as_bool().unwrap_or(false));
    (tiles["images"].as_u64(), Some(expected))
}

fn check_pipeline(pipeline: &str, per_document: bool) {
    let tmp = tempfile::tempdir().expect("tmp");
    let (files, pages) = inputs(tmp.path());
    assert_eq!(files.len(), 20);
    let out = run(vinscan(tmp.path())
        .arg("extract")
        .args(&files)
        .args(["--pipeline", pipeline]));
    assert!(
        out.status.success(),
        "vinscan extract --pipeline {pipeline} failed: {:?}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    let records = if per_document { files.len() } else { pages };
    assert_eq!(lines.len(), records, "one JSON object per document, or per page");
    let mut pages_seen = 0;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(v["pipeline"], pipeline);
        assert_eq!(v["schema"], format!("schemas/{pipeline}.schema.json"));
        if per_document {
            // every image read: a page, or a segment of a page too tall or wide for the grid
            let seen = v["provenance"]["pages"].as_array().expect("provenance.pages");
            for page in seen {
                let (said, implied) = images(&page["tiles"]);
                assert_eq!(said, implied, "{line}");
            }
            let pages = v["pages"].as_array().expect("pages");
            for p in pages {
                assert!(
                    seen.iter()
                        .any(|s| s["source"] == p["source"] && s["page"] == p["page"]),
                    "{p} was read: {line}"
                );
            }
            pages_seen += pages.len();
        } else {
            let (said, implied) = images(&v["provenance"]["tiles"]);
            assert_eq!(said, implied, "{line}");
            pages_seen += 1;
        }
        let names: Vec<&str> = v["checks"]
            .as_array()
            .expect("checks is an array")
            .iter()
            .filter_map(|c| c["check"].as_str())
            .collect();
        for check in declared_checks(pipeline) {
            assert!(names.contains(check), "no {check} result in {line}");
        }
        if declared_checks(pipeline).is_empty() {
            assert!(names.is_empty(), "{pipeline} declares no checks: {line}");
        }
    }
    assert_eq!(pages_seen, pages, "every page of every file was read");
    let jsonl = tmp.path().join(format!("{pipeline}.jsonl"));
    std::fs::write(&jsonl, &stdout).expect("write jsonl");
    let (passed, failed, report) = validate(&[jsonl]);
    assert_eq!((passed, failed), (records, 0), "{report}");
}

#[test]
fn invoice_documents_validate() {
    check_pipeline("invoice", true);
}

#[test]
fn receipt_documents_validate() {
    check_pipeline("receipt", true);
}

#[test]
fn id_card_documents_validate() {
    check_pipeline("id-card", true);
}

#[test]
fn archive_page_pages_validate() {
    check_pipeline("archive-page", false);
}

/// A schema as a user's ERP exports it (no bounds, open objects): `vinscan pipelines --check`
/// lists every default bound applied, by JSON Pointer, and `extract` decodes under them, the
/// output valid under the schema as declared.
#[test]
fn a_user_written_schema_is_bounded_by_the_pipeline_defaults() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fixture = repo_root().join("tests/fixtures/user-schemas");
    let dirs = |c: &mut std::process::Command| {
        c.arg("--pipelines-dir")
            .arg(fixture.join("pipelines"))
            .arg("--schemas-dir")
            .arg(fixture.join("schemas"));
    };
    let mut check = vinscan(tmp.path());
    check.args(["pipelines", "--check"]);
    dirs(&mut check);
    let out = run(&mut check);
    assert!(out.status.success(), "{:?}", out.status);
    let listing = String::from_utf8(out.stdout).expect("utf-8");
    for line in [
        "po: schemas/po.schema.json: 14 default bounds applied",
        "  /properties/po_number maxLength = 40",
        "  /properties/supplier additionalProperties = false",
        "  /properties/lines maxItems = 3",
        "  /properties/lines/items/properties/quantity maximum = 1000000000000000",
        "  /properties/total minimum = ",
    ] {
        assert!(listing.contains(line), "{line:?} missing from:\n{listing}");
    }

    let scan_path = tmp.path().join("po.png");
    std::fs::write(&scan_path, encode(&scan(900, 1200, 42), ImageFormat::Png)).expect("write");
    let mut extract = vinscan(tmp.path());
    extract.arg("extract").arg(&scan_path).args(["--pipeline", "po"]);
    dirs(&mut extract);
    let out = run(&mut extract);
    assert!(out.status.success(), "{:?}", out.status);
    let jsonl = tmp.path().join("po.jsonl");
    std::fs::write(&jsonl, &out.stdout).expect("write");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one record");
    assert!(
        record["data"]["lines"].as_array().is_some_and(|l| l.len() <= 3),
        "{record}"
    );
    assert!(
        record["data"]["po_number"]
            .as_str()
            .is_some_and(|s| s.chars().count() <= 40),
        "{record}"
    );
    let (passed, failed, report) = validate_in(&fixture, &[jsonl]);
    assert_eq!((passed, failed), (1, 0), "{report}");
}
