//! Normalisation of extracted values, driven by the schema: every string is trimmed with its
//! inner whitespace collapsed, and `x-vinscan-normalise` picks a stricter form for dates
//! (ISO 8601), Vietnamese tax codes (MST) and VND amounts written as text.
//!
//! A normaliser that does not recognise its input leaves it unchanged: normalisation never
//! invents data, and the caller validates the result again.

use serde_json::Value;

use crate::NORMALISE_KEYWORD;

/// The normalisers a schema can ask for with `x-vinscan-normalise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normaliser {
    /// `15/03/2024`, `15-3-2024`, `15.03.2024`, `2024/03/15`, `Ngày 15 tháng 03 năm 2024` → `2024-03-15`.
    Date,
    /// MST: separators removed; 13 digits become `NNNNNNNNNN-NNN`.
    TaxCode,
    /// `1.234.567 đ`, `1,234,567 VND` → `1234567`.
    AmountVnd,
    /// Upper case (document series such as `1c24tyy` → `1C24TYY`).
    Upper,
}

impl Normaliser {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "date" => Some(Self::Date),
            "tax-code" => Some(Self::TaxCode),
            "amount-vnd" => Some(Self::AmountVnd),
            "upper" => Some(Self::Upper),
            _ => None,
        }
    }

    /// The normalised form, or `None` when the input is not recognised.
    pub fn apply(self, s: &str) -> Option<String> {
        match self {
            Self::Date => normalise_date(s),
            Self::TaxCode => normalise_tax_code(s),
            Self::AmountVnd => normalise_amount(s),
            Self::Upper => Some(s.to_uppercase()),
        }
    }
}

/// Walks `schema` and `value` together, normalising strings in place and recording the JSON
/// pointer of every value that changed.
pub fn normalise_value(schema: &Value, value: &mut Value, pointer: &str, changed: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let mut out = collapse_whitespace(s);
            if let Some(n) = schema
                .get(NORMALISE_KEYWORD)
                .and_then(Value::as_str)
                .and_then(Normaliser::from_name)
                && let Some(norm) = n.apply(&out)
            {
                out = norm;
            }
            if out != *s {
                *s = out;
                changed.push(pointer.to_owned());
            }
        }
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, sub) in map.iter_mut() {
                    if let Some(sub_schema) = props.get(name) {
                        let p = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
                        normalise_value(sub_schema, sub, &p, changed);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    normalise_value(item_schema, item, &format!("{pointer}/{i}"), changed);
                }
            }
        }
        _ => {}
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn numbers_in(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect()
}

fn normalise_date(s: &str) -> Option<String> {
    let nums = numbers_in(s);
    if nums.len() != 3 {
        return None;
    }
    let parse = |x: &str| x.parse::<u32>().ok();
    let (y, m, d) = if nums[0].len() == 4 {
        (parse(nums[0])?, parse(nums[1])?, parse(nums[2])?)
    } else if nums[2].len() == 4 {
        // Vietnamese order: day, month, year
        (parse(nums[2])?, parse(nums[1])?, parse(nums[0])?)
    } else {
        return None;
    };
    if nums.iter().any(|n| n.len() > 4) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

fn normalise_tax_code(s: &str) -> Option<String> {
    if s.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        10 | 12 => Some(digits),
        13 => Some(format!("{}-{}", &digits[..10], &digits[10..])),
        _ => None,
    }
}

fn normalise_amount(s: &str) -> Option<String> {
    let lower = s.to_lowercase();
    let stripped = ["vnđ", "vnd", "đồng", "đ", "₫", "dong"]
        .iter()
        .fold(lower, |acc, unit| acc.replace(unit, ""));
    let body = stripped.trim();
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ' '))
    {
        return None;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(n: Normaliser, input: &str, expected: Option<&str>) {
        assert_eq!(n.apply(input).as_deref(), expected, "{n:?}({input:?})");
    }

    #[test]
    fn dates() {
        check(Normaliser::Date, "15/03/2024", Some("2024-03-15"));
        check(Normaliser::Date, "5-3-2024", Some("2024-03-05"));
        check(Normaliser::Date, "2024/03/15", Some("2024-03-15"));
        check(Normaliser::Date, "Ngày 15 tháng 03 năm 2024", Some("2024-03-15"));
        check(Normaliser::Date, "29/02/2023", None);
        check(Normaliser::Date, "29/02/2024", Some("2024-02-29"));
        check(Normaliser::Date, "13/13/2024", None);
        check(Normaliser::Date, "15/03/24", None);
        check(Normaliser::Date, "không rõ", None);
    }

    #[test]
    fn tax_codes() {
        check(Normaliser::TaxCode, "0101 234 567", Some("0101234567"));
        check(Normaliser::TaxCode, "0101234567001", Some("0101234567-001"));
        check(Normaliser::TaxCode, "0101234567-001", Some("0101234567-001"));
        check(Normaliser::TaxCode, "12345", None);
        check(Normaliser::TaxCode, "MST0101234567", None);
    }

    #[test]
    fn amounts() {
        check(Normaliser::AmountVnd, "1.234.567 đ", Some("1234567"));
        check(Normaliser::AmountVnd, "1,234,567 VND", Some("1234567"));
        check(Normaliser::AmountVnd, "000", Some("0"));
        check(Normaliser::AmountVnd, "12 USD", None);
    }

    #[test]
    fn walks_nested_values_and_reports_changes() {
        let schema = json!({"type": "object", "properties": {
            "date": {"type": "string", "x-vinscan-normalise": "date"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}}}}}});
        let mut v = json!({"date": "01/02/2024", "items": [{"name": "  Bánh   mì "}, {"name": "ok"}]});
        let mut changed = Vec::new();
        normalise_value(&schema, &mut v, "", &mut changed);
        assert_eq!(
            v,
            json!({"date": "2024-02-01", "items": [{"name": "Bánh mì"}, {"name": "ok"}]})
        );
        assert_eq!(changed, vec!["/date", "/items/0/name"]);
    }
}
