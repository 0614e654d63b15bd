//! vinscan's side of a measurement: one page through the product's own call,
//! [`Extractor::extract_page`], with the benchmark's schema and output cap set in the pipeline,
//! its timings read from the record's `provenance.timings_ms`. Only the file read is timed
//! around the call.
//!
//! One case has no record: a page whose output the cap cut before the JSON closed (every page
//! of a random-weight model, and every engine-parity run, whose free string is longer than any
//! budget) is refused by `extract_page` as invalid output. The model is therefore wrapped in
//! [`Observed`], which passes every call through and notes the model's answer and when each of
//! `extract_page`'s stages ended, so that such a page is measured from the same call.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use vinscan_core::record::Timings;
use vinscan_core::{
    ErrorKind, Extractor, GenerateRequest, Generation, ModelInfo, Pipeline, StopReason, VisionModel,
};
use vinscan_schema::Schema;

use crate::report::{Stop, Unit, Validation, VinscanRun};

/// Milliseconds from `a` to `b`.
pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.duration_since(a).as_secs_f64() * 1e3
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    ms_between(t, Instant::now())
}

/// Provenance wants the source's sha256; the benchmark discards the record's provenance and
/// does not spend the time.
const UNHASHED: &str = "not hashed by the benchmark";

/// The work of a vinscan run: the product's pipeline with the benchmark's schema and cap.
#[derive(Debug, Clone)]
pub struct Work {
    pub pipeline: Pipeline,
    /// Engine parity: the output must be exactly `pipeline.max_tokens` long.
    pub exact: bool,
}

impl Work {
    /// The pipeline's own schema, output capped at `cap` tokens (ends earlier if the JSON closes).
    pub fn real(base: &Pipeline, cap: u32) -> Self {
        Self {
            pipeline: Pipeline {
                max_tokens: cap,
                ..base.clone()
            },
            exact: false,
        }
    }

    /// Engine parity: the pipeline's prompts, a free string of exactly `tokens` tokens.
    pub fn fixed(base: &Pipeline, schema: &Arc<Schema>, tokens: u32) -> Self {
        Self {
            pipeline: Pipeline {
                schema: Arc::clone(schema),
                max_tokens: tokens,
                ..base.clone()
            },
            exact: true,
        }
    }
}

/// The engine-parity schema: one string the grammar keeps open for longer than any run's token
/// budget, so each run generates exactly its cap.
pub fn fixed_schema(tokens: u32) -> anyhow::Result<Schema> {
    let chars = (u64::from(tokens) * 16).max(256);
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "additionalProperties": false, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": chars, "maxLength": chars}}
    });
    Ok(Schema::from_bytes(
        "bench/fixed-output.schema.json",
        &serde_json::to_vec(&schema)?,
    )?)
}

/// What the model saw of one `extract_page` call.
#[derive(Default)]
struct Seen {
    /// `extract_page` asks the model's info once, after decoding the page, before tiling it.
    info_at: Vec<Instant>,
    generate_at: Option<Instant>,
    returned_at: Option<Instant>,
    generation: Option<Generation>,
}

/// The model as `extract_page` sees it, every call passed through and noted.
struct Observed<'a> {
    model: &'a dyn VisionModel,
    seen: Mutex<Seen>,
}

impl VisionModel for Observed<'_> {
    fn info(&self) -> &ModelInfo {
        if let Ok(mut seen) = self.seen.lock() {
            seen.info_at.push(Instant::now());
        }
        self.model.info()
    }

    fn generate(&self, request: GenerateRequest) -> vinscan_core::Result<Generation> {
        let at = Instant::now();
        let generation = self.model.generate(request)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.generate_at = Some(at);
            seen.returned_at = Some(Instant::now());
            seen.generation = Some(generation.clone());
        }
        Ok(generation)
    }

    fn health(&self) -> vinscan_core::Result<()> {
        self.model.health()
    }
}

/// `extract_page`'s stages (ms) and its verdict on the output.
struct Stages {
    decode: f64,
    tiling: f64,
    encode_prefill: f64,
    generate: f64,
    sample: f64,
    confidence: f64,
    validation: Validation,
}

impl Stages {
    /// From the record: the product's own timings.
    fn of_record(t: &Timings) -> Self {
        Self {
            decode: t.decode,
            tiling: t.tiling,
            encode_prefill: t.encode_prefill,
            generate: t.generate,
            sample: t.sample,
            confidence: t.confidence,
            validation: Validation {
                ms: t.validate,
                valid: true,
            },
        }
    }

    /// From what the model saw of a call that ended in invalid output at `ended`.
    fn of_refused(seen: &Seen, g: &Generation, started: Instant, ended: Instant) -> anyhow::Result<Self> {
        let (info_at, generate_at, returned_at) = match (
            seen.info_at.as_slice(),
            seen.generate_at,
            seen.returned_at,
        ) {
            ([info_at], Some(g), Some(r)) => (*info_at, g, r),
            _ => bail!(
                "extract_page asked the model's info {} times: the stage split assumes once, between decoding and tiling",
                seen.info_at.len()
            ),
        };
        Ok(Self {
            decode: ms_between(started, info_at),
            tiling: ms_between(info_at, generate_at),
            encode_prefill: g.timings.encode_prefill_ms,
            generate: g.timings.generate_ms,
            sample: g.timings.sample_ms,
            confidence: g.timings.confidence_ms,
            validation: Validation {
                ms: ms_between(returned_at, ended),
                valid: false,
            },
        })
    }
}

/// One vinscan run on a page: the file read, then `extract_page` under `work`.
pub fn vinscan_page(
    model: &dyn VisionModel,
    extractor: &Extractor,
    work: &Work,
    unit: &Unit,
) -> anyhow::Result<VinscanRun> {
    let t0 = Instant::now();
    let bytes = std::fs::read(&unit.source).with_context(|| unit.source.display().to_string())?;
    let read = ms_since(t0);
    let opened = Instant::now();
    let doc = extractor.open(&unit.name, bytes, &work.pipeline)?;
    let open = ms_since(opened);
    let observed = Observed {
        model,
        seen: Mutex::default(),
    };
    let started = Instant::now();
    let outcome = extractor.extract_page(&observed, &doc, UNHASHED, unit.page, &work.pipeline);
    let ended = Instant::now();
    let seen = observed
        .seen
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the model panicked on {}", unit.name))?;
    let g = match (&outcome, &seen.generation) {
        (Err(e), None) => return Err(e.clone().into()),
        (_, Some(g)) => g,
        (Ok(_), None) => bail!("{}: a record without a generation", unit.name),
    };
    let stages = match &outcome {
        Ok(record) => Stages::of_record(&record.provenance.timings_ms),
        Err(e) if e.kind() == ErrorKind::InvalidOutput => Stages::of_refused(&seen, g, started, ended)?,
        Err(e) => return Err(e.clone().into()),
    };
    check(work, unit, g)?;
    Ok(VinscanRun {
        read,
        decode: open + stages.decode,
        tiling: stages.tiling,
        encode_prefill: stages.encode_prefill,
        generate: stages.generate,
        steps_ms: g.timings.step_share_ms,
        sample: stages.sample,
        confidence: Some(stages.confidence),
        total: ms_between(t0, ended),
        prompt_tokens: g.prompt_tokens,
        generated: g.generated_tokens,
        steps: g.model_steps,
        forced: g.forced_tokens,
        stop: match g.stop {
            StopReason::EndOfOutput => Stop::End,
            StopReason::MaxTokens => Stop::Cap,
        },
        text: g.text.clone(),
        validation: stages.validation,
    })
}

/// The run did the work every peer does: the unit's images, and exactly the parity length.
fn check(work: &Work, unit: &Unit, g: &Generation) -> anyhow::Result<()> {
    let tokens = work.pipeline.max_tokens;
    if (work.exact && g.generated_tokens != tokens) || g.images != unit.images {
        bail!(
            "{}: vinscan generated {} tokens from {} images, expected {}{tokens} from {}",
            unit.name,
            g.generated_tokens,
            g.images,
            if work.exact { "" } else { "at most " },
            unit.images
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinscan_core::{Catalog, ModelTimings, StopReason};

    /// A model that answers with `text`, stopping as `stop` says, after a few milliseconds.
    struct Fake {
        info: ModelInfo,
        text: String,
        stop: StopReason,
    }

    impl Fake {
        fn new(text: String, stop: StopReason) -> Self {
            let info = ModelInfo {
                name: None,
                model_file: "model.gguf".into(),
                model_sha256: String::new(),
                mmproj_file: "mmproj.gguf".into(),
                mmproj_sha256: String::new(),
                mmproj_repaired_from: None,
                max_tiles: 6,
                image_size: 448,
                tokens_per_image: 256,
                ctx_size: vinscan_core::model::DEFAULT_CTX_SIZE,
                system_info: String::new(),
                llm_flash_attention: None,
            };
            Self { info, text, stop }
        }
    }

    impl VisionModel for Fake {
        fn info(&self) -> &ModelInfo {
            &self.info
        }

        fn generate(&self, request: GenerateRequest) -> vinscan_core::Result<Generation> {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(Generation {
                text: self.text.clone(),
                stop: self.stop,
                prompt_tokens: 100,
                image_tokens: 64 * request.expected_images,
                images: request.expected_images,
                generated_tokens: request.max_tokens,
                model_steps: 3,
                forced_tokens: request.max_tokens - 3,
                reused_prompt_tokens: 0,
                peak_batch_pages: 1,
                restarts: 0,
                tokens: Vec::new(),
                timings: ModelTimings {
                    encode_prefill_ms: 3.0,
                    generate_ms: 2.0,
                    sample_ms: 0.5,
                    step_share_ms: 1.5,
                    queue_ms: 0.0,
                    confidence_ms: 0.0,
                },
            })
        }

        fn health(&self) -> vinscan_core::Result<()> {
            Ok(())
        }
    }

    /// A 600×300 PNG page in a temporary folder, as the unit every peer processes.
    fn page(dir: &std::path::Path, pipeline: &Pipeline) -> Unit {
        let path = dir.join("page.png");
        image::RgbImage::from_pixel(600, 300, image::Rgb([200, 200, 200]))
            .save(&path)
            .expect("page");
        let (min, max) = vinscan_core::extract::tile_range(pipeline, 6);
        let img = image::RgbImage::new(600, 300);
        let tiled = vinscan_core::tiling::tile_page(&img, min, max).expect("tiles");
        Unit {
            name: "page.png".into(),
            source: path.clone(),
            page: 0,
            image: path.clone(),
            grid_image: path,
            images: tiled.grid.images(),
            grid: (tiled.grid.cols, tiled.grid.rows),
        }
    }

    fn setup() -> (tempfile::TempDir, Pipeline, Arc<Schema>, Unit) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::embedded().expect("catalog");
        let pipeline = catalog.pipeline("receipt").expect("receipt").as_ref().clone();
        let unit = page(dir.path(), &pipeline);
        (dir, pipeline, Arc::new(fixed_schema(8).expect("schema")), unit)
    }

    #[test]
    fn a_valid_output_is_timed_from_the_products_record() {
        let (_dir, pipeline, schema, unit) = setup();
        // exactly the parity schema's string: the product validates it and writes a record
        let text = format!("{{\"text\":\"{}\"}}", "a".repeat(256));
        let model = Fake::new(text, StopReason::EndOfOutput);
        let work = Work::fixed(&pipeline, &schema, 8);
        let run = vinscan_page(&model, &Extractor::default(), &work, &unit).expect("run");
        assert!(run.validation.valid);
        assert_eq!(
            (run.generated, run.forced, run.steps, run.stop),
            (8, 5, 3, Stop::End)
        );
        assert_eq!(
            (run.encode_prefill, run.generate, run.sample, run.steps_ms),
            (3.0, 2.0, 0.5, 1.5)
        );
        assert!(run.total >= run.read + run.decode + run.tiling + 5.0, "{run:?}");
    }

    #[test]
    fn a_capped_output_the_product_refuses_is_still_measured() {
        let (_dir, pipeline, schema, unit) = setup();
        let model = Fake::new("{\"text\":\"aaaa".into(), StopReason::MaxTokens);
        let work = Work::fixed(&pipeline, &schema, 8);
        let run = vinscan_page(&model, &Extractor::default(), &work, &unit).expect("run");
        assert!(!run.validation.valid);
        assert_eq!((run.stop, run.text.as_str()), (Stop::Cap, "{\"text\":\"aaaa"));
        assert!(run.decode > 0.0 && run.tiling > 0.0, "{run:?}");
        assert!(run.total >= run.decode + run.tiling + 5.0, "{run:?}");
    }

    #[test]
    fn a_run_on_other_images_than_the_peers_fails() {
        let (_dir, pipeline, _, unit) = setup();
        let model = Fake::new("{\"total\":".into(), StopReason::MaxTokens);
        let mut wrong = unit.clone();
        wrong.images += 1;
        let e = vinscan_page(&model, &Extractor::default(), &Work::real(&pipeline, 16), &wrong)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("expected at most 16 from"), "{e}");
    }
}
