//! Document reads with a scripted model: page groups, merging, sources, segments, budgets.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::catalog::Catalog;
use crate::confidence::OutputToken;
use crate::document::Decoders;
use crate::limits::Limits;
use crate::model::{Generation, ModelTimings, StopReason};
use crate::transcript::TranscriptSource;

/// Answers each read with the next scripted text, every byte a sampled token of
/// probability `p`; records what each read was given.
struct Scripted {
    info: ModelInfo,
    answers: Mutex<VecDeque<(String, f32)>>,
    seen: Mutex<Vec<(usize, u32)>>,
    /// Each read's task text and whether its output was free text.
    asked: Mutex<Vec<(String, bool)>>,
}

impl Scripted {
    fn new(answers: &[(Value, f32)], ctx_size: u32) -> Self {
        Self {
            info: ModelInfo {
                name: None,
                model_file: "m.gguf".into(),
                model_sha256: String::new(),
                mmproj_file: "p.gguf".into(),
                mmproj_sha256: String::new(),
                mmproj_repaired_from: None,
                max_tiles: 12,
                image_size: 448,
                tokens_per_image: 256,
                ctx_size,
                system_info: String::new(),
                llm_flash_attention: None,
            },
            answers: Mutex::new(answers.iter().map(|(v, p)| (v.to_string(), *p)).collect()),
            seen: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
        }
    }

    /// Answers the next reads with `texts` as they are (free text, not JSON).
    fn then_texts_first(self, texts: &[&str]) -> Self {
        let mut answers = self.answers.lock().expect("lock");
        for t in texts.iter().rev() {
            answers.push_front(((*t).to_owned(), 1.0));
        }
        drop(answers);
        self
    }
}

impl VisionModel for Scripted {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation> {
        let mut seen = self.seen.lock().expect("lock");
        seen.push((request.images.len(), request.expected_images));
        self.asked.lock().expect("lock").push((
            request.user_prompt.clone(),
            request.output == crate::OutputConstraint::FreeText,
        ));
        let (text, p) = self
            .answers
            .lock()
            .expect("lock")
            .pop_front()
            .expect("a scripted answer");
        let tokens = (1..=text.len())
            .map(|end| OutputToken {
                end: end as u32,
                probability: Some(p),
            })
            .collect();
        Ok(Generation {
            text,
            // every answer is 10 tokens: a cap of 10 or less cuts it
            stop: if request.max_tokens <= 10 {
                StopReason::MaxTokens
            } else {
                StopReason::EndOfOutput
            },
            prompt_tokens: 100,
            image_tokens: 256 * request.expected_images,
            images: request.expected_images,
            generated_tokens: 10,
            model_steps: 10,
            forced_tokens: 0,
            reused_prompt_tokens: 0,
            peak_batch_pages: 1,
            restarts: 0,
            tokens,
            timings: ModelTimings::default(),
        })
    }

    fn health(&self) -> Result<()> {
        Ok(())
    }
}

fn pipeline(pages_together: u32) -> Arc<Pipeline> {
    pipeline_with(pages_together, "")
}

/// [`pipeline`] with `extra` TOML lines at the top level.
fn pipeline_with(pages_together: u32, extra: &str) -> Arc<Pipeline> {
    let schema = json!({
        "$schema": vinscan_schema::DRAFT_2020_12,
        "type": "object", "additionalProperties": false, "required": ["number", "items"],
        "properties": {
            "number": {"type": ["string", "null"], "maxLength": 10},
            "items": {"type": "array", "maxItems": 2, "items": {
                "type": "object", "additionalProperties": false, "required": ["d"],
                "properties": {"d": {"type": "string", "maxLength": 5}}}}
        }
    });
    let pipeline = format!(
        "name = \"doc\"\nschema = \"doc.json\"\nprompt = \"read\"\nunit = \"document\"\nsystem_prompt = \"\"\n{extra}\n[document]\npages_together = {pages_together}\n[generation]\nmax_tokens = 512\n"
    );
    Catalog::build(
        vec![("schemas/doc.json".into(), schema.to_string().into_bytes())],
        vec![("pipelines/doc.toml".into(), pipeline.into_bytes())],
    )
    .expect("catalog")
    .pipeline("doc")
    .expect("doc")
}

/// A scanned document of `pages` 900 × 600 pages (rendered by the unit tests' fake PDF renderer).
fn scan(pages: u32) -> Document {
    Document::open(
        "scan.pdf",
        crate::testutil::fake_pdf(pages),
        &Limits::default(),
        Decoders {
            pdf: Some(&crate::testutil::FakePdf),
            tiff: None,
        },
    )
    .expect("scan opens")
}

#[test]
fn a_long_document_is_read_in_page_groups_and_merged_into_one_record() {
    let doc = scan(5);
    let model = Scripted::new(
        &[
            (
                json!({"number": "0000123", "items": [{"d": "a"}, {"d": "b"}]}),
                0.5,
            ),
            (
                json!({"number": "0000128", "items": [{"d": "c"}, {"d": "d"}]}),
                0.9,
            ),
            (json!({"number": null, "items": [{"d": "e"}]}), 0.99),
        ],
        4096,
    );
    let source = DocumentSource {
        doc: &doc,
        sha256: "ab",
    };
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(&model, &[source], &pipeline(2), &Cancellation::new())
        .expect("one record");
    let seen = model.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![2, 2, 1],
        "pages per read"
    );
    assert_eq!(record.pages.len(), 5);
    assert_eq!(
        record.data["items"],
        json!([{"d": "a"}, {"d": "b"}, {"d": "c"}, {"d": "d"}, {"d": "e"}]),
        "line items from every group in page order, past one read's maxItems"
    );
    assert_eq!(
        record.data["number"],
        json!("0000128"),
        "the most confident value"
    );
    assert!((record.confidence["/number"] - 0.9).abs() < 1e-6);
    assert!((record.confidence["/items/4/d"] - 0.99).abs() < 1e-6);
    let p = &record.provenance;
    assert_eq!(p.groups.len(), 3);
    assert_eq!(p.groups[2].pages, vec![5]);
    assert_eq!(
        p.groups
            .iter()
            .map(|g| g.array_lengths["/items"])
            .collect::<Vec<_>>(),
        vec![2, 2, 1],
        "where the line items came from"
    );
    assert_eq!(p.disagreements.len(), 1);
    assert_eq!(p.disagreements[0].pointer, "/number");
    assert_eq!(
        p.pages
            .iter()
            .map(|pg| (pg.page, pg.group, pg.image_in_prompt))
            .collect::<Vec<_>>(),
        vec![(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2), (5, 3, 1)]
    );
    let images: u32 = p.pages.iter().map(|pg| pg.tiles.images).sum();
    assert_eq!(
        images,
        seen.iter().map(|s| s.1).sum::<u32>(),
        "every page's images were sent"
    );
    assert!(
        p.groups[0].max_tiles_per_page < p.groups[2].max_tiles_per_page,
        "two pages in one prompt get fewer tiles each than one: {:?}",
        p.groups.iter().map(|g| g.max_tiles_per_page).collect::<Vec<_>>()
    );
}

#[test]
fn the_sources_of_one_job_are_one_document() {
    let (front, back) = (scan(1), scan(1));
    let model = Scripted::new(&[(json!({"number": "1", "items": []}), 0.8)], 12288);
    let sources = [
        DocumentSource {
            doc: &front,
            sha256: "f",
        },
        DocumentSource {
            doc: &back,
            sha256: "b",
        },
    ];
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(&model, &sources, &pipeline(4), &Cancellation::new())
        .expect("one record");
    assert_eq!(model.seen.lock().expect("lock").len(), 1, "one read");
    assert_eq!(record.sources.len(), 2);
    assert_eq!(record.provenance.sources.len(), 2);
    assert!(record.provenance.disagreements.is_empty());
}

#[test]
fn a_thermal_receipt_is_read_as_its_overlapping_segments_in_one_prompt() {
    let receipt = image::RgbImage::from_pixel(576, 9000, image::Rgb([250, 250, 245]));
    let mut png = std::io::Cursor::new(Vec::new());
    receipt.write_to(&mut png, image::ImageFormat::Png).expect("png");
    let doc = Document::open(
        "receipt.png",
        png.into_inner(),
        &Limits::default(),
        Decoders::default(),
    )
    .expect("opens");
    let model = Scripted::new(&[(json!({"number": "1", "items": []}), 0.8)], 12288);
    let source = DocumentSource {
        doc: &doc,
        sha256: "r",
    };
    let record = Extractor::default()
        .extract_as_document(&model, &[source], &pipeline(4), &Cancellation::new())
        .expect("one record");
    assert_eq!(record.pages.len(), 1, "one page");
    let seen = &record.provenance.pages;
    assert_eq!(seen.len(), 3, "read as three segments: {seen:?}");
    assert_eq!(model.seen.lock().expect("lock")[0].0, 3, "in one prompt");
    for (i, view) in seen.iter().enumerate() {
        let seg = view.segment.expect("a segment");
        assert_eq!((seg.width, seg.height), (576, 3456));
        assert_eq!(
            (view.tiles.cols, view.tiles.rows),
            (1, 6),
            "the grid follows the segment"
        );
        assert_eq!(view.image_in_prompt, i as u32 + 1);
        assert_eq!(
            (view.image.width, view.image.height),
            (576, 9000),
            "the page's own size"
        );
    }
}

#[test]
fn the_tile_budget_shrinks_with_the_pages_read_together() {
    let p = pipeline(4);
    let model = Scripted::new(&[], 12288);
    // 12288 - 512 output - ("read" 4 bytes + 32 template + 16/page): 11,7xx tokens of images
    assert_eq!(
        tiles_per_page(&p, &model.info, 1).expect("fits"),
        6,
        "the pipeline's own 6"
    );
    assert_eq!(
        tiles_per_page(&p, &model.info, 4).expect("fits"),
        6,
        "11 images a page"
    );
    assert_eq!(
        tiles_per_page(&p, &model.info, 8).expect("fits"),
        4,
        "5 images a page"
    );
    assert_eq!(
        tiles_per_page(&p, &model.info, 16).expect("fits"),
        1,
        "2 images a page"
    );
    let small = Scripted::new(&[], 1024);
    let e = tiles_per_page(&p, &small.info, 4).expect_err("does not fit");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("pages_together"), "{e}");
}

#[test]
fn a_receipt_cut_into_more_segments_than_a_read_allows_is_cut_again_for_the_reads_budget() {
    // a context where one image gets 6 tiles but four images 3 each
    let receipt = image::RgbImage::from_pixel(576, 9000, image::Rgb([250, 250, 245]));
    let mut png = std::io::Cursor::new(Vec::new());
    receipt.write_to(&mut png, image::ImageFormat::Png).expect("png");
    let doc = Document::open(
        "receipt.png",
        png.into_inner(),
        &Limits::default(),
        Decoders::default(),
    )
    .expect("opens");
    let answer = (json!({"number": "1", "items": []}), 0.8);
    let model = Scripted::new(&[answer.clone(), answer], 5000);
    let p = pipeline(4);
    assert_eq!(tiles_per_page(&p, &model.info, 1).expect("fits"), 6);
    assert_eq!(tiles_per_page(&p, &model.info, 4).expect("fits"), 3);
    let source = DocumentSource {
        doc: &doc,
        sha256: "r",
    };
    let record = Extractor::default()
        .extract_as_document(&model, &[source], &p, &Cancellation::new())
        .expect("one record");
    let seen = &record.provenance.pages;
    assert_eq!(seen.len(), 6, "cut for 3 tiles: {seen:?}");
    for view in seen {
        let seg = view.segment.expect("a segment");
        assert_eq!((seg.width, seg.height), (576, 1728));
        assert_eq!(
            (view.tiles.cols, view.tiles.rows),
            (1, 3),
            "every segment read at the shape it was cut for"
        );
    }
    let reads: Vec<usize> = model.seen.lock().expect("lock").iter().map(|r| r.0).collect();
    assert_eq!(reads, vec![4, 2]);
}

#[test]
fn a_documents_pages_each_get_their_transcript_in_order() {
    let doc = scan(3);
    // the number is page 2's own text; the item is on no page
    let answers: Vec<(Value, f32)> = (0..2)
        .map(|_| (json!({"number": "Trang 2", "items": [{"d": "zzzzz"}]}), 0.9))
        .collect();
    let model = Scripted::new(&answers, 4096);
    let source = DocumentSource {
        doc: &doc,
        sha256: "ab",
    };
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(
            &model,
            &[source],
            &pipeline_with(2, "transcriber = \"pdf-text\""),
            &Cancellation::new(),
        )
        .expect("one record");
    assert_eq!(record.transcripts.len(), 3);
    let seen: Vec<(u32, &str)> = record
        .provenance
        .transcripts
        .iter()
        .map(|t| (t.page, t.engine.as_str()))
        .collect();
    assert_eq!(seen, [(1, "pdfium"), (2, "pdfium"), (3, "pdfium")]);
    let file = record.transcript_file().expect("a .txt");
    let pages: Vec<&str> = file.split("\n\u{c}\n").collect();
    assert_eq!(pages.len(), 3, "{file:?}");
    assert!(pages[2].starts_with("Trang 3"), "{file:?}");
    let number = &record.grounding["/number"];
    assert!(number.found && number.score == 1.0, "{number:?}");
    assert_eq!(number.page, Some(2), "the exact page, not a near one");
    assert!(!record.grounding["/items/0/d"].found);
    let json = serde_json::to_value(&record).expect("json");
    assert_eq!(json["grounding"]["/number"]["page"], 2);
    // a pipeline without a transcriber writes none
    let model = Scripted::new(&answers, 4096);
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(&model, &[source], &pipeline(2), &Cancellation::new())
        .expect("one record");
    assert!(record.transcript_file().is_none());
    assert!(record.provenance.transcripts.is_empty());
}

#[test]
fn vintern_transcribes_each_page_as_free_text_before_the_read() {
    let doc = scan(2);
    let answer = (json!({"number": "12/QĐ", "items": []}), 0.9);
    let model = Scripted::new(std::slice::from_ref(&answer), 8192)
        .then_texts_first(&["Số: 12/QĐ\nQUYẾT ĐỊNH", "Nơi nhận:"]);
    let source = DocumentSource {
        doc: &doc,
        sha256: "ab",
    };
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(
            &model,
            &[source],
            &pipeline_with(2, "transcriber = \"vintern\"\nanchor_text_bytes = 200"),
            &Cancellation::new(),
        )
        .expect("one record");
    let asked = model.asked.lock().expect("lock").clone();
    assert_eq!(asked.len(), 3, "two transcriptions, then one read: {asked:?}");
    for (prompt, free) in &asked[..2] {
        assert!(free, "a transcription has no grammar");
        assert_eq!(prompt, crate::pipeline::VINTERN_TRANSCRIBE_PROMPT);
    }
    // the read is under the schema, with the transcripts as anchor text
    assert!(!asked[2].1);
    assert!(
        asked[2].0.contains("Số: 12/QĐ\nQUYẾT ĐỊNH") && asked[2].0.contains("Nơi nhận:"),
        "{}",
        asked[2].0
    );
    let t = &record.provenance.transcripts;
    assert_eq!(t.len(), 2);
    assert!(
        t.iter()
            .all(|t| t.transcriber == TranscriptSource::Vintern && t.engine == "m.gguf" && !t.cut_off)
    );
    assert_eq!(
        record.transcript_file().as_deref(),
        Some("Số: 12/QĐ\nQUYẾT ĐỊNH\n\u{c}\nNơi nhận:\n")
    );
    assert!(record.grounding["/number"].found);

    // a transcription that reaches its cap is marked cut off
    let model = Scripted::new(&[answer], 8192).then_texts_first(&["Số: 12", "Nơi"]);
    let record = crate::testutil::fake_pdf_extractor()
        .extract_as_document(
            &model,
            &[source],
            &pipeline_with(2, "transcriber = \"vintern\"\n[transcription]\nmax_tokens = 10"),
            &Cancellation::new(),
        )
        .expect("one record");
    assert!(record.provenance.transcripts.iter().all(|t| t.cut_off));
    let json = serde_json::to_value(&record.provenance.transcripts[0]).expect("json");
    assert_eq!(json["cut_off"], true);
    assert_eq!(json["transcriber"], "vintern");
}

#[test]
fn vintern_transcription_without_a_vision_model_is_a_config_error() {
    let doc = scan(1);
    let p = pipeline_with(1, "transcriber = \"vintern\"");
    let page = doc
        .page(
            0,
            p.pdf_dpi,
            &p.limits,
            crate::testutil::fake_pdf_extractor().decoders(),
        )
        .expect("page");
    let e = crate::testutil::fake_pdf_extractor()
        .transcribe(None, &doc, 0, &page, &p, &Cancellation::new())
        .expect_err("no model");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no vision model"), "{e}");
}

/// Answers every text-stage request with `answer`; keeps the user prompts.
struct FakeText {
    info: crate::model::TextModelInfo,
    answer: Value,
    prompts: Mutex<Vec<String>>,
}

impl crate::model::TextModel for FakeText {
    fn info(&self) -> &crate::model::TextModelInfo {
        &self.info
    }

    fn complete(&self, request: crate::model::TextRequest) -> Result<Generation> {
        self.prompts.lock().expect("lock").push(request.user_prompt);
        Ok(Generation {
            text: self.answer.to_string(),
            stop: StopReason::EndOfOutput,
            prompt_tokens: 10,
            image_tokens: 0,
            images: 0,
            generated_tokens: 5,
            model_steps: 5,
            forced_tokens: 0,
            reused_prompt_tokens: 0,
            peak_batch_pages: 1,
            restarts: 0,
            tokens: Vec::new(),
            timings: ModelTimings::default(),
        })
    }
}

#[test]
fn the_text_stage_names_vintern_only_when_vintern_made_the_transcripts() {
    let doc = scan(2);
    let source = DocumentSource {
        doc: &doc,
        sha256: "ab",
    };
    let text = Arc::new(FakeText {
        info: crate::model::TextModelInfo {
            name: None,
            file: "llama.gguf".into(),
            sha256: "cd".into(),
            ctx_size: 8192,
        },
        answer: json!({"number": "12/QĐ", "items": []}),
        prompts: Mutex::new(Vec::new()),
    });
    let extractor = crate::testutil::fake_pdf_extractor().with_text_model(text.clone());
    let stage = "\n[text_stage]\nprompt = \"fill\"";
    // Vintern transcribes, the text model reads the transcripts
    let vintern = pipeline_with(2, &format!("transcriber = \"vintern\"{stage}"));
    assert!(extractor.text_stage_applies(&vintern) && extractor.needs_vision_model(&vintern));
    let vision = Scripted::new(&[], 8192).then_texts_first(&["Số: 12/QĐ", "Nơi nhận"]);
    let record = extractor
        .extract_text_document(Some(&vision), &[source], &vintern, &Cancellation::new())
        .expect("record");
    let prompts = text.prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 1);
    assert!(
        prompts[0].contains("Trang 1:\nSố: 12/QĐ\n\nTrang 2:\nNơi nhận\n\nfill"),
        "{}",
        prompts[0]
    );
    assert_eq!(
        vision.asked.lock().expect("lock").len(),
        2,
        "one transcription per page"
    );
    assert!(record.provenance.model.is_some(), "Vintern transcribed");
    assert_eq!(
        record.provenance.text_model.as_ref().map(|m| m.sha256.as_str()),
        Some("cd")
    );
    // the text layer transcribes: a vision model at hand is neither used nor named
    let layer = pipeline_with(2, &format!("transcriber = \"pdf-text\"{stage}"));
    assert!(!extractor.needs_vision_model(&layer));
    let vision = Scripted::new(&[], 8192);
    let record = extractor
        .extract_text_document(Some(&vision), &[source], &layer, &Cancellation::new())
        .expect("record");
    assert!(vision.asked.lock().expect("lock").is_empty());
    assert!(record.provenance.model.is_none());
    assert!(
        record
            .provenance
            .transcripts
            .iter()
            .all(|t| t.transcriber == TranscriptSource::PdfText)
    );
    // without a text model, the pipeline's reads are Vintern's
    assert!(crate::testutil::fake_pdf_extractor().needs_vision_model(&layer));
    // no page with text: no record, rather than one the text model invents
    let blank = Scripted::new(&[], 8192).then_texts_first(&[" \n", ""]);
    let asked = text.prompts.lock().expect("lock").len();
    let e = extractor
        .extract_text_document(Some(&blank), &[source], &vintern, &Cancellation::new())
        .expect_err("nothing to read");
    assert_eq!(e.kind(), ErrorKind::InvalidOutput, "Vintern read nothing");
    assert!(e.message().contains("transcriber = \"vintern\""), "{e}");
    assert_eq!(text.prompts.lock().expect("lock").len(), asked, "not asked");
}
