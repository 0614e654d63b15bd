//! VAT invoices: line arithmetic, totals, the VAT rate and the series (ký hiệu).
//!
//! Tolerances, in the invoice's currency unit (whole đồng for VND):
//! - line: `|quantity × unit price − amount| ≤ 1 + 0.5 × quantity` — the amount is rounded to
//!   the unit, and a printed unit price may itself be rounded to the unit;
//! - subtotal: `|Σ line amounts − subtotal| ≤ 1 per line`;
//! - VAT: `|subtotal × rate − VAT| ≤ max(1, lines)` — sellers round VAT per line or once;
//! - total: `|subtotal + VAT − total| ≤ 1`.
//!
//! Rates are those of the Law on VAT: 0 %, 5 %, 10 %, KCT (not subject) and KKKNT (not
//! declared); 8 % is the reduced rate of the reduction periods in [`REDUCED_RATE_PERIODS`] and
//! is flagged outside them.

use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use crate::Status;

/// A calendar day as (year, month, day).
pub type Ymd = (i32, u32, u32);

/// Periods (first and last day, inclusive) in which 10 % goods and services could be invoiced
/// at 8 %, each with the decree that set it.
pub const REDUCED_RATE_PERIODS: [(&str, Ymd, Ymd); 6] = [
    ("Decree 15/2022/NĐ-CP", (2022, 2, 1), (2022, 12, 31)),
    ("Decree 44/2023/NĐ-CP", (2023, 7, 1), (2023, 12, 31)),
    ("Decree 94/2023/NĐ-CP", (2024, 1, 1), (2024, 6, 30)),
    ("Decree 72/2024/NĐ-CP", (2024, 7, 1), (2024, 12, 31)),
    ("Decree 180/2024/NĐ-CP", (2025, 1, 1), (2025, 6, 30)),
    ("Decree 174/2025/NĐ-CP", (2025, 7, 1), (2026, 12, 31)),
];

/// The invoice-type letters of an e-invoice series (Circular 78/2021/TT-BTC, Art. 4.1.b).
pub const SERIES_TYPE_LETTERS: &str = "TDLMNBGH";

/// E-invoices became mandatory for every seller on this day (Decree 123/2020/NĐ-CP, Art. 59).
pub const E_INVOICES_MANDATORY: Ymd = (2022, 7, 1);

fn ymd((y, m, d): Ymd) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// The rate as a fraction, or `None` for a value that is not a VAT rate. KCT and KKKNT carry
/// no VAT, so they count as 0.
pub fn rate_fraction(rate: &str) -> Option<f64> {
    match rate {
        "0%" | "KCT" | "KKKNT" => Some(0.0),
        "5%" => Some(0.05),
        "8%" => Some(0.08),
        "10%" => Some(0.10),
        _ => None,
    }
}

/// A VAT rate is one of the legal ones, and 8 % lies in a reduction period.
pub fn check_vat_rate(rate: &str, issued: Option<NaiveDate>) -> (Status, String) {
    if rate_fraction(rate).is_none() {
        return (
            Status::Fail,
            "not a VAT rate (0%, 5%, 8%, 10%, KCT, KKKNT)".into(),
        );
    }
    if rate != "8%" {
        return (Status::Pass, "a VAT rate in the law".into());
    }
    let Some(day) = issued else {
        return (
            Status::Warn,
            "8% is a reduced rate; without an issue date its period cannot be checked".into(),
        );
    };
    match REDUCED_RATE_PERIODS
        .iter()
        .find(|(_, from, to)| (ymd(*from)..=ymd(*to)).contains(&day))
    {
        Some((decree, ..)) => (Status::Pass, format!("8% in the reduction period of {decree}")),
        None => (
            Status::Warn,
            format!("8% on {day}, outside every VAT reduction period"),
        ),
    }
}

/// `quantity × unit price = amount` within the line tolerance.
pub fn check_line(quantity: Option<f64>, unit_price: Option<f64>, amount: Option<f64>) -> (Status, String) {
    let (Some(q), Some(p), Some(a)) = (quantity, unit_price, amount) else {
        return (Status::Skipped, "quantity, unit price or amount not read".into());
    };
    let expected = q * p;
    let tolerance = 1.0 + 0.5 * q.abs();
    if (expected - a).abs() <= tolerance {
        (Status::Pass, "quantity × unit price = amount".into())
    } else {
        (
            Status::Fail,
            format!("quantity × unit price = {expected}, amount is {a} (tolerance {tolerance})"),
        )
    }
}

/// What an invoice's totals say, each `None` when not read.
#[derive(Debug, Clone, Default)]
pub struct Totals<'a> {
    /// Every line's amount (`None` where a line's amount was not read).
    pub line_amounts: Vec<Option<f64>>,
    /// Every line's own rate, where lines carry one.
    pub line_rates: Vec<Option<&'a str>>,
    pub subtotal: Option<f64>,
    pub vat_rate: Option<&'a str>,
    pub vat_amount: Option<f64>,
    pub total: Option<f64>,
}

/// Which total a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalsPart {
    Subtotal,
    VatAmount,
    Total,
}

/// Σ lines = subtotal, subtotal × rate = VAT, subtotal + VAT = total, each within its
/// tolerance; one result per relation.
pub fn check_totals(t: &Totals<'_>) -> Vec<(TotalsPart, Status, String)> {
    let lines = t.line_amounts.len();
    let sum: Option<f64> = t.line_amounts.iter().copied().sum();
    let subtotal = match (lines, sum, t.subtotal) {
        (0, ..) => (Status::Skipped, "no line items".to_owned()),
        (_, Some(sum), Some(subtotal)) => within(sum, subtotal, lines as f64, "Σ line amounts", "subtotal"),
        _ => (
            Status::Skipped,
            "a line amount or the subtotal not read".to_owned(),
        ),
    };
    let rates: Vec<&str> = t.line_rates.iter().flatten().copied().collect();
    let mixed = rates.windows(2).any(|w| w[0] != w[1]);
    let rate = t
        .vat_rate
        .or_else(|| rates.first().copied())
        .and_then(rate_fraction);
    let vat = match (mixed, rate, t.subtotal, t.vat_amount) {
        (true, ..) => (Status::Skipped, "lines carry different rates".to_owned()),
        (false, Some(rate), Some(subtotal), Some(vat)) => within(
            subtotal * rate,
            vat,
            (lines as f64).max(1.0),
            "subtotal × rate",
            "VAT amount",
        ),
        _ => (
            Status::Skipped,
            "rate, subtotal or VAT amount not read".to_owned(),
        ),
    };
    let total = match (t.subtotal, t.vat_amount, t.total) {
        (Some(s), Some(v), Some(total)) => within(s + v, total, 1.0, "subtotal + VAT", "total"),
        _ => (
            Status::Skipped,
            "subtotal, VAT amount or total not read".to_owned(),
        ),
    };
    [
        (TotalsPart::Subtotal, subtotal),
        (TotalsPart::VatAmount, vat),
        (TotalsPart::Total, total),
    ]
    .into_iter()
    .map(|(part, (status, detail))| (part, status, detail))
    .collect()
}

fn within(expected: f64, actual: f64, tolerance: f64, what: &str, field: &str) -> (Status, String) {
    if (expected - actual).abs() <= tolerance {
        (Status::Pass, format!("{what} = {field}"))
    } else {
        (
            Status::Fail,
            format!("{what} = {expected}, {field} is {actual} (tolerance {tolerance})"),
        )
    }
}

/// A number from a JSON value (`None` for null and non-numbers).
pub fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// The series (ký hiệu) of an e-invoice, `[1-9][CK]YY[letter][2 chars]` (Circular 78/2021/
/// TT-BTC, Art. 4: the form digit — 1–6 there, more added by Circular 32/2025/TT-BTC, so any
/// non-zero digit is accepted — C with or K without the tax authority's code, the year of
/// issue, the invoice type, two characters of the seller's choosing); the form digit may sit
/// in `form` instead. A pre-2022 series `XX/YYE|T|P` (Circular 39/2014/TT-BTC) is recognised
/// and flagged when dated after e-invoices became mandatory.
pub fn check_series(series: &str, form: Option<&str>, issued: Option<NaiveDate>) -> (Status, String) {
    let b = series.as_bytes();
    if let [l1, l2, b'/', y1, y2, kind] = b
        && l1.is_ascii_uppercase()
        && l2.is_ascii_uppercase()
        && y1.is_ascii_digit()
        && y2.is_ascii_digit()
        && matches!(kind, b'E' | b'T' | b'P')
    {
        let year = u32::from(y1 - b'0') * 10 + u32::from(y2 - b'0');
        // under Circular 39/2014 the year is when the series was registered: its invoices
        // stayed usable in later years, never in earlier ones
        return match issued {
            Some(d) if (d.year() as u32 % 100) < year => (
                Status::Fail,
                format!("series year {year:02}, issued earlier, in {}", d.year()),
            ),
            Some(d) if (d.year() as u32 % 100) > year && d < ymd(E_INVOICES_MANDATORY) => (
                Status::Warn,
                format!("pre-2022 series of 20{year:02} on an invoice of {}", d.year()),
            ),
            Some(d) if d >= ymd(E_INVOICES_MANDATORY) => (
                Status::Warn,
                format!(
                    "pre-2022 series form (Circular 39/2014) on an invoice of {d}, after e-invoices became mandatory"
                ),
            ),
            _ => (Status::Pass, "pre-2022 series form (Circular 39/2014)".into()),
        };
    }
    let (form_digit, core) = match b.len() {
        7 => (Some(b[0]), &b[1..]),
        6 => (
            form.and_then(|f| f.as_bytes().first().copied())
                .filter(|_| form.is_some_and(|f| f.len() == 1)),
            b,
        ),
        n => {
            return (
                Status::Fail,
                format!("{n} characters: a series has 7 ([1-6][CK]YY[letter]XX) or 6 without the form digit"),
            );
        }
    };
    if let Some(d) = form_digit
        && !(b'1'..=b'9').contains(&d)
    {
        return (Status::Fail, "form digit is not 1–9".into());
    }
    let [ck, y1, y2, letter, x1, x2] = core else {
        return (Status::Fail, "not a series".into());
    };
    if !matches!(ck, b'C' | b'K') {
        return (
            Status::Fail,
            "second character must be C (with the tax authority's code) or K (without)".into(),
        );
    }
    if !y1.is_ascii_digit() || !y2.is_ascii_digit() {
        return (Status::Fail, "year digits are not digits".into());
    }
    if !letter.is_ascii_uppercase()
        || ![x1, x2]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return (
            Status::Fail,
            "type letter or last two characters are not capital letters".into(),
        );
    }
    let year = u32::from(y1 - b'0') * 10 + u32::from(y2 - b'0');
    if let Some(d) = issued
        && d.year() as u32 % 100 != year
    {
        return (
            Status::Fail,
            format!("series year {year:02}, issued in {}", d.year()),
        );
    }
    if !SERIES_TYPE_LETTERS.as_bytes().contains(letter) {
        return (
            Status::Warn,
            format!(
                "type letter {} is not one of {SERIES_TYPE_LETTERS}",
                *letter as char
            ),
        );
    }
    (Status::Pass, "e-invoice series form".into())
}

#[cfg(test)]
mod tests;
