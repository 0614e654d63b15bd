//! `vinscan eval`: records compared with labels, field by field — exact match after
//! normalisation and character error rate (CER) — per field and overall.
//!
//! **Labels** come in two formats ([`read_labels`]):
//! - vinscan's own: JSON Lines of `{"source": "...", "data": {...}}`, `data` shaped like a
//!   record's (every leaf of it is a labelled field; a null says the field is not on the page);
//! - the SROIE key format (ICDAR 2019 task 3): a folder of `NAME.json` or `NAME.txt` files, each
//!   `{"company", "date", "address", "total"}`, read as the receipt schema's `/merchant_name`,
//!   `/date`, `/merchant_address` and `/total` of the document named `NAME`.
//!
//! **Matching**: a label belongs to the record whose source is the label's source, or else has
//! its file name, or else its file name without extension (`000` for `000.jpg`); a page
//! record only as page 1. A label without a record counts every field as missed (CER 1).
//!
//! **Normalisation** before comparing, on both sides: text as
//! [`vinscan_core::grounding::normalise_text`] (NFC, whitespace runs as one space, Vietnamese
//! tone marks at the syllable's end; case kept), then the schema's `x-vinscan-normalise` (ISO
//! dates, MST, integer VND); a number, or a label written as text where the schema wants one, as
//! its value (`9.00` is 9; `1.234.567` is 1234567: a separator followed by three digits groups
//! thousands, by one or two marks decimals).
//!
//! **CER** is the Levenshtein distance between the two normalised forms in characters divided
//! by the label's length (1 when the label has a value and the record none; 0 when both are
//! null, 1 when only the label is). Fields are named by JSON Pointer with array indices as `*`
//! (`/items/*/name`); `overall` pools every labelled field.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vinscan_core::grounding::normalise_text;
use vinscan_core::{Error, ErrorKind};
use vinscan_schema::Normaliser;

/// The receipt schema's pointer for each SROIE key field.
pub const SROIE_FIELDS: [(&str, &str); 4] = [
    ("company", "/merchant_name"),
    ("date", "/date"),
    ("address", "/merchant_address"),
    ("total", "/total"),
];

/// One labelled document: its source (a path or name) and the values it should give.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub source: String,
    pub data: Value,
}

/// A record as eval sees it: every source it covers, its page (a page record's) and `data`.
#[derive(Debug, Clone)]
pub struct Output {
    pub sources: Vec<String>,
    pub page: Option<u32>,
    pub pipeline: String,
    pub data: Value,
}

/// Scores of one field, or of all of them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Score {
    /// Labelled values compared.
    pub n: usize,
    /// Of them, equal after normalisation.
    pub exact: usize,
    /// `exact / n`.
    pub accuracy: f64,
    /// Mean character error rate.
    pub cer: f64,
    #[serde(skip)]
    cer_sum: f64,
}

impl Score {
    fn add(&mut self, exact: bool, cer: f64) {
        self.n += 1;
        self.exact += usize::from(exact);
        self.cer_sum += cer;
        self.accuracy = round4(self.exact as f64 / self.n as f64);
        self.cer = round4(self.cer_sum / self.n as f64);
    }
}

/// One field's scores.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldScore {
    /// JSON Pointer, array indices as `*`.
    pub field: String,
    #[serde(flatten)]
    pub score: Score,
}

/// What `vinscan eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Labelled documents.
    pub labels: usize,
    /// Of them, with a record.
    pub matched: usize,
    /// Sources of labels without a record.
    pub missing: Vec<String>,
    pub fields: Vec<FieldScore>,
    pub overall: Score,
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, what.to_string())
}

/// Labels from `path`: a JSON Lines file of vinscan labels, or a folder of SROIE key files.
///
/// # Errors
/// `InvalidInput` naming the file and line that is not a label; IO errors as [`Error::from_io`].
pub fn read_labels(path: &Path) -> Result<Vec<Label>, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(&e, path.display()))?;
    if !meta.is_dir() {
        let text = std::fs::read_to_string(path).map_err(|e| Error::from_io(&e, path.display()))?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str::<Label>(l).map_err(|e| {
                    invalid(format!(
                        "{} line {}: not a label {{source, data}}: {e}",
                        path.display(),
                        i + 1
                    ))
                })
            })
            .collect();
    }
    let mut labels = Vec::new();
    for file in crate::inputs::walk_local(path)? {
        if !file.extension().is_some_and(|e| e == "json" || e == "txt") {
            continue;
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::from_io(&e, file.display()))?;
        let key: BTreeMap<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{}: not a SROIE key file: {e}", file.display())))?;
        let mut data = serde_json::Map::new();
        for (name, pointer) in SROIE_FIELDS {
            if let Some(v) = key.get(name) {
                data.insert(pointer[1..].to_owned(), v.clone());
            }
        }
        if data.is_empty() {
            return Err(invalid(format!(
                "{}: none of the SROIE key fields (company, date, address, total)",
                file.display()
            )));
        }
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        labels.push(Label {
            source: stem,
            data: Value::Object(data),
        });
    }
    Ok(labels)
}

/// Every record under `dir` (`*.json`, recursively): document records and page records.
///
/// # Errors
/// `InvalidInput` naming a `.json` file that is not a record; IO errors as [`Error::from_io`].
pub fn read_outputs(dir: &Path) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    for file in crate::inputs::walk_local(dir)? {
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::from_io(&e, file.display()))?;
        let not_a_record = || invalid(format!("{}: not a vinscan record", file.display()));
        let record: Value = serde_json::from_slice(&bytes).map_err(|_| not_a_record())?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let (sources, page) = match (record.get("sources"), record.get("source")) {
            (Some(Value::Array(s)), _) => (s.iter().filter_map(text).collect(), None),
            (None, Some(s)) => (
                text(s).into_iter().collect(),
                record.get("page").and_then(Value::as_u64).map(|p| p as u32),
            ),
            _ => return Err(not_a_record()),
        };
        let (Some(pipeline), Some(data)) = (record.get("pipeline").and_then(text), record.get("data")) else {
            return Err(not_a_record());
        };
        outputs.push(Output {
            sources,
            page,
            pipeline,
            data: data.clone(),
        });
    }
    Ok(outputs)
}

/// The names a source answers to: itself, its file name, its file name without extension.
fn names(source: &str) -> [String; 3] {
    let file = source.rsplit('/').next().unwrap_or(source);
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    [source.to_owned(), file.to_owned(), stem.to_owned()]
}

/// Compares `outputs` with `labels`; `schema_of(pipeline)` gives a pipeline's schema document
/// (for its normalisers and types), `None` when unknown.
pub fn evaluate<'s>(
    labels: &[Label],
    outputs: &[Output],
    schema_of: &dyn Fn(&str) -> Option<&'s Value>,
) -> Report {
    // by each name, at each level; a name two records share is ambiguous and not used
    let mut by_name: [HashMap<String, Option<usize>>; 3] = Default::default();
    for (i, o) in outputs.iter().enumerate() {
        if o.page.is_some_and(|p| p != 1) {
            continue;
        }
        for source in o.sources.iter().take(1) {
            for (level, name) in names(source).into_iter().enumerate() {
                by_name[level]
                    .entry(name)
                    .and_modify(|e| *e = None)
                    .or_insert(Some(i));
            }
        }
    }
    let mut fields: BTreeMap<String, Score> = BTreeMap::new();
    let mut overall = Score::default();
    let mut missing = Vec::new();
    for label in labels {
        let label_names = names(&label.source);
        let found = (0..3).find_map(|level| by_name[level].get(&label_names[level]).copied().flatten());
        let output = found.map(|i| &outputs[i]);
        if output.is_none() {
            missing.push(label.source.clone());
        }
        let schema = output.and_then(|o| schema_of(&o.pipeline));
        let mut leaves = Vec::new();
        leaves_of(&label.data, String::new(), &mut leaves);
        for (pointer, truth) in leaves {
            let sub = schema.and_then(|s| subschema(s, &pointer));
            let got = output
                .and_then(|o| o.data.pointer(&pointer))
                .unwrap_or(&Value::Null);
            let (exact, cer) = compare(truth, got, sub);
            fields.entry(field_name(&pointer)).or_default().add(exact, cer);
            overall.add(exact, cer);
        }
    }
    Report {
        labels: labels.len(),
        matched: labels.len() - missing.len(),
        missing,
        fields: fields
            .into_iter()
            .map(|(field, score)| FieldScore { field, score })
            .collect(),
        overall,
    }
}

/// Every leaf (not an object or array) of `value` with its JSON Pointer.
fn leaves_of<'v>(value: &'v Value, at: String, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves_of(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves_of(v, format!("{at}/{i}"), out);
            }
        }
        leaf => out.push((at, leaf)),
    }
}

/// `/items/3/name` → `/items/*/name`.
fn field_name(pointer: &str) -> String {
    pointer
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The subschema at an instance pointer, through `properties` and `items`.
fn subschema<'s>(schema: &'s Value, pointer: &str) -> Option<&'s Value> {
    let mut node = schema;
    for segment in pointer.split('/').skip(1) {
        let name = segment.replace("~1", "/").replace("~0", "~");
        node = match node.get("properties").and_then(|p| p.get(&name)) {
            Some(sub) => sub,
            None => node.get("items")?,
        };
    }
    Some(node)
}

fn wants_number(schema: Option<&Value>) -> bool {
    let is_number = |t: &Value| matches!(t.as_str(), Some("number" | "integer"));
    match schema.and_then(|s| s.get("type")) {
        Some(Value::Array(types)) => types.iter().any(is_number),
        Some(t) => is_number(t),
        None => false,
    }
}

/// A number written as text: `9.00` → 9, `1.234.567 đ` → 1234567, `12,5` → 12.5.
fn number_in(text: &str) -> Option<f64> {
    let body: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-'))
        .collect();
    let last_mark = body.rfind(['.', ',']);
    let normalised = match last_mark {
        // one or two digits after the last mark: decimals; the other marks group thousands
        Some(at) if (1..=2).contains(&(body.len() - at - 1)) => {
            let (int, frac) = body.split_at(at);
            format!("{}.{}", int.replace(['.', ','], ""), &frac[1..])
        }
        _ => body.replace(['.', ','], ""),
    };
    normalised.parse().ok()
}

/// A value's comparable form: `None` for null.
fn canonical(value: &Value, schema: Option<&Value>) -> Option<String> {
    let number = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    };
    match value {
        Value::Null => None,
        Value::Number(n) => n.as_f64().map(number),
        Value::String(s) if wants_number(schema) => {
            Some(number_in(s).map_or_else(|| normalise_text(s), number))
        }
        Value::String(s) => {
            let text = normalise_text(s);
            let normaliser = schema
                .and_then(|s| s.get(vinscan_schema::NORMALISE_KEYWORD))
                .and_then(Value::as_str)
                .and_then(Normaliser::from_name);
            Some(normaliser.and_then(|n| n.apply(&text)).unwrap_or(text))
        }
        other => Some(other.to_string()),
    }
}

/// Whether `got` equals `truth` after normalisation, and the character error rate.
fn compare(truth: &Value, got: &Value, schema: Option<&Value>) -> (bool, f64) {
    match (canonical(truth, schema), canonical(got, schema)) {
        (None, None) => (true, 0.0),
        (None, Some(_)) | (Some(_), None) => (false, 1.0),
        (Some(t), Some(g)) => {
            let (t, g): (Vec<char>, Vec<char>) = (t.chars().collect(), g.chars().collect());
            let edits = strsim::generic_levenshtein(&t, &g);
            (t == g, edits as f64 / t.len().max(1) as f64)
        }
    }
}

impl Report {
    /// The report as a Markdown table (one row per field, then overall).
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "{} labelled documents, {} with a record{}.\n\n| field | n | exact | accuracy | CER |\n|---|---:|---:|---:|---:|\n",
            self.labels,
            self.matched,
            if self.missing.is_empty() {
                String::new()
            } else {
                let shown: Vec<&str> = self.missing.iter().take(10).map(String::as_str).collect();
                let more = self.missing.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(" (missing: {}{more})", shown.join(", "))
            }
        );
        let row = |name: &str, s: &Score| {
            format!(
                "| {name} | {} | {} | {:.1} % | {:.3} |\n",
                s.n,
                s.exact,
                s.accuracy * 100.0,
                s.cer
            )
        };
        for f in &self.fields {
            md.push_str(&row(&format!("`{}`", f.field), &f.score));
        }
        md.push_str(&row("**overall**", &self.overall));
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output(source: &str, data: Value) -> Output {
        Output {
            sources: vec![source.to_owned()],
            page: None,
            pipeline: "receipt".to_owned(),
            data,
        }
    }

    fn schema() -> Value {
        json!({"properties": {
            "name": {"type": ["string", "null"]},
            "date": {"type": ["string", "null"], "x-vinscan-normalise": "date"},
            "total": {"type": ["number", "null"]},
            "items": {"type": "array", "items": {"properties": {"name": {"type": "string"}}}}}})
    }

    #[test]
    fn values_agree_after_normalisation() {
        let s = schema();
        let sub = |p: &str| subschema(&s, p);
        assert_eq!(
            compare(&json!("Hòa  Bình"), &json!("Hoà Bình"), sub("/name")),
            (true, 0.0)
        );
        assert_eq!(
            compare(&json!("25/12/2018"), &json!("2018-12-25"), sub("/date")),
            (true, 0.0)
        );
        assert_eq!(compare(&json!("9.00"), &json!(9), sub("/total")), (true, 0.0));
        assert_eq!(
            compare(&json!("1.234.567 đ"), &json!(1234567), sub("/total")),
            (true, 0.0)
        );
        assert_eq!(compare(&json!(null), &json!(null), sub("/name")), (true, 0.0));
        assert_eq!(compare(&json!("ABCD"), &json!(null), sub("/name")), (false, 1.0));
        // case is kept: one wrong letter of four
        assert_eq!(
            compare(&json!("ABCD"), &json!("ABcD"), sub("/name")),
            (false, 0.25)
        );
    }

    #[test]
    fn labels_match_records_by_source_file_name_or_stem() {
        let labels = vec![
            Label {
                source: "000".into(),
                data: json!({"name": "BOOK TA", "total": "9.00", "items": [{"name": "pen"}]}),
            },
            Label {
                source: "scans/015.jpg".into(),
                data: json!({"name": "HOME"}),
            },
            Label {
                source: "031".into(),
                data: json!({"name": "AEON"}),
            },
        ];
        let outputs = vec![
            output(
                "000.jpg",
                json!({"name": "BOOK TA", "total": 9.0, "items": [{"name": "pan"}]}),
            ),
            output("015.jpg", json!({"name": "HOMF"})),
        ];
        let s = schema();
        let report = evaluate(&labels, &outputs, &|_| Some(&s));
        assert_eq!((report.labels, report.matched), (3, 2));
        assert_eq!(report.missing, ["031"]);
        let by: BTreeMap<_, _> = report
            .fields
            .iter()
            .map(|f| (f.field.as_str(), &f.score))
            .collect();
        assert_eq!((by["/name"].n, by["/name"].exact), (3, 1));
        // BOOK TA exact, HOMF one edit in four, AEON missing
        assert_eq!(by["/name"].cer, round4((0.0 + 0.25 + 1.0) / 3.0));
        assert_eq!((by["/total"].n, by["/total"].exact), (1, 1));
        assert_eq!(
            (by["/items/*/name"].n, by["/items/*/name"].cer),
            (1, round4(1.0 / 3.0))
        );
        assert_eq!((report.overall.n, report.overall.exact), (5, 2));
        assert!(
            report.markdown().contains("| `/name` | 3 | 1 | 33.3 % | 0.417 |"),
            "{}",
            report.markdown()
        );
    }

    #[test]
    fn sroie_key_files_become_receipt_labels() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("000.json"),
            r#"{"company": "BOOK TA .K", "date": "25/12/2018", "address": "NO.53", "total": "9.00"}"#,
        )
        .expect("write");
        let labels = read_labels(dir.path()).expect("labels");
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0].source, "000");
        assert_eq!(
            labels[0].data,
            json!({"merchant_name": "BOOK TA .K", "date": "25/12/2018", "merchant_address": "NO.53", "total": "9.00"})
        );
        std::fs::write(dir.path().join("bad.json"), "{}").expect("write");
        assert_eq!(
            read_labels(dir.path()).map_err(|e| e.kind()).err(),
            Some(ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn vinscan_labels_are_json_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("labels.jsonl");
        std::fs::write(
            &file,
            "{\"source\": \"a.jpg\", \"data\": {\"x\": 1}}\n\nnot json\n",
        )
        .expect("write");
        let e = read_labels(&file).expect_err("line 3");
        assert!(e.message().contains("line 3"), "{e}");
    }
}
