//! Dates: one printed date is a real calendar date not after today (`date`), and the dates on
//! an identity card come in order — birth before issue before expiry (`card-dates`).

use chrono::NaiveDate;
use serde_json::Value;

use crate::{Status, iso_date};

/// `value` is an ISO 8601 date (after the `date` normaliser) that exists and is not after
/// `today`.
pub fn check_date(value: &Value, today: NaiveDate) -> (Status, String) {
    match iso_date(value) {
        None => (Status::Fail, "not a calendar date in YYYY-MM-DD form".into()),
        Some(d) if d > today => (Status::Fail, format!("{d} is after today ({today})")),
        Some(_) => (Status::Pass, "a real date, not in the future".into()),
    }
}

/// Birth < issue < expiry, birth and issue not after `today`; a null date drops the
/// comparisons it is part of, and a non-null value that is not a date fails.
pub fn check_card_dates(
    birth: Option<&Value>,
    issue: Option<&Value>,
    expiry: Option<&Value>,
    today: NaiveDate,
) -> (Status, String) {
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    let mut dates = Vec::new();
    for (name, value) in [("birth", birth), ("issue", issue), ("expiry", expiry)] {
        match value {
            None | Some(Value::Null) => {}
            Some(v) => match iso_date(v) {
                Some(d) => dates.push((name, d)),
                None => {
                    status = Status::Fail;
                    parts.push(format!("{name} date is not a calendar date"));
                }
            },
        }
    }
    for (name, d) in &dates {
        if *name != "expiry" && *d > today {
            status = Status::Fail;
            parts.push(format!("{name} date {d} is after today"));
        }
    }
    for pair in dates.windows(2) {
        let ((a, da), (b, db)) = (pair[0], pair[1]);
        if da >= db {
            status = Status::Fail;
            parts.push(format!("{a} date {da} is not before {b} date {db}"));
        }
    }
    if dates.len() < 2 && status == Status::Pass {
        return (
            Status::Skipped,
            "fewer than two of birth, issue and expiry dates read".into(),
        );
    }
    if parts.is_empty() {
        parts.push(format!(
            "{} in order",
            dates.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" < ")
        ));
    }
    (status, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid")
    }

    #[test]
    fn single_dates() {
        let pass = [
            "2026-11-30",
            "2026-11-29",
            "2024-02-29",
            "2000-02-29",
            "1900-01-01",
            "1999-12-31",
            "2025-07-01",
            "2022-07-01",
            "2010-10-10",
            "1975-04-30",
            "2026-01-31",
            "2020-06-30",
            "2021-09-02",
            "1945-09-02",
            "2026-02-28",
            "2019-12-01",
            "2023-03-31",
            "2011-11-11",
            "2001-01-01",
            "1988-08-08",
        ];
        for d in pass {
            assert_eq!(check_date(&json!(d), today()).0, Status::Pass, "{d}");
        }
        let fail = [
            json!("2026-12-01"),
            json!("2027-01-01"),
            json!("2100-01-01"),
            json!("2023-02-29"),
            json!("1900-02-29"),
            json!("2024-04-31"),
            json!("2024-13-01"),
            json!("2024-00-10"),
            json!("2024-01-00"),
            json!("30/11/2026"),
            json!("2026-11-3"),
            json!("20261130"),
            json!(""),
            json!("2026/11/30"),
            json!(20261130),
            json!("Ngày 30 tháng 11"),
            json!("2026-11-30T00:00"),
            json!(" 2026-11-30"),
            json!(["2026-11-30"]),
            json!("9999-12-31"),
        ];
        for d in fail {
            assert_eq!(check_date(&d, today()).0, Status::Fail, "{d}");
        }
    }

    fn card(birth: Value, issue: Value, expiry: Value) -> (Status, String) {
        check_card_dates(Some(&birth), Some(&issue), Some(&expiry), today())
    }

    #[test]
    fn card_dates_in_order_pass() {
        let cases = [
            ("1990-01-02", "2021-05-06", "2030-01-02"),
            ("1999-12-31", "2024-07-01", "2039-12-31"),
            ("2005-06-07", "2021-06-08", "2030-06-07"),
            ("1960-01-01", "2016-01-01", "2100-01-01"),
            ("1985-03-20", "2022-03-21", "2045-03-20"),
            ("2010-10-10", "2024-10-10", "2035-10-10"),
            ("1945-09-02", "2021-01-01", "2099-12-31"),
            ("2001-01-01", "2026-11-30", "2041-01-01"),
            ("1972-09-02", "2016-09-02", "2032-09-02"),
            ("1958-09-04", "2023-09-04", "2048-09-04"),
        ];
        for (b, i, e) in cases {
            assert_eq!(card(json!(b), json!(i), json!(e)).0, Status::Pass, "{b} {i} {e}");
        }
        // Any two in order are enough; the expiry may lie ahead of today.
        for (b, i, e) in [
            (json!(null), json!("2021-05-06"), json!("2030-01-02")),
            (json!("1990-01-02"), json!(null), json!("2030-01-02")),
            (json!("1990-01-02"), json!("2021-05-06"), json!(null)),
        ] {
            assert_eq!(
                card(b.clone(), i.clone(), e.clone()).0,
                Status::Pass,
                "{b} {i} {e}"
            );
        }
    }

    #[test]
    fn card_dates_out_of_order_fail() {
        let cases = [
            (
                json!("2021-05-06"),
                json!("1990-01-02"),
                json!("2030-01-02"),
                "birth date 2021-05-06 is not before issue",
            ),
            (
                json!("1990-01-02"),
                json!("2031-05-06"),
                json!("2030-01-02"),
                "after today",
            ),
            (
                json!("1990-01-02"),
                json!("2021-05-06"),
                json!("2021-05-06"),
                "issue date 2021-05-06 is not before expiry",
            ),
            (
                json!("1990-01-02"),
                json!("2021-05-06"),
                json!("2020-01-02"),
                "not before expiry",
            ),
            (
                json!("2027-01-02"),
                json!(null),
                json!("2030-01-02"),
                "birth date 2027-01-02 is after today",
            ),
            (
                json!("1990-01-02"),
                json!("1990-01-02"),
                json!(null),
                "not before issue",
            ),
            (
                json!("1990-02-30"),
                json!("2021-05-06"),
                json!("2030-01-02"),
                "birth date is not a calendar date",
            ),
            (
                json!("1990-01-02"),
                json!("06/05/2021"),
                json!("2030-01-02"),
                "issue date is not a calendar date",
            ),
            (
                json!("1990-01-02"),
                json!("2021-05-06"),
                json!("Không thời hạn"),
                "expiry date is not a calendar date",
            ),
            (
                json!(null),
                json!("2031-01-01"),
                json!("2030-01-02"),
                "after today",
            ),
            (
                json!("2030-01-02"),
                json!(null),
                json!("2029-01-02"),
                "not before expiry",
            ),
        ];
        for (b, i, e, why) in cases {
            let (status, detail) = card(b.clone(), i.clone(), e.clone());
            assert_eq!(status, Status::Fail, "{b} {i} {e}: {detail}");
            assert!(detail.contains(why), "{detail:?} should mention {why:?}");
        }
    }

    #[test]
    fn fewer_than_two_dates_skip() {
        assert_eq!(
            card(json!(null), json!(null), json!("2030-01-02")).0,
            Status::Skipped
        );
        assert_eq!(check_card_dates(None, None, None, today()).0, Status::Skipped);
        assert_eq!(
            card(json!("2027-01-01"), json!(null), json!(null)).0,
            Status::Fail,
            "a future birth still fails"
        );
    }
}
