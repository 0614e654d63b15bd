//! The `archive` pipeline (one record per archived document) with the real pdfium, libtiff,
//! Tesseract (Vietnamese model) and the tiny test model, on the fixtures in
//! `tests/fixtures/archive` (made by its `make.py`):
//! - a born-digital 3-page PDF: every page's transcript from its text layer;
//! - a scanned 5-page TIFF (bilevel, CCITT Group 4, 300 dpi): every page through Tesseract;
//! - a folder of page JPEGs: `extract DIR --as-document`, and `batch --folder-documents`, which
//!   takes each leaf folder as one document and reuses its record on the next run.
//!
//! Each gives one record that Python's jsonschema accepts, whose `page_count` is the pages read
//! (vinscan's value, not the model's), with a `.txt` of every page (form-feed separated) and
//! provenance naming each page's transcriber.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/archive").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

/// Runs `vinscan ARGS`, which must succeed; returns stdout.
fn succeed(home: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = run(vinscan(home).args(args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The record at `json` and its transcript beside it: valid, `pages` pages, each transcribed by
/// `transcriber`; returns the record and the transcript's pages.
fn archive_record(json: &Path, pages: usize, transcriber: &str) -> (Value, Vec<String>) {
    let (passed, failed, report) = validate(&[json.to_path_buf()]);
    assert_eq!((passed, failed), (1, 0), "{report}");
    let record = read_json(json);
    assert_eq!(record["pipeline"], "archive");
    assert_eq!(record["pages"].as_array().map(Vec::len), Some(pages), "{record}");
    assert_eq!(record["data"]["page_count"], pages, "vinscan's page count");
    assert_eq!(record["confidence"]["/page_count"], 1.0);
    let transcripts = record["provenance"]["transcripts"]
        .as_array()
        .expect("provenance.transcripts");
    assert_eq!(transcripts.len(), pages, "{transcripts:?}");
    for t in transcripts {
        assert_eq!(t["transcriber"], transcriber, "{t}");
        assert!(t["chars"].as_u64() > Some(10), "{t}");
        // words with boxes, from OCR and from a text layer alike
        assert!(t["word_boxes"].as_u64() > Some(3), "{t}");
    }
    assert!(
        record["grounding"].is_object(),
        "grounding with transcripts: {record}"
    );
    let txt = std::fs::read_to_string(json.with_extension("txt")).expect("the .txt beside the record");
    let text_pages: Vec<String> = txt.split('\u{c}').map(str::to_owned).collect();
    assert_eq!(text_pages.len(), pages, "{txt}");
    (record, text_pages)
}

#[test]
fn a_born_digital_pdf_is_one_record_transcribed_from_its_text_layer() {
    let home = tempfile::tempdir().expect("tmp");
    let out = home.path().join("out");
    let pdf = fixture("quyet-dinh-born-digital.pdf");
    succeed(
        home.path(),
        &[
            "extract".as_ref(),
            pdf.as_os_str(),
            "--pipeline".as_ref(),
            "archive".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    );
    let (_, text) = archive_record(&out.join("quyet-dinh-born-digital.pdf.json"), 3, "pdf-text");
    assert!(text[0].contains("Số: 123/QĐ-UBND"), "{}", text[0]);
    assert!(text[2].contains("Nguyễn Văn Bình"), "{}", text[2]);
}

/// The prompt tokens of a record's reads beyond their image tokens.
fn text_tokens(record: &Value) -> u64 {
    record["provenance"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            g["generation"]["prompt_tokens"].as_u64().unwrap_or(0)
                - g["generation"]["image_tokens"].as_u64().unwrap_or(0)
        })
        .sum()
}

#[test]
fn the_transcript_goes_into_the_prompt_as_anchor_text() {
    let home = tempfile::tempdir().expect("tmp");
    let pdf = fixture("quyet-dinh-born-digital.pdf");
    let extract = |pipelines: Option<&Path>| -> Value {
        let mut cmd = vinscan(home.path());
        if let Some(dir) = pipelines {
            cmd.arg("--pipelines-dir")
                .arg(dir)
                .arg("--schemas-dir")
                .arg(repo_root().join("schemas"));
        }
        let out = run(cmd.arg("extract").arg(&pdf).args(["--pipeline", "archive"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one record")
    };
    let anchored = extract(None);
    // the same pipeline without anchor text
    let plain = home.path().join("pipelines");
    std::fs::create_dir_all(&plain).expect("dir");
    let toml = std::fs::read_to_string(repo_root().join("pipelines/archive.toml")).expect("pipeline");
    assert!(toml.contains("anchor_text_bytes = 1200"), "{toml}");
    std::fs::write(
        plain.join("archive.toml"),
        toml.replace("anchor_text_bytes = 1200", ""),
    )
    .expect("write");
    let without = extract(Some(&plain));
    // three pages of text layer (about 200 bytes each, the tiny model's tokens are bytes or
    // longer) in front of the task
    let added = text_tokens(&anchored) - text_tokens(&without);
    assert!(
        (150..=3 * 1200 + 600).contains(&added),
        "{added} prompt tokens added"
    );
}

#[test]
fn a_group_4_tiff_scan_is_one_record_with_every_page_read_by_tesseract() {
    let home = tempfile::tempdir().expect("tmp");
    let out = home.path().join("out");
    let tif = fixture("cong-van-g4-300dpi.tif");
    succeed(
        home.path(),
        &[
            "extract".as_ref(),
            tif.as_os_str(),
            "--pipeline".as_ref(),
            "archive".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    );
    let (record, text) = archive_record(&out.join("cong-van-g4-300dpi.tif.json"), 5, "tesseract");
    for t in record["provenance"]["transcripts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            t["engine"].as_str().map(|e| e.starts_with("tesseract")),
            Some(true),
            "{t}"
        );
        assert!(t["word_boxes"].as_u64() > Some(3), "{t}");
    }
    assert!(text[0].contains("45/SNV-VTLT"), "{}", text[0]);
    assert!(text[4].contains("Trần Thị Hoa"), "{}", text[4]);
}

#[test]
fn a_folder_of_page_scans_is_one_document_in_natural_page_order() {
    let home = tempfile::tempdir().expect("tmp");
    let out = home.path().join("out");
    // the fixture's pages beside what a scanner's folder also holds: left out, as batch does
    let folder = home.path().join("to-trinh-pages");
    std::fs::create_dir_all(&folder).expect("dir");
    for entry in std::fs::read_dir(fixture("to-trinh-pages")).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, folder.join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(folder.join("Thumbs.db"), b"").expect("write");
    std::fs::write(folder.join("notes.txt"), "thiếu trang 4").expect("write");
    succeed(
        home.path(),
        &[
            "extract".as_ref(),
            folder.as_os_str(),
            "--as-document".as_ref(),
            "--pipeline".as_ref(),
            "archive".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    );
    let (record, text) = archive_record(&out.join("to-trinh-pages.json"), 3, "tesseract");
    let names: Vec<&str> = record["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str()?.rsplit('/').next())
        .collect();
    assert_eq!(names, ["trang-1.jpg", "trang-2.jpg", "trang-10.jpg"]);
    assert!(text[0].contains("TỜ TRÌNH"), "{}", text[0]);
    assert!(text[2].contains("Lê Văn An"), "{}", text[2]);
    // without --as-document each scan is a document of its own; the other files are skipped,
    // not failed
    let each = home.path().join("each");
    succeed(
        home.path(),
        &[
            "extract".as_ref(),
            folder.as_os_str(),
            "--pipeline".as_ref(),
            "archive".as_ref(),
            "--out".as_ref(),
            each.as_os_str(),
        ],
    );
    let records = std::fs::read_dir(&each)
        .expect("out")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert_eq!(records, 3, "one record per page scan");
    // a folder holding folders is not flattened into one document
    std::fs::create_dir_all(folder.join("phu-luc")).expect("dir");
    std::fs::copy(folder.join("trang-1.jpg"), folder.join("phu-luc/trang-1.jpg")).expect("copy");
    let refused = run(vinscan(home.path()).arg("extract").arg(&folder).args([
        "--as-document",
        "--pipeline",
        "archive",
    ]));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("holds sub-folders") && stderr.contains("--folder-documents"),
        "{stderr}"
    );
}

#[test]
fn batch_takes_each_leaf_folder_as_one_document_and_reuses_it_next_run() {
    let home = tempfile::tempdir().expect("tmp");
    // a box of the archive: a decision on its own beside a folder of one document's pages
    let src = home.path().join("hop-01");
    let pages = src.join("to-trinh");
    std::fs::create_dir_all(&pages).expect("dir");
    for entry in std::fs::read_dir(fixture("to-trinh-pages")).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, pages.join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(pages.join("Thumbs.db"), b"not a scan").expect("write");
    std::fs::copy(fixture("quyet-dinh-born-digital.pdf"), src.join("quyet-dinh.pdf")).expect("copy");
    let out = home.path().join("out");
    let args = [
        "batch".as_ref(),
        src.as_os_str(),
        "--folder-documents".as_ref(),
        "--pipeline".as_ref(),
        "archive".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--no-progress".as_ref(),
    ];
    let summary: Value = serde_json::from_str(succeed(home.path(), &args).trim()).expect("summary");
    assert_eq!(
        (summary["inputs"].as_u64(), summary["processed"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    assert_eq!(summary["pages_written"], 6, "{summary}");
    let (record, _) = archive_record(&out.join("to-trinh.json"), 3, "tesseract");
    assert_eq!(
        record["sources"].as_array().map(Vec::len),
        Some(3),
        "Thumbs.db left out: {record}"
    );
    archive_record(&out.join("quyet-dinh.pdf.json"), 3, "pdf-text");
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).expect("manifest");
    assert!(manifest.contains(r#""source":"to-trinh""#), "{manifest}");

    let again: Value = serde_json::from_str(succeed(home.path(), &args).trim()).expect("summary");
    assert_eq!(
        (again["skipped"].as_u64(), again["model_loaded"].as_bool()),
        (Some(2), Some(false)),
        "{again}"
    );
}

#[test]
fn folder_documents_need_a_document_pipeline() {
    let home = tempfile::tempdir().expect("tmp");
    let folder = fixture("to-trinh-pages");
    let out = run(vinscan(home.path()).args([
        "batch".as_ref(),
        folder.as_os_str(),
        "--folder-documents".as_ref(),
        "--pipeline".as_ref(),
        "archive-page".as_ref(),
        "--out".as_ref(),
        home.path().join("out").as_os_str(),
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--folder-documents needs a document pipeline"),
        "{stderr}"
    );
}

/// `vinscan extract FILE --pipeline archive --text-model M` with a Vintern that does not exist:
/// the record must come from the text stage alone.
fn text_stage_record(home: &Path, file: &Path, extra: &[&str]) -> Value {
    let out = home.join("out");
    let mut cmd = vinscan(home);
    cmd.env("VINSCAN_MODEL", home.join("no-vintern.gguf"))
        .env("VINSCAN_MMPROJ", home.join("no-mmproj.gguf"))
        .args(["extract", "--pipeline", "archive", "--text-model"])
        .arg(text_model())
        .args(extra)
        .arg("--out")
        .arg(&out)
        .arg(file);
    let res = run(&mut cmd);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let name = file.file_name().expect("name").to_string_lossy().into_owned();
    let json = out.join(format!("{name}.json"));
    let transcriber = if name.ends_with(".pdf") {
        "pdf-text"
    } else {
        "tesseract"
    };
    let pages = if name.ends_with(".pdf") { 3 } else { 5 };
    let (record, _) = archive_record(&json, pages, transcriber);
    let p = &record["provenance"];
    assert!(p.get("model").is_none(), "Vintern read nothing: {p}");
    assert_eq!(p["text_model"]["file"], text_model().display().to_string(), "{p}");
    assert_eq!(
        p["pages"].as_array().map(Vec::len),
        Some(0),
        "no images read: {p}"
    );
    for g in p["groups"].as_array().into_iter().flatten() {
        assert_eq!(g["generation"]["image_tokens"], 0, "{g}");
        assert!(g["generation"]["prompt_tokens"].as_u64() > Some(50), "{g}");
    }
    record
}

#[test]
fn the_text_stage_reads_the_transcripts_with_a_llama_model_and_no_vintern() {
    let home = tempfile::tempdir().expect("tmp");
    let record = text_stage_record(home.path(), &fixture("cong-van-g4-300dpi.tif"), &[]);
    // every page in one read at the default context
    let groups = record["provenance"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["pages"], serde_json::json!([1, 2, 3, 4, 5]));
}

#[test]
fn a_transcript_longer_than_the_text_context_is_read_in_chunks_and_merged() {
    let home = tempfile::tempdir().expect("tmp");
    let record = text_stage_record(
        home.path(),
        &fixture("quyet-dinh-born-digital.pdf"),
        &["--text-ctx-size", "4200"],
    );
    // 4,200 tokens less 3,072 for the output and the prompts leave room for about two pages
    let groups = record["provenance"]["groups"].as_array().expect("groups");
    assert!(groups.len() >= 2, "{groups:?}");
    let covered: Vec<u64> = groups
        .iter()
        .flat_map(|g| g["pages"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_u64())
        .collect();
    assert_eq!(covered.first(), Some(&1));
    assert_eq!(covered.last(), Some(&3), "every page read: {covered:?}");
}

#[test]
fn a_text_model_that_cannot_run_is_refused_before_any_page_is_read() {
    let home = tempfile::tempdir().expect("tmp");
    let garbage = home.path().join("garbage.gguf");
    std::fs::write(&garbage, b"GGML this is not a model").expect("write");
    let pdf = fixture("quyet-dinh-born-digital.pdf");
    for (model, ctx, expected) in [
        (garbage.as_path(), "8192", "not a GGUF file"),
        // the projector is a GGUF, but not a language model
        (&model_dir().join("mmproj.gguf"), "8192", "not a language model"),
        // room for the output cap and the prompts, none for transcripts
        (&text_model(), "3200", "leave no room for transcripts"),
    ] {
        let out = run(vinscan(home.path())
            .args(["extract", "--pipeline", "archive", "--text-model"])
            .arg(model)
            .args(["--text-ctx-size", ctx])
            .arg(&pdf));
        assert_eq!(out.status.code(), Some(2), "a usage error: {model:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        // refused at the start (exit 2), not document by document after reading pages
        assert!(!stderr.contains("extraction failed"), "{stderr}");
    }
}

/// `transcriber = "vintern"`: the tiny Vintern reads each page image as free text, and the text
/// stage (the tiny llama) reads those transcripts; the record names both models.
#[test]
fn vintern_transcribes_the_pages_for_the_text_stage() {
    let home = tempfile::tempdir().expect("tmp");
    let out = home.path().join("out");
    let pipelines = home.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("dir");
    let toml = std::fs::read_to_string(repo_root().join("pipelines/archive.toml")).expect("pipeline");
    assert!(toml.contains("transcriber = \"auto\""), "{toml}");
    let toml = toml.replace(
        "transcriber = \"auto\"",
        "transcriber = \"vintern\"\ntranscription = { max_tokens = 40 }",
    );
    std::fs::write(pipelines.join("archive.toml"), toml).expect("write");
    let folder = fixture("to-trinh-pages");
    let mut cmd = vinscan(home.path());
    cmd.arg("--pipelines-dir")
        .arg(&pipelines)
        .arg("--schemas-dir")
        .arg(repo_root().join("schemas"))
        .args([
            "extract",
            "--as-document",
            "--pipeline",
            "archive",
            "--text-model",
        ])
        .arg(text_model())
        .arg("--out")
        .arg(&out)
        .arg(&folder);
    let res = run(&mut cmd);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let json = out.join("to-trinh-pages.json");
    let (passed, failed, report) = validate(std::slice::from_ref(&json));
    assert_eq!((passed, failed), (1, 0), "{report}");
    let record = read_json(&json);
    let p = &record["provenance"];
    let transcripts = p["transcripts"].as_array().expect("transcripts");
    assert_eq!(transcripts.len(), 3, "{p}");
    for t in transcripts {
        assert_eq!(t["transcriber"], "vintern", "{t}");
        assert_eq!(t["word_boxes"], 0, "Vintern gives no boxes: {t}");
        assert!(t["engine"].as_str().is_some_and(|e| !e.is_empty()), "{t}");
    }
    assert!(p["model"]["sha256"].is_string(), "Vintern transcribed: {p}");
    assert_eq!(p["text_model"]["file"], text_model().display().to_string(), "{p}");
    let txt = std::fs::read_to_string(json.with_extension("txt")).expect("the .txt");
    assert_eq!(txt.split('\u{c}').count(), 3, "{txt:?}");
}
