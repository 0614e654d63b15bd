//! One page through the pipeline: decode or render, tile, generate under the schema, parse,
//! normalise, validate, and wrap with provenance.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::document::{Decoders, Document, Format, Page, PdfRenderer, TiffDecoder};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    Cancellation, GenerateRequest, Generation, ModelInfo, OutputConstraint, StopReason, VisionModel,
};
use crate::pipeline::Pipeline;
use crate::record::{
    GenerationProvenance, ImageProvenance, ModelProvenance, PageRecord, Provenance, TilesProvenance, Timings,
};
use crate::tiling::{TiledPage, tile_page};
use crate::transcript::{Ocr, PageTranscript, Transcriber, TranscriptSource, anchor_prompt};

/// The vinscan version written into every record.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Opens documents and extracts their pages. Holds no model: callers pass one per call, so a
/// run that finds nothing to do never loads it.
#[derive(Clone, Default)]
pub struct Extractor {
    pdf: Option<Arc<dyn PdfRenderer>>,
    tiff: Option<Arc<dyn TiffDecoder>>,
    ocr: Option<Arc<dyn Ocr>>,
    /// The text stage's model, for pipelines with a `[text_stage]`.
    pub(crate) text: Option<Arc<dyn crate::model::TextModel>>,
}

impl Extractor {
    /// An extractor reading PDFs with `pdf` and TIFFs with `tiff`; a document of a format
    /// whose decoder is `None` is refused with [`ErrorKind::Config`].
    pub fn new(pdf: Option<Arc<dyn PdfRenderer>>, tiff: Option<Arc<dyn TiffDecoder>>) -> Self {
        Self {
            pdf,
            tiff,
            ocr: None,
            text: None,
        }
    }

    /// This extractor with `ocr` for pipelines that transcribe pages by OCR.
    pub fn with_ocr(self, ocr: Arc<dyn Ocr>) -> Self {
        Self {
            ocr: Some(ocr),
            ..self
        }
    }

    /// The transcript of page `index` (0-based) of `doc`, decoded as `page`, as `pipeline`'s
    /// `transcriber` asks: the PDF text layer of a born-digital page, OCR of the image,
    /// Vintern's reading of it (`vision`), or none. Errors: OCR asked for without an OCR engine,
    /// or Vintern without a vision model ([`ErrorKind::Config`]), or the engine's own.
    pub fn transcribe(
        &self,
        vision: Option<&dyn VisionModel>,
        doc: &Document,
        index: u32,
        page: &Page,
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<Option<PageTranscript>> {
        if pipeline.transcriber == Transcriber::Vintern {
            let model = vision.ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "pipeline {} transcribes pages with Vintern, but no vision model is configured",
                        pipeline.name
                    ),
                )
            })?;
            return transcribe_with_vintern(model, page, pipeline, cancel).map(Some);
        }
        let want_text_layer = matches!(pipeline.transcriber, Transcriber::Auto | Transcriber::PdfText);
        if want_text_layer && doc.format() == Format::Pdf {
            let t = Instant::now();
            let layer = self
                .decoders()
                .pdf()?
                .page_text(doc.bytes(), index, page.image.dimensions())?;
            if crate::transcript::is_born_digital(&layer.text) {
                return Ok(Some(PageTranscript::new(
                    TranscriptSource::PdfText,
                    &layer.text,
                    layer.words,
                    "pdfium".into(),
                    ms(t),
                )));
            }
        }
        if !matches!(pipeline.transcriber, Transcriber::Auto | Transcriber::Tesseract) {
            return Ok(None);
        }
        let ocr = self.ocr.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "pipeline {} transcribes pages by OCR, but this vinscan has no OCR engine (built without the `ocr` feature)",
                    pipeline.name
                ),
            )
        })?;
        let t = Instant::now();
        let (w, h) = page.image.dimensions();
        let read = ocr.recognise(w, h, page.image.as_raw())?;
        Ok(Some(PageTranscript::new(
            TranscriptSource::Tesseract,
            &read.text,
            read.words,
            ocr.engine(),
            ms(t),
        )))
    }

    /// The native decoders, borrowed for [`Document::open`] and [`Document::page`].
    pub fn decoders(&self) -> Decoders<'_> {
        Decoders {
            pdf: self.pdf.as_deref(),
            tiff: self.tiff.as_deref(),
        }
    }

    /// Opens a document held in memory. `source` names it in errors and outputs.
    pub fn open(&self, source: &str, bytes: Vec<u8>, pipeline: &Pipeline) -> Result<Document> {
        Document::open(source, bytes, &pipeline.limits, self.decoders())
    }

    /// Extracts page `index` (0-based) of `doc`.
    pub fn extract_page(
        &self,
        model: &dyn VisionModel,
        doc: &Document,
        source_sha256: &str,
        index: u32,
        pipeline: &Pipeline,
    ) -> Result<PageRecord> {
        self.extract_page_until(model, doc, source_sha256, index, pipeline, &Cancellation::new())
    }

    /// Every page of `doc` in order, extracted as the iterator is advanced. A caller stops at
    /// the first error it does not want to go past; once `cancel` is raised, the page in the
    /// model stops at its next decoding step and the rest fail with `Cancelled` at once.
    pub fn extract_document<'a>(
        &'a self,
        model: &'a dyn VisionModel,
        doc: &'a Document,
        source_sha256: &'a str,
        pipeline: &'a Pipeline,
        cancel: &'a Cancellation,
    ) -> impl Iterator<Item = Result<PageRecord>> + 'a {
        (0..doc.page_count())
            .map(move |index| self.extract_page_until(model, doc, source_sha256, index, pipeline, cancel))
    }

    /// [`extract_page`](Self::extract_page) that stops with `Cancelled` once `cancel` is raised.
    pub fn extract_page_until(
        &self,
        model: &dyn VisionModel,
        doc: &Document,
        source_sha256: &str,
        index: u32,
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<PageRecord> {
        let started = Instant::now();
        let page_no = index + 1;
        let what = || format!("{} page {page_no}", doc.name());

        cancel.check(&what())?;
        let t = Instant::now();
        let page = doc.page(index, pipeline.pdf_dpi, &pipeline.limits, self.decoders())?;
        let decode_ms = ms(t);
        let transcript = self
            .transcribe(Some(model), doc, index, &page, pipeline, cancel)
            .map_err(|e| e.context(what()))?;

        let info = model.info();
        let (min_tiles_used, max_tiles_used) = tile_range(pipeline, info.max_tiles);
        let t = Instant::now();
        let tiled = tile_page(&page.image, min_tiles_used, max_tiles_used).map_err(|e| e.context(what()))?;
        let tiling_ms = ms(t);

        let grid = tiled.grid;
        let mut request = page_request(
            pipeline,
            tiled,
            OutputConstraint::JsonSchema(Arc::new(pipeline.schema.grammar().clone())),
            pipeline.max_tokens,
        );
        request.cancel = cancel.clone();
        if let Some(t) = &transcript {
            request.user_prompt =
                anchor_prompt(&pipeline.prompt, &[(1, &t.text)], pipeline.anchor_text_bytes);
        }
        let generation = model.generate(request).map_err(|e| e.context(what()))?;
        check_images_seen(generation.images, grid).map_err(|e| e.context(what()))?;

        let t = Instant::now();
        let (mut data, normalised) =
            parse_and_validate(pipeline, &generation.text, generation.stop, pipeline.max_tokens)
                .map_err(|e| e.context(what()))?;
        let mut confidence = crate::confidence::field_confidence(&generation.text, &generation.tokens);
        crate::known_values::fill(pipeline.schema.document(), &mut data, &mut confidence, 1);
        let checked = run_checks(
            pipeline,
            &mut data,
            vinscan_schema::today_in_vietnam(chrono::Utc::now()),
        );
        let validate_ms = ms(t);

        let schema = &pipeline.schema;
        let timings = Timings::of_read(
            decode_ms,
            tiling_ms,
            &generation.timings,
            validate_ms,
            ms(started),
        );
        let provenance = Provenance {
            record_format: crate::record::RECORD_FORMAT,
            source: doc.name().to_owned(),
            source_sha256: source_sha256.to_owned(),
            source_format: format_name(doc.format()).to_owned(),
            page: page_no,
            page_count: doc.page_count(),
            pipeline: pipeline.name.clone(),
            pipeline_sha256: pipeline.sha256.clone(),
            schema_id: schema.id().to_owned(),
            schema_sha256: schema.sha256().to_owned(),
            model: model_provenance(info),
            vinscan_version: VERSION.to_owned(),
            image: ImageProvenance {
                width: page.image.width(),
                height: page.image.height(),
                orientation: page.orientation,
                dpi: (doc.format() == Format::Pdf).then_some(pipeline.pdf_dpi),
            },
            tiles: TilesProvenance {
                cols: grid.cols,
                rows: grid.rows,
                thumbnail: grid.has_thumbnail(),
                images: generation.images,
                max_tiles_requested: pipeline.max_tiles,
                max_tiles_used,
            },
            generation: generation_provenance(&generation, pipeline.max_tokens),
            normalised,
            timings_ms: timings,
            transcript: transcript.as_ref().map(|t| t.provenance(doc.name(), page_no)),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        Ok(PageRecord {
            source: doc.name().to_owned(),
            page: page_no,
            pipeline: pipeline.name.clone(),
            schema: schema.path().to_owned(),
            review: {
                carry_confidence(&mut confidence, &checked.corrections);
                pipeline.review.decide(&checked, &confidence)
            },
            confidence,
            grounding: crate::grounding::ground_page(&data, doc.name(), page_no, transcript.as_ref()),
            data,
            checks: checked.checks,
            corrections: checked.corrections,
            provenance,
            transcript,
        })
    }
}

pub(crate) fn model_provenance(info: &ModelInfo) -> ModelProvenance {
    ModelProvenance {
        name: info.name.clone(),
        file: info.model_file.clone(),
        sha256: info.model_sha256.clone(),
        mmproj_file: info.mmproj_file.clone(),
        mmproj_sha256: info.mmproj_sha256.clone(),
        mmproj_repaired_from: info.mmproj_repaired_from.clone(),
    }
}

pub(crate) fn generation_provenance(generation: &Generation, max_tokens: u32) -> GenerationProvenance {
    GenerationProvenance {
        prompt_tokens: generation.prompt_tokens,
        image_tokens: generation.image_tokens,
        generated_tokens: generation.generated_tokens,
        max_tokens,
        model_steps: generation.model_steps,
        forced_tokens: generation.forced_tokens,
        reused_prompt_tokens: generation.reused_prompt_tokens,
        peak_batch_pages: generation.peak_batch_pages,
        stop: match generation.stop {
            StopReason::EndOfOutput => "end_of_output",
            StopReason::MaxTokens => "max_tokens",
        }
        .to_owned(),
    }
}

/// Vintern's free-text reading of `page`, tiled as the pipeline's reads are, under the
/// pipeline's `[transcription]` prompt and token cap.
fn transcribe_with_vintern(
    model: &dyn VisionModel,
    page: &Page,
    pipeline: &Pipeline,
    cancel: &Cancellation,
) -> Result<PageTranscript> {
    let t = Instant::now();
    let info = model.info();
    let (min, max) = tile_range(pipeline, info.max_tiles);
    let tiled = tile_page(&page.image, min, max)?;
    let grid = tiled.grid;
    let mut request = page_request(
        pipeline,
        tiled,
        OutputConstraint::FreeText,
        pipeline.transcription.max_tokens,
    );
    request.user_prompt = pipeline.transcription.prompt.clone();
    request.cancel = cancel.clone();
    let generation = model.generate(request)?;
    check_images_seen(generation.images, grid)?;
    let engine = info.name.clone().unwrap_or_else(|| info.model_file.clone());
    let mut transcript = PageTranscript::new(
        TranscriptSource::Vintern,
        &generation.text,
        Vec::new(),
        engine,
        ms(t),
    );
    transcript.cut_off = generation.stop == StopReason::MaxTokens;
    Ok(transcript)
}

/// The tile counts a pipeline's page may use with a model whose projector allows `model_max`.
pub fn tile_range(pipeline: &Pipeline, model_max: u32) -> (u32, u32) {
    let max = pipeline.max_tiles.min(model_max).max(1);
    (pipeline.min_tiles.min(max), max)
}

/// The model request for one tiled page under a pipeline's prompts and decoding settings, with
/// output constrained to `output`; not cancellable until the caller sets `cancel`.
pub fn page_request(
    pipeline: &Pipeline,
    tiled: TiledPage,
    output: OutputConstraint,
    max_tokens: u32,
) -> GenerateRequest {
    let expected_images = tiled.grid.images();
    GenerateRequest {
        system_prompt: pipeline.system_prompt.clone(),
        user_prompt: pipeline.prompt.clone(),
        images: vec![request_image(tiled)],
        expected_images,
        output,
        max_tokens,
        repeat_penalty: pipeline.repeat_penalty,
        repeat_last_n: pipeline.repeat_last_n,
        cancel: Cancellation::new(),
    }
}

/// A tiled page as the model port carries it.
pub fn request_image(tiled: TiledPage) -> crate::model::RequestImage {
    let (width, height) = tiled.image.dimensions();
    crate::model::RequestImage {
        width,
        height,
        rgb: tiled.image.into_raw(),
    }
}

pub(crate) fn format_name(f: Format) -> &'static str {
    match f {
        Format::Jpeg => "jpeg",
        Format::Png => "png",
        Format::Tiff => "tiff",
        Format::WebP => "webp",
        Format::Bmp => "bmp",
        Format::Pdf => "pdf",
        Format::Xml => "xml",
    }
}

/// Runs the schema's declared checks on validated `data`, applying the corrections they make
/// only if the corrected data still conforms to the schema; otherwise `data` is left as it
/// was, the checks run again without correcting, and each value the MRZ would have replaced
/// is a `fail` saying why (so review sees it).
pub fn run_checks(
    pipeline: &Pipeline,
    data: &mut Value,
    today: chrono::NaiveDate,
) -> vinscan_schema::CheckOutcome {
    run_checks_allowing(pipeline, data, today, |_| false)
}

/// [`run_checks`] for a record that may break the schema in ways `allowed` accepts (a merged
/// document's concatenated arrays past `maxItems`): a correction is applied when the corrected
/// data has no other violation.
pub fn run_checks_allowing(
    pipeline: &Pipeline,
    data: &mut Value,
    today: chrono::NaiveDate,
    allowed: impl Fn(&vinscan_schema::Violation) -> bool,
) -> vinscan_schema::CheckOutcome {
    let schema = &pipeline.schema;
    let mut corrected = data.clone();
    let outcome = schema.checks().run(&mut corrected, today);
    if outcome.corrections.is_empty() {
        return outcome;
    }
    if schema.violations(&corrected).iter().all(&allowed) {
        *data = corrected;
        return outcome;
    }
    schema.checks().run_with(data, today, false)
}

/// A corrected value takes the confidence of the evidence it came from (the MRZ's own value):
/// the value in `data` is that one, not the one the model read from the printed field.
pub(crate) fn carry_confidence(
    confidence: &mut std::collections::BTreeMap<String, f64>,
    corrections: &[vinscan_schema::Correction],
) {
    for c in corrections {
        if let Some(v) = confidence.get(&c.evidence).copied() {
            confidence.insert(c.pointer.clone(), v);
        }
    }
}

/// That the vision encoder saw every image tiling planned for a page.
fn check_images_seen(seen: u32, grid: crate::tiling::TileGrid) -> Result<()> {
    if seen == grid.images() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Internal,
        format!(
            "the vision encoder saw {seen} images, tiling planned {} ({}x{} grid)",
            grid.images(),
            grid.cols,
            grid.rows
        ),
    ))
}

/// Parses the model's text, normalises it and validates it against the pipeline's schema.
/// Normalisation is kept only if the normalised value still validates.
/// `max_tokens` is the output cap the read had.
pub fn parse_and_validate(
    pipeline: &Pipeline,
    text: &str,
    stop: StopReason,
    max_tokens: u32,
) -> Result<(Value, Vec<String>)> {
    let parsed: Value = serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(80).collect();
        let why = if stop == StopReason::MaxTokens {
            let n = text.chars().count();
            let end: String = text.chars().skip(n.saturating_sub(80)).collect();
            format!(
                "output cut off at max_tokens = {max_tokens} before the JSON was complete (output starts {start:?}, ends {end:?})"
            )
        } else {
            format!("model output is not JSON ({e}; output starts {start:?})")
        };
        Error::new(ErrorKind::InvalidOutput, why)
    })?;
    let schema = &pipeline.schema;
    let mut normalised = parsed.clone();
    let changed = schema.normalise(&mut normalised);
    if schema.violations(&normalised).is_empty() {
        return Ok((normalised, changed));
    }
    let violations = schema.violations(&parsed);
    if violations.is_empty() {
        return Ok((parsed, Vec::new()));
    }
    let list: Vec<String> = violations.iter().take(5).map(ToString::to_string).collect();
    Err(Error::new(
        ErrorKind::InvalidOutput,
        format!(
            "model output does not conform to {}: {}",
            schema.path(),
            list.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::Catalog;

    const ZONE: &str =
        "IDVNM0999939080001099993908<<<\n9903137M2403133VNM<<<<<<<<<<<9\nNGUYEN<<VAN<AN<<<<<<<<<<<<<<<<";

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid")
    }

    fn card(date_of_birth: &str) -> Value {
        json!({
            "side": "back", "document_type": "CCCD_CHIP", "id_number": "001099993908",
            "full_name": "NGUYỄN VĂN AN", "date_of_birth": date_of_birth, "sex": "Nam",
            "nationality": "Việt Nam", "place_of_origin": null, "place_of_residence": null,
            "date_of_expiry": "2024-03-13", "personal_identification": null,
            "date_of_issue": "2021-04-01", "issued_by": null, "mrz": ZONE
        })
    }

    #[test]
    fn the_id_card_pipeline_corrects_a_misread_birth_date_from_the_mrz() {
        let pipeline = Catalog::embedded()
            .expect("catalog")
            .pipeline("id-card")
            .expect("id-card");
        let mut data = card("1999-08-13");
        assert!(pipeline.schema.violations(&data).is_empty());
        let outcome = run_checks(&pipeline, &mut data, today());
        assert_eq!(data["date_of_birth"], json!("1999-03-13"));
        assert_eq!(outcome.corrections.len(), 1);
        assert!(pipeline.schema.violations(&data).is_empty());
        let failed: Vec<&str> = outcome
            .checks
            .iter()
            .filter(|c| c.status == vinscan_schema::CheckStatus::Fail)
            .map(|c| c.pointer.as_str())
            .collect();
        assert!(failed.is_empty(), "{:?}", outcome.checks);
    }

    #[test]
    fn a_correction_that_breaks_the_schema_is_not_applied() {
        // A user's schema that keeps birth dates as printed (dd/mm/yyyy): the MRZ's ISO date
        // would not conform, so the printed value stays and a warning says why.
        let schema = json!({
            "$schema": vinscan_schema::DRAFT_2020_12,
            "type": "object", "additionalProperties": false, "required": ["date_of_birth", "mrz"],
            "properties": {
                "date_of_birth": {"type": "string", "maxLength": 10, "pattern": "^[0-9]{2}/[0-9]{2}/[0-9]{4}$"},
                "mrz": {"type": "string", "maxLength": 100,
                        "x-vinscan-check": {"check": "mrz", "date_of_birth": "1/date_of_birth"}}
            }
        });
        let pipeline = "name = \"card\"\nschema = \"card.json\"\nprompt = \"read\"\n";
        let catalog = Catalog::build(
            vec![("schemas/card.json".into(), schema.to_string().into_bytes())],
            vec![("pipelines/card.toml".into(), pipeline.as_bytes().to_vec())],
        )
        .expect("catalog");
        let pipeline = catalog.pipeline("card").expect("card");
        let mut data = json!({"date_of_birth": "13/08/1999", "mrz": ZONE});
        let outcome = run_checks(&pipeline, &mut data, today());
        assert_eq!(data["date_of_birth"], json!("13/08/1999"), "left as printed");
        assert!(outcome.corrections.is_empty());
        let dob = outcome
            .checks
            .iter()
            .find(|c| c.pointer == "/date_of_birth")
            .expect("a result for the printed date");
        assert_eq!(
            (dob.check.as_str(), dob.status),
            ("mrz", vinscan_schema::CheckStatus::Fail)
        );
        assert!(dob.detail.contains("not kept"), "{}", dob.detail);
    }
}
