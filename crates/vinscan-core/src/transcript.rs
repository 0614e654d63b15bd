//! Page transcripts: the text of a page in reading order, taken from the best source the
//! pipeline allows (`transcriber` in the pipeline file) and recorded in provenance:
//!
//! - `pdf-text`: the PDF's own text layer, when the page is born digital (no OCR, no model);
//! - `tesseract`: OCR of the page image through an [`Ocr`] port (Tesseract 5 with the
//!   Vietnamese model in `vinscan-ocr`), which also gives word boxes;
//! - `vintern`: Vintern reading the page image as free text (no JSON grammar, the pipeline's
//!   `[transcription]` prompt and token cap), for scans where Tesseract reads poorly; no word
//!   boxes;
//! - `auto`: the text layer where the page has one, else OCR.
//!
//! Transcripts are NFC. A document's transcript file (`<doc>.txt`) has its pages in order,
//! separated by a form feed (U+000C) on its own line, as `pdftotext` separates pages.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::Result;

/// The least non-space characters a PDF page's text layer needs to count as born digital (a
/// scanned page often carries a few stray characters: a page number, a scanner's stamp).
pub const MIN_TEXT_LAYER_CHARS: usize = 20;

/// Which source a pipeline takes its page transcripts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transcriber {
    /// No transcripts (the pipeline reads pages with the vision model only).
    #[default]
    None,
    /// The PDF text layer where a page is born digital, else OCR.
    Auto,
    /// The PDF text layer only: scanned pages and images get no transcript.
    PdfText,
    /// OCR of every page image, born digital or not.
    Tesseract,
    /// Vintern transcribing every page image (free text).
    Vintern,
}

impl Transcriber {
    /// The name a pipeline file gives it (`transcriber = "pdf-text"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Auto => "auto",
            Self::PdfText => "pdf-text",
            Self::Tesseract => "tesseract",
            Self::Vintern => "vintern",
        }
    }
}

/// Where a page's transcript came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TranscriptSource {
    PdfText,
    Tesseract,
    Vintern,
}

/// A recognised word and where it is on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// NFC text of the word.
    pub text: String,
    /// Its box in the page image's pixels: left, top, right, bottom (right and bottom
    /// exclusive), in the upright page [`crate::Page`] the model also saw.
    pub bbox: [u32; 4],
    /// The recogniser's confidence, 0..=1.
    pub confidence: f32,
}

/// What OCR read on one page image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OcrPage {
    /// The text in reading order, lines separated by `\n`, blocks by a blank line.
    pub text: String,
    /// Every word with its box, in reading order.
    pub words: Vec<Word>,
}

/// Optical character recognition of page images. Implemented by `vinscan-ocr` (Tesseract);
/// the core never names libtesseract.
pub trait Ocr: Send + Sync {
    /// Recognises a `width` × `height` upright page given as packed RGB (`width * height * 3`
    /// bytes). Errors: the engine failing ([`crate::ErrorKind::Internal`]) or missing its
    /// language data ([`crate::ErrorKind::Config`]).
    fn recognise(&self, width: u32, height: u32, rgb: &[u8]) -> Result<OcrPage>;
    /// The engine and language, for provenance (e.g. `tesseract 5.3.0 vie`).
    fn engine(&self) -> String;
}

/// One page's transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct PageTranscript {
    pub source: TranscriptSource,
    /// NFC text in reading order.
    pub text: String,
    /// Words with boxes in page pixels (OCR's, or a text layer's runs between whitespace).
    pub words: Vec<Word>,
    /// The engine that made it (`pdfium`, the OCR engine's [`Ocr::engine`], or the vision
    /// model's name or file).
    pub engine: String,
    /// Milliseconds it took.
    pub ms: f64,
    /// The transcriber stopped at its token cap: the page's text may go on (Vintern only).
    pub cut_off: bool,
}

impl PageTranscript {
    /// A transcript of `text` from `source`, normalised here: NFC, line breaks as `\n` (pdfium
    /// ends lines with `\r\n`; a form feed, which separates pages in the `.txt`, becomes one
    /// too), and no other control characters but tabs.
    pub fn new(source: TranscriptSource, text: &str, words: Vec<Word>, engine: String, ms: f64) -> Self {
        let text: String = text
            .replace("\r\n", "\n")
            .chars()
            .map(|c| if c == '\r' || c == '\u{c}' { '\n' } else { c })
            .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
            .collect();
        Self {
            source,
            text: nfc(&text),
            words: words
                .into_iter()
                .map(|w| Word {
                    text: nfc(&w.text.replace(|c: char| c.is_control(), "")),
                    ..w
                })
                .collect(),
            engine,
            ms,
            cut_off: false,
        }
    }

    /// What provenance records of it: everything but the text.
    pub fn provenance(&self, source: &str, page: u32) -> TranscriptProvenance {
        let confidences: Vec<f64> = self.words.iter().map(|w| f64::from(w.confidence)).collect();
        TranscriptProvenance {
            source: source.to_owned(),
            page,
            transcriber: self.source,
            engine: self.engine.clone(),
            chars: self.text.chars().filter(|c| !c.is_whitespace()).count(),
            word_boxes: self.words.len(),
            mean_word_confidence: (!confidences.is_empty())
                .then(|| round4(confidences.iter().sum::<f64>() / confidences.len() as f64)),
            ms: self.ms,
            cut_off: self.cut_off,
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// How a page's transcript was made, as provenance records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptProvenance {
    /// The file or object the page is in.
    pub source: String,
    /// 1-based page number within its source.
    pub page: u32,
    /// What made the transcript: `pdf-text`, `tesseract` or `vintern`.
    pub transcriber: TranscriptSource,
    pub engine: String,
    /// Non-space characters in the transcript.
    pub chars: usize,
    /// OCR words with boxes (0 for a text layer, which has none: not a word count).
    pub word_boxes: usize,
    /// Mean OCR confidence of the words, 0..=1; absent without words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_word_confidence: Option<f64>,
    pub ms: f64,
    /// Present (true) when the transcriber stopped at its token cap: the text may be cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_off: bool,
}

/// NFC of `text`.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

/// The prompt with anchor text: each page's transcript (1-based page in the read, text),
/// at most `max_bytes` UTF-8 bytes of each (cut at a character), placed before the task as
/// olmOCR gives a page's PDF text with its image. The model is told the text may be wrong and
/// the image decides. `prompt` alone when there is no text or `max_bytes` is 0.
///
/// The added bytes are at most [`anchor_overhead`] plus `max_bytes` per page, which the
/// context budget counts (a token is at least one byte).
pub fn anchor_prompt(prompt: &str, pages: &[(u32, &str)], max_bytes: u32) -> String {
    let texts: Vec<(u32, &str)> = pages
        .iter()
        .map(|&(n, text)| (n, cut_at_char(text.trim(), max_bytes as usize)))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    if texts.is_empty() || max_bytes == 0 {
        return prompt.to_owned();
    }
    let mut out = String::from(ANCHOR_HEADER);
    for (n, text) in texts {
        if pages.len() > 1 {
            out.push_str(&format!("Trang {n}:\n"));
        }
        out.push_str(text);
        out.push_str("\n\n");
    }
    out.push_str(prompt);
    out
}

const ANCHOR_HEADER: &str = "Văn bản trích từ trang (lớp chữ của PDF hoặc OCR, có thể sai; ảnh là căn cứ):\n";

/// Bytes [`anchor_prompt`] adds to a prompt for `pages` pages besides their texts.
pub fn anchor_overhead(pages: u32) -> u32 {
    ANCHOR_HEADER.len() as u32 + pages * ("Trang 99999:\n\n\n".len() as u32)
}

fn cut_at_char(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether a PDF page's text layer makes it born digital ([`MIN_TEXT_LAYER_CHARS`]).
pub fn is_born_digital(text_layer: &str) -> bool {
    text_layer.chars().filter(|c| !c.is_whitespace()).count() >= MIN_TEXT_LAYER_CHARS
}

/// The name of the transcript file beside a record named `name`: `<stem>.txt` for
/// `<stem>.json` (a record's key, object key or file name), else `name` + `.txt`.
pub fn text_file_name(name: &str) -> String {
    format!("{}.txt", name.strip_suffix(".json").unwrap_or(name))
}

/// The `<doc>.txt` of a document: each page's transcript in order (an empty page for one
/// without), pages separated by a form feed on its own line. Ends with a newline.
pub fn text_file<'a>(pages: impl IntoIterator<Item = Option<&'a PageTranscript>>) -> String {
    let pages: Vec<String> = pages
        .into_iter()
        .map(|p| p.map(|t| t.text.trim_end().to_owned()).unwrap_or_default())
        .collect();
    let mut out = pages.join("\n\u{c}\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> PageTranscript {
        PageTranscript::new(TranscriptSource::Tesseract, text, vec![], "test".into(), 1.0)
    }

    #[test]
    fn text_is_nfc_and_pages_are_form_feed_separated() {
        // "Hoá" with a combining acute (NFD) becomes the precomposed letter
        let page = t("Ho\u{61}\u{301} \u{111}\u{1a1}n\r\n");
        assert_eq!(page.text, "Ho\u{e1} \u{111}\u{1a1}n\n");
        // a page's own form feed would split it in the .txt; other controls go
        assert_eq!(t("a\u{c}b\u{0}\u{7}\tc\rd").text, "a\nb\tc\nd");
        let two = t("trang hai");
        assert_eq!(
            text_file([Some(&page), None, Some(&two)]),
            "Ho\u{e1} \u{111}\u{1a1}n\n\u{c}\n\n\u{c}\ntrang hai\n"
        );
    }

    #[test]
    fn provenance_counts_without_the_text() {
        let mut page = t("Số: 12/QĐ-UBND");
        page.words = vec![
            Word {
                text: "Số:".into(),
                bbox: [1, 2, 30, 20],
                confidence: 0.9,
            },
            Word {
                text: "12/QĐ-UBND".into(),
                bbox: [35, 2, 130, 20],
                confidence: 0.6,
            },
        ];
        let p = page.provenance("qd.pdf", 3);
        assert_eq!((p.page, p.chars, p.word_boxes), (3, 13, 2));
        assert_eq!(p.mean_word_confidence, Some(0.75));
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["transcriber"], "tesseract");
        assert_eq!(json["source"], "qd.pdf");
        assert!(json.get("text").is_none());
    }

    #[test]
    fn anchor_text_goes_before_the_task_cut_at_a_character() {
        assert_eq!(anchor_prompt("Trích xuất.", &[(1, "Số: 12")], 0), "Trích xuất.");
        assert_eq!(anchor_prompt("Trích xuất.", &[(1, "  ")], 100), "Trích xuất.");
        let one = anchor_prompt("Trích xuất.", &[(1, " Số: 123/QĐ ")], 100);
        assert!(one.ends_with("\nSố: 123/QĐ\n\nTrích xuất."), "{one}");
        assert!(!one.contains("Trang 1:"), "one page needs no number: {one}");
        // "ố" is 3 bytes: a cut inside it keeps the character out
        let cut = anchor_prompt("T.", &[(1, "Số"), (2, "Điều 2")], 3);
        assert!(cut.contains("Trang 1:\nS\n\nTrang 2:\nĐi\n\nT."), "{cut}");
        assert!(cut.len() as u32 <= "T.".len() as u32 + 2 * 3 + anchor_overhead(2));
    }

    #[test]
    fn a_text_layer_needs_enough_characters_to_be_born_digital() {
        assert!(!is_born_digital(" 12 \n"));
        assert!(is_born_digital("QUYẾT ĐỊNH về việc ban hành quy chế"));
    }

    /// Reads every page as "dòng một\ndòng hai" with two word boxes.
    struct FakeOcr;

    impl Ocr for FakeOcr {
        fn recognise(&self, width: u32, height: u32, rgb: &[u8]) -> Result<OcrPage> {
            assert_eq!(rgb.len(), (width * height * 3) as usize);
            Ok(OcrPage {
                text: "dòng một\ndòng hai".into(),
                words: vec![
                    Word {
                        text: "dòng".into(),
                        bbox: [0, 0, 4, 2],
                        confidence: 0.5,
                    },
                    Word {
                        text: "một".into(),
                        bbox: [5, 0, 8, 2],
                        confidence: 1.0,
                    },
                ],
            })
        }

        fn engine(&self) -> String {
            "fake-ocr".into()
        }
    }

    #[test]
    fn a_transcriber_is_named_as_pipeline_files_name_it() {
        use Transcriber::*;
        for t in [None, Auto, PdfText, Tesseract, Vintern] {
            assert_eq!(serde_json::to_value(t).expect("json"), t.name());
        }
    }

    fn pipeline(transcriber: Transcriber) -> crate::Pipeline {
        let base = crate::Catalog::embedded()
            .expect("catalog")
            .pipeline("receipt")
            .expect("receipt");
        crate::Pipeline {
            transcriber,
            ..(*base).clone()
        }
    }

    fn png() -> crate::Document {
        let img = image::RgbImage::from_pixel(8, 6, image::Rgb([250, 250, 250]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).expect("png");
        crate::Document::open(
            "scan.png",
            out.into_inner(),
            &crate::Limits::default(),
            Default::default(),
        )
        .expect("png")
    }

    fn transcribe(
        extractor: &crate::Extractor,
        doc: &crate::Document,
        transcriber: Transcriber,
    ) -> Result<Option<PageTranscript>> {
        let p = pipeline(transcriber);
        let page = doc
            .page(0, p.pdf_dpi, &p.limits, extractor.decoders())
            .expect("page");
        extractor.transcribe(None, doc, 0, &page, &p, &crate::Cancellation::new())
    }

    #[test]
    fn each_transcriber_takes_its_source() {
        let with_ocr = crate::testutil::fake_pdf_extractor().with_ocr(std::sync::Arc::new(FakeOcr));
        let pdf = crate::Document::open(
            "qd.pdf",
            crate::testutil::fake_pdf(2),
            &crate::Limits::default(),
            with_ocr.decoders(),
        )
        .expect("pdf");
        let scan = png();
        // a born-digital PDF page: its text layer, for pdf-text and auto
        for t in [Transcriber::PdfText, Transcriber::Auto] {
            let got = transcribe(&with_ocr, &pdf, t).expect("ok").expect("a transcript");
            assert_eq!(got.source, TranscriptSource::PdfText);
            assert!(got.text.starts_with("Trang 1"), "{}", got.text);
            assert!(got.words.is_empty());
        }
        // OCR even of a born-digital page when asked, and of an image for auto
        for (doc, t) in [
            (&pdf, Transcriber::Tesseract),
            (&scan, Transcriber::Auto),
            (&scan, Transcriber::Tesseract),
        ] {
            let got = transcribe(&with_ocr, doc, t).expect("ok").expect("a transcript");
            assert_eq!(got.source, TranscriptSource::Tesseract, "{t:?}");
            assert_eq!((got.words.len(), got.engine.as_str()), (2, "fake-ocr"));
        }
        // no transcript: none, or pdf-text on an image
        assert!(
            transcribe(&with_ocr, &scan, Transcriber::None)
                .expect("ok")
                .is_none()
        );
        assert!(
            transcribe(&with_ocr, &scan, Transcriber::PdfText)
                .expect("ok")
                .is_none()
        );
        assert!(
            transcribe(&with_ocr, &pdf, Transcriber::None)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn ocr_without_an_engine_is_a_deployment_error() {
        let e = transcribe(&crate::Extractor::default(), &png(), Transcriber::Tesseract).expect_err("no OCR");
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.message().contains("OCR"), "{e}");
    }

    #[test]
    fn transcriber_names_are_kebab_case() {
        let t: Transcriber = serde_json::from_str("\"pdf-text\"").expect("pdf-text");
        assert_eq!(t, Transcriber::PdfText);
        assert_eq!(
            serde_json::from_str::<Transcriber>("\"vintern\"").expect("vintern"),
            Transcriber::Vintern
        );
        assert!(serde_json::from_str::<Transcriber>("\"easyocr\"").is_err());
    }
}
