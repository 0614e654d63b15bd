//! `vinscan batch` over real receipt scans (ICDAR 2019 SROIE sample in ../shared) and over a
//! folder of bad inputs: outputs, manifest, exit codes, and resumability without model work.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use image::ImageFormat;
use serde_json::Value;

fn sroie_images() -> PathBuf {
    let dir = std::env::var_os("VINSCAN_SROIE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/sroie-sample/images"));
    assert!(dir.is_dir(), "{} missing (set VINSCAN_SROIE_DIR)", dir.display());
    dir
}

fn manifest(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .expect("manifest.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("manifest line is JSON"))
        .collect()
}

fn summary(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.lines().last().expect("summary line")).expect("summary is JSON")
}

fn json_outputs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read out dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sroie_receipts_all_succeed_and_second_run_does_no_model_work() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out_dir = tmp.path().join("out");
    let src = sroie_images();
    let first = run(vinscan(tmp.path())
        .arg("batch")
        .arg(&src)
        .args(["--pipeline", "receipt", "--out"])
        .arg(&out_dir));
    assert!(first.status.success(), "first run: {:?}", first.status);
    let s = summary(&first.stdout);
    assert_eq!(
        (
            s["inputs"].as_u64(),
            s["processed"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(40), Some(40), Some(0)),
        "{s}"
    );
    assert_eq!(s["model_loaded"], true);
    let m = manifest(&out_dir);
    assert_eq!(m.len(), 40);
    assert!(m.iter().all(|e| e["status"] == "ok" && e["pages"] == 1), "{m:?}");
    let outputs = json_outputs(&out_dir);
    assert_eq!(outputs.len(), 40);
    let (passed, failed, report) = validate(&outputs);
    assert_eq!((passed, failed), (40, 0), "{report}");
    // the review count agrees three ways: records, manifest, summary
    let needing_review = outputs
        .iter()
        .filter(|p| {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).expect("read output")).expect("json");
            record["review"]["needed"] == true
        })
        .count() as u64;
    let in_manifest: u64 = m.iter().filter_map(|e| e["review_pages"].as_u64()).sum();
    assert_eq!(in_manifest, needing_review, "{m:?}");
    assert_eq!(s["pages_needing_review"].as_u64(), Some(needing_review), "{s}");
    export_opens_in_python(tmp.path(), &out_dir, &outputs);
    eval_against_sroie_keys(tmp.path(), &src, &out_dir);

    let second = run(vinscan(tmp.path())
        .arg("batch")
        .arg(&src)
        .args(["--pipeline", "receipt", "--out"])
        .arg(&out_dir));
    assert!(second.status.success());
    let s = summary(&second.stdout);
    assert_eq!(
        (
            s["skipped"].as_u64(),
            s["processed"].as_u64(),
            s["pages_written"].as_u64()
        ),
        (Some(40), Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(
        s["model_loaded"], false,
        "a run with nothing to do must not load the model"
    );
    assert!(manifest(&out_dir).iter().all(|e| e["status"] == "skipped"));
    assert_eq!(
        s["pages_needing_review"].as_u64(),
        Some(needing_review),
        "reused outputs keep their review verdicts: {s}"
    );
}

#[test]
fn bad_inputs_fail_with_reasons_and_good_ones_succeed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    std::fs::create_dir_all(src.join("nested")).expect("mkdir");
    let good = encode(&scan(900, 1200, 7), ImageFormat::Jpeg);
    std::fs::write(src.join("good.jpg"), &good).expect("write");
    std::fs::write(
        src.join("nested/good.png"),
        encode(&scan(700, 500, 8), ImageFormat::Png),
    )
    .expect("write");
    std::fs::write(src.join("truncated.jpg"), &good[..good.len() / 3]).expect("write");
    std::fs::write(src.join("not-an-image.png"), b"hello, I am text").expect("write");
    std::fs::write(src.join("empty.webp"), b"").expect("write");
    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().skip(600).step_by(7) {
        *b = 0xFF;
    }
    std::fs::write(src.join("corrupt.jpg"), &corrupt).expect("write");
    // a PNG header announcing 60000 x 60000 pixels: refused before any allocation
    let mut huge = encode(&scan(16, 16, 9), ImageFormat::Png);
    huge[16..20].copy_from_slice(&60000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(src.join("huge.png"), &huge).expect("write");
    std::fs::copy(
        repo_root().join("tests/fixtures/encrypted.pdf"),
        src.join("locked.pdf"),
    )
    .expect("copy");
    std::fs::write(src.join("notes.txt"), b"not a scan by name or content").expect("write");

    let out_dir = tmp.path().join("out");
    let res = run(vinscan(tmp.path())
        .arg("batch")
        .arg(&src)
        .args(["--pipeline", "id-card", "--out"])
        .arg(&out_dir));
    assert_eq!(
        res.status.code(),
        Some(1),
        "failures are reported through the exit code"
    );
    let m = manifest(&out_dir);
    let by_source = |s: &str| {
        m.iter()
            .find(|e| e["source"] == s)
            .unwrap_or_else(|| panic!("{s} in {m:?}"))
    };
    assert_eq!(m.len(), 9, "every file found is in the manifest: {m:?}");
    assert_eq!(by_source("notes.txt")["status"], "unsupported");
    assert_eq!(by_source("notes.txt")["error"]["kind"], "unsupported");
    for ok in ["good.jpg", "nested/good.png"] {
        assert_eq!(by_source(ok)["status"], "ok");
    }
    for (name, kind) in [
        ("truncated.jpg", "invalid_input"),
        ("not-an-image.png", "unsupported"),
        ("empty.webp", "invalid_input"),
        ("huge.png", "too_large"),
        ("locked.pdf", "unsupported"),
    ] {
        let e = by_source(name);
        assert_eq!(e["status"], "failed", "{name}: {e}");
        assert_eq!(e["error"]["kind"], kind, "{name}: {e}");
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(name), "{name}: the reason names the file: {msg}");
    }
    // the corrupt JPEG may decode into garbage pixels or fail; either way it never crashes
    assert!(["ok", "failed"].contains(&by_source("corrupt.jpg")["status"].as_str().unwrap_or("")));

    // a changed input is processed again, unchanged ones are skipped
    std::fs::write(
        src.join("good.jpg"),
        encode(&scan(900, 1200, 77), ImageFormat::Jpeg),
    )
    .expect("rewrite");
    let again = run(vinscan(tmp.path())
        .arg("batch")
        .arg(&src)
        .args(["--pipeline", "id-card", "--out"])
        .arg(&out_dir));
    let m = manifest(&out_dir);
    assert_eq!(
        m.iter()
            .find(|e| e["source"] == "good.jpg")
            .map(|e| e["status"].clone()),
        Some("ok".into())
    );
    assert_eq!(
        m.iter()
            .find(|e| e["source"] == "nested/good.png")
            .map(|e| e["status"].clone()),
        Some("skipped".into())
    );
    assert_eq!(
        summary(&again.stdout)["processed"].as_u64(),
        Some(1 + u64::from(by_source_status(&m, "corrupt.jpg")))
    );
}

/// Regression: a local folder was read as a bucket. A name with non-UTF-8 bytes was "not
/// found", a backslash an internal key error, symlinked and `.jfif` files were left out without
/// a manifest line, and an NFD name lost its letters. Every file found is now in the manifest,
/// recognised by content where its name says nothing, with outputs that keep its visible name
/// and never collide.
#[test]
fn local_folders_are_not_buckets() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    std::fs::create_dir_all(&src).expect("mkdir");
    let jpeg = |seed| encode(&scan(320, 240, seed), ImageFormat::Jpeg);
    let odd = std::ffi::OsStr::from_bytes(b"scan-\xff\xfe.jpg");
    std::fs::write(src.join(odd), jpeg(1)).expect("non-UTF-8 name");
    std::fs::write(src.join("back\\slash.jpg"), jpeg(2)).expect("backslash name");
    std::fs::write(src.join("photo.jfif"), jpeg(3)).expect("jfif");
    std::fs::write(src.join("no-extension"), jpeg(4)).expect("no extension");
    std::fs::write(src.join("a\u{0309}nh chu\u{0323}p.jpg"), jpeg(5)).expect("NFD name");
    std::fs::write(tmp.path().join("outside.jpg"), jpeg(6)).expect("link target");
    std::os::unix::fs::symlink(tmp.path().join("outside.jpg"), src.join("linked.jpg")).expect("symlink");

    let out_dir = tmp.path().join("out");
    let res = run(vinscan(tmp.path())
        .arg("batch")
        .arg(&src)
        .args(["--pipeline", "receipt", "--out"])
        .arg(&out_dir));
    assert!(res.status.success(), "{:?}", res.status);
    let m = manifest(&out_dir);
    assert_eq!(m.len(), 6, "{m:?}");
    assert!(m.iter().all(|e| e["status"] == "ok" && e["pages"] == 1), "{m:?}");
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    written.sort();
    assert_eq!(written.len(), 6, "one output each, none overwritten: {written:?}");
    assert!(
        written.contains(&"ảnh chụp.jpg.json".to_owned()),
        "NFC name kept: {written:?}"
    );
    assert!(
        written.contains(&"back\\slash.jpg.json".to_owned()),
        "{written:?}"
    );
    assert!(written.contains(&"no-extension.json".to_owned()), "{written:?}");
}

/// `--out` inside the source: the next run does not read the first run's outputs as inputs.
#[test]
fn outputs_inside_the_source_are_not_read_as_inputs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.jpg"), encode(&scan(320, 240, 1), ImageFormat::Jpeg)).expect("write");
    let out_dir = src.join("results");
    for round in 0..2 {
        let res = run(vinscan(tmp.path())
            .arg("batch")
            .arg(&src)
            .args(["--pipeline", "receipt", "--out"])
            .arg(&out_dir));
        assert!(res.status.success(), "round {round}: {:?}", res.status);
        let s = summary(&res.stdout);
        assert_eq!(
            (s["inputs"].as_u64(), s["unsupported"].as_u64()),
            (Some(1), Some(0)),
            "round {round}: {s}"
        );
    }
}

/// With stderr not a terminal (here a pipe) the bar draws nothing, so each finished input is a
/// `batch progress` log line, counting 1..=N in order although 4 workers finish concurrently;
/// `--no-progress` turns those off too. Two scans and 1,000 unsupported files (refused without
/// the model, so they finish fast and close together).
#[test]
fn progress_is_logged_per_input_where_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    std::fs::create_dir_all(&src).expect("mkdir");
    for name in ["a.jpg", "b.jpg"] {
        std::fs::write(src.join(name), encode(&scan(320, 240, 1), ImageFormat::Jpeg)).expect("write");
    }
    for i in 0..1000 {
        std::fs::write(src.join(format!("note-{i}.txt")), "not a scan").expect("write");
    }
    let n = 1002;
    for (round, hide, lines) in [(0, false, n), (1, true, 0)] {
        let mut cmd = vinscan(tmp.path());
        cmd.env_remove("VINSCAN_NO_PROGRESS")
            .arg("batch")
            .arg(&src)
            .args(["--pipeline", "receipt", "--parallel", "4", "--force", "--out"])
            .arg(tmp.path().join("out"));
        if hide {
            cmd.arg("--no-progress");
        }
        let res = run(&mut cmd);
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(res.status.success(), "round {round}: {:?} {stderr}", res.status);
        assert_eq!(
            summary(&res.stdout)["processed"].as_u64(),
            Some(2),
            "round {round}: {stderr}"
        );
        let progress: Vec<Value> = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"] == "batch progress: an input is done")
            .collect();
        let counts: Vec<(Option<u64>, Option<u64>)> = progress
            .iter()
            .map(|l| (l["done"].as_u64(), l["of"].as_u64()))
            .collect();
        let expected: Vec<(Option<u64>, Option<u64>)> = (1..=lines).map(|i| (Some(i), Some(n))).collect();
        assert_eq!(counts, expected, "round {round}");
    }
}

/// Regression: `extract --out` named outputs by base name only, so `a/scan.jpg` and
/// `b/scan.jpg` overwrote each other with exit 0.
#[test]
fn extract_outputs_of_same_named_inputs_do_not_collide() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (dir, seed) in [("a", 1), ("b", 2)] {
        std::fs::create_dir_all(tmp.path().join(dir)).expect("mkdir");
        std::fs::write(
            tmp.path().join(dir).join("scan.jpg"),
            encode(&scan(320, 240, seed), ImageFormat::Jpeg),
        )
        .expect("write");
    }
    let out_dir = tmp.path().join("out");
    let res = run(vinscan(tmp.path())
        .arg("extract")
        .arg(tmp.path().join("a/scan.jpg"))
        .arg(tmp.path().join("b/scan.jpg"))
        .args(["--pipeline", "receipt", "--out"])
        .arg(&out_dir));
    assert!(res.status.success());
    let mut sources = Vec::new();
    for e in std::fs::read_dir(&out_dir).expect("out") {
        let record: Value =
            serde_json::from_slice(&std::fs::read(e.expect("entry").path()).expect("read")).expect("json");
        // a receipt is a document: its record names its sources
        sources.push(record["sources"][0].as_str().unwrap_or_default().to_owned());
    }
    sources.sort();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(
        sources[0].ends_with("a/scan.jpg") && sources[1].ends_with("b/scan.jpg"),
        "{sources:?}"
    );
}

/// `--review-out`: records that need review go there, the others to `--out`, at the same
/// relative names; the manifest points at each; a second run finds both and loads no model.
#[test]
fn records_needing_review_go_to_the_review_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..4u32 {
        std::fs::write(
            src.join(format!("r{i}.jpg")),
            encode(&scan(360, 640, 40 + i), ImageFormat::Jpeg),
        )
        .expect("write");
    }
    // a receipt pipeline that wants a person for any field read with less than certainty:
    // every record with a sampled value needs review
    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let receipt = std::fs::read_to_string(repo_root().join("pipelines/receipt.toml")).expect("receipt.toml");
    std::fs::write(
        pipelines.join("receipt.toml"),
        format!("{receipt}\n[review]\nmin_confidence = 1.0\n"),
    )
    .expect("write");
    let (out_dir, review_dir) = (tmp.path().join("out"), tmp.path().join("review"));
    let batch = || {
        run(vinscan(tmp.path())
            .arg("batch")
            .arg(&src)
            .args(["--pipeline", "receipt", "--out"])
            .arg(&out_dir)
            .arg("--review-out")
            .arg(&review_dir)
            .arg("--pipelines-dir")
            .arg(&pipelines)
            .arg("--schemas-dir")
            .arg(repo_root().join("schemas")))
    };
    let first = batch();
    assert!(first.status.success(), "{:?}", first.status);
    let needs = |p: &PathBuf| {
        let record: Value = serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json");
        record["review"]["needed"] == true
    };
    let (kept, routed) = (json_outputs(&out_dir), json_outputs(&review_dir));
    assert_eq!(
        kept.len() + routed.len(),
        4,
        "one record per receipt: {kept:?} {routed:?}"
    );
    assert!(!routed.is_empty(), "sampled values are below certainty");
    assert!(routed.iter().all(needs), "only records needing review are routed");
    assert!(!kept.iter().any(needs), "no record needing review stays in --out");
    let s = summary(&first.stdout);
    assert_eq!(
        s["records_needing_review"].as_u64(),
        Some(routed.len() as u64),
        "{s}"
    );
    for e in manifest(&out_dir) {
        let output = e["outputs"][0].as_str().expect("an output");
        assert!(Path::new(output).is_file(), "the manifest points at {output}");
        assert_eq!(
            output.starts_with(review_dir.to_str().expect("utf-8")),
            e["review"] == true
        );
    }

    let second = batch();
    let s = summary(&second.stdout);
    assert_eq!(
        (s["skipped"].as_u64(), s["processed"].as_u64()),
        (Some(4), Some(0)),
        "{s}"
    );
    assert_eq!(
        s["model_loaded"], false,
        "outputs found in both places are reused"
    );
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
/// `vinscan eval` with the sample's SROIE key files: every receipt matched, 4 fields each (the
/// tiny model's values are noise, so only the counts are known).
fn eval_against_sroie_keys(home: &Path, images: &Path, out_dir: &Path) {
    let keys = images.parent().expect("sample folder").join("key");
    let json = home.join("eval.json");
    let out = run(vinscan(home)
        .args(["eval", "--labels"])
        .arg(&keys)
        .arg("--outputs")
        .arg(out_dir)
        .arg("--json")
        .arg(&json));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("eval.json")).expect("json");
    assert_eq!(
        (report["labels"].as_u64(), report["matched"].as_u64()),
        (Some(40), Some(40)),
        "{report}"
    );
    let fields: Vec<(&str, u64)> = report["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["field"].as_str()?, f["n"].as_u64()?)))
        .collect();
    assert_eq!(
        fields,
        [
            ("/date", 40),
            ("/merchant_address", 40),
            ("/merchant_name", 40),
            ("/total", 40)
        ]
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("| **overall** | 160 |"), "{md}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn by_source_status(m: &[Value], s: &str) -> bool {
    m.iter().any(|e| e["source"] == s && e["status"] == "ok")
}

/// `vinscan export` of a batch's folder, as CSV and XLSX, read back by Python's `csv` and
/// `openpyxl`: one row per record, one per line item, the review and confidence columns there.
fn export_opens_in_python(home: &std::path::Path, out_dir: &std::path::Path, outputs: &[PathBuf]) {
    let items: usize = outputs
        .iter()
        .map(|p| {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).expect("read output")).expect("json");
            record["data"]["items"].as_array().map_or(0, Vec::len)
        })
        .sum();
    let export_dir = home.join("export");
    for format in ["csv", "xlsx"] {
        let out = run(vinscan(home)
            .arg("export")
            .arg(out_dir)
            .args(["--format", format, "--output"])
            .arg(if format == "csv" {
                export_dir.clone()
            } else {
                export_dir.join("receipts.xlsx")
            }));
        assert!(out.status.success(), "export --format {format}: {:?}", out.status);
    }
    let script = r#"
import csv, sys, openpyxl
d = sys.argv[1]
book = openpyxl.load_workbook(d + "/receipts.xlsx", read_only=True)
counts = []
for name in ("records", "items"):
    rows = list(book[name].iter_rows(values_only=True))
    with open(f"{d}/export.csv" if name == "records" else f"{d}/export.items.csv", newline="", encoding="utf-8") as f:
        text_rows = list(csv.reader(f))
    assert [str(c) for c in rows[0]] == text_rows[0], (rows[0], text_rows[0])
    assert len(rows) == len(text_rows), (name, len(rows), len(text_rows))
    counts.append(len(rows) - 1)
header = list(book["records"].iter_rows(values_only=True))[0]
for column in ("source", "review_needed", "min_confidence", "total", "total confidence"):
    assert column in header, (column, header)
print(counts[0], counts[1])
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(&export_dir)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("40 {items}"),
        "rows per record and per line item"
    );
}
