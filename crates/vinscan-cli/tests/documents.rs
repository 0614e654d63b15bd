//! Document scope with the real llama.cpp runtime and the tiny test model: a 2-page invoice PDF,
//! an ID card's front and back, and a 30-page invoice each give one record, every page seen by
//! the vision encoder (the image tokens of the read equal its pages' images), `confidence`,
//! `checks` and `review` present, and `data` valid under Python's jsonschema. And `extract`
//! over several inputs: read together, printed in input order, stopped by a closed stdout.

mod common;

use std::path::Path;

use common::*;
use image::ImageFormat;
use serde_json::Value;

/// Runs `vinscan extract ARGS`, which must succeed and print exactly one record.
fn one_record(home: &Path, args: &[&std::ffi::OsStr]) -> Value {
    let out = run(vinscan(home).arg("extract").args(args));
    assert!(out.status.success(), "vinscan extract failed: {:?}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one record per document: {stdout}");
    let record: Value = serde_json::from_str(lines[0]).expect("a JSON record");
    let jsonl = home.join("record.jsonl");
    std::fs::write(&jsonl, &stdout).expect("write");
    let (passed, failed, report) = validate(&[jsonl]);
    assert_eq!((passed, failed), (1, 0), "{report}");
    record
}

/// The record's shape, and every page of every read seen by the encoder: the read's image
/// tokens are 256 per image of its pages (tiles + thumbnail each).
fn assert_every_page_seen(record: &Value, pages: usize, groups: usize) {
    for key in [
        "sources",
        "pages",
        "pipeline",
        "schema",
        "data",
        "confidence",
        "checks",
        "review",
        "provenance",
    ] {
        assert!(record.get(key).is_some(), "no {key} in {record}");
    }
    assert_eq!(record["pages"].as_array().map(Vec::len), Some(pages), "{record}");
    assert!(record["confidence"].as_object().is_some_and(|c| !c.is_empty()));
    assert!(record["review"]["needed"].is_boolean());
    let p = &record["provenance"];
    let seen = p["pages"].as_array().expect("provenance.pages");
    assert_eq!(seen.len(), pages);
    let reads = p["groups"].as_array().expect("provenance.groups");
    assert_eq!(reads.len(), groups, "{p}");
    for (g, read) in reads.iter().enumerate() {
        let images: u64 = seen
            .iter()
            .filter(|pg| pg["group"] == g as u64 + 1)
            .map(|pg| pg["tiles"]["images"].as_u64().expect("images"))
            .sum();
        assert!(images > 0);
        assert_eq!(
            read["generation"]["image_tokens"].as_u64(),
            Some(images * 256),
            "read {} saw every image of its pages",
            g + 1
        );
    }
}

#[test]
fn a_two_page_invoice_pdf_is_one_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pdf = tmp.path().join("hoa-don-2-trang.pdf");
    std::fs::write(&pdf, invoice_pdf(2, 14)).expect("write");
    let record = one_record(
        tmp.path(),
        &[pdf.as_os_str(), "--pipeline".as_ref(), "invoice".as_ref()],
    );
    assert_every_page_seen(&record, 2, 1);
    assert_eq!(
        record["provenance"]["groups"][0]["pages"],
        serde_json::json!([1, 2])
    );
    let names: Vec<&str> = record["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for check in ["invoice-totals", "invoice-series", "mst", "vat-rate"] {
        assert!(names.contains(&check), "no {check} result: {names:?}");
    }

    // --out: the document's record is one file named after the input
    let out_dir = tmp.path().join("out");
    let out = run(vinscan(tmp.path())
        .arg("extract")
        .arg(&pdf)
        .args(["--pipeline", "invoice", "--out"])
        .arg(&out_dir));
    assert!(out.status.success());
    let written: Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("hoa-don-2-trang.pdf.json")).expect("NAME.json written"),
    )
    .expect("json");
    assert_eq!(written["pages"].as_array().map(Vec::len), Some(2));
}

/// Synthetic CCCD specimens (invented person; one pair consistent, one with a broken MRZ
/// check digit and a printed birth date that disagrees), front and back given as the pages of
/// one document: one record per card, both sides in one prompt.
#[test]
fn a_card_front_and_back_given_as_one_document_are_one_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    for broken in [false, true] {
        let (front_pdf, back_pdf) = card_pdfs(broken);
        let tag = if broken { "loi" } else { "dung" };
        let front = tmp.path().join(format!("cccd-{tag}-truoc.pdf"));
        let back = tmp.path().join(format!("cccd-{tag}-sau.pdf"));
        std::fs::write(&front, front_pdf).expect("front");
        std::fs::write(&back, back_pdf).expect("back");
        let record = one_record(
            tmp.path(),
            &[
                front.as_os_str(),
                back.as_os_str(),
                "--as-document".as_ref(),
                "--pipeline".as_ref(),
                "id-card".as_ref(),
            ],
        );
        assert_every_page_seen(&record, 2, 1);
        let sources: Vec<&str> = record["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(sources.len(), 2);
        assert!(
            sources[0].ends_with("truoc.pdf") && sources[1].ends_with("sau.pdf"),
            "{sources:?}"
        );
        let seen = record["provenance"]["pages"].as_array().expect("pages");
        assert_eq!(
            (
                seen[0]["image_in_prompt"].as_u64(),
                seen[1]["image_in_prompt"].as_u64()
            ),
            (Some(1), Some(2))
        );
        let names: Vec<&str> = record["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter_map(|c| c["check"].as_str())
            .collect();
        for check in ["card-dates", "cccd", "mrz"] {
            assert!(names.contains(&check), "no {check} result: {names:?}");
        }
    }
}

/// The thermal receipt of `../shared/cases/inputs` (576 × 9000 px): read as overlapping
/// segments of the grid's shape in one prompt, never squeezed to a 1 × 6 grid whole.
#[test]
fn a_thermal_receipt_is_read_as_segments_at_its_own_scale() {
    let receipt = std::env::var_os("VINSCAN_CASES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/cases/inputs"))
        .join("thermal_receipt_576x9000.png");
    assert!(
        receipt.is_file(),
        "{} missing (set VINSCAN_CASES_DIR)",
        receipt.display()
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let record = one_record(
        tmp.path(),
        &[receipt.as_os_str(), "--pipeline".as_ref(), "receipt".as_ref()],
    );
    assert_eq!(record["pages"].as_array().map(Vec::len), Some(1));
    let seen = record["provenance"]["pages"].as_array().expect("pages");
    assert_eq!(seen.len(), 3, "three segments: {seen:?}");
    for view in seen {
        let seg = &view["segment"];
        assert_eq!(
            (seg["width"].as_u64(), seg["height"].as_u64()),
            (Some(576), Some(3456))
        );
        // 448 / 576 across and 2688 / 3456 down: the same scale, 26 px lines stay 20 px
        assert_eq!(
            (view["tiles"]["cols"].as_u64(), view["tiles"]["rows"].as_u64()),
            (Some(1), Some(6))
        );
        assert_eq!(view["group"], 1, "one prompt");
    }
}

#[test]
fn a_thirty_page_invoice_is_read_in_page_groups_and_merged_into_one_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pdf = tmp.path().join("hoa-don-30-trang.pdf");
    std::fs::write(&pdf, invoice_pdf(30, 3)).expect("write");
    let record = one_record(
        tmp.path(),
        &[pdf.as_os_str(), "--pipeline".as_ref(), "invoice".as_ref()],
    );
    // the invoice pipeline reads 4 pages together: 8 reads, the last of 2 pages
    assert_every_page_seen(&record, 30, 8);
    let reads = record["provenance"]["groups"].as_array().expect("groups");
    assert_eq!(reads[7]["pages"], serde_json::json!([29, 30]));
    for read in &reads[..7] {
        assert_eq!(
            read["max_tiles_per_page"].as_u64(),
            Some(4),
            "four pages in one read get 4 tiles each, not the pipeline's 6: {read}"
        );
    }
    assert_eq!(
        reads[7]["max_tiles_per_page"].as_u64(),
        Some(6),
        "two pages fit at 6"
    );
    let from_reads: u64 = reads
        .iter()
        .map(|r| {
            r["array_lengths"]["/items"]
                .as_u64()
                .expect("every read's line items counted")
        })
        .sum();
    assert_eq!(
        record["data"]["items"].as_array().map(|a| a.len() as u64),
        Some(from_reads),
        "the line items are every read's, concatenated"
    );
}

/// An e-invoice XML (the tax authority's format) is read without the model — given files that
/// are not models at all, which loading would refuse — with its values exact, every confidence
/// 1, and the invoice checks run: the correct sample passes them, the one with a wrong MST
/// check digit and a wrong total fails them and needs review.
#[test]
fn an_einvoice_xml_is_one_record_without_the_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let not_a_model = tmp.path().join("not-a-model.gguf");
    std::fs::write(&not_a_model, b"not a GGUF file").expect("write");
    let fixtures = repo_root().join("tests/fixtures/einvoice");
    let out = run(vinscan(tmp.path())
        .env("VINSCAN_MODEL", &not_a_model)
        .env("VINSCAN_MMPROJ", &not_a_model)
        .arg("extract")
        .arg(fixtures.join("hoadon-gtgt.xml"))
        .arg(fixtures.join("hoadon-gtgt-loi.xml"))
        .args(["--pipeline", "invoice"]));
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2, "{stdout}");
    let jsonl = tmp.path().join("einvoices.jsonl");
    std::fs::write(&jsonl, &stdout).expect("write");
    let (passed, failed, report) = validate(&[jsonl]);
    assert_eq!((passed, failed), (2, 0), "{report}");

    let good = &records[0];
    assert_eq!(good["data"]["total"], 550000);
    assert_eq!(good["data"]["seller"]["tax_code"], "0100109106");
    assert_eq!(good["data"]["items"].as_array().map(Vec::len), Some(2));
    assert!(
        good["confidence"]
            .as_object()
            .expect("confidence")
            .values()
            .all(|c| c == 1.0),
        "exact values: {good}"
    );
    assert!(
        good["provenance"].get("model").is_none_or(Value::is_null),
        "no model read it"
    );
    assert_eq!(good["provenance"]["sources"][0]["format"], "xml");
    let failed_checks = |r: &Value| -> Vec<String> {
        r["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| {
                format!(
                    "{} {}",
                    c["check"].as_str().unwrap_or(""),
                    c["pointer"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert!(failed_checks(good).is_empty(), "{:?}", failed_checks(good));
    assert_eq!(good["review"]["needed"], false, "{good}");

    let bad = &records[1];
    let failures = failed_checks(bad);
    assert!(
        failures.iter().any(|f| f == "mst /seller/tax_code"),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.starts_with("invoice-totals")),
        "{failures:?}"
    );
    assert_eq!(bad["review"]["needed"], true);
}

/// The archive, fax and phone files of `tests/fixtures/cases` (from `../shared/cases`), given
/// to one `extract` run: each is one record with its real page count (a TIFF thumbnail is not
/// a page), valid under the schema; the arithmetic-coded JPEG alone fails, named as such, and
/// the run says so in its exit status.
#[test]
fn the_archive_fax_and_phone_cases_are_extracted() {
    let cases = repo_root().join("tests/fixtures/cases");
    let expected_pages = [
        ("bigtiff_lzw.tif", 1),
        ("jpeg_motion_photo_trailer.jpg", 1),
        ("pdf_leading_utf8_bom.pdf", 2),
        ("tiff_g3_fax_1d.tif", 1),
        ("tiff_g4_fillorder2.tif", 1),
        ("tiff_jpeg_ycbcr_subsampled_tiffcp.tif", 1),
        ("tiff_page_plus_thumbnail_ifd.tif", 1),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let out = run(vinscan(tmp.path())
        .arg("extract")
        .args(expected_pages.iter().map(|(f, _)| cases.join(f)))
        .arg(cases.join("jpeg_arithmetic.jpg"))
        .args(["--pipeline", "receipt"]));
    assert!(!out.status.success(), "one file of the run failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("jpeg_arithmetic.jpg page 1: arithmetic-coded JPEG"),
        "the failure names the file and the coding: {stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), expected_pages.len(), "{stdout}");
    for (record, (file, pages)) in records.iter().zip(expected_pages) {
        assert!(
            record["sources"][0].as_str().is_some_and(|s| s.ends_with(file)),
            "{file}: {}",
            record["sources"]
        );
        assert_eq!(record["pages"].as_array().map(Vec::len), Some(pages), "{file}");
    }
    let jsonl = tmp.path().join("records.jsonl");
    std::fs::write(&jsonl, &stdout).expect("write");
    let (passed, failed, report) = validate(&[jsonl]);
    assert_eq!((passed, failed), (expected_pages.len(), 0), "{report}");
}

/// `extract` reads `--parallel` inputs at once, so the model decodes their pages together,
/// and still prints the records in input order: the first input is a 5-page TIFF, read page by
/// page while the others are read whole, so it finishes last, and its line must still come
/// first.
#[test]
fn extract_reads_inputs_together_and_prints_them_in_input_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("scans");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let pages: Vec<_> = (0..5).map(|seed| scan(320, 240, seed)).collect();
    std::fs::write(dir.join("p1.tif"), multipage_tiff(&pages)).expect("write");
    for (seed, name) in ["p2.png", "p10.jpg", "sub/p3.jpg"].iter().enumerate() {
        let format = if name.ends_with(".png") {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        };
        std::fs::write(dir.join(name), encode(&scan(300, 240, 10 + seed as u32), format)).expect("write");
    }
    let res =
        run(vinscan(tmp.path())
            .arg("extract")
            .arg(&dir)
            .args(["--pipeline", "receipt", "--parallel", "3"]));
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let records: Vec<Value> = String::from_utf8_lossy(&res.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let sources: Vec<String> = records
        .iter()
        .map(|r| r["sources"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = ["p1.tif", "p2.png", "p10.jpg", "sub/p3.jpg"]
        .iter()
        .map(|n| dir.join(n).display().to_string())
        .collect();
    assert_eq!(sources, expected, "natural name order of the paths");
    // the 5-page TIFF is first in input order and finished after another input: its lines
    // were printed first anyway
    let finished: Vec<String> = String::from_utf8_lossy(&res.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        // `receipt` is a document pipeline: one record per file
        .filter(|e| e["message"] == "extracted as one document")
        .map(|e| e["source"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(finished.len(), 4, "{finished:?}");
    assert_ne!(
        finished[0], expected[0],
        "p1.tif finished first: the order proves nothing"
    );
    let peak = records
        .iter()
        .filter_map(|r| {
            r.pointer("/provenance/groups/0/generation/peak_batch_pages")?
                .as_u64()
        })
        .max();
    assert!(peak >= Some(2), "pages were never decoded together: {peak:?}");
}

/// `vinscan extract … | head -n 1`: when the reader of stdout goes away the run stops quietly
/// (exit 0, no input blamed) instead of extracting every input left.
#[test]
fn extract_stops_quietly_when_stdout_is_closed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("scans");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..8u32 {
        let jpg = encode(&scan(300, 240, 60 + i), ImageFormat::Jpeg);
        std::fs::write(dir.join(format!("r{i}.jpg")), jpg).expect("write");
    }
    let mut child = vinscan(tmp.path())
        .arg("extract")
        .arg(&dir)
        .args(["--pipeline", "receipt", "--parallel", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vinscan");
    // the reader goes away before the first record
    drop(child.stdout.take());
    let res = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    let messages: Vec<String> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    let count = |m: &str| messages.iter().filter(|x| x.as_str() == m).count();
    assert_eq!(count("stdout was closed: the run stops"), 1, "{stderr}");
    assert_eq!(count("extraction failed"), 0, "{stderr}");
    // none, unless a record reached the pipe before it was closed: never all of them
    assert!(count("extracted as one document") < 8, "{stderr}");
    assert_eq!(count("not extracted: the run stopped"), 0, "{stderr}");
}
