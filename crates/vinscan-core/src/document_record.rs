//! The second half of reading a document, whoever read it (Vintern over the page images, or
//! the text stage over the transcripts): the reads' partial records merged by the schema's
//! rules, vinscan's known values filled in, the merged record validated, checked and reviewed,
//! and its provenance and grounding assembled.

use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::extract::{Extractor, VERSION, carry_confidence, format_name, run_checks_allowing};
use crate::merge::{Part, merge};
use crate::pipeline::Pipeline;
use crate::record::{
    DocumentPage, DocumentProvenance, DocumentRecord, GroupProvenance, ModelProvenance, PageRef,
    SourceProvenance, TextModelProvenance, Timings,
};
use crate::transcript::PageTranscript;

/// One source of a document: the opened file and the hex sha256 of its bytes.
#[derive(Debug, Clone, Copy)]
pub struct DocumentSource<'a> {
    pub doc: &'a crate::document::Document,
    pub sha256: &'a str,
}

/// What one read of a group produced, before merging.
pub(crate) struct GroupRead {
    pub(crate) part: Part,
    pub(crate) normalised: Vec<String>,
    pub(crate) provenance: GroupProvenance,
    /// The images it read (none for the text stage).
    pub(crate) pages: Vec<DocumentPage>,
}

/// Everything a document's reads produced, and which model made them.
pub(crate) struct DocumentReads {
    pub(crate) reads: Vec<GroupRead>,
    /// One per page of the document, in order.
    pub(crate) transcripts: Vec<Option<PageTranscript>>,
    /// Vintern, when it read the pages.
    pub(crate) model: Option<ModelProvenance>,
    /// The text model, when the text stage read the transcripts.
    pub(crate) text_model: Option<TextModelProvenance>,
}

impl Extractor {
    /// One record from `reads` of the document of `sources` (`pages`: source index and 0-based
    /// page, in reading order). Errors: the merged record does not conform to the schema.
    pub(crate) fn finish_document(
        &self,
        sources: &[DocumentSource<'_>],
        pages: &[(usize, u32)],
        reads_in: DocumentReads,
        pipeline: &Pipeline,
        started: Instant,
    ) -> Result<DocumentRecord> {
        let (reads, transcripts) = (reads_in.reads, reads_in.transcripts);

        let t = Instant::now();
        let parts: Vec<Part> = reads.iter().map(|r| r.part.clone()).collect();
        let merged = merge(pipeline.schema.document(), &parts);
        let mut data = merged.data;
        let mut confidence = merged.confidence;
        let schema = &pipeline.schema;
        crate::known_values::fill(schema.document(), &mut data, &mut confidence, pages.len() as u32);
        let violations: Vec<String> = schema
            .violations(&data)
            .into_iter()
            .filter(|v| !(v.keyword == "maxItems" && merged.concatenated.contains(&v.instance_path)))
            .map(|v| v.to_string())
            .collect();
        if !violations.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidOutput,
                format!(
                    "{}: the merged record of {} page groups does not conform to {}: {}",
                    sources
                        .iter()
                        .map(|s| s.doc.name())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    reads.len(),
                    schema.path(),
                    violations.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                ),
            ));
        }
        let checked = run_checks_allowing(
            pipeline,
            &mut data,
            vinscan_schema::today_in_vietnam(chrono::Utc::now()),
            |v| v.keyword == "maxItems" && merged.concatenated.contains(&v.instance_path),
        );
        carry_confidence(&mut confidence, &checked.corrections);
        let review = pipeline.review.decide(&checked, &confidence);
        let merge_ms = t.elapsed().as_secs_f64() * 1e3;

        let mut timings = Timings::default();
        for r in &reads {
            add_timings(&mut timings, &r.provenance.timings_ms);
        }
        timings.validate += merge_ms;
        timings.total = started.elapsed().as_secs_f64() * 1e3;
        let names: Vec<String> = sources.iter().map(|s| s.doc.name().to_owned()).collect();
        let page_refs = pages
            .iter()
            .map(|&(s, p)| PageRef {
                source: names[s].clone(),
                page: p + 1,
            })
            .collect();
        let (groups, page_provenance, normalised) = read_provenance(reads, &merged.concatenated);
        let provenance = DocumentProvenance {
            record_format: crate::record::RECORD_FORMAT,
            sources: sources
                .iter()
                .map(|s| SourceProvenance {
                    source: s.doc.name().to_owned(),
                    sha256: s.sha256.to_owned(),
                    format: format_name(s.doc.format()).to_owned(),
                    page_count: s.doc.page_count(),
                })
                .collect(),
            pipeline: pipeline.name.clone(),
            pipeline_sha256: pipeline.sha256.clone(),
            schema_id: schema.id().to_owned(),
            schema_sha256: schema.sha256().to_owned(),
            model: reads_in.model,
            text_model: reads_in.text_model,
            vinscan_version: VERSION.to_owned(),
            pages: page_provenance,
            groups,
            disagreements: merged.disagreements,
            normalised,
            timings_ms: timings,
            transcripts: transcript_provenance(&names, pages, &transcripts),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let grounding = document_grounding(&data, &names, pages, &transcripts);
        Ok(DocumentRecord {
            grounding,
            sources: names,
            pages: page_refs,
            pipeline: pipeline.name.clone(),
            schema: schema.path().to_owned(),
            data,
            confidence,
            checks: checked.checks,
            corrections: checked.corrections,
            review,
            provenance,
            transcripts,
        })
    }
}

/// The reads' provenance in order, each with the lengths of its concatenated arrays; the
/// images read; and the pointers the normaliser changed (deduplicated).
fn read_provenance(
    reads: Vec<GroupRead>,
    concatenated: &[String],
) -> (Vec<GroupProvenance>, Vec<DocumentPage>, Vec<String>) {
    let mut normalised = Vec::new();
    let mut groups = Vec::new();
    let mut pages = Vec::new();
    for mut r in reads {
        r.provenance.array_lengths = concatenated
            .iter()
            .filter_map(|p| Some((p.clone(), r.part.data.pointer(p)?.as_array()?.len())))
            .collect();
        normalised.extend(r.normalised);
        groups.push(r.provenance);
        pages.extend(r.pages);
    }
    normalised.sort();
    normalised.dedup();
    (groups, pages, normalised)
}

fn add_timings(sum: &mut Timings, t: &Timings) {
    sum.decode += t.decode;
    sum.tiling += t.tiling;
    sum.encode_prefill += t.encode_prefill;
    sum.generate += t.generate;
    sum.sample += t.sample;
    sum.queue += t.queue;
    sum.confidence += t.confidence;
    sum.validate += t.validate;
}

/// Where each string of a document's `data` is in its pages' transcripts.
fn document_grounding(
    data: &serde_json::Value,
    names: &[String],
    pages: &[(usize, u32)],
    transcripts: &[Option<PageTranscript>],
) -> std::collections::BTreeMap<String, crate::grounding::FieldGrounding> {
    let pages: Vec<crate::grounding::GroundingPage<'_>> = pages
        .iter()
        .zip(transcripts)
        .filter_map(|(&(s, p), t)| {
            t.as_ref().map(|transcript| crate::grounding::GroundingPage {
                source: &names[s],
                page: p + 1,
                transcript,
            })
        })
        .collect();
    crate::grounding::ground(data, &pages)
}

/// The provenance of the pages' transcripts, in page order (pages without one left out).
fn transcript_provenance(
    names: &[String],
    pages: &[(usize, u32)],
    transcripts: &[Option<PageTranscript>],
) -> Vec<crate::transcript::TranscriptProvenance> {
    pages
        .iter()
        .zip(transcripts)
        .filter_map(|(&(s, p), t)| t.as_ref().map(|t| t.provenance(&names[s], p + 1)))
        .collect()
}
