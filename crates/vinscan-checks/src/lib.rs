//! Deterministic checks of extracted values, run after the model: Vietnamese tax codes (MST),
//! CCCD/CMND numbers, the ICAO 9303 TD1 machine-readable zone of chip cards, VAT invoice
//! arithmetic, rates and series (ký hiệu), and the dates printed on cards.
//!
//! A schema names the checks it wants with the `x-vinscan-check` keyword ([`CHECK_KEYWORD`]);
//! [`CheckPlan::from_schema`] reads and validates those declarations without IO, and
//! [`CheckPlan::run`] applies them to one record, returning a [`CheckResult`] per check and
//! the [`Correction`]s it made (only the MRZ check corrects, and only values its check digits
//! protect).
//!
//! Architecture invariant: pure functions of the record, the schema and the date passed in as
//! "today"; no IO, no clock, no model. Checks never log: their inputs are extracted values.

pub mod card;
pub mod cccd;
mod declare;
pub mod invoice;
pub mod mrz;
pub mod mst;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use declare::{CHECK_NAMES, CheckPlan, DeclarationError};

/// The schema keyword that declares checks: a check name (`"mst"`), an object
/// `{"check": NAME, ARGUMENT: RELATIVE_POINTER, …}`, or an array of those. See
/// [`CheckPlan::from_schema`] for the arguments each check takes.
pub const CHECK_KEYWORD: &str = "x-vinscan-check";

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The value is well formed and agrees with everything it was compared with.
    Pass,
    /// The value is wrong: a check digit, a sum, a date order or a cross-field rule fails.
    Fail,
    /// Plausible but worth a look (an unknown province code, 8 % VAT outside a reduction
    /// period, a value the MRZ corrected).
    Warn,
    /// The check could not run: a value it needs is null or absent.
    Skipped,
}

/// One check's outcome on one record, as written into the record's `checks` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// JSON Pointer (RFC 6901) of the value checked, into the record's `data`.
    pub pointer: String,
    /// The check's name as declared (`mst`, `cccd`, `mrz`, …).
    pub check: String,
    pub status: Status,
    /// Why, in words; never repeats a personal value beyond the digit or date that failed.
    pub detail: String,
}

impl CheckResult {
    pub(crate) fn new(pointer: &str, check: &str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.to_owned(),
            check: check.to_owned(),
            status,
            detail: detail.into(),
        }
    }
}

/// A value a check replaced in the record's `data`, kept so a reader can see and undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// JSON Pointer of the value replaced.
    pub pointer: String,
    /// The value the model read from the printed field (never null: a field not read is not
    /// corrected).
    pub printed: Value,
    /// The value kept in `data`.
    pub kept: Value,
    /// The check whose evidence was used (`mrz`).
    pub source: String,
    /// JSON Pointer of that evidence (the MRZ's own value).
    #[serde(default)]
    pub evidence: String,
}

/// Everything the checks of one record found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub checks: Vec<CheckResult>,
    pub corrections: Vec<Correction>,
}

/// A date written as ISO 8601 `YYYY-MM-DD` (the form the `date` normaliser produces), or
/// `None` for anything else, including impossible calendar dates.
pub fn iso_date(value: &Value) -> Option<NaiveDate> {
    let s = value.as_str()?;
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Today's date in Vietnam (UTC+7, no daylight saving time), which decides whether an
/// invoice or card date lies "in the future". Callers pass the result to [`CheckPlan::run`].
pub fn today_in_vietnam(now: chrono::DateTime<chrono::Utc>) -> NaiveDate {
    (now + chrono::Duration::hours(7)).date_naive()
}

/// Whether every character of `s` is an ASCII digit (and there is at least one).
pub(crate) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn iso_date_accepts_only_real_iso_dates() {
        assert_eq!(
            iso_date(&json!("2024-02-29")),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            json!("2023-02-29"),
            json!("15/03/2024"),
            json!("2024-3-5"),
            json!(null),
            json!(20240305),
        ] {
            assert_eq!(iso_date(&bad), None, "{bad}");
        }
    }

    #[test]
    fn today_in_vietnam_is_seven_hours_ahead_of_utc() {
        let late = chrono::Utc
            .with_ymd_and_hms(2026, 11, 30, 17, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(
            today_in_vietnam(late),
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("valid")
        );
        let early = chrono::Utc
            .with_ymd_and_hms(2026, 11, 30, 16, 59, 0)
            .single()
            .expect("valid");
        assert_eq!(
            today_in_vietnam(early),
            NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid")
        );
    }
}
