//! Where page records go, and whether existing ones still match what this run would write
//! (batch's resumability).

use std::path::{Path, PathBuf};

use vinscan_core::{DocumentRecord, PageRecord};

/// `DIR/<output name>.p0001.json` for page 1.
pub fn page_path(out_dir: &Path, output_name: &str, page: u32) -> PathBuf {
    out_dir.join(page_name(output_name, page))
}

/// `<output name>.p0001.json` for page 1.
pub fn page_name(output_name: &str, page: u32) -> String {
    format!("{output_name}.p{page:04}.json")
}

/// `DIR/<output name>.json`: a document's one record.
pub fn document_path(out_dir: &Path, output_name: &str) -> PathBuf {
    out_dir.join(document_name(output_name))
}

/// `<output name>.json`: a document's one record.
pub fn document_name(output_name: &str) -> String {
    format!("{output_name}.json")
}

/// What an existing output must have been made from to be reused.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Each source's sha256, in page order: one for a file, a folder document's files.
    pub source_sha256: &'a [String],
    pub pipeline_sha256: &'a str,
    pub schema_sha256: &'a str,
    pub model_sha256: &'a str,
    pub mmproj_sha256: &'a str,
    /// The text model's sha256 when the pipeline's text stage reads (then Vintern's files
    /// matter only when Vintern transcribed the pages, and the record names it).
    pub text_model_sha256: Option<&'a str>,
}

/// Whether `record` can be reused: made from the same input, pipeline, schema and model files,
/// and in the current record format (an older record lacks fields a newer vinscan writes).
pub fn matches(record: &PageRecord, e: &Expected<'_>) -> bool {
    let p = &record.provenance;
    p.record_format == vinscan_core::record::RECORD_FORMAT
        && std::slice::from_ref(&p.source_sha256) == e.source_sha256
        && p.pipeline_sha256 == e.pipeline_sha256
        && p.schema_sha256 == e.schema_sha256
        && p.model.sha256 == e.model_sha256
        && p.model.mmproj_sha256 == e.mmproj_sha256
}

/// Whether a document record can be reused: as [`matches`], made from the same sources in the
/// same order.
pub fn matches_document(record: &DocumentRecord, e: &Expected<'_>) -> bool {
    let p = &record.provenance;
    p.record_format == vinscan_core::record::RECORD_FORMAT
        && p.sources.iter().map(|s| &s.sha256).eq(e.source_sha256.iter())
        && p.pipeline_sha256 == e.pipeline_sha256
        && p.schema_sha256 == e.schema_sha256
        // a record no vision model made (an e-invoice XML, or the text stage over transcripts
        // Vintern did not make) does not depend on its files
        && p.model
            .as_ref()
            .is_none_or(|m| m.sha256 == e.model_sha256 && m.mmproj_sha256 == e.mmproj_sha256)
        // made by the text stage exactly when it reads now, with the same text model
        && p.text_model.as_ref().map(|m| m.sha256.as_str()) == e.text_model_sha256
}
