//! One document through the pipeline: page by page, each record handed to a sink as it is
//! made ([`process_document`]), or as one document record ([`process_as_document`]).

use vinscan_core::hash::sha256_hex;
use vinscan_core::read_document::DocumentSource;
use vinscan_core::{Cancellation, DocumentRecord, Error, ErrorKind, Extractor, PageRecord, Pipeline};

use crate::ModelOnDemand;

/// Runs every page of one document through the pipeline, handing each record to `sink`.
/// Returns the page count; stops at the first failing page. The outer error stops the whole
/// run (the model cannot load, or its engine is gone: every later input would fail the same
/// way); the inner one is this document's.
pub fn process_document(
    extractor: &Extractor,
    model: &dyn ModelOnDemand,
    pipeline: &Pipeline,
    bytes: Vec<u8>,
    source: &str,
    mut sink: impl FnMut(PageRecord) -> vinscan_core::Result<()>,
) -> Result<Result<u32, Error>, Error> {
    let sha = sha256_hex(&bytes);
    let doc = match extractor.open(source, bytes, pipeline) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    if doc.format() == vinscan_core::Format::Xml {
        // before loading the model: a page pipeline has no use for an e-invoice
        return Ok(Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{source}: an e-invoice XML is read by a document pipeline on the invoice schema (e.g. invoice), not by {}, which reads page images",
                pipeline.name
            ),
        )));
    }
    let vision = model.model()?;
    let never = Cancellation::new();
    for page in extractor.extract_document(vision, &doc, &sha, pipeline, &never) {
        match page.and_then(&mut sink) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(doc.page_count()))
}

/// Reads `inputs` (`(source, bytes)`, in order) as the pages of one document, for a pipeline
/// with `unit = "document"` (or `extract --as-document`). Errors as [`process_document`]: the
/// outer one stops the whole run, the inner one is this document's.
pub fn process_as_document(
    extractor: &Extractor,
    model: &dyn ModelOnDemand,
    pipeline: &Pipeline,
    inputs: Vec<(String, Vec<u8>)>,
) -> Result<Result<DocumentRecord, Error>, Error> {
    let mut docs = Vec::with_capacity(inputs.len());
    for (source, bytes) in inputs {
        let sha = sha256_hex(&bytes);
        match extractor.open(&source, bytes, pipeline) {
            Ok(d) => docs.push((d, sha)),
            Err(e) => return Ok(Err(e)),
        }
    }
    let sources: Vec<DocumentSource<'_>> = docs
        .iter()
        .map(|(doc, sha256)| DocumentSource { doc, sha256 })
        .collect();
    // an e-invoice XML needs no model: never load it for one (nor for an XML that cannot be
    // read with the other sources)
    if let [one] = sources.as_slice()
        && one.doc.format() == vinscan_core::Format::Xml
    {
        return Ok(extractor.extract_einvoice(*one, pipeline));
    }
    if sources.len() > 1
        && sources
            .iter()
            .any(|s| s.doc.format() == vinscan_core::Format::Xml)
    {
        return Ok(Err(Error::new(
            ErrorKind::Unsupported,
            "an e-invoice XML is a document by itself and cannot be read with other sources",
        )));
    }
    // the text stage reads the transcripts: Vintern is loaded for it only to make them
    let read = if extractor.text_stage_applies(pipeline) {
        let vision = if extractor.needs_vision_model(pipeline) {
            Some(model.model()?)
        } else {
            None
        };
        extractor.extract_text_document(vision, &sources, pipeline, &Cancellation::new())
    } else {
        extractor.extract_as_document(model.model()?, &sources, pipeline, &Cancellation::new())
    };
    match read {
        Ok(record) => Ok(Ok(record)),
        Err(e) if e.kind() == ErrorKind::Unavailable => Err(e),
        Err(e) => Ok(Err(e)),
    }
}
