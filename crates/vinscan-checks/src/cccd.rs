//! The personal identification number printed on CCCD cards (12 digits) and the old CMND
//! number (9 digits).
//!
//! A 12-digit number is `PPP G YY SSSSSS` (Decree 137/2015/NĐ-CP, Art. 7): `PPP` the province
//! where the birth was registered (codes listed in Circular 07/2016/TT-BCA's annex and kept by
//! Circular 59/2021/TT-BCA), `G` the sex and century digit, `YY` the last two digits of the
//! birth year, `SSSSSS` a random sequence. The birth year is `1900 + 100·⌊G/2⌋ + YY`, and an
//! even `G` is a man, an odd one a woman. There is no check digit.
//!
//! The province code is checked against the 63 codes in use before the 2025 merger of
//! provinces; an unknown code is a warning, not a failure, because numbers already issued keep
//! their codes. A 9-digit CMND number has no published structure and passes on its form alone.

use chrono::{Datelike, NaiveDate};

use crate::{Status, all_digits};

/// The 63 province codes (`PPP`) and their provinces, as in use before the 2025 merger.
pub const PROVINCES: [(&str, &str); 63] = [
    ("001", "Hà Nội"),
    ("002", "Hà Giang"),
    ("004", "Cao Bằng"),
    ("006", "Bắc Kạn"),
    ("008", "Tuyên Quang"),
    ("010", "Lào Cai"),
    ("011", "Điện Biên"),
    ("012", "Lai Châu"),
    ("014", "Sơn La"),
    ("015", "Yên Bái"),
    ("017", "Hoà Bình"),
    ("019", "Thái Nguyên"),
    ("020", "Lạng Sơn"),
    ("022", "Quảng Ninh"),
    ("024", "Bắc Giang"),
    ("025", "Phú Thọ"),
    ("026", "Vĩnh Phúc"),
    ("027", "Bắc Ninh"),
    ("030", "Hải Dương"),
    ("031", "Hải Phòng"),
    ("033", "Hưng Yên"),
    ("034", "Thái Bình"),
    ("035", "Hà Nam"),
    ("036", "Nam Định"),
    ("037", "Ninh Bình"),
    ("038", "Thanh Hoá"),
    ("040", "Nghệ An"),
    ("042", "Hà Tĩnh"),
    ("044", "Quảng Bình"),
    ("045", "Quảng Trị"),
    ("046", "Thừa Thiên Huế"),
    ("048", "Đà Nẵng"),
    ("049", "Quảng Nam"),
    ("051", "Quảng Ngãi"),
    ("052", "Bình Định"),
    ("054", "Phú Yên"),
    ("056", "Khánh Hoà"),
    ("058", "Ninh Thuận"),
    ("060", "Bình Thuận"),
    ("062", "Kon Tum"),
    ("064", "Gia Lai"),
    ("066", "Đắk Lắk"),
    ("067", "Đắk Nông"),
    ("068", "Lâm Đồng"),
    ("070", "Bình Phước"),
    ("072", "Tây Ninh"),
    ("074", "Bình Dương"),
    ("075", "Đồng Nai"),
    ("077", "Bà Rịa – Vũng Tàu"),
    ("079", "Thành phố Hồ Chí Minh"),
    ("080", "Long An"),
    ("082", "Tiền Giang"),
    ("083", "Bến Tre"),
    ("084", "Trà Vinh"),
    ("086", "Vĩnh Long"),
    ("087", "Đồng Tháp"),
    ("089", "An Giang"),
    ("091", "Kiên Giang"),
    ("092", "Cần Thơ"),
    ("093", "Hậu Giang"),
    ("094", "Sóc Trăng"),
    ("095", "Bạc Liêu"),
    ("096", "Cà Mau"),
];

/// What the first three digits of a 12-digit number name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Province {
    Known(&'static str),
    /// Not one of [`PROVINCES`].
    Unknown,
}

/// The province of a number's first three digits.
pub fn province(number: &str) -> Province {
    let code = number.get(..3).unwrap_or_default();
    match PROVINCES.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => Province::Known(name),
        None => Province::Unknown,
    }
}

/// A sex as printed on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// `Nam`/`Nữ` as printed (also the MRZ's `M`/`F` and the English words); anything else is
    /// not a sex this check can compare.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "Nam" | "NAM" | "M" | "Male" | "male" => Some(Self::Male),
            "Nữ" | "NỮ" | "Nu" | "NU" | "F" | "Female" | "female" => Some(Self::Female),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Male => "Nam",
            Self::Female => "Nữ",
        }
    }
}

/// The sex and birth year a 12-digit number encodes (`number` must be 12 ASCII digits).
pub fn decode(number: &str) -> (Sex, i32) {
    let digit = |i: usize| i32::from(number.as_bytes()[i] - b'0');
    let g = digit(3);
    let yy = digit(4) * 10 + digit(5);
    let sex = if g % 2 == 0 { Sex::Male } else { Sex::Female };
    (sex, 1900 + 100 * (g / 2) + yy)
}

/// Checks an ID number against the card's printed sex and date of birth (either may be
/// unknown). Returns the worst status of its parts and every part's reason.
pub fn check(number: &str, sex: Option<Sex>, birth: Option<NaiveDate>) -> (Status, String) {
    if !all_digits(number) {
        return (Status::Fail, "not all digits".into());
    }
    match number.len() {
        9 => (
            Status::Pass,
            "9-digit CMND number: form only (no published structure)".into(),
        ),
        12 => twelve(number, sex, birth),
        n => (
            Status::Fail,
            format!("{n} digits: a CCCD number has 12, a CMND number 9"),
        ),
    }
}

fn twelve(number: &str, sex: Option<Sex>, birth: Option<NaiveDate>) -> (Status, String) {
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    match province(number) {
        Province::Known(name) => parts.push(format!("province {name}")),
        Province::Unknown => {
            status = Status::Warn;
            parts.push(format!(
                "province code {} is not one of the 63 in use",
                &number[..3]
            ));
        }
    }
    let (encoded_sex, year) = decode(number);
    match sex {
        Some(printed) if printed != encoded_sex => {
            status = Status::Fail;
            parts.push(format!(
                "sex digit {} means {}, the card says {}",
                &number[3..4],
                encoded_sex.word(),
                printed.word()
            ));
        }
        Some(_) => parts.push("sex agrees".into()),
        None => parts.push("sex not compared".into()),
    }
    match birth {
        Some(date) if date.year() != year => {
            status = Status::Fail;
            parts.push(format!(
                "digits 4–6 give birth year {year}, the date of birth is in {}",
                date.year()
            ));
        }
        Some(_) => parts.push("birth year agrees".into()),
        None => parts.push("birth year not compared".into()),
    }
    (status, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }

    fn case(number: &str, sex: Option<&str>, birth: Option<&str>) -> (Status, String) {
        check(number, sex.and_then(Sex::parse), birth.and_then(date))
    }

    #[test]
    fn there_are_63_distinct_province_codes_in_order() {
        let mut codes: Vec<&str> = PROVINCES.iter().map(|(c, _)| *c).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        codes.dedup();
        assert_eq!(codes.len(), 63);
        assert!(codes.iter().all(|c| c.len() == 3 && all_digits(c)));
    }

    const VALID: &[(&str, Option<&str>, Option<&str>)] = &[
        ("001099012345", Some("Nam"), Some("1999-05-01")),
        ("001199012345", Some("Nữ"), Some("1999-12-31")),
        ("079201000123", Some("Nam"), Some("2001-01-01")),
        ("079301000123", Some("Nữ"), Some("2001-07-15")),
        ("096085123456", Some("Nam"), Some("1985-03-20")),
        ("048190654321", Some("Nữ"), Some("1990-10-10")),
        ("031000000001", Some("Nam"), Some("1900-01-01")),
        ("030199999999", Some("Nữ"), Some("1999-02-28")),
        ("002210111111", Some("Nam"), Some("2010-06-06")),
        ("026320222222", Some("Nữ"), Some("2020-02-29")),
        ("038072333333", None, Some("1972-09-02")),
        ("040188444444", Some("Nữ"), None),
        ("064095555555", None, None),
        ("089205666666", Some("M"), Some("2005-05-05")),
        ("092307777777", Some("F"), Some("2007-07-07")),
        ("075098888888", Some("Nam"), Some("1998-08-08")),
        ("022166999999", Some("Nữ"), Some("1966-06-06")),
        ("017045121212", Some("Nam"), Some("1945-09-02")),
        ("046212343434", Some("Nam"), Some("2012-12-12")),
        ("001402000000", Some("Nam"), Some("2102-01-01")),
        ("011501000000", Some("Nữ"), Some("2101-01-01")),
    ];

    const INVALID: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        ("001099012345", Some("Nữ"), Some("1999-05-01"), "sex digit"),
        ("001199012345", Some("Nam"), Some("1999-05-01"), "sex digit"),
        ("079201000123", Some("Nam"), Some("1901-01-01"), "birth year"),
        ("079001000123", Some("Nam"), Some("2001-01-01"), "birth year"),
        ("079301000123", Some("Nữ"), Some("2002-01-01"), "birth year"),
        ("096085123456", Some("Nam"), Some("1958-03-20"), "birth year"),
        ("048190654321", Some("Nam"), Some("1990-10-10"), "sex digit"),
        ("001299012345", Some("Nam"), Some("1999-05-01"), "birth year"),
        ("00109901234", None, None, "11 digits"),
        ("0010990123456", None, None, "13 digits"),
        ("00109901234a", None, None, "not all digits"),
        ("", None, None, "not all digits"),
        ("001 099 012 345", None, None, "not all digits"),
        ("0010-99012345", None, None, "not all digits"),
        ("12345678", None, None, "8 digits"),
        ("1234567890", None, None, "10 digits"),
        ("079201000123", Some("Nữ"), Some("2001-01-01"), "sex digit"),
        ("038072333333", None, Some("2072-09-02"), "birth year"),
        ("040188444444", Some("Nam"), None, "sex digit"),
        ("089205666666", Some("F"), Some("2005-05-05"), "sex digit"),
        ("046212343434", Some("Nam"), Some("1912-12-12"), "birth year"),
    ];

    #[test]
    fn consistent_numbers_pass() {
        for (number, sex, birth) in VALID {
            let (status, detail) = case(number, *sex, *birth);
            assert_eq!(status, Status::Pass, "{number}: {detail}");
        }
    }

    #[test]
    fn inconsistent_numbers_fail_for_their_reason() {
        for (number, sex, birth, why) in INVALID {
            let (status, detail) = case(number, *sex, *birth);
            assert_eq!(status, Status::Fail, "{number}: {detail}");
            assert!(
                detail.contains(why),
                "{number}: {detail:?} should mention {why:?}"
            );
        }
    }

    #[test]
    fn unknown_province_warns_and_cmnd_passes_on_form() {
        for number in ["003099012345", "099099012345", "000099012345", "100099012345"] {
            let (status, detail) = case(number, Some("Nam"), Some("1999-01-01"));
            assert_eq!(status, Status::Warn, "{number}: {detail}");
            assert!(detail.contains(&number[..3]), "{detail}");
        }
        let (status, detail) = case("003099012345", Some("Nữ"), None);
        assert_eq!(status, Status::Fail, "a failure outranks the warning: {detail}");
        assert_eq!(case("123456789", Some("Nam"), Some("1960-01-01")).0, Status::Pass);
    }

    #[test]
    fn decode_follows_the_century_rule() {
        assert_eq!(decode("001099000000"), (Sex::Male, 1999));
        assert_eq!(decode("001100000000"), (Sex::Female, 1900));
        assert_eq!(decode("001225000000"), (Sex::Male, 2025));
        assert_eq!(decode("001350000000"), (Sex::Female, 2050));
        assert_eq!(decode("001999000000"), (Sex::Female, 2399));
    }
}
