//! The text stage: a whole document's transcripts given to a chat LLM in GGUF (VinaLLaMA by
//! default, any llama.cpp text model by path), which fills the pipeline's schema under the same
//! grammar constraint as Vintern. A pipeline asks for it with a `[text_stage]` section; it runs
//! when the extractor has a [`TextModel`] (`--text-model`), and Vintern reads the page images
//! otherwise.
//!
//! Every page is transcribed as the pipeline's `transcriber` says. The transcripts, each page
//! introduced by its number (`Trang 2:`), go before the task; when they do not fit the text
//! model's context with the output, they are split into consecutive chunks (a page longer than
//! a chunk at line ends), each read on its own, and the partial records merged by the schema's
//! `x-vinscan-merge` rules, exactly as Vintern's page groups are ([`crate::merge`]). Checks,
//! review, grounding and provenance then follow as for any document record; its provenance names
//! the `text_model` and each read's pages.

use std::sync::Arc;
use std::time::Instant;

use crate::document_record::DocumentSource;
use crate::document_record::{DocumentReads, GroupRead};
use crate::error::{Error, ErrorKind, Result};
use crate::extract::{Extractor, generation_provenance, parse_and_validate};
use crate::merge::Part;
use crate::model::{Cancellation, VisionModel};
pub use crate::model::{TextModel, TextModelInfo, TextRequest};
use crate::pipeline::Pipeline;
pub use crate::pipeline::TextStage;
use crate::record::{GroupProvenance, TextModelProvenance, Timings};

/// The text model's context window in tokens when none is configured: a few pages of
/// transcripts beside a 3,072-token output. A model trained on less (VinaLLaMA, as LLaMA-2:
/// 4,096) reads the positions past it poorly; `vinscan-llama` warns when the context is longer.
pub const DEFAULT_TEXT_CTX_SIZE: u32 = 8192;

/// The text model's system message when a pipeline sets none.
pub const TEXT_SYSTEM_PROMPT: &str =
    "Bạn là trợ lý trích xuất thông tin từ văn bản tiếng Việt. Chỉ trả lời bằng JSON theo đúng lược đồ.";

/// Bytes a chat template adds to a request besides the messages, generously (ChatML adds
/// about 40, Gemma's about 60).
const TEMPLATE_BYTES: usize = 128;
/// Bytes each page's piece adds besides its text (`Trang 12345:\n` and a blank line).
const PIECE_BYTES: usize = 16;
const TRANSCRIPT_HEADER: &str = "Văn bản của tài liệu (lớp chữ của PDF hoặc OCR, có thể có lỗi):\n";

/// Splits `text` into pieces of at most `max` bytes, at line ends where it can, else at a
/// character boundary.
fn split_to_fit(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let at = rest[..cut].rfind('\n').filter(|&i| i > 0).map_or(cut, |i| i + 1);
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out.push(rest);
    out
}

/// `pages` (1-based page number, transcript) in chunks whose pieces, with their page headers,
/// take at most `budget` bytes each; every page appears (an empty transcript as an empty
/// piece), in order.
pub fn chunk_pages<'t>(pages: &[(u32, &'t str)], budget: usize) -> Vec<Vec<(u32, &'t str)>> {
    let mut chunks = Vec::new();
    let mut current: Vec<(u32, &str)> = Vec::new();
    let mut used = 0;
    for &(page, text) in pages {
        for piece in split_to_fit(text.trim(), budget.saturating_sub(PIECE_BYTES)) {
            let cost = piece.len() + PIECE_BYTES;
            if used + cost > budget && !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
                used = 0;
            }
            current.push((page, piece));
            used += cost;
        }
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The bytes of transcripts one read can take: the context less the output cap and the fixed
/// prompt (a prompt token is at least one byte, so bytes bound the transcripts' tokens).
/// `Config` when that leaves no room.
fn transcript_budget(
    pipeline: &Pipeline,
    stage: &TextStage,
    system_prompt: &str,
    max_tokens: u32,
    ctx_size: u32,
) -> Result<usize> {
    let fixed = system_prompt.len() + stage.prompt.len() + TRANSCRIPT_HEADER.len() + TEMPLATE_BYTES;
    let budget = (ctx_size as usize)
        .saturating_sub(max_tokens as usize)
        .saturating_sub(fixed);
    if budget < 2 * PIECE_BYTES {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "pipeline {}: the text stage's prompt and max_tokens = {max_tokens} leave no room for transcripts in a context of {ctx_size} tokens; raise the text model's context (--text-ctx-size, or text_ctx_size in serve's [model])",
                pipeline.name
            ),
        ));
    }
    Ok(budget)
}

/// With no text the model would be asked about nothing and fill the fields from its prior: no
/// record rather than an invented one. `InvalidOutput` when Vintern transcribed (its output was
/// empty), else `InvalidInput` (no text layer, nothing OCR could read).
fn some_text(transcripts: &[Option<crate::transcript::PageTranscript>], pipeline: &Pipeline) -> Result<()> {
    if transcripts
        .iter()
        .all(|t| t.as_ref().is_none_or(|t| t.text.trim().is_empty()))
    {
        let kind = if pipeline.transcriber == crate::Transcriber::Vintern {
            ErrorKind::InvalidOutput
        } else {
            ErrorKind::InvalidInput
        };
        return Err(Error::new(
            kind,
            format!(
                "no page has a transcript (transcriber = \"{}\"): the text stage has nothing to read",
                pipeline.transcriber.name()
            ),
        ));
    }
    Ok(())
}

/// The user message of one read: the chunk's transcripts, then the task.
fn user_prompt(chunk: &[(u32, &str)], task: &str) -> String {
    let mut out = String::from(TRANSCRIPT_HEADER);
    for (page, piece) in chunk {
        out.push_str(&format!("Trang {page}:\n{piece}\n\n"));
    }
    out.push_str(task);
    out
}

impl Extractor {
    /// The transcript of each of `pages` (source index, 0-based page), decoded one at a time.
    fn transcribe_all(
        &self,
        vision: Option<&dyn VisionModel>,
        sources: &[DocumentSource<'_>],
        pages: &[(usize, u32)],
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<Vec<Option<crate::transcript::PageTranscript>>> {
        let mut transcripts = Vec::with_capacity(pages.len());
        for &(s, p) in pages {
            let doc = sources[s].doc;
            let what = || format!("{} page {}", doc.name(), p + 1);
            cancel.check(&what())?;
            let page = doc.page(p, pipeline.pdf_dpi, &pipeline.limits, self.decoders())?;
            transcripts.push(
                self.transcribe(vision, doc, p, &page, pipeline, cancel)
                    .map_err(|e| e.context(what()))?,
            );
        }
        Ok(transcripts)
    }

    /// This extractor with `model` for pipelines that have a text stage.
    pub fn with_text_model(mut self, model: Arc<dyn TextModel>) -> Self {
        self.text = Some(model);
        self
    }

    /// Whether `pipeline`'s records come from the text stage: it has one and this extractor
    /// has a text model.
    pub fn text_stage_applies(&self, pipeline: &Pipeline) -> bool {
        pipeline.text_stage.is_some() && self.text.is_some()
    }

    /// Whether reading `pipeline`'s documents takes the vision model (Vintern): always, unless
    /// the text stage reads them from transcripts Vintern does not make.
    pub fn needs_vision_model(&self, pipeline: &Pipeline) -> bool {
        !self.text_stage_applies(pipeline) || pipeline.transcriber == crate::Transcriber::Vintern
    }

    /// Checks, without IO and before any page is read, that the text stage of `pipeline` can
    /// run with this extractor's text model: its context leaves room for transcripts beside
    /// the prompt and the output cap. Ok when the text stage does not apply.
    ///
    /// # Errors
    /// `Config`, naming the context and `max_tokens`.
    pub fn check_text_stage(&self, pipeline: &Pipeline) -> Result<()> {
        let (Some(stage), Some(model)) = (pipeline.text_stage.as_ref(), self.text.as_deref()) else {
            return Ok(());
        };
        let system_prompt = stage.system_prompt.as_deref().unwrap_or(TEXT_SYSTEM_PROMPT);
        let max_tokens = stage.max_tokens.unwrap_or(pipeline.max_tokens);
        transcript_budget(pipeline, stage, system_prompt, max_tokens, model.info().ctx_size).map(|_| ())
    }

    /// The sha256 of the text model when `pipeline`'s records come from it.
    pub fn text_model_sha256(&self, pipeline: &Pipeline) -> Option<&str> {
        self.text
            .as_deref()
            .filter(|_| pipeline.text_stage.is_some())
            .map(|m| m.info().sha256.as_str())
    }

    /// Every page of `sources` as one document record read by the text stage (see the module
    /// docs). `vision` transcribes the pages when the pipeline's transcriber is `vintern`.
    ///
    /// # Errors
    /// `Config` when the pipeline has no text stage or the extractor no text model, or the
    /// prompt leaves no room for transcripts; a page that cannot be decoded or transcribed; a
    /// read whose output does not conform; the model's own errors.
    pub fn extract_text_document(
        &self,
        vision: Option<&dyn VisionModel>,
        sources: &[DocumentSource<'_>],
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<crate::DocumentRecord> {
        let started = Instant::now();
        let (Some(stage), Some(model)) = (pipeline.text_stage.as_ref(), self.text.as_deref()) else {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "pipeline {} has no text stage, or no text model is configured",
                    pipeline.name
                ),
            ));
        };
        let pages: Vec<(usize, u32)> = sources
            .iter()
            .enumerate()
            .flat_map(|(s, src)| (0..src.doc.page_count()).map(move |p| (s, p)))
            .collect();
        if pages.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a document needs at least one page",
            ));
        }
        let t = Instant::now();
        let transcripts = self.transcribe_all(vision, sources, &pages, pipeline, cancel)?;
        let transcribe_ms = t.elapsed().as_secs_f64() * 1e3;
        some_text(&transcripts, pipeline)?;

        let system_prompt = stage
            .system_prompt
            .clone()
            .unwrap_or_else(|| TEXT_SYSTEM_PROMPT.to_owned());
        let max_tokens = stage.max_tokens.unwrap_or(pipeline.max_tokens);
        let budget = transcript_budget(pipeline, stage, &system_prompt, max_tokens, model.info().ctx_size)?;
        let texts: Vec<(u32, &str)> = transcripts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32 + 1, t.as_ref().map_or("", |t| t.text.as_str())))
            .collect();
        let schema = Arc::new(pipeline.schema.grammar().clone());
        let mut reads = Vec::new();
        for (i, chunk) in chunk_pages(&texts, budget).iter().enumerate() {
            let read_started = Instant::now();
            let mut covered: Vec<u32> = chunk.iter().map(|(p, _)| *p).collect();
            covered.dedup();
            let what = format!(
                "{} (text stage read {} of pages {}..={})",
                sources
                    .iter()
                    .map(|s| s.doc.name())
                    .collect::<Vec<_>>()
                    .join(" + "),
                i + 1,
                covered.first().copied().unwrap_or(1),
                covered.last().copied().unwrap_or(1)
            );
            let request = TextRequest {
                system_prompt: system_prompt.clone(),
                user_prompt: user_prompt(chunk, &stage.prompt),
                output_schema: Arc::clone(&schema),
                max_tokens,
                repeat_penalty: pipeline.repeat_penalty,
                repeat_last_n: pipeline.repeat_last_n,
                cancel: cancel.clone(),
            };
            let generation = model.complete(request).map_err(|e| e.context(&what))?;
            let t = Instant::now();
            let (data, normalised) =
                parse_and_validate(pipeline, &generation.text, generation.stop, max_tokens)
                    .map_err(|e| e.context(&what))?;
            let confidence = crate::confidence::field_confidence(&generation.text, &generation.tokens);
            let validate_ms = t.elapsed().as_secs_f64() * 1e3;
            // the pages' decoding and transcription are counted once, with the first read
            let decode_ms = if i == 0 { transcribe_ms } else { 0.0 };
            let total_ms = read_started.elapsed().as_secs_f64() * 1e3 + decode_ms;
            reads.push(GroupRead {
                part: Part { data, confidence },
                normalised,
                provenance: GroupProvenance {
                    pages: covered,
                    max_tiles_per_page: 0,
                    array_lengths: Default::default(),
                    generation: generation_provenance(&generation, max_tokens),
                    timings_ms: Timings::of_read(decode_ms, 0.0, &generation.timings, validate_ms, total_ms),
                },
                pages: Vec::new(),
            });
        }
        let info = model.info();
        let reads = DocumentReads {
            reads,
            transcripts,
            // Vintern read the images only when it transcribed them
            model: vision
                .filter(|_| pipeline.transcriber == crate::Transcriber::Vintern)
                .map(|m| crate::extract::model_provenance(m.info())),
            text_model: Some(TextModelProvenance {
                name: info.name.clone(),
                file: info.file.clone(),
                sha256: info.sha256.clone(),
            }),
        };
        self.finish_document(sources, &pages, reads, pipeline, started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_are_chunked_to_the_budget_in_page_order() {
        let pages = [(1, "một"), (2, "hai\nba"), (3, "")];
        // everything fits one read
        assert_eq!(
            chunk_pages(&pages, 1000),
            vec![vec![(1, "một"), (2, "hai\nba"), (3, "")]]
        );
        // one page per read: each piece and its header fit 24 bytes
        let chunks = chunk_pages(&pages, 24);
        assert_eq!(
            chunks,
            vec![vec![(1, "một")], vec![(2, "hai\nba")], vec![(3, "")]]
        );
        // a page longer than a read is cut at its line ends, and never mid-character
        let long = "dòng một\ndòng hai\ndòng ba";
        let chunks = chunk_pages(&[(1, long)], PIECE_BYTES + 12);
        let pieces: Vec<&str> = chunks.iter().flatten().map(|(_, t)| *t).collect();
        assert_eq!(pieces.concat(), long);
        assert!(pieces.iter().all(|p| p.len() <= 12), "{pieces:?}");
        assert!(chunks.iter().all(|c| c.iter().all(|(p, _)| *p == 1)));
    }

    #[test]
    fn the_user_prompt_numbers_pages_before_the_task() {
        let p = user_prompt(&[(1, "Số: 12"), (2, "Nơi nhận")], "Trích xuất.");
        assert!(p.starts_with(TRANSCRIPT_HEADER), "{p}");
        assert!(
            p.ends_with("Trang 1:\nSố: 12\n\nTrang 2:\nNơi nhận\n\nTrích xuất."),
            "{p}"
        );
    }
}
