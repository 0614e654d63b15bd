//! Declarations read from schemas and run on records.

use serde_json::json;

use super::*;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid")
}

fn errors(schema: Value) -> Vec<String> {
    CheckPlan::from_schema(&schema)
        .expect_err("refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn relative_pointers_parse_as_the_draft_says() {
    assert_eq!(
        parse_relative("0"),
        Some(Relative {
            up: 0,
            tokens: vec![]
        })
    );
    assert_eq!(
        parse_relative("2/issue_date"),
        Some(Relative {
            up: 2,
            tokens: vec!["issue_date".into()]
        })
    );
    assert_eq!(
        parse_relative("1/a~1b/c~0d"),
        Some(Relative {
            up: 1,
            tokens: vec!["a/b".into(), "c~d".into()]
        })
    );
    for bad in ["", "/x", "01/x", "x", "0#", "1x", "-1/x"] {
        assert_eq!(parse_relative(bad), None, "{bad:?}");
    }
}

#[test]
fn every_problem_is_reported_at_its_pointer() {
    let got = errors(json!({
        "type": "object",
        "x-vinscan-check": [{"check": "line-amount", "quantity": "0/q"}, "nope"],
        "properties": {
            "a": {"type": "string", "x-vinscan-check": {"check": "mst", "colour": "0"}},
            "b": {"type": "string", "x-vinscan-check": {"check": "cccd", "sex": "3/sex"}},
            "c": {"type": "string", "x-vinscan-check": {"check": "vat-rate", "issue_date": "/issue_date"}},
            "d": {"type": "string", "x-vinscan-check": 7},
            "e": {"anyOf": [{"type": "string", "x-vinscan-check": "mst"}]}
        }
    }));
    let expected = [
        "/x-vinscan-check/0: line-amount needs argument \"unit_price\"; line-amount needs argument \"amount\"",
        "/x-vinscan-check/1: unknown check \"nope\"",
        "/properties/a/x-vinscan-check: mst takes no argument \"colour\"",
        "/properties/b/x-vinscan-check: argument \"sex\": \"3/sex\" climbs above the record's root",
        "/properties/c/x-vinscan-check: argument \"issue_date\": \"/issue_date\" is not a Relative JSON Pointer",
        "/properties/d/x-vinscan-check: a declaration is a check name",
        "/properties/e/anyOf/0/x-vinscan-check: x-vinscan-check is not under properties/items",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, e) in got.iter().zip(expected) {
        assert!(g.starts_with(e), "{g:?} should start with {e:?}");
    }
}

fn card_schema() -> Value {
    json!({
        "type": "object",
        "x-vinscan-check": [
            {"check": "card-dates", "date_of_birth": "0/date_of_birth", "date_of_issue": "0/date_of_issue", "date_of_expiry": "0/date_of_expiry"}
        ],
        "properties": {
            "id_number": {"x-vinscan-check": {"check": "cccd", "sex": "1/sex", "date_of_birth": "1/date_of_birth"}},
            "date_of_birth": {"x-vinscan-check": "date"},
            "sex": {},
            "date_of_expiry": {},
            "date_of_issue": {"x-vinscan-check": "date"},
            "full_name": {},
            "mrz": {"x-vinscan-check": {"check": "mrz", "id_number": "1/id_number", "date_of_birth": "1/date_of_birth", "sex": "1/sex", "date_of_expiry": "1/date_of_expiry", "full_name": "1/full_name"}}
        }
    })
}

const ZONE: &str =
    "IDVNM0999939080001099993908<<<\n9903137M2403133VNM<<<<<<<<<<<9\nNGUYEN<<VAN<AN<<<<<<<<<<<<<<<<";

#[test]
fn a_card_is_checked_and_its_misread_birth_date_corrected_from_the_mrz() {
    let plan = CheckPlan::from_schema(&card_schema()).expect("loads");
    assert_eq!(plan.len(), 5);
    let mut card = json!({
        "id_number": "001099993908",
        "date_of_birth": "1989-03-13",
        "sex": "Nam",
        "date_of_expiry": "2024-03-13",
        "date_of_issue": "2021-04-01",
        "full_name": "Nguyễn Văn An",
        "mrz": ZONE
    });
    let out = plan.run(&mut card, today());
    let got: Vec<(&str, &str, Status)> = out
        .checks
        .iter()
        .map(|c| (c.pointer.as_str(), c.check.as_str(), c.status))
        .collect();
    assert_eq!(
        got,
        vec![
            // the MRZ first: the others then see the corrected birth date (1989 would fail
            // the CCCD number's birth year)
            ("/mrz", "mrz", Status::Pass),
            ("/id_number", "mrz", Status::Pass),
            ("/date_of_birth", "mrz", Status::Warn),
            ("/date_of_expiry", "mrz", Status::Pass),
            ("/sex", "mrz", Status::Pass),
            ("/full_name", "mrz", Status::Pass),
            ("", "card-dates", Status::Pass),
            ("/id_number", "cccd", Status::Pass),
            ("/date_of_birth", "date", Status::Pass),
            ("/date_of_issue", "date", Status::Pass),
        ]
    );
    assert_eq!(out.corrections.len(), 1);
    assert_eq!(
        card["date_of_birth"],
        json!("1999-03-13"),
        "the MRZ value is kept in data"
    );
    assert_eq!(out.corrections[0].printed, json!("1989-03-13"));
    assert_eq!(out.corrections[0].evidence, "/mrz");
}

#[test]
fn null_values_are_skipped_not_failed() {
    let plan = CheckPlan::from_schema(&card_schema()).expect("loads");
    let mut card = json!({"id_number": null, "date_of_birth": null, "sex": null, "date_of_expiry": null,
        "date_of_issue": null, "full_name": null, "mrz": null});
    let out = plan.run(&mut card, today());
    assert_eq!(out.checks.len(), 5);
    assert!(
        out.checks.iter().all(|c| c.status == Status::Skipped),
        "{:?}",
        out.checks
    );
}

fn invoice_schema() -> Value {
    json!({
        "type": "object",
        "x-vinscan-check": {"check": "invoice-totals", "items": "0/items", "subtotal": "0/subtotal",
            "vat_rate": "0/vat_rate", "vat_amount": "0/vat_amount", "total": "0/total"},
        "properties": {
            "invoice_series": {"x-vinscan-check": {"check": "invoice-series", "issue_date": "1/issue_date"}},
            "issue_date": {"x-vinscan-check": "date"},
            "seller": {"properties": {"tax_code": {"x-vinscan-check": "mst"}}},
            "items": {"items": {
                "x-vinscan-check": {"check": "line-amount", "quantity": "0/quantity", "unit_price": "0/unit_price", "amount": "0/amount"},
                "properties": {"vat_rate": {"x-vinscan-check": {"check": "vat-rate", "issue_date": "3/issue_date"}}}
            }},
            "vat_rate": {"x-vinscan-check": {"check": "vat-rate", "issue_date": "1/issue_date"}}
        }
    })
}

#[test]
fn an_invoice_is_checked_line_by_line_and_in_total() {
    let plan = CheckPlan::from_schema(&invoice_schema()).expect("loads");
    let mut invoice = json!({
        "invoice_series": "1C25TYY",
        "issue_date": "2025-03-14",
        "seller": {"tax_code": "0100233480"},
        "items": [
            {"quantity": 2, "unit_price": 50000, "amount": 100000, "vat_rate": "8%"},
            {"quantity": 1, "unit_price": 20000, "amount": 25000, "vat_rate": "8%"}
        ],
        "subtotal": 125000, "vat_rate": "8%", "vat_amount": 10000, "total": 135000
    });
    let before = invoice.clone();
    let out = plan.run(&mut invoice, today());
    assert_eq!(invoice, before, "only the MRZ check corrects");
    let got: Vec<(&str, &str, Status)> = out
        .checks
        .iter()
        .map(|c| (c.pointer.as_str(), c.check.as_str(), c.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/subtotal", "invoice-totals", Status::Pass),
            ("/vat_amount", "invoice-totals", Status::Pass),
            ("/total", "invoice-totals", Status::Pass),
            ("/invoice_series", "invoice-series", Status::Pass),
            ("/issue_date", "date", Status::Pass),
            ("/seller/tax_code", "mst", Status::Fail),
            ("/items/0/amount", "line-amount", Status::Pass),
            ("/items/1/amount", "line-amount", Status::Fail),
            ("/items/0/vat_rate", "vat-rate", Status::Pass),
            ("/items/1/vat_rate", "vat-rate", Status::Pass),
            ("/vat_rate", "vat-rate", Status::Pass),
        ]
    );
}

#[test]
fn values_of_the_wrong_type_fail_and_absent_members_check_nothing() {
    let plan = CheckPlan::from_schema(&invoice_schema()).expect("loads");
    let mut invoice = json!({"invoice_series": 12, "issue_date": 20250314, "seller": {"tax_code": null}});
    let out = plan.run(&mut invoice, today());
    let got: Vec<(&str, Status)> = out
        .checks
        .iter()
        .map(|c| (c.pointer.as_str(), c.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/subtotal", Status::Skipped),
            ("/vat_amount", Status::Skipped),
            ("/total", Status::Skipped),
            ("/invoice_series", Status::Fail),
            ("/issue_date", Status::Fail),
            ("/seller/tax_code", Status::Skipped),
        ] // `vat_rate` and `items` are absent: no instance, so no result (a schema that needs
          // them present says so with `required`).
    );
}

#[test]
fn member_names_are_escaped_in_result_pointers() {
    let plan =
        CheckPlan::from_schema(&json!({"properties": {"a/b~c": {"x-vinscan-check": "mst"}}})).expect("loads");
    let out = plan.run(&mut json!({"a/b~c": "0100233488"}), today());
    assert_eq!(out.checks[0].pointer, "/a~1b~0c");
    assert_eq!(out.checks[0].status, Status::Pass);
}
