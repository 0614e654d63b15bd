//! `x-vinscan-check` declarations: read from a schema, validated without IO, and run on a
//! record.
//!
//! A declaration sits on any schema reached from the root through `properties` and `items`,
//! and applies to every instance at that place (every element of an array). It is a check
//! name, an object `{"check": NAME, ARGUMENT: POINTER, …}`, or an array of those. Arguments
//! are Relative JSON Pointers (draft-bhutton-relative-json-pointer-00, without the `#` form)
//! from the instance the declaration sits on: `0` is that instance, `0/sex` its member `sex`,
//! `2/issue_date` the member `issue_date` two levels up. `value`, the thing checked, defaults
//! to `0`.
//!
//! | check | arguments (optional ones in brackets) |
//! |---|---|
//! | `mst` | [value] |
//! | `cccd` | [value], [sex], [date_of_birth] |
//! | `mrz` | [value], [id_number], [date_of_birth], [sex], [date_of_expiry], [full_name] |
//! | `date` | [value] |
//! | `card-dates` | [date_of_birth], [date_of_issue], [date_of_expiry] |
//! | `invoice-series` | [value], [form], [issue_date] |
//! | `vat-rate` | [value], [issue_date] |
//! | `line-amount` | quantity, unit_price, amount |
//! | `invoice-totals` | items, [subtotal], [vat_rate], [vat_amount], [total], [item_amount], [item_vat_rate] |
//!
//! `item_amount` and `item_vat_rate` are JSON Pointers inside one element of `items`
//! (defaults `/amount` and `/vat_rate`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use serde_json::Value;

use crate::{CHECK_KEYWORD, CheckOutcome, Correction, Status};

/// One problem with a schema's check declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarationError {
    /// JSON Pointer into the schema document of the declaration at fault.
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for DeclarationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mst,
    Cccd,
    Mrz,
    Date,
    CardDates,
    InvoiceSeries,
    VatRate,
    LineAmount,
    InvoiceTotals,
}

/// The name of every check a schema can declare.
pub const CHECK_NAMES: [&str; 9] = [
    "mst",
    "cccd",
    "mrz",
    "date",
    "card-dates",
    "invoice-series",
    "vat-rate",
    "line-amount",
    "invoice-totals",
];

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Mst,
        Kind::Cccd,
        Kind::Mrz,
        Kind::Date,
        Kind::CardDates,
        Kind::InvoiceSeries,
        Kind::VatRate,
        Kind::LineAmount,
        Kind::InvoiceTotals,
    ];

    fn name(self) -> &'static str {
        CHECK_NAMES[self as usize]
    }

    /// (required, optional) argument names.
    fn arguments(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::Mst | Kind::Date => (&[], &["value"]),
            Kind::Cccd => (&[], &["value", "sex", "date_of_birth"]),
            Kind::Mrz => (
                &[],
                &[
                    "value",
                    "id_number",
                    "date_of_birth",
                    "sex",
                    "date_of_expiry",
                    "full_name",
                ],
            ),
            Kind::CardDates => (&[], &["date_of_birth", "date_of_issue", "date_of_expiry"]),
            Kind::InvoiceSeries => (&[], &["value", "form", "issue_date"]),
            Kind::VatRate => (&[], &["value", "issue_date"]),
            Kind::LineAmount => (&["quantity", "unit_price", "amount"], &[]),
            Kind::InvoiceTotals => (
                &["items"],
                &[
                    "subtotal",
                    "vat_rate",
                    "vat_amount",
                    "total",
                    "item_amount",
                    "item_vat_rate",
                ],
            ),
        }
    }
}

/// One step from the record's root to where a declaration sits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Member(String),
    EveryItem,
}

/// A Relative JSON Pointer: go up `up` levels, then follow `tokens` (unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relative {
    up: usize,
    tokens: Vec<String>,
}

fn parse_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn parse_relative(s: &str) -> Option<Relative> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && s.starts_with('0')) {
        return None;
    }
    Some(Relative {
        up: s[..digits].parse().ok()?,
        tokens: parse_tokens(&s[digits..])?,
    })
}

fn pointer_of(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[derive(Debug, Clone)]
struct Declaration {
    kind: Kind,
    location: Vec<Step>,
    arguments: BTreeMap<&'static str, Relative>,
    /// `item_amount`, `item_vat_rate`: pointers inside one element of `items`.
    inner: BTreeMap<&'static str, Vec<String>>,
}

/// The checks a schema declares, ready to run on records of that schema.
#[derive(Debug, Clone, Default)]
pub struct CheckPlan {
    declarations: Vec<Declaration>,
}

impl CheckPlan {
    /// Reads every `x-vinscan-check` in `schema`. Every problem is reported at once, each at
    /// its JSON Pointer in the schema: an unknown check, an unknown or missing argument, an
    /// argument that is not a Relative JSON Pointer or climbs above the root, a declaration
    /// no instance reaches (one not under `properties`/`items` from the root).
    pub fn from_schema(schema: &Value) -> Result<Self, Vec<DeclarationError>> {
        let mut plan = Self::default();
        let mut errors = Vec::new();
        let mut reached = Vec::new();
        collect(
            schema,
            "",
            &mut Vec::new(),
            &mut plan.declarations,
            &mut errors,
            &mut reached,
        );
        let mut everywhere = Vec::new();
        find_keyword(schema, "", &mut everywhere);
        for at in everywhere.into_iter().filter(|p| !reached.contains(p)) {
            errors.push(DeclarationError {
                pointer: at,
                message: format!(
                    "{CHECK_KEYWORD} is not under properties/items from the root, so no value reaches it"
                ),
            });
        }
        if errors.is_empty() { Ok(plan) } else { Err(errors) }
    }

    /// How many declarations the schema holds.
    pub fn len(&self) -> usize {
        self.declarations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.declarations.is_empty()
    }

    /// Runs every check on `record` (the `data` of one record), then applies the corrections
    /// they made to it. `today` decides which dates lie in the future (see
    /// [`crate::today_in_vietnam`]). Results come in declaration order, then instance order.
    pub fn run(&self, record: &mut Value, today: NaiveDate) -> CheckOutcome {
        self.run_with(record, today, true)
    }

    /// [`run`](Self::run), with `correct` false when the corrections must not be applied (the
    /// corrected record would not conform to its schema): each value the MRZ would have
    /// replaced is then a `fail`, and nothing is corrected.
    ///
    /// The MRZ declarations run first and their corrections are applied before the other
    /// checks read the record, so no result describes a value that is no longer in it.
    pub fn run_with(&self, record: &mut Value, today: NaiveDate, correct: bool) -> CheckOutcome {
        let mut out = CheckOutcome::default();
        let (mrz, rest): (Vec<&Declaration>, Vec<&Declaration>) =
            self.declarations.iter().partition(|d| d.kind == Kind::Mrz);
        for declaration in mrz {
            for at in instances(record, &declaration.location) {
                run_one(declaration, record, &at, today, &mut out);
            }
        }
        if correct {
            for correction in &out.corrections {
                if let Some(slot) = record.pointer_mut(&correction.pointer) {
                    *slot = correction.kept.clone();
                }
            }
        } else {
            let dropped: Vec<Correction> = out.corrections.drain(..).collect();
            for c in out.checks.iter_mut() {
                if c.check == "mrz"
                    && c.status == Status::Warn
                    && dropped.iter().any(|d| d.pointer == c.pointer)
                {
                    c.status = Status::Fail;
                    c.detail = "differs from the MRZ, whose check digits pass; the MRZ value was not kept: the corrected record would not conform to its schema".to_owned();
                }
            }
        }
        for declaration in rest {
            for at in instances(record, &declaration.location) {
                run_one(declaration, record, &at, today, &mut out);
            }
        }
        out
    }
}

fn collect(
    schema: &Value,
    pointer: &str,
    location: &mut Vec<Step>,
    found: &mut Vec<Declaration>,
    errors: &mut Vec<DeclarationError>,
    reached: &mut Vec<String>,
) {
    let Some(map) = schema.as_object() else { return };
    if let Some(decl) = map.get(CHECK_KEYWORD) {
        let at = format!("{pointer}/{CHECK_KEYWORD}");
        reached.push(at.clone());
        let items: Vec<(String, &Value)> = match decl {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("{at}/{i}"), d))
                .collect(),
            one => vec![(at, one)],
        };
        for (at, d) in items {
            match declaration(d, location) {
                Ok(d) => found.push(d),
                Err(message) => errors.push(DeclarationError { pointer: at, message }),
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, sub) in props {
            location.push(Step::Member(name.clone()));
            let p = format!(
                "{pointer}/properties/{}",
                name.replace('~', "~0").replace('/', "~1")
            );
            collect(sub, &p, location, found, errors, reached);
            location.pop();
        }
    }
    if let Some(items) = map.get("items").filter(|i| i.is_object()) {
        location.push(Step::EveryItem);
        collect(
            items,
            &format!("{pointer}/items"),
            location,
            found,
            errors,
            reached,
        );
        location.pop();
    }
}

fn find_keyword(schema: &Value, pointer: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                if k == CHECK_KEYWORD {
                    out.push(p);
                } else if k != "enum" && k != "const" {
                    find_keyword(v, &p, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_keyword(v, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn declaration(d: &Value, location: &[Step]) -> Result<Declaration, String> {
    let (name, args) = match d {
        Value::String(name) => (name.as_str(), serde_json::Map::new()),
        Value::Object(map) => {
            let name = map
                .get("check")
                .and_then(Value::as_str)
                .ok_or("an object declaration needs \"check\": NAME")?;
            let mut args = map.clone();
            args.remove("check");
            (name, args)
        }
        _ => {
            return Err(
                "a declaration is a check name, an object with \"check\", or an array of those".into(),
            );
        }
    };
    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("unknown check {name:?} (known: {})", known.join(", ")))?;
    let (required, optional) = kind.arguments();
    let mut problems = Vec::new();
    for missing in required.iter().filter(|r| !args.contains_key(**r)) {
        problems.push(format!("{name} needs argument {missing:?}"));
    }
    let mut arguments = BTreeMap::new();
    let mut inner = BTreeMap::new();
    for (arg, value) in &args {
        let Some(arg) = required
            .iter()
            .chain(optional)
            .find(|a| **a == arg.as_str())
            .copied()
        else {
            problems.push(format!(
                "{name} takes no argument {arg:?} (it takes {})",
                [required, optional].concat().join(", ")
            ));
            continue;
        };
        let Some(text) = value.as_str() else {
            problems.push(format!("argument {arg:?} must be a string pointer"));
            continue;
        };
        if arg.starts_with("item_") {
            match parse_tokens(text) {
                Some(tokens) => {
                    inner.insert(arg, tokens);
                }
                None => problems.push(format!("argument {arg:?}: {text:?} is not a JSON Pointer")),
            }
            continue;
        }
        match parse_relative(text) {
            Some(r) if r.up > location.len() => {
                problems.push(format!(
                    "argument {arg:?}: {text:?} climbs above the record's root"
                ));
            }
            Some(r) => {
                arguments.insert(arg, r);
            }
            None => problems.push(format!(
                "argument {arg:?}: {text:?} is not a Relative JSON Pointer"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    if optional.contains(&"value") {
        arguments.entry("value").or_insert(Relative {
            up: 0,
            tokens: Vec::new(),
        });
    }
    Ok(Declaration {
        kind,
        location: location.to_vec(),
        arguments,
        inner,
    })
}

mod evaluate;

use evaluate::{instances, run_one};

#[cfg(test)]
mod tests;
