//! vinscan's extraction pipeline: a document becomes pages, a page becomes tiles, the model
//! turns tiles into JSON under a schema, and the JSON is normalised, validated and wrapped with
//! provenance.
//!
//! Architecture invariant: this crate never names llama.cpp, pdfium, librdkafka or an object
//! store, libtiff or any other native library. Native engines come in through [`VisionModel`],
//! [`PdfRenderer`] and [`TiffDecoder`], traits of plain data, so everything here builds and
//! tests in seconds.

pub mod catalog;
pub mod confidence;
pub mod document;
mod document_record;
pub mod einvoice;
pub mod error;
pub mod extract;
pub mod grounding;
pub mod hash;
mod jpeg;
pub mod known_values;
pub mod limits;
pub mod merge;
pub mod model;
pub mod pipeline;
mod raster;
pub mod read_document;
pub mod record;
pub mod review;
pub mod segment;
pub mod text_stage;
pub mod tiling;
pub mod transcript;

#[cfg(test)]
mod testutil;

pub use catalog::Catalog;
pub use confidence::OutputToken;
pub use document::{
    Decoders, Document, Format, Page, PdfRenderer, RenderedPage, TextLayer, TiffDecoder, TiffPage,
};
pub use error::{Error, ErrorKind, Result};
pub use extract::{Extractor, VERSION};
pub use limits::Limits;
pub use model::{
    Cancellation, GenerateRequest, Generation, ModelInfo, ModelTimings, OutputConstraint, RequestImage,
    StopReason, VisionModel,
};
pub use model::{TextModel, TextModelInfo, TextRequest};
pub use pipeline::TextStage;
pub use pipeline::{Pipeline, Unit};
pub use record::{DocumentRecord, PageRecord, PageRef};
pub use review::{Review, ReviewRules};
pub use transcript::{Ocr, OcrPage, PageTranscript, Transcriber, TranscriptSource, Word};
