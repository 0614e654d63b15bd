//! Invoice checks on made-up but real-format values.

use super::*;

fn d(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[test]
fn vat_rates() {
    let cases: &[(&str, Option<&str>, Status)] = &[
        ("10%", Some("2023-03-01"), Status::Pass),
        ("5%", Some("2024-05-05"), Status::Pass),
        ("0%", Some("2021-01-01"), Status::Pass),
        ("KCT", Some("2025-02-02"), Status::Pass),
        ("KKKNT", None, Status::Pass),
        ("10%", None, Status::Pass),
        ("8%", Some("2022-02-01"), Status::Pass),
        ("8%", Some("2022-12-31"), Status::Pass),
        ("8%", Some("2023-07-01"), Status::Pass),
        ("8%", Some("2024-03-15"), Status::Pass),
        ("8%", Some("2024-12-31"), Status::Pass),
        ("8%", Some("2025-06-30"), Status::Pass),
        ("8%", Some("2025-07-01"), Status::Pass),
        ("8%", Some("2026-12-31"), Status::Pass),
        ("8%", Some("2022-01-31"), Status::Warn),
        ("8%", Some("2023-01-01"), Status::Warn),
        ("8%", Some("2023-06-30"), Status::Warn),
        ("8%", Some("2027-01-01"), Status::Warn),
        ("8%", Some("2021-12-31"), Status::Warn),
        ("8%", None, Status::Warn),
        ("7%", Some("2024-01-01"), Status::Fail),
        ("10", None, Status::Fail),
        ("", None, Status::Fail),
        ("8 %", Some("2024-01-01"), Status::Fail),
        ("KCT%", None, Status::Fail),
        ("20%", None, Status::Fail),
    ];
    for (rate, day, want) in cases {
        let (status, detail) = check_vat_rate(rate, day.and_then(d));
        assert_eq!(status, *want, "{rate} {day:?}: {detail}");
    }
}

#[test]
fn reduction_periods_are_ordered_and_do_not_overlap() {
    for w in REDUCED_RATE_PERIODS.windows(2) {
        assert!(ymd(w[0].2) < ymd(w[1].1), "{} then {}", w[0].0, w[1].0);
    }
    assert!(
        REDUCED_RATE_PERIODS
            .iter()
            .all(|(_, from, to)| ymd(*from) < ymd(*to))
    );
}

#[test]
fn line_arithmetic() {
    let pass: &[(f64, f64, f64)] = &[
        (1.0, 100_000.0, 100_000.0),
        (2.0, 50_000.0, 100_000.0),
        (3.0, 33_333.0, 99_999.0),
        (3.0, 33_333.33, 100_000.0),
        (0.5, 1_000.0, 500.0),
        (1.5, 12_345.0, 18_518.0),
        (1.5, 12_345.0, 18_517.0),
        (10.0, 9_999.5, 99_995.0),
        (1000.0, 1_234.0, 1_234_000.0),
        (1000.0, 1_234.4, 1_234_400.0),
        (1000.0, 1_234.4, 1_234_000.0),
        (12.0, 27_500.0, 330_000.0),
        (0.0, 50_000.0, 0.0),
        (7.0, 142_857.0, 999_999.0),
        (250.0, 4_000.0, 1_000_000.0),
        (1.0, 999_999_999_999.0, 999_999_999_999.0),
        (24.0, 18_182.0, 436_368.0),
        (2.25, 80_000.0, 180_000.0),
        (100.0, 0.0, 0.0),
        (6.0, 15_000.0, 90_001.0),
        (4.0, 25_000.0, 99_999.0),
    ];
    for (q, p, a) in pass {
        let (status, detail) = check_line(Some(*q), Some(*p), Some(*a));
        assert_eq!(status, Status::Pass, "{q} × {p} = {a}: {detail}");
    }
    let fail: &[(f64, f64, f64)] = &[
        (1.0, 100_000.0, 10_000.0),
        (2.0, 50_000.0, 50_000.0),
        (3.0, 33_333.0, 99_990.0),
        (10.0, 10_000.0, 1_000_000.0),
        (1000.0, 1_234.0, 1_235_000.0),
        (1.0, 100_000.0, 100_002.0),
        (1.0, 100_000.0, 99_998.0),
        (12.0, 27_500.0, 33_000.0),
        (0.0, 50_000.0, 50_000.0),
        (5.0, 20_000.0, 10_000.0),
        (2.0, 1.5, 30.0),
        (100.0, 1_000.0, 100_100.0),
        (1.0, 999_999_999_999.0, 99_999_999_999.0),
        (24.0, 18_182.0, 436_400.0),
        (2.25, 80_000.0, 160_000.0),
        (3.0, 0.0, 5.0),
        (7.0, 142_857.0, 1_000_004.0),
        (250.0, 4_000.0, 100_000.0),
        (6.0, 15_000.0, 90_005.0),
        (4.0, 25_000.0, 99_996.0),
    ];
    for (q, p, a) in fail {
        let (status, detail) = check_line(Some(*q), Some(*p), Some(*a));
        assert_eq!(status, Status::Fail, "{q} × {p} ≠ {a}: {detail}");
    }
    assert_eq!(check_line(None, Some(1.0), Some(1.0)).0, Status::Skipped);
    assert_eq!(check_line(Some(1.0), Some(1.0), None).0, Status::Skipped);
}

fn totals(lines: &[f64], subtotal: f64, rate: &'static str, vat: f64, total: f64) -> Vec<Status> {
    let t = Totals {
        line_amounts: lines.iter().map(|a| Some(*a)).collect(),
        line_rates: vec![],
        subtotal: Some(subtotal),
        vat_rate: Some(rate),
        vat_amount: Some(vat),
        total: Some(total),
    };
    check_totals(&t).into_iter().map(|(_, s, _)| s).collect()
}

#[test]
fn consistent_totals_pass() {
    use Status::Pass;
    let cases: &[(&[f64], f64, &str, f64, f64)] = &[
        (&[100_000.0], 100_000.0, "10%", 10_000.0, 110_000.0),
        (&[100_000.0, 50_000.0], 150_000.0, "10%", 15_000.0, 165_000.0),
        (&[100_000.0, 50_000.0], 150_000.0, "8%", 12_000.0, 162_000.0),
        (&[100_000.0, 50_000.0], 150_000.0, "5%", 7_500.0, 157_500.0),
        (&[100_000.0], 100_000.0, "0%", 0.0, 100_000.0),
        (&[100_000.0], 100_000.0, "KCT", 0.0, 100_000.0),
        (&[100_000.0], 100_000.0, "KKKNT", 0.0, 100_000.0),
        (&[33_333.0], 33_333.0, "10%", 3_333.0, 36_666.0),
        (&[33_335.0], 33_335.0, "10%", 3_334.0, 36_669.0),
        (&[18_519.0, 18_519.0, 18_519.0], 55_557.0, "8%", 4_444.0, 60_001.0),
        (&[18_519.0, 18_519.0, 18_519.0], 55_557.0, "8%", 4_446.0, 60_003.0),
        (&[1.0; 30], 30.0, "10%", 3.0, 33.0),
        (&[436_368.0, 90_000.0], 526_368.0, "10%", 52_637.0, 579_005.0),
        (
            &[999_999_999.0],
            999_999_999.0,
            "10%",
            100_000_000.0,
            1_099_999_999.0,
        ),
        (&[12_500.0, 7_500.0], 20_000.0, "5%", 1_000.0, 21_000.0),
        (&[1_234_000.0], 1_234_000.0, "8%", 98_720.0, 1_332_720.0),
        (&[500.0, 500.0], 1_000.0, "10%", 100.0, 1_101.0),
        (&[500.0, 500.0], 1_001.0, "10%", 100.0, 1_101.0),
        (&[500.0, 500.0], 1_002.0, "10%", 100.0, 1_102.0),
        (
            &[60_000.0, 40_000.0, 20_000.0],
            120_000.0,
            "10%",
            12_002.0,
            132_002.0,
        ),
    ];
    for (lines, s, r, v, t) in cases {
        assert_eq!(
            totals(lines, *s, r, *v, *t),
            vec![Pass, Pass, Pass],
            "{lines:?} {s} {r} {v} {t}"
        );
    }
}

use Status::{Fail, Pass};

type Case = (&'static [f64], f64, &'static str, f64, f64, [Status; 3]);
/// (line amounts, subtotal, rate, VAT, total, expected results for subtotal, VAT, total)
const INCONSISTENT: &[Case] = &[
    (
        &[100_000.0],
        90_000.0,
        "10%",
        9_000.0,
        99_000.0,
        [Fail, Pass, Pass],
    ),
    (
        &[100_000.0, 50_000.0],
        100_000.0,
        "10%",
        10_000.0,
        110_000.0,
        [Fail, Pass, Pass],
    ),
    (
        &[100_000.0],
        100_000.0,
        "10%",
        8_000.0,
        108_000.0,
        [Pass, Fail, Pass],
    ),
    (
        &[100_000.0],
        100_000.0,
        "8%",
        10_000.0,
        110_000.0,
        [Pass, Fail, Pass],
    ),
    (
        &[100_000.0],
        100_000.0,
        "0%",
        10_000.0,
        110_000.0,
        [Pass, Fail, Pass],
    ),
    (
        &[100_000.0],
        100_000.0,
        "KCT",
        5_000.0,
        105_000.0,
        [Pass, Fail, Pass],
    ),
    (
        &[100_000.0],
        100_000.0,
        "10%",
        10_000.0,
        100_000.0,
        [Pass, Pass, Fail],
    ),
    (
        &[100_000.0],
        100_000.0,
        "10%",
        10_000.0,
        111_000.0,
        [Pass, Pass, Fail],
    ),
    (
        &[100_000.0],
        100_000.0,
        "10%",
        10_000.0,
        110_002.0,
        [Pass, Pass, Fail],
    ),
    (
        &[100_000.0],
        100_000.0,
        "10%",
        10_002.0,
        110_002.0,
        [Pass, Fail, Pass],
    ),
    (
        &[50_000.0, 50_000.0],
        100_003.0,
        "10%",
        10_000.0,
        110_003.0,
        [Fail, Pass, Pass],
    ),
    (&[1.0; 30], 70.0, "10%", 7.0, 77.0, [Fail, Pass, Pass]),
    (
        &[33_333.0],
        33_333.0,
        "10%",
        3_335.0,
        36_668.0,
        [Pass, Fail, Pass],
    ),
    (
        &[18_519.0, 18_519.0, 18_519.0],
        55_557.0,
        "8%",
        4_450.0,
        60_007.0,
        [Pass, Fail, Pass],
    ),
    (
        &[1_234_000.0],
        1_234_000.0,
        "8%",
        98_720.0,
        1_234_000.0,
        [Pass, Pass, Fail],
    ),
    (
        &[999_999_999.0],
        999_999_990.0,
        "10%",
        99_999_999.0,
        1_099_999_989.0,
        [Fail, Pass, Pass],
    ),
    (
        &[12_500.0, 7_500.0],
        20_000.0,
        "5%",
        2_000.0,
        22_000.0,
        [Pass, Fail, Pass],
    ),
    (
        &[60_000.0, 40_000.0],
        100_000.0,
        "10%",
        10_000.0,
        101_000.0,
        [Pass, Pass, Fail],
    ),
    (&[60_000.0, 40_000.0], 0.0, "10%", 0.0, 0.0, [Fail, Pass, Pass]),
    (&[0.0], 0.0, "10%", 0.0, 5.0, [Pass, Pass, Fail]),
    (
        &[100_000.0],
        100_000.0,
        "5%",
        10_000.0,
        110_000.0,
        [Pass, Fail, Pass],
    ),
];

#[test]
fn inconsistent_totals_fail_where_they_break() {
    for (lines, s, r, v, t, want) in INCONSISTENT {
        assert_eq!(
            totals(lines, *s, r, *v, *t),
            want.to_vec(),
            "{lines:?} {s} {r} {v} {t}"
        );
    }
}

#[test]
fn totals_skip_what_was_not_read_and_mixed_rates() {
    let t = Totals {
        line_amounts: vec![Some(100.0), None],
        line_rates: vec![Some("10%"), Some("5%")],
        subtotal: Some(150.0),
        vat_rate: None,
        vat_amount: Some(12.5),
        total: None,
    };
    let got: Vec<(TotalsPart, Status)> = check_totals(&t).into_iter().map(|(p, s, _)| (p, s)).collect();
    assert_eq!(
        got,
        vec![
            (TotalsPart::Subtotal, Status::Skipped),
            (TotalsPart::VatAmount, Status::Skipped),
            (TotalsPart::Total, Status::Skipped),
        ]
    );
    let t = Totals {
        line_rates: vec![Some("5%"), Some("5%")],
        line_amounts: vec![Some(100.0), Some(50.0)],
        ..t
    };
    let got: Vec<Status> = check_totals(&t).into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(
        got,
        vec![Status::Pass, Status::Fail, Status::Skipped],
        "the lines' one rate is used: 150 × 5% ≠ 12.5"
    );
}

#[test]
fn series() {
    let cases: &[(&str, Option<&str>, Option<&str>, Status)] = &[
        ("1C24TYY", None, Some("2024-03-01"), Status::Pass),
        ("1K24TAA", None, Some("2024-12-31"), Status::Pass),
        ("2C25TYY", None, Some("2025-01-02"), Status::Pass),
        ("1C22DAB", None, Some("2022-07-01"), Status::Pass),
        ("5K23LQT", None, Some("2023-05-05"), Status::Pass),
        ("6K26NXK", None, Some("2026-01-01"), Status::Pass),
        ("1C23MYY", None, None, Status::Pass),
        ("C24TYY", Some("1"), Some("2024-03-01"), Status::Pass),
        ("K25BHN", Some("2"), Some("2025-09-09"), Status::Pass),
        ("C24TYY", None, Some("2024-03-01"), Status::Pass),
        ("1C24G01", None, Some("2024-06-06"), Status::Pass),
        ("AA/19E", None, Some("2019-05-05"), Status::Pass),
        ("AB/21T", None, Some("2021-12-31"), Status::Pass),
        ("1C24ZYY", None, Some("2024-03-01"), Status::Warn),
        ("AA/22E", None, Some("2022-08-01"), Status::Warn),
        ("1C24TYY", None, Some("2025-01-01"), Status::Fail),
        ("C23TYY", Some("1"), Some("2024-03-01"), Status::Fail),
        ("7C25TYY", None, Some("2025-07-01"), Status::Pass),
        ("0C24TYY", None, None, Status::Fail),
        ("C24TYY", Some("0"), None, Status::Fail),
        ("1A24TYY", None, None, Status::Fail),
        ("1CX4TYY", None, None, Status::Fail),
        ("1C241YY", None, None, Status::Fail),
        ("1C24Tyy", None, None, Status::Fail),
        ("1C24TY", None, None, Status::Fail),
        ("11C24TYY", None, None, Status::Fail),
        ("", None, None, Status::Fail),
        ("AA/19E", None, Some("2020-01-01"), Status::Warn),
        ("AA/21E", None, Some("2020-01-01"), Status::Fail),
        ("1C24T-Y", None, None, Status::Fail),
    ];
    for (series, form, day, want) in cases {
        let (status, detail) = check_series(series, *form, day.and_then(d));
        assert_eq!(status, *want, "{series} {form:?} {day:?}: {detail}");
    }
}
