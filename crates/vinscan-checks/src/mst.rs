//! MST (mã số thuế, the Vietnamese tax code) in its three printed forms.
//!
//! - 10 digits `N1…N10` for an enterprise or organisation (Circular 105/2020/TT-BTC, Art. 5):
//!   `N1N2` a province code, `N3…N9` a sequence from 0000001, `N10` the check digit
//!   `10 − (31·N1 + 29·N2 + 23·N3 + 19·N4 + 17·N5 + 13·N6 + 7·N7 + 5·N8 + 3·N9) mod 11`.
//!   Edge cases, as python-stdnum's `stdnum.vn.mst` applies them: when the sum is a multiple
//!   of 11 the formula gives 10, which no single digit can be, so no such number is issued;
//!   the sequence `0000000` is never issued.
//! - 13 digits `NNNNNNNNNN-NNN` for a branch or dependent unit: the parent's 10 digits, then a
//!   branch sequence from 001 (`000` is never issued).
//! - 12 digits: since 1 July 2025 an individual's tax code is their personal identification
//!   number (the CCCD number; Circular 86/2024/TT-BTC, Art. 5), checked as [`crate::cccd`]
//!   checks a number's structure (no check digit exists).

use crate::cccd::{self, Province};
use crate::{Status, all_digits};

/// Weights of the first nine digits in the check-digit sum.
pub const WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];

/// The check digit of the first nine digits of `digits`, or `None` when the formula gives 10
/// (no number with those nine digits is issued). `digits` must hold at least nine ASCII digits.
pub fn check_digit(digits: &[u8]) -> Option<u8> {
    let sum: u32 = WEIGHTS
        .iter()
        .zip(digits)
        .map(|(w, d)| w * u32::from(d - b'0'))
        .sum();
    let check = 10 - sum % 11;
    (check < 10).then_some(check as u8)
}

/// Checks a tax code as printed after the `tax-code` normaliser (separators removed, a
/// branch written `NNNNNNNNNN-NNN`). Returns the status and why.
pub fn check(code: &str) -> (Status, String) {
    let (head, branch) = match code.split_once('-') {
        Some((head, branch)) => (head, Some(branch)),
        None => (code, None),
    };
    if !all_digits(head) || branch.is_some_and(|b| !all_digits(b)) {
        return (
            Status::Fail,
            "not digits in an MST form (10, 10-3 or 12 digits)".into(),
        );
    }
    match (head.len(), branch.map(str::len)) {
        (12, None) => personal(head),
        (10, None) => enterprise(head.as_bytes()),
        (10, Some(3)) if branch == Some("000") => {
            (Status::Fail, "branch sequence 000 is never issued".into())
        }
        (10, Some(3)) => {
            let (status, detail) = enterprise(head.as_bytes());
            (status, format!("branch of a parent MST whose {detail}"))
        }
        (13, None) => {
            // The normaliser writes a branch with its dash; a bare 13-digit run is the same
            // number read without it.
            let (parent, seq) = head.split_at(10);
            if seq == "000" {
                return (Status::Fail, "branch sequence 000 is never issued".into());
            }
            let (status, detail) = enterprise(parent.as_bytes());
            (status, format!("branch of a parent MST whose {detail}"))
        }
        _ => (
            Status::Fail,
            format!(
                "{} digits: an MST has 10, 10-3 (branch) or 12 (personal)",
                code.chars().filter(char::is_ascii_digit).count()
            ),
        ),
    }
}

fn enterprise(digits: &[u8]) -> (Status, String) {
    if &digits[2..9] == b"0000000" {
        return (Status::Fail, "sequence 0000000 is never issued".into());
    }
    match check_digit(digits) {
        None => (
            Status::Fail,
            "first nine digits give check value 10, which is never issued".into(),
        ),
        Some(c) if c == digits[9] - b'0' => (Status::Pass, "check digit agrees".into()),
        Some(c) => (
            Status::Fail,
            format!(
                "check digit is {}, the first nine digits give {c}",
                digits[9] - b'0'
            ),
        ),
    }
}

fn personal(digits: &str) -> (Status, String) {
    match cccd::province(digits) {
        Province::Known(name) => (
            Status::Pass,
            format!("12-digit personal identification number (province {name}); it has no check digit"),
        ),
        Province::Unknown => (
            Status::Warn,
            format!(
                "12-digit personal identification number with province code {}, not one of the 63 in use",
                &digits[..3]
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid numbers: python-stdnum 2.x `stdnum.vn.mst.is_valid` accepts each (its doctests
    /// give the first two; the rest are published enterprise codes and branches).
    const VALID: &[&str] = &[
        "0100233488",
        "0314409058-002",
        "0100112437",
        "0312687878-001",
        "0100109106",
        "0300588569",
        "0302712571",
        "0101248141",
        "0100686209",
        "0300583659",
        "0104918404",
        "0301472704",
        "0100107518",
        "0305008980",
        "0100150619",
        "0101243150",
        "0100233488-001",
        "0100233488-999",
        "0314409058002",
        "0400101394",
        "0300794579",
        "0309532909",
    ];

    /// Invalid, each for the reason given.
    const INVALID: &[(&str, &str)] = &[
        ("0100233480", "check digit"),
        ("0100233481", "check digit"),
        ("0100233489", "check digit"),
        ("0314409059-002", "check digit"),
        ("1000233488", "check digit"),
        ("0100000005", "0000000"),
        ("0100000000", "0000000"),
        ("0314409058-000", "000"),
        ("0314409058000", "000"),
        ("031440905", "digits"),
        ("03144090581", "digits"),
        ("0314409058-02", "digits"),
        ("0314409058-0021", "digits"),
        ("03144O9058", "not digits"),
        ("0314409058-00A", "not digits"),
        ("", "not digits"),
        ("-", "not digits"),
        ("03.14.409.058", "not digits"),
        ("0000000001", "0000000"),
        ("12345", "digits"),
        ("01002334880", "digits"),
    ];

    #[test]
    fn valid_tax_codes_pass() {
        for code in VALID {
            let (status, detail) = check(code);
            assert_eq!(status, Status::Pass, "{code}: {detail}");
        }
    }

    #[test]
    fn invalid_tax_codes_fail_for_their_reason() {
        for (code, why) in INVALID {
            let (status, detail) = check(code);
            assert_eq!(status, Status::Fail, "{code}: {detail}");
            assert!(detail.contains(why), "{code}: {detail:?} should mention {why:?}");
        }
    }

    #[test]
    fn check_digits_match_python_stdnum() {
        // `stdnum.vn.mst.calc_check_digit` gives these.
        for (nine, digit) in [
            ("110000000", 5),
            ("000000030", 6),
            ("010023348", 8),
            ("030500898", 0),
        ] {
            assert_eq!(check_digit(nine.as_bytes()), Some(digit), "{nine}");
        }
    }

    #[test]
    fn a_sum_divisible_by_eleven_gives_no_valid_number() {
        // 001007919, 001039595, 001095028: weighted sums ≡ 0 (mod 11), so the formula gives 10;
        // python-stdnum rejects all ten completions of each.
        for nine in ["001007919", "001039595", "001095028"] {
            assert_eq!(check_digit(nine.as_bytes()), None, "{nine}");
            for last in 0..10 {
                let (status, detail) = check(&format!("{nine}{last}"));
                assert_eq!(status, Status::Fail, "{nine}{last}");
                assert!(detail.contains("check value 10"), "{detail}");
            }
        }
    }

    #[test]
    fn twelve_digit_personal_numbers_are_checked_for_their_province() {
        assert_eq!(check("001099012345").0, Status::Pass);
        assert_eq!(check("079201000123").0, Status::Pass);
        let (status, detail) = check("003099012345");
        assert_eq!(status, Status::Warn, "{detail}");
        assert!(detail.contains("003"), "{detail}");
    }
}
