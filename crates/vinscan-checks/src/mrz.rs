//! The machine-readable zone on the back of Vietnamese chip cards: ICAO Doc 9303 TD1, three
//! lines of 30 characters (Part 5, §4.2.2), check digits by Part 3, §4.9.
//!
//! Layout (1-based columns): line 1 — document code 1–2, issuing state 3–5, document number
//! 6–14, its check digit 15, optional data 16–30 (Vietnamese cards: the 12-digit personal
//! identification number first); line 2 — birth date `YYMMDD` 1–6, check 7, sex 8, expiry
//! 9–14, check 15, nationality 16–18, optional data 19–29, composite check 30 over line 1
//! 6–30 and line 2 1–7, 9–15, 19–29; line 3 — `SURNAME<<GIVEN<NAMES`.
//!
//! [`check`] verifies the four check digits and compares the MRZ with the printed fields.
//! When all four digits pass, a printed ID number, birth date or expiry date that disagrees is
//! replaced by the MRZ's value (those three are protected by check digits) and the replacement
//! is returned as a [`Correction`]. Sex and name are compared only: no check digit covers
//! them, and the MRZ spells names without diacritics, so it cannot restore a printed name.

use chrono::{Datelike, NaiveDate};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::cccd::{self, Sex};
use crate::{CheckOutcome, CheckResult, Correction, Status, iso_date};

/// Check digit of `field` (ICAO 9303 Part 3, §4.9): weights 7, 3, 1 repeating over the
/// character values (digits 0–9, `A`–`Z` 10–35, filler `<` 0), sum mod 10.
pub fn check_digit(field: &str) -> u8 {
    let sum: u32 = field
        .bytes()
        .zip([7u32, 3, 1].iter().cycle())
        .map(|(b, w)| {
            let v = match b {
                b'0'..=b'9' => u32::from(b - b'0'),
                b'A'..=b'Z' => u32::from(b - b'A') + 10,
                _ => 0,
            };
            v * w
        })
        .sum();
    (sum % 10) as u8
}

/// A TD1 zone split into its fields; every field is kept as printed, fillers included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Td1 {
    lines: [String; 3],
}

impl Td1 {
    /// Reads three lines of 30 characters (or one run of 90) from `text`: spaces and carriage
    /// returns dropped, letters upper-cased. Errors say what shape was found instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cleaned: String = text
            .chars()
            .filter(|c| *c != ' ' && *c != '\r' && *c != '\t')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        // checked before any slicing by byte index
        if let Some(bad) = cleaned
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'A'..='Z' | '<' | '\n'))
        {
            return Err(format!(
                "character {bad:?} is not allowed in an MRZ (0-9, A-Z, <)"
            ));
        }
        let lines: Vec<&str> = cleaned.split('\n').filter(|l| !l.is_empty()).collect();
        let lines: Vec<&str> = match lines.as_slice() {
            [one] if one.len() == 90 => vec![&one[..30], &one[30..60], &one[60..]],
            _ => lines,
        };
        let lengths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        if lengths != [30, 30, 30] {
            return Err(format!(
                "not a TD1 zone: line lengths {lengths:?}, TD1 has 3 lines of 30"
            ));
        }
        Ok(Self {
            lines: [lines[0].to_owned(), lines[1].to_owned(), lines[2].to_owned()],
        })
    }

    fn col(&self, line: usize, from: usize, to: usize) -> &str {
        &self.lines[line][from - 1..to]
    }

    pub fn document_code(&self) -> &str {
        self.col(0, 1, 2)
    }

    pub fn issuing_state(&self) -> &str {
        self.col(0, 3, 5)
    }

    /// Birth date `YYMMDD` as printed.
    pub fn birth(&self) -> &str {
        self.col(1, 1, 6)
    }

    /// Expiry date `YYMMDD` as printed.
    pub fn expiry(&self) -> &str {
        self.col(1, 9, 14)
    }

    /// `M`, `F` or `<` (unspecified).
    pub fn sex(&self) -> Option<Sex> {
        Sex::parse(self.col(1, 8, 8))
    }

    /// The document number field its check digit covers, and that digit, following ICAO's
    /// long-number rule: when column 15 is the filler, the number continues in the optional
    /// data up to its first filler, whose last character is then the check digit.
    fn document_number(&self) -> (String, u8) {
        let short = self.col(0, 6, 14);
        let digit = self.col(0, 15, 15).as_bytes()[0];
        let run = self.col(0, 16, 30).split('<').next().unwrap_or_default();
        if digit != b'<' || run.is_empty() {
            return (short.to_owned(), digit);
        }
        let n = run.len();
        (format!("{short}{}", &run[..n - 1]), run.as_bytes()[n - 1])
    }

    /// The 12-digit personal identification number Vietnamese cards put first in the
    /// optional data of line 1 (`None` when it is not there).
    pub fn personal_number(&self) -> Option<&str> {
        let optional = self.col(0, 16, 30);
        let number = optional.get(..12)?;
        (number.bytes().all(|b| b.is_ascii_digit()) && optional.as_bytes().get(12) == Some(&b'<'))
            .then_some(number)
    }

    /// The names of line 3, surname first, words joined by single spaces; `truncated` is true
    /// when the line has no trailing filler, so the printed name may go on past it.
    pub fn name(&self) -> (String, bool) {
        let line = &self.lines[2];
        let words: Vec<&str> = line.split('<').filter(|w| !w.is_empty()).collect();
        (words.join(" "), !line.ends_with('<'))
    }

    /// Which of the four check digits fail, by field name (`document number`, `birth date`,
    /// `expiry date`, `composite`); empty when all pass.
    pub fn failed_check_digits(&self) -> Vec<&'static str> {
        let (number_field, number_digit) = self.document_number();
        let ok = |field: &str, digit: u8| digit.is_ascii_digit() && check_digit(field) == digit - b'0';
        let composite = format!(
            "{}{}{}{}",
            self.col(0, 6, 30),
            self.col(1, 1, 7),
            self.col(1, 9, 15),
            self.col(1, 19, 29)
        );
        let digit = |line: usize, c: usize| self.lines[line].as_bytes()[c - 1];
        let mut failed = Vec::new();
        if !ok(&number_field, number_digit) {
            failed.push("document number");
        }
        if !ok(self.birth(), digit(1, 7)) {
            failed.push("birth date");
        }
        if !ok(self.expiry(), digit(1, 15)) {
            failed.push("expiry date");
        }
        if !ok(&composite, digit(1, 30)) {
            failed.push("composite");
        }
        failed
    }
}

fn yymmdd(s: &str, century: i32) -> Option<NaiveDate> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(century + i32::try_from(n(0..2)?).ok()?, n(2..4)?, n(4..6)?)
}

/// The birth date. The MRZ holds `YYMMDD` only; its century comes from the personal number in
/// the MRZ's own optional data (covered by the composite check digit) when there is one,
/// otherwise from the printed date (so a comparison is on `YYMMDD` and a correction never
/// changes the century), otherwise the latest century that puts the date on or before `today`
/// (used only when nothing was printed, and then nothing is corrected).
fn birth_date(td1: &Td1, printed: Option<NaiveDate>, today: NaiveDate) -> Option<NaiveDate> {
    if let Some(number) = td1.personal_number() {
        let (_, year) = cccd::decode(number);
        return yymmdd(td1.birth(), year - year % 100);
    }
    if let Some(p) = printed {
        return yymmdd(td1.birth(), p.year() - p.year().rem_euclid(100));
    }
    yymmdd(td1.birth(), 2000)
        .filter(|d| *d <= today)
        .or_else(|| yymmdd(td1.birth(), 1900))
}

/// Upper-case ASCII letters of `name` with diacritics removed (`Đ` → `D`), other characters
/// as spaces, words joined by single spaces: how a printed name appears in an MRZ.
pub fn fold_name(name: &str) -> String {
    let letters: String = name
        .nfd()
        .filter(|c| !('\u{0300}'..='\u{036f}').contains(c))
        .map(|c| match c {
            'Đ' | 'đ' => 'D',
            c if c.is_ascii_alphabetic() => c.to_ascii_uppercase(),
            _ => ' ',
        })
        .collect();
    letters.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where the printed fields the MRZ is compared with sit in the record, with their values.
#[derive(Debug, Default, Clone, Copy)]
pub struct Printed<'a> {
    pub id_number: Option<(&'a str, &'a Value)>,
    pub date_of_birth: Option<(&'a str, &'a Value)>,
    pub sex: Option<(&'a str, &'a Value)>,
    pub date_of_expiry: Option<(&'a str, &'a Value)>,
    pub full_name: Option<(&'a str, &'a Value)>,
}

/// Checks the MRZ `text` found at `pointer` and compares it with the printed fields.
pub fn check(pointer: &str, text: &str, printed: &Printed<'_>, today: NaiveDate) -> CheckOutcome {
    let mut out = CheckOutcome::default();
    let td1 = match Td1::parse(text) {
        Ok(td1) => td1,
        Err(why) => {
            out.checks
                .push(CheckResult::new(pointer, "mrz", Status::Fail, why));
            return out;
        }
    };
    let failed = td1.failed_check_digits();
    let trusted = failed.is_empty();
    out.checks.push(if trusted {
        CheckResult::new(pointer, "mrz", Status::Pass, "all four check digits agree")
    } else {
        CheckResult::new(
            pointer,
            "mrz",
            Status::Fail,
            format!("check digits fail: {}", failed.join(", ")),
        )
    });
    let mrz_id = td1.personal_number();
    let printed_birth = printed.date_of_birth.and_then(|(_, v)| iso_date(v));
    if let (Some(field), Some(mrz_id)) = (printed.id_number, mrz_id) {
        compare(&mut out, field, trusted, "ID number", Value::from(mrz_id), |v| {
            v.as_str() == Some(mrz_id)
        });
    }
    if let (Some(field), Some(birth)) = (printed.date_of_birth, birth_date(&td1, printed_birth, today)) {
        compare(
            &mut out,
            field,
            trusted,
            "birth date",
            Value::from(birth.to_string()),
            |v| iso_date(v) == Some(birth),
        );
    }
    if let (Some(field), Some(expiry)) = (printed.date_of_expiry, yymmdd(td1.expiry(), 2000)) {
        compare(
            &mut out,
            field,
            trusted,
            "expiry date",
            Value::from(expiry.to_string()),
            |v| iso_date(v) == Some(expiry),
        );
    }
    if let (Some((at, value)), Some(sex)) = (printed.sex, td1.sex()) {
        out.checks.push(match value.as_str().and_then(Sex::parse) {
            None => CheckResult::new(at, "mrz", Status::Skipped, "sex not read from the card"),
            Some(p) if p == sex => CheckResult::new(at, "mrz", Status::Pass, "sex agrees with the MRZ"),
            Some(_) => CheckResult::new(
                at,
                "mrz",
                Status::Fail,
                "sex differs from the MRZ (not corrected: no check digit covers it)",
            ),
        });
    }
    if let Some((at, value)) = printed.full_name {
        let (mrz_name, truncated) = td1.name();
        out.checks.push(match value.as_str().map(fold_name) {
            None => CheckResult::new(at, "mrz", Status::Skipped, "name not read from the card"),
            Some(p) if p == mrz_name || (truncated && p.starts_with(&mrz_name)) => CheckResult::new(
                at,
                "mrz",
                Status::Pass,
                "name agrees with the MRZ (without diacritics)",
            ),
            Some(_) => CheckResult::new(
                at,
                "mrz",
                Status::Fail,
                "name differs from the MRZ (not corrected: the MRZ has no diacritics and no check digit)",
            ),
        });
    }
    for c in &mut out.corrections {
        c.evidence = pointer.to_owned();
    }
    out
}

fn compare(
    out: &mut CheckOutcome,
    (at, value): (&str, &Value),
    trusted: bool,
    what: &str,
    mrz_value: Value,
    agrees: impl Fn(&Value) -> bool,
) {
    if value.is_null() {
        out.checks.push(CheckResult::new(
            at,
            "mrz",
            Status::Skipped,
            format!("{what} not read from the card"),
        ));
    } else if agrees(value) {
        out.checks.push(CheckResult::new(
            at,
            "mrz",
            Status::Pass,
            format!("{what} agrees with the MRZ"),
        ));
    } else if trusted {
        out.checks.push(CheckResult::new(
            at,
            "mrz",
            Status::Warn,
            format!("printed {what} differs from the MRZ, whose check digits pass: the MRZ value is kept"),
        ));
        out.corrections.push(Correction {
            pointer: at.to_owned(),
            printed: value.clone(),
            kept: mrz_value,
            source: "mrz".to_owned(),
            evidence: String::new(),
        });
    } else {
        out.checks.push(CheckResult::new(
            at,
            "mrz",
            Status::Fail,
            format!("{what} differs from the MRZ, whose check digits fail: not corrected"),
        ));
    }
}

#[cfg(test)]
mod tests;
