//! The scripted vision model of the test suite, and the scans and schemas it answers.

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use vinscan_core::{
    Error, ErrorKind, GenerateRequest, Generation, ModelInfo, ModelTimings, OutputConstraint, StopReason,
    VisionModel,
};

use super::lock;

/// What a [`ScriptedModel`] does with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers every page with the schema's smallest valid instance.
    Answer,
    /// Answers `n` pages, then its engine is gone: every later page and health check is
    /// `Unavailable` (a model thread that panicked).
    DiesAfter(u32),
    /// Runs until the request is cancelled, then answers `Cancelled` (a long generation).
    RunsUntilCancelled,
    /// Fails the next `n` pages with `kind`, then answers.
    Fails(ErrorKind, u32),
}

#[derive(Debug)]
struct ModelState {
    behaviour: Behaviour,
    pages: u32,
    dead: bool,
    /// A page was running when its cancellation was raised.
    saw_cancel: bool,
}

/// A vision model that answers under the request's schema, scripted to fail.
#[derive(Debug)]
pub struct ScriptedModel {
    info: ModelInfo,
    state: Mutex<ModelState>,
}

impl ScriptedModel {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            info: ModelInfo {
                name: Some("scripted".into()),
                model_file: "scripted.gguf".into(),
                model_sha256: "0".repeat(64),
                mmproj_file: "scripted-mmproj.gguf".into(),
                mmproj_sha256: "0".repeat(64),
                mmproj_repaired_from: None,
                max_tiles: 6,
                image_size: 448,
                tokens_per_image: 256,
                ctx_size: vinscan_core::model::DEFAULT_CTX_SIZE,
                system_info: String::new(),
                llm_flash_attention: None,
            },
            state: Mutex::new(ModelState {
                behaviour,
                pages: 0,
                dead: false,
                saw_cancel: false,
            }),
        }
    }

    /// Pages answered so far.
    pub fn pages(&self) -> u32 {
        lock(&self.state).pages
    }

    /// Whether a running page saw its cancellation raised.
    pub fn saw_cancel(&self) -> bool {
        lock(&self.state).saw_cancel
    }

    fn answer(&self, request: &GenerateRequest) -> Generation {
        Generation {
            text: match &request.output {
                OutputConstraint::JsonSchema(schema) => smallest_instance(schema).to_string(),
                OutputConstraint::FreeText => "Trang đã chép.".to_owned(),
            },
            stop: StopReason::EndOfOutput,
            prompt_tokens: 100,
            image_tokens: 64 * request.expected_images,
            images: request.expected_images,
            generated_tokens: 10,
            model_steps: 5,
            forced_tokens: 5,
            reused_prompt_tokens: 0,
            peak_batch_pages: 1,
            restarts: 0,
            tokens: Vec::new(),
            timings: ModelTimings::default(),
        }
    }
}

impl VisionModel for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(&self, request: GenerateRequest) -> vinscan_core::Result<Generation> {
        let behaviour = {
            let mut s = lock(&self.state);
            if s.dead {
                return Err(Error::new(ErrorKind::Unavailable, "the model thread has stopped"));
            }
            match s.behaviour.clone() {
                Behaviour::DiesAfter(n) if s.pages >= n => {
                    s.dead = true;
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "llama.cpp generation panicked",
                    ));
                }
                Behaviour::Fails(kind, n) if n > 0 => {
                    s.behaviour = Behaviour::Fails(kind, n - 1);
                    return Err(Error::new(kind, "scripted failure"));
                }
                other => other,
            }
        };
        if behaviour == Behaviour::RunsUntilCancelled {
            while !request.cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            lock(&self.state).saw_cancel = true;
            return Err(Error::new(
                ErrorKind::Cancelled,
                "generation cancelled by the caller",
            ));
        }
        lock(&self.state).pages += 1;
        Ok(self.answer(&request))
    }

    fn health(&self) -> vinscan_core::Result<()> {
        if lock(&self.state).dead {
            Err(Error::new(ErrorKind::Unavailable, "the model thread has stopped"))
        } else {
            Ok(())
        }
    }
}

/// The smallest instance of a (bounded, vinscan-style) JSON Schema: `null` where allowed, else
/// empty strings and arrays, the minimum number, the first enum value, required properties only.
pub fn smallest_instance(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["object"],
    };
    if types.contains(&"null") {
        return Value::Null;
    }
    match types.first().copied().unwrap_or("object") {
        "string" => {
            Value::String("x".repeat(schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize))
        }
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(Value::from(0)),
        "boolean" => Value::Bool(false),
        "array" => Value::Array(Vec::new()),
        _ => {
            let mut out = serde_json::Map::new();
            let props = schema.get("properties");
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let sub = props.and_then(|p| p.get(name)).cloned().unwrap_or(Value::Null);
                out.insert(name.to_owned(), smallest_instance(&sub));
            }
            Value::Object(out)
        }
    }
}

/// A small PNG scan (`width` × `height`, grey with a dark band), as an upload would be.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |_, y| {
        if y % 16 < 4 {
            image::Rgb([20, 20, 30])
        } else {
            image::Rgb([240, 240, 236])
        }
    });
    let mut out = Cursor::new(Vec::new());
    // encoding an in-memory RGB image into a Vec cannot fail
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}
