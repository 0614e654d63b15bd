//! Pipelines: declarative TOML files naming a schema, a prompt, a tile budget, generation and
//! output options. Parsed with unknown fields refused, then validated without IO.

use std::sync::Arc;

use serde::Deserialize;
use vinscan_schema::{BoundDefaults, Schema};

use crate::limits::Limits;
use crate::review::ReviewRules;
use crate::tiling::MAX_TILES_LIMIT;
use crate::transcript::Transcriber;

/// Vintern's own system prompt (its chat template's default system message).
pub const VINTERN_SYSTEM_PROMPT: &str = "Bạn là một mô hình trí tuệ nhân tạo đa phương thức Tiếng Việt có tên gọi là Vintern, được phát triển bởi người Việt. Bạn là một trợ lý trí tuệ nhân tạo hữu ích và không gây hại.";

/// A pipeline file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Schema file name inside the schemas directory, e.g. `invoice.schema.json`.
    pub schema: String,
    /// The task text shown to the model after the image.
    pub prompt: String,
    pub system_prompt: Option<String>,
    /// What one record covers: a page, or a whole document (every page of a file, or every
    /// source of one job).
    #[serde(default)]
    pub unit: Unit,
    #[serde(default)]
    pub document: DocumentSection,
    #[serde(default)]
    pub tiles: TilesSection,
    #[serde(default)]
    pub generation: GenerationSection,
    #[serde(default)]
    pub pdf: PdfSection,
    #[serde(default)]
    pub limits: Limits,
    /// Which records need a person (see [`ReviewRules`]).
    #[serde(default)]
    pub review: ReviewRules,
    /// Bounds for generation where the schema sets none (see [`BoundDefaults`]).
    #[serde(default)]
    pub schema_defaults: BoundDefaults,
    /// Where page transcripts come from (`none`, `auto`, `pdf-text`, `tesseract`, `vintern`;
    /// see [`crate::transcript`]). Default `none`.
    #[serde(default)]
    pub transcriber: Transcriber,
    /// How Vintern transcribes a page for `transcriber = "vintern"`.
    #[serde(default)]
    pub transcription: Option<TranscriptionSection>,
    /// UTF-8 bytes of each page's transcript given to the model as anchor text before the task
    /// (0, the default: none; see [`crate::transcript::anchor_prompt`]). Needs a transcriber.
    #[serde(default)]
    pub anchor_text_bytes: u32,
    /// A chat LLM over the document's transcripts instead of Vintern over its images, when a
    /// text model is configured (the `text_stage` module). Needs a transcriber and
    /// `unit = "document"`.
    #[serde(default)]
    pub text_stage: Option<TextStage>,
}

/// How Vintern transcribes a page (`transcriber = "vintern"`): free text under no grammar.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionSection {
    /// The task after the page image; default [`VINTERN_TRANSCRIBE_PROMPT`].
    pub prompt: String,
    /// Output cap in tokens; a page cut here is marked `cut_off` in provenance.
    pub max_tokens: u32,
}

impl Default for TranscriptionSection {
    fn default() -> Self {
        Self {
            prompt: VINTERN_TRANSCRIBE_PROMPT.to_owned(),
            max_tokens: 2048,
        }
    }
}

/// What Vintern is asked to transcribe a page (in Vietnamese, the language it was tuned in):
/// every line of text in reading order, nothing added.
pub const VINTERN_TRANSCRIBE_PROMPT: &str =
    "Chép lại toàn bộ văn bản trong ảnh theo đúng thứ tự đọc, mỗi dòng một dòng. Không bình luận gì thêm.";

/// A pipeline's `[text_stage]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextStage {
    /// The task, given after the transcripts.
    pub prompt: String,
    /// Default: the `text_stage` module's `TEXT_SYSTEM_PROMPT`.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Output cap in tokens; default the pipeline's `generation.max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// The most anchor text per page, in UTF-8 bytes.
pub const MAX_ANCHOR_TEXT_BYTES: u32 = 8192;

/// What one record covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// One record per page (archive pages: each page stands alone).
    #[default]
    Page,
    /// One record per document: its pages read together (invoices, receipts, ID cards).
    Document,
}

/// How a document pipeline reads a document's pages.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentSection {
    /// The most pages read together in one prompt; a longer document is read in groups of this
    /// many consecutive pages and the groups' records merged (`vinscan_core::merge`).
    pub pages_together: u32,
}

impl Default for DocumentSection {
    fn default() -> Self {
        Self { pages_together: 4 }
    }
}

/// The most pages a pipeline may read in one prompt.
pub const MAX_PAGES_TOGETHER: u32 = 16;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TilesSection {
    pub min: u32,
    pub max: u32,
}

impl Default for TilesSection {
    fn default() -> Self {
        Self { min: 1, max: 6 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSection {
    pub max_tokens: u32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
}

impl Default for GenerationSection {
    fn default() -> Self {
        Self {
            max_tokens: 1024,
            repeat_penalty: 1.05,
            repeat_last_n: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdfSection {
    pub dpi: f32,
}

impl Default for PdfSection {
    fn default() -> Self {
        Self { dpi: 150.0 }
    }
}

/// A validated pipeline, bound to its schema.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub schema: Arc<Schema>,
    pub prompt: String,
    pub system_prompt: String,
    pub unit: Unit,
    /// For `unit = "document"`: the most pages read in one prompt.
    pub pages_together: u32,
    pub min_tiles: u32,
    pub max_tiles: u32,
    pub max_tokens: u32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub pdf_dpi: f32,
    pub limits: Limits,
    pub review: ReviewRules,
    /// Where page transcripts come from.
    pub transcriber: Transcriber,
    /// Vintern's transcription prompt and cap, for `transcriber = "vintern"`.
    pub transcription: TranscriptionSection,
    /// UTF-8 bytes of each page's transcript given to the model as anchor text (0: none).
    pub anchor_text_bytes: u32,
    /// The text stage, used when a text model is configured.
    pub text_stage: Option<TextStage>,
    /// sha256 of the pipeline file.
    pub sha256: String,
}

/// Why a pipeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: {source}")]
    Toml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl PipelineFile {
    pub fn parse(path: &str, text: &str) -> Result<Self, PipelineError> {
        toml::from_str(text).map_err(|source| PipelineError::Toml {
            path: path.to_owned(),
            source,
        })
    }

    /// No prompt holds a NUL character, which the engines' C strings cannot carry (every page
    /// would fail at run time).
    fn check_prompts(&self) -> Result<(), String> {
        let mut prompts = vec![
            ("prompt", Some(self.prompt.as_str())),
            ("system_prompt", self.system_prompt.as_deref()),
        ];
        if let Some(t) = &self.transcription {
            prompts.push(("transcription.prompt", Some(t.prompt.as_str())));
        }
        if let Some(t) = &self.text_stage {
            prompts.push(("text_stage.prompt", Some(t.prompt.as_str())));
            prompts.push(("text_stage.system_prompt", t.system_prompt.as_deref()));
        }
        match prompts
            .into_iter()
            .find(|(_, p)| p.is_some_and(|p| p.contains('\0')))
        {
            Some((name, _)) => Err(format!("{name} holds a NUL character")),
            None => Ok(()),
        }
    }

    /// The transcript settings agree: anchor text, the text stage and `[transcription]` each
    /// need the transcriber they use.
    fn check_transcripts(&self) -> Result<(), String> {
        if self.anchor_text_bytes > MAX_ANCHOR_TEXT_BYTES {
            return Err(format!(
                "anchor_text_bytes must be at most {MAX_ANCHOR_TEXT_BYTES}, got {}",
                self.anchor_text_bytes
            ));
        }
        if self.anchor_text_bytes > 0 && self.transcriber == Transcriber::None {
            return Err(
                "anchor_text_bytes gives the model each page's transcript: set a transcriber (auto, pdf-text, tesseract or vintern)"
                    .to_owned(),
            );
        }
        if let Some(stage) = &self.text_stage {
            if self.transcriber == Transcriber::None || self.unit != Unit::Document {
                return Err(
                    "text_stage reads a document's transcripts: it needs unit = \"document\" and a transcriber (auto, pdf-text, tesseract or vintern)"
                        .to_owned(),
                );
            }
            if stage.max_tokens.is_some_and(|n| !(1..=16384).contains(&n)) || stage.prompt.trim().is_empty() {
                return Err("text_stage needs a prompt and max_tokens within 1..=16384".to_owned());
            }
        }
        if let Some(t) = &self.transcription {
            if self.transcriber != Transcriber::Vintern {
                return Err(
                    "[transcription] sets how Vintern transcribes: it needs transcriber = \"vintern\""
                        .to_owned(),
                );
            }
            if t.prompt.trim().is_empty() {
                return Err("transcription.prompt must not be empty".to_owned());
            }
            if !(1..=16384).contains(&t.max_tokens) {
                return Err(format!(
                    "transcription.max_tokens must be 1..=16384, got {}",
                    t.max_tokens
                ));
            }
        }
        Ok(())
    }

    /// Checks every field and binds the schema: `resolve_schema` compiles the named schema with
    /// the pipeline's default bounds, or says why it cannot.
    pub fn validate(
        self,
        path: &str,
        sha256: String,
        resolve_schema: impl FnOnce(&str, &BoundDefaults) -> Result<Arc<Schema>, String>,
    ) -> Result<Pipeline, PipelineError> {
        let invalid = |message: String| PipelineError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(format!(
                "name {:?} must be non-empty lower-case letters, digits and '-'",
                self.name
            )));
        }
        if self.prompt.trim().is_empty() {
            return Err(invalid("prompt must not be empty".into()));
        }
        let TilesSection { min, max } = self.tiles;
        if !(1..=MAX_TILES_LIMIT).contains(&max) || min < 1 || min > max {
            return Err(invalid(format!(
                "tiles: need 1 <= min <= max <= {MAX_TILES_LIMIT}, got min {min} max {max}"
            )));
        }
        self.check_transcripts().map_err(invalid)?;
        self.check_prompts().map_err(invalid)?;
        let g = self.generation;
        if !(1..=16384).contains(&g.max_tokens) {
            return Err(invalid(format!(
                "generation.max_tokens must be 1..=16384, got {}",
                g.max_tokens
            )));
        }
        if !(g.repeat_penalty.is_finite() && (1.0..=5.0).contains(&g.repeat_penalty)) {
            return Err(invalid(format!(
                "generation.repeat_penalty must be within 1.0..=5.0, got {}",
                g.repeat_penalty
            )));
        }
        if !(self.pdf.dpi.is_finite() && (36.0..=600.0).contains(&self.pdf.dpi)) {
            return Err(invalid(format!(
                "pdf.dpi must be within 36..=600, got {}",
                self.pdf.dpi
            )));
        }
        if !(1..=MAX_PAGES_TOGETHER).contains(&self.document.pages_together) {
            return Err(invalid(format!(
                "document.pages_together must be 1..={MAX_PAGES_TOGETHER}, got {}",
                self.document.pages_together
            )));
        }
        self.limits.validate().map_err(invalid)?;
        self.review.validate().map_err(invalid)?;
        self.schema_defaults
            .validate()
            .map_err(|e| invalid(format!("schema_defaults: {e}")))?;
        let schema = resolve_schema(&self.schema, &self.schema_defaults).map_err(invalid)?;
        let mut merge_problems = crate::merge::rule_problems(schema.document());
        merge_problems.extend(crate::known_values::problems(schema.document()));
        if !merge_problems.is_empty() {
            return Err(invalid(format!(
                "{}: merge rules or known values refused: {}",
                schema.path(),
                merge_problems.join("; ")
            )));
        }
        Ok(Pipeline {
            name: self.name,
            description: self.description,
            schema,
            prompt: self.prompt.trim().to_owned(),
            system_prompt: self
                .system_prompt
                .unwrap_or_else(|| VINTERN_SYSTEM_PROMPT.to_owned()),
            unit: self.unit,
            pages_together: self.document.pages_together,
            min_tiles: min,
            max_tiles: max,
            max_tokens: g.max_tokens,
            repeat_penalty: g.repeat_penalty,
            repeat_last_n: g.repeat_last_n,
            pdf_dpi: self.pdf.dpi,
            limits: self.limits,
            review: self.review,
            transcriber: self.transcriber,
            transcription: self.transcription.unwrap_or_default(),
            anchor_text_bytes: self.anchor_text_bytes,
            text_stage: self.text_stage,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<Schema> {
        let s = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
                    "additionalProperties":false,"properties":{}}"#;
        Arc::new(Schema::from_bytes("schemas/t.json", s.as_bytes()).expect("schema"))
    }

    fn load(text: &str) -> Result<Pipeline, PipelineError> {
        PipelineFile::parse("pipelines/t.toml", text)?.validate("pipelines/t.toml", String::new(), |n, _| {
            (n == "t.json")
                .then(schema)
                .ok_or_else(|| format!("schema {n:?} not found"))
        })
    }

    #[test]
    fn minimal_pipeline_gets_defaults() {
        let p = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"Trích xuất\"").expect("valid");
        assert_eq!((p.min_tiles, p.max_tiles), (1, 6));
        assert_eq!(p.system_prompt, VINTERN_SYSTEM_PROMPT);
    }

    #[test]
    fn a_document_pipeline_bounds_the_pages_read_together() {
        let p = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\nunit = \"document\"\n[document]\npages_together = 2")
            .expect("valid");
        assert_eq!((p.unit, p.pages_together), (Unit::Document, 2));
        let e = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\n[document]\npages_together = 0")
            .expect_err("0");
        assert!(e.to_string().contains("pages_together"), "{e}");
        let e = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\nunit = \"file\"").expect_err("unit");
        assert!(e.to_string().contains("unit"), "{e}");
        assert_eq!(
            load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"")
                .expect("valid")
                .unit,
            Unit::Page
        );
    }

    #[test]
    fn anchor_text_needs_a_transcriber_and_a_bound() {
        let base = "name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\n";
        let p = load(&format!("{base}transcriber = \"auto\"\nanchor_text_bytes = 900")).expect("valid");
        assert_eq!(p.anchor_text_bytes, 900);
        let e = load(&format!("{base}anchor_text_bytes = 900")).expect_err("no transcriber");
        assert!(e.to_string().contains("set a transcriber"), "{e}");
        let e =
            load(&format!("{base}transcriber = \"auto\"\nanchor_text_bytes = 9000")).expect_err("too many");
        assert!(e.to_string().contains("at most 8192"), "{e}");
    }

    #[test]
    fn transcription_settings_need_the_vintern_transcriber() {
        let base = "name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\n";
        let p = load(&format!("{base}transcriber = \"vintern\"")).expect("defaults");
        assert_eq!(p.transcription, TranscriptionSection::default());
        let p = load(&format!(
            "{base}transcriber = \"vintern\"\n[transcription]\nmax_tokens = 300"
        ))
        .expect("valid");
        assert_eq!(p.transcription.max_tokens, 300);
        assert_eq!(p.transcription.prompt, VINTERN_TRANSCRIBE_PROMPT);
        for (extra, says) in [
            (
                "transcriber = \"tesseract\"\n[transcription]\nmax_tokens = 300",
                "needs transcriber = \"vintern\"",
            ),
            (
                "transcriber = \"vintern\"\n[transcription]\nmax_tokens = 0",
                "transcription.max_tokens",
            ),
            (
                "transcriber = \"vintern\"\n[transcription]\nprompt = \"a\\u0000b\"",
                "holds a NUL",
            ),
            (
                "transcriber = \"vintern\"\n[transcription]\nprompt = \" \"",
                "transcription.prompt",
            ),
        ] {
            let e = load(&format!("{base}{extra}")).expect_err(extra);
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn refuses_unknown_fields() {
        let e = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\ncolour = 1").expect_err("unknown");
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn refuses_tile_budget_out_of_range() {
        let e = load("name = \"t\"\nschema = \"t.json\"\nprompt = \"x\"\n[tiles]\nmax = 41").expect_err("41");
        assert!(e.to_string().contains("tiles"), "{e}");
    }

    #[test]
    fn refuses_missing_schema() {
        let e = load("name = \"t\"\nschema = \"nope.json\"\nprompt = \"x\"").expect_err("schema");
        assert!(e.to_string().contains("nope.json"), "{e}");
    }
}
