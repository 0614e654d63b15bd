//! `vinscan export`: a batch's records flattened into tables for a spreadsheet — one row per
//! record (its scalar fields, each with its confidence, and its review verdict) and, for every
//! array of objects in the records (an invoice's line items), a table with one row per element
//! keyed by the record's source and page. Written as CSV files or one XLSX workbook
//! (`rust_xlsxwriter`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vinscan_core::{DocumentRecord, Error, ErrorKind, PageRecord, Review};
use vinscan_schema::CheckResult;

/// A record as export reads it: a page record or a document record, with the columns that say
/// which (`source` and `page`, or `source` and `pages`).
#[derive(Debug, Clone)]
pub struct ExportRecord {
    pub key: Vec<(String, Cell)>,
    pub pipeline: String,
    pub data: Value,
    pub confidence: BTreeMap<String, f64>,
    pub checks: Vec<CheckResult>,
    pub review: Review,
}

impl From<PageRecord> for ExportRecord {
    fn from(r: PageRecord) -> Self {
        Self {
            key: vec![
                ("source".to_owned(), Cell::Text(r.source)),
                ("page".to_owned(), Cell::Number(f64::from(r.page))),
            ],
            pipeline: r.pipeline,
            data: r.data,
            confidence: r.confidence,
            checks: r.checks,
            review: r.review,
        }
    }
}

impl From<DocumentRecord> for ExportRecord {
    fn from(r: DocumentRecord) -> Self {
        Self {
            key: vec![
                ("source".to_owned(), Cell::Text(r.sources.join(" + "))),
                ("pages".to_owned(), Cell::Number(r.pages.len() as f64)),
            ],
            pipeline: r.pipeline,
            data: r.data,
            confidence: r.confidence,
            checks: r.checks,
            review: r.review,
        }
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Cell {
    fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Empty,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Self::Empty, Self::Number),
            Value::String(s) => Self::Text(s.clone()),
            // arrays of scalars and empty containers: their JSON text
            other => Self::Text(other.to_string()),
        }
    }

    /// The cell as CSV text.
    pub fn text(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A table: a name (`records`, or the array's JSON Pointer path such as `items`), column
/// names and rows of cells, each row as long as `columns`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Columns in order of first appearance, each row a map from column to cell.
#[derive(Default)]
struct Builder {
    columns: Vec<String>,
    rows: Vec<BTreeMap<String, Cell>>,
}

impl Builder {
    fn push(&mut self, row: Vec<(String, Cell)>) {
        for (c, _) in &row {
            if !self.columns.contains(c) {
                self.columns.push(c.clone());
            }
        }
        self.rows.push(row.into_iter().collect());
    }

    fn table(mut self, name: String) -> Table {
        let rows = self
            .rows
            .iter_mut()
            .map(|r| {
                self.columns
                    .iter()
                    .map(|c| r.remove(c).unwrap_or(Cell::Empty))
                    .collect()
            })
            .collect();
        Table {
            name,
            columns: self.columns,
            rows,
        }
    }
}

/// A leaf's column name: its JSON Pointer relative to the row's object, without the leading
/// slash (`seller/tax_code`).
fn column(pointer: &str) -> String {
    pointer.trim_start_matches('/').to_owned()
}

/// Scalar leaves of `value` (pointers relative to it), and the arrays of objects found, which
/// become tables of their own.
fn flatten<'a>(
    value: &'a Value,
    pointer: String,
    leaves: &mut Vec<(String, &'a Value)>,
    arrays: &mut Vec<(String, &'a [Value])>,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(
                    v,
                    format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                    leaves,
                    arrays,
                );
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            arrays.push((pointer, items));
        }
        other => leaves.push((pointer, other)),
    }
}

/// The tables of `records`: `records` first, then one per array of objects, by path.
pub fn tables(records: &[ExportRecord]) -> Vec<Table> {
    let mut main = Builder::default();
    let mut arrays: BTreeMap<String, Builder> = BTreeMap::new();
    for r in records {
        let key = &r.key;
        let (mut leaves, mut found) = (Vec::new(), Vec::new());
        flatten(&r.data, String::new(), &mut leaves, &mut found);
        let lowest = r.confidence.values().copied().reduce(f64::min);
        let failed = r
            .checks
            .iter()
            .filter(|c| c.status == vinscan_schema::CheckStatus::Fail)
            .count();
        let reasons: Vec<&str> = r.review.reasons.iter().map(|x| x.pointer.as_str()).collect();
        let mut row: Vec<(String, Cell)> = key.to_vec();
        row.extend([
            ("pipeline".to_owned(), Cell::Text(r.pipeline.clone())),
            ("review_needed".to_owned(), Cell::Bool(r.review.needed)),
            ("review_reasons".to_owned(), Cell::Text(reasons.join(" "))),
            ("checks_failed".to_owned(), Cell::Number(failed as f64)),
            (
                "min_confidence".to_owned(),
                lowest.map_or(Cell::Empty, Cell::Number),
            ),
        ]);
        for (pointer, value) in &leaves {
            row.push((column(pointer), Cell::of(value)));
            if let Some(c) = r.confidence.get(pointer) {
                row.push((format!("{} confidence", column(pointer)), Cell::Number(*c)));
            }
        }
        main.push(row);
        for (array, items) in found {
            let builder = arrays.entry(column(&array)).or_default();
            for (i, item) in items.iter().enumerate() {
                let mut row: Vec<(String, Cell)> = key.to_vec();
                row.push(("line".to_owned(), Cell::Number((i + 1) as f64)));
                let (mut leaves, mut nested) = (Vec::new(), Vec::new());
                flatten(item, String::new(), &mut leaves, &mut nested);
                // arrays nested inside an element stay as JSON text in its row
                leaves.extend(
                    nested
                        .iter()
                        .map(|(p, _)| (p.clone(), item.pointer(p).unwrap_or(&Value::Null))),
                );
                for (pointer, value) in leaves {
                    row.push((column(&pointer), Cell::of(value)));
                    if let Some(c) = r.confidence.get(&format!("{array}/{i}{pointer}")) {
                        row.push((format!("{} confidence", column(&pointer)), Cell::Number(*c)));
                    }
                }
                builder.push(row);
            }
        }
    }
    std::iter::once(main.table("records".to_owned()))
        .chain(arrays.into_iter().map(|(name, b)| b.table(name)))
        .collect()
}

/// Every record under `dir` (`*.json`, recursively, in path order): page records and document
/// records. A file that is not a record is an error naming it.
pub fn read_records(dir: &Path) -> Result<Vec<ExportRecord>, Error> {
    let mut files: Vec<PathBuf> = crate::inputs::walk_local(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| Error::from_io(&e, p.display()))?;
            let not_a_record = |e: serde_json::Error| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("{}: not a vinscan record: {e}", p.display()),
                )
            };
            let value: Value = serde_json::from_slice(&bytes).map_err(not_a_record)?;
            if value.get("sources").is_some() {
                serde_json::from_value::<DocumentRecord>(value)
                    .map(ExportRecord::from)
                    .map_err(not_a_record)
            } else {
                serde_json::from_value::<PageRecord>(value)
                    .map(ExportRecord::from)
                    .map_err(not_a_record)
            }
        })
        .collect()
}

/// A file name for a table: letters, digits, `-` and `_` kept, anything else `_`.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes each table as `<dir>/<stem>.csv` (`records`) or `<dir>/<stem>.<table>.csv`;
/// returns the paths written.
pub fn write_csv(tables: &[Table], dir: &Path, stem: &str) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    for t in tables {
        let path = if t.name == "records" {
            dir.join(format!("{stem}.csv"))
        } else {
            dir.join(format!("{stem}.{}.csv", file_stem(&t.name)))
        };
        let csv_error = |e: csv::Error| Error::new(ErrorKind::Internal, format!("{}: {e}", path.display()));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&t.columns).map_err(csv_error)?;
        for row in &t.rows {
            w.write_record(row.iter().map(Cell::text)).map_err(csv_error)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("{}: {e}", path.display())))?;
        crate::local::write_atomic(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes every table as a worksheet of one XLSX workbook at `path` (sheet names cut to
/// Excel's 31 characters), header row bold and frozen.
pub fn write_xlsx(tables: &[Table], path: &Path) -> Result<(), Error> {
    use rust_xlsxwriter::{Format, Workbook};
    let xlsx_error =
        |e: rust_xlsxwriter::XlsxError| Error::new(ErrorKind::Internal, format!("{}: {e}", path.display()));
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    for t in tables {
        let sheet = book.add_worksheet();
        let name: String = file_stem(&t.name).chars().take(31).collect();
        sheet.set_name(name).map_err(xlsx_error)?;
        for (c, title) in t.columns.iter().enumerate() {
            sheet
                .write_string_with_format(0, c as u16, title, &bold)
                .map_err(xlsx_error)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
        for (r, row) in t.rows.iter().enumerate() {
            let r = (r + 1) as u32;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Empty => continue,
                    Cell::Text(s) => sheet.write_string(r, c, s),
                    Cell::Number(n) => sheet.write_number(r, c, *n),
                    Cell::Bool(b) => sheet.write_boolean(r, c, *b),
                }
                .map_err(xlsx_error)?;
            }
        }
    }
    let bytes = book.save_to_buffer().map_err(xlsx_error)?;
    crate::local::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests;
