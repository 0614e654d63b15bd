//! Running one declaration on a record: the instances its location names, its arguments
//! resolved there, and the check it names applied to them.

use chrono::NaiveDate;
use serde_json::Value;

use super::{Declaration, Kind, Step, pointer_of};
use crate::cccd::{self, Sex};
use crate::{CheckOutcome, CheckResult, Status, card, invoice, iso_date, mrz, mst};

/// Every concrete instance path (unescaped tokens) that `location` names in `record`.
pub(super) fn instances(record: &Value, location: &[Step]) -> Vec<Vec<String>> {
    let mut paths = vec![(Vec::new(), record)];
    for step in location {
        let mut next = Vec::new();
        for (path, value) in paths {
            match (step, value) {
                (Step::Member(name), Value::Object(map)) => {
                    if let Some(v) = map.get(name) {
                        let mut p = path.clone();
                        p.push(name.clone());
                        next.push((p, v));
                    }
                }
                (Step::EveryItem, Value::Array(items)) => {
                    for (i, v) in items.iter().enumerate() {
                        let mut p = path.clone();
                        p.push(i.to_string());
                        next.push((p, v));
                    }
                }
                _ => {}
            }
        }
        paths = next;
    }
    paths.into_iter().map(|(p, _)| p).collect()
}

/// Resolved arguments of one declaration at one instance.
struct Args<'a> {
    record: &'a Value,
    at: &'a [String],
    declaration: &'a Declaration,
}

impl<'a> Args<'a> {
    fn pointer(&self, arg: &str) -> Option<String> {
        let r = self.declaration.arguments.get(arg)?;
        let mut tokens = self.at[..self.at.len() - r.up].to_vec();
        tokens.extend(r.tokens.iter().cloned());
        Some(pointer_of(&tokens))
    }

    fn value(&self, arg: &str) -> Option<&'a Value> {
        self.record.pointer(&self.pointer(arg)?)
    }

    fn str(&self, arg: &str) -> Option<&'a str> {
        self.value(arg).and_then(Value::as_str)
    }

    fn date(&self, arg: &str) -> Option<NaiveDate> {
        self.value(arg).and_then(iso_date)
    }

    fn field(&self, arg: &str) -> Option<(String, &'a Value)> {
        let p = self.pointer(arg)?;
        Some((p.clone(), self.record.pointer(&p)?))
    }
}

pub(super) fn run_one(
    d: &Declaration,
    record: &Value,
    at: &[String],
    today: NaiveDate,
    out: &mut CheckOutcome,
) {
    let args = Args {
        record,
        at,
        declaration: d,
    };
    let name = d.kind.name();
    let here = pointer_of(at);
    let subject = args.pointer("value").unwrap_or_else(|| here.clone());
    let needs_text = matches!(
        d.kind,
        Kind::Mst | Kind::Cccd | Kind::Mrz | Kind::InvoiceSeries | Kind::VatRate
    );
    let text = match args.value("value") {
        _ if !needs_text => "",
        None | Some(Value::Null) => {
            out.checks
                .push(CheckResult::new(&subject, name, Status::Skipped, "not read"));
            return;
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            out.checks
                .push(CheckResult::new(&subject, name, Status::Fail, "not a string"));
            return;
        }
    };
    let (pointer, (status, detail)) = match d.kind {
        Kind::Mst => (subject, mst::check(text)),
        Kind::Cccd => {
            let verdict = cccd::check(
                text,
                args.str("sex").and_then(Sex::parse),
                args.date("date_of_birth"),
            );
            (subject, verdict)
        }
        Kind::InvoiceSeries => (
            subject,
            invoice::check_series(text, args.str("form"), args.date("issue_date")),
        ),
        Kind::VatRate => (subject, invoice::check_vat_rate(text, args.date("issue_date"))),
        Kind::Date => match args.value("value") {
            None | Some(Value::Null) => (subject, (Status::Skipped, "not read".to_owned())),
            Some(v) => (subject, card::check_date(v, today)),
        },
        Kind::CardDates => {
            let verdict = card::check_card_dates(
                args.value("date_of_birth"),
                args.value("date_of_issue"),
                args.value("date_of_expiry"),
                today,
            );
            (here, verdict)
        }
        Kind::LineAmount => {
            let verdict = invoice::check_line(
                invoice::number(args.value("quantity")),
                invoice::number(args.value("unit_price")),
                invoice::number(args.value("amount")),
            );
            (args.pointer("amount").unwrap_or(here), verdict)
        }
        Kind::Mrz => {
            let fields =
                ["id_number", "date_of_birth", "sex", "date_of_expiry", "full_name"].map(|f| args.field(f));
            let borrow = |i: usize| fields[i].as_ref().map(|(p, v)| (p.as_str(), *v));
            let printed = mrz::Printed {
                id_number: borrow(0),
                date_of_birth: borrow(1),
                sex: borrow(2),
                date_of_expiry: borrow(3),
                full_name: borrow(4),
            };
            let found = mrz::check(&subject, text, &printed, today);
            out.checks.extend(found.checks);
            out.corrections.extend(found.corrections);
            return;
        }
        Kind::InvoiceTotals => return totals(&args, d, &here, out),
    };
    out.checks.push(CheckResult::new(&pointer, name, status, detail));
}

fn totals(args: &Args<'_>, d: &Declaration, here: &str, out: &mut CheckOutcome) {
    let default_amount = ["amount".to_owned()];
    let default_rate = ["vat_rate".to_owned()];
    let amount_at = d
        .inner
        .get("item_amount")
        .map_or(&default_amount[..], Vec::as_slice);
    let rate_at = d
        .inner
        .get("item_vat_rate")
        .map_or(&default_rate[..], Vec::as_slice);
    let items: &[Value] = args
        .value("items")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let t = invoice::Totals {
        line_amounts: items
            .iter()
            .map(|i| i.pointer(&pointer_of(amount_at)).and_then(Value::as_f64))
            .collect(),
        line_rates: items
            .iter()
            .map(|i| i.pointer(&pointer_of(rate_at)).and_then(Value::as_str))
            .collect(),
        subtotal: invoice::number(args.value("subtotal")),
        vat_rate: args.str("vat_rate"),
        vat_amount: invoice::number(args.value("vat_amount")),
        total: invoice::number(args.value("total")),
    };
    for (part, status, detail) in invoice::check_totals(&t) {
        let arg = match part {
            invoice::TotalsPart::Subtotal => "subtotal",
            invoice::TotalsPart::VatAmount => "vat_amount",
            invoice::TotalsPart::Total => "total",
        };
        let pointer = args.pointer(arg).unwrap_or_else(|| here.to_owned());
        out.checks
            .push(CheckResult::new(&pointer, "invoice-totals", status, detail));
    }
}
