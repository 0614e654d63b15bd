//! Records flattened into tables.

use serde_json::json;

use super::*;

/// A record of an invoice with two line items, one field failing a check.
fn invoice(source: &str, lines: usize) -> PageRecord {
    let items: Vec<Value> = (0..lines)
        .map(|i| json!({"description": format!("Hàng {i}"), "quantity": 2, "unit_price": 50000, "amount": 100000}))
        .collect();
    let mut confidence = serde_json::Map::new();
    confidence.insert("/invoice_series".into(), json!(0.97));
    confidence.insert("/seller/tax_code".into(), json!(0.42));
    confidence.insert("/total".into(), json!(0.9));
    for i in 0..lines {
        confidence.insert(format!("/items/{i}/amount"), json!(0.8));
    }
    serde_json::from_value(json!({
        "source": source, "page": 1, "pipeline": "invoice", "schema": "schemas/invoice.schema.json",
        "data": {"invoice_series": "1C24TYY", "seller": {"tax_code": "0100233488", "name": "Công ty A"},
                 "items": items, "total": 100000 * lines, "notes": [], "flags": ["a", "b"]},
        "confidence": confidence,
        "checks": [{"pointer": "/seller/tax_code", "check": "mst", "status": "fail", "detail": "check digit"}],
        "corrections": [],
        "review": {"needed": true, "reasons": [{"kind": "check_failed", "pointer": "/seller/tax_code", "check": "mst"}]},
        "provenance": {"source": source, "source_sha256": "0", "source_format": "pdf", "page": 1, "page_count": 1,
            "pipeline": "invoice", "pipeline_sha256": "0", "schema_id": "s", "schema_sha256": "0",
            "model": {"name": null, "file": "m", "sha256": "0", "mmproj_file": "p", "mmproj_sha256": "0"},
            "vinscan_version": "0.1.0", "image": {"width": 1, "height": 1, "orientation": null, "dpi": null},
            "tiles": {"cols": 1, "rows": 1, "thumbnail": false, "images": 1, "max_tiles_requested": 1, "max_tiles_used": 1},
            "generation": {"prompt_tokens": 1, "image_tokens": 1, "generated_tokens": 1, "max_tokens": 1, "stop": "end_of_output"},
            "normalised": [], "timings_ms": {"decode": 0, "tiling": 0, "encode_prefill": 0, "generate": 0, "sample": 0,
            "validate": 0, "total": 0}, "created_at": "2026-11-30T00:00:00Z"}
    }))
    .expect("a record")
}

#[test]
fn one_row_per_record_and_one_per_line_item() {
    let t = tables(&[invoice("a.pdf", 2).into(), invoice("b.pdf", 1).into()]);
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["records", "items"]);
    let records = &t[0];
    assert_eq!(
        records.columns,
        vec![
            "source",
            "page",
            "pipeline",
            "review_needed",
            "review_reasons",
            "checks_failed",
            "min_confidence",
            "invoice_series",
            "invoice_series confidence",
            "seller/tax_code",
            "seller/tax_code confidence",
            "seller/name",
            "total",
            "total confidence",
            "notes",
            "flags",
        ]
    );
    assert_eq!(records.rows.len(), 2);
    let row = &records.rows[0];
    assert_eq!(row[0], Cell::Text("a.pdf".into()));
    assert_eq!(row[3], Cell::Bool(true));
    assert_eq!(row[4], Cell::Text("/seller/tax_code".into()));
    assert_eq!(row[5], Cell::Number(1.0));
    assert_eq!(row[6], Cell::Number(0.42), "the record's least confident field");
    assert_eq!(row[10], Cell::Number(0.42));
    assert_eq!(row[14], Cell::Text("[]".into()));
    assert_eq!(row[15], Cell::Text(r#"["a","b"]"#.into()));
    let items = &t[1];
    assert_eq!(
        items.columns,
        vec![
            "source",
            "page",
            "line",
            "description",
            "quantity",
            "unit_price",
            "amount",
            "amount confidence"
        ]
    );
    let keys: Vec<(String, String)> = items.rows.iter().map(|r| (r[0].text(), r[2].text())).collect();
    assert_eq!(
        keys,
        vec![
            ("a.pdf".into(), "1".into()),
            ("a.pdf".into(), "2".into()),
            ("b.pdf".into(), "1".into())
        ]
    );
    assert_eq!(items.rows[0][7], Cell::Number(0.8));
}

#[test]
fn records_without_arrays_give_one_table_and_missing_fields_stay_empty() {
    let mut a = invoice("a.pdf", 0);
    a.data = json!({"x": 1});
    let mut b = invoice("b.pdf", 0);
    b.data = json!({"y": "v"});
    let t = tables(&[a.into(), b.into()]);
    assert_eq!(t.len(), 1);
    let at = |row: usize, col: &str| {
        t[0].rows[row][t[0].columns.iter().position(|c| c == col).expect(col)].clone()
    };
    assert_eq!(at(0, "y"), Cell::Empty);
    assert_eq!(at(1, "x"), Cell::Empty);
    assert_eq!(at(1, "y"), Cell::Text("v".into()));
}

#[test]
fn csv_and_xlsx_files_are_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = tables(&[invoice("a,\"quoted\".pdf", 2).into()]);
    let written = write_csv(&t, dir.path(), "export").expect("csv");
    assert_eq!(
        written,
        vec![dir.path().join("export.csv"), dir.path().join("export.items.csv")]
    );
    let text = std::fs::read_to_string(&written[0]).expect("read");
    assert!(text.starts_with("source,page,pipeline,"), "{text}");
    assert!(text.contains("\"a,\"\"quoted\"\".pdf\""), "CSV quoting: {text}");
    write_xlsx(&t, &dir.path().join("export.xlsx")).expect("xlsx");
    let bytes = std::fs::read(dir.path().join("export.xlsx")).expect("read");
    assert_eq!(&bytes[..2], b"PK", "an XLSX is a zip");
}
