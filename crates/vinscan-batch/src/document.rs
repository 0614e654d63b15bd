//! One document's pages through the pipeline, each record handed to a sink as it is made.

use vinscan_core::hash::sha256_hex;
use vinscan_core::{Cancellation, Error, ErrorKind, Extractor, PageRecord, Pipeline};

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
