//! `vinscan eval` on records and labels written here, so every figure is known: exact match
//! after normalisation (tone-mark placement, whitespace, ISO dates, amounts), character error
//! rate, a label without a record, and the JSON report beside the Markdown one.

mod common;

use common::*;
use serde_json::{Value, json};

#[test]
fn eval_reports_exact_match_and_cer_per_field_and_overall() {
    let home = tempfile::tempdir().expect("tmp");
    let outputs = home.path().join("out");
    std::fs::create_dir_all(outputs.join("sub")).expect("dir");
    let record = |source: &str, data: Value| {
        json!({"sources": [source], "pages": [{"source": source, "page": 1}], "pipeline": "receipt",
               "schema": "schemas/receipt.schema.json", "data": data})
    };
    let write = |name: &str, v: Value| std::fs::write(outputs.join(name), v.to_string()).expect("write");
    // old tone placement and a d/m/y date against the label's forms: exact
    write(
        "a.jpg.json",
        record(
            "scans/a.jpg",
            json!({"merchant_name": "Cửa hàng Hòa  Bình", "date": "2024-03-05", "total": 125000}),
        ),
    );
    // one letter wrong in a 4-letter name, the total right
    write(
        "sub/b.png.json",
        record("scans/sub/b.png", json!({"merchant_name": "AEOM", "total": 9})),
    );
    let labels = home.path().join("labels.jsonl");
    std::fs::write(
        &labels,
        [
            json!({"source": "a.jpg", "data": {"merchant_name": "Cửa hàng Hoà Bình", "date": "05/03/2024", "total": "125.000 đ"}}),
            json!({"source": "b", "data": {"merchant_name": "AEON", "total": "9.00"}}),
            json!({"source": "c.jpg", "data": {"merchant_name": "MR DIY"}}),
        ]
        .map(|v| v.to_string())
        .join("\n"),
    )
    .expect("labels");
    let json_path = home.path().join("report.json");
    let out = run(vinscan(home.path())
        .args(["eval", "--labels"])
        .arg(&labels)
        .arg("--outputs")
        .arg(&outputs)
        .arg("--json")
        .arg(&json_path));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("3 labelled documents, 2 with a record (missing: c.jpg)."),
        "{md}"
    );
    // names: exact, 1/4, missing (1) → mean CER 0.4167
    assert!(
        md.contains("| `/merchant_name` | 3 | 1 | 33.3 % | 0.417 |"),
        "{md}"
    );
    assert!(md.contains("| `/total` | 2 | 2 | 100.0 % | 0.000 |"), "{md}");
    assert!(md.contains("| `/date` | 1 | 1 | 100.0 % | 0.000 |"), "{md}");
    assert!(md.contains("| **overall** | 6 | 4 | 66.7 % | 0.208 |"), "{md}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).expect("json")).expect("json");
    assert_eq!(report["overall"]["n"], 6);
    assert_eq!(report["missing"], json!(["c.jpg"]));
}

#[test]
fn labels_that_are_not_labels_are_refused_with_the_line() {
    let home = tempfile::tempdir().expect("tmp");
    let labels = home.path().join("labels.jsonl");
    std::fs::write(&labels, "{\"source\": \"a\"}\n").expect("write");
    let out = run(vinscan(home.path())
        .args(["eval", "--labels"])
        .arg(&labels)
        .arg("--outputs")
        .arg(home.path()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1: not a label"), "{stderr}");
}

#[test]
fn a_wrong_outputs_folder_or_a_source_labelled_twice_is_an_error_not_a_score() {
    let home = tempfile::tempdir().expect("tmp");
    let labels = home.path().join("labels.jsonl");
    let eval = |outputs: &std::path::Path| {
        run(vinscan(home.path())
            .args(["eval", "--labels"])
            .arg(&labels)
            .arg("--outputs")
            .arg(outputs))
    };
    let label = json!({"source": "a.jpg", "data": {"total": "10"}});
    std::fs::write(&labels, format!("{label}\n")).expect("write");
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = eval(&empty);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no records"));
    // records, none of a labelled source: the report, then an error
    let other = home.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let record = json!({"sources": ["b.jpg"], "pages": [{"source": "b.jpg", "page": 1}],
        "pipeline": "receipt", "schema": "schemas/receipt.schema.json", "data": {"total": 10}});
    std::fs::write(other.join("b.jpg.json"), record.to_string()).expect("write");
    let out = eval(&other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record in"));
    std::fs::write(&labels, format!("{label}\n{label}\n")).expect("write");
    let out = eval(&other);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("labelled more than once"));
}
