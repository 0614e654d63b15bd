//! Real llama.cpp + mtmd inference on the project's tiny random-weight Vintern-shaped model
//! (`ops/make-test-model.sh tiny target/test-models/tiny`, done by `ops/test.sh`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use vinscan_core::extract::request_image;
use vinscan_core::tiling::tile_page;
use vinscan_core::{Cancellation, ErrorKind, GenerateRequest, OutputConstraint, StopReason, VisionModel};
use vinscan_llama::{LlamaConfig, LlamaVisionModel, read_projector_meta};

fn model_dir() -> PathBuf {
    std::env::var_os("VINSCAN_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models/tiny"))
}

fn model() -> &'static LlamaVisionModel {
    static MODEL: OnceLock<LlamaVisionModel> = OnceLock::new();
    MODEL.get_or_init(|| load(|_| {}))
}

/// One page at a time, every token sampled, the whole prompt prefilled: the engine before
/// batching, forced tokens and prefix reuse.
fn plain_model() -> &'static LlamaVisionModel {
    static MODEL: OnceLock<LlamaVisionModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        load(|c| {
            c.parallel = 1;
            c.fast_forward = false;
            c.reuse_prefix = false;
        })
    })
}

/// Batching and prefix reuse, but every token sampled.
fn no_ff_model() -> &'static LlamaVisionModel {
    static MODEL: OnceLock<LlamaVisionModel> = OnceLock::new();
    MODEL.get_or_init(|| load(|c| c.fast_forward = false))
}

fn load(adjust: impl FnOnce(&mut LlamaConfig)) -> LlamaVisionModel {
    {
        let dir = model_dir();
        assert!(
            dir.join("model.gguf").is_file(),
            "{} has no test model: run `ops/make-test-model.sh tiny {}` (ops/test.sh does)",
            dir.display(),
            dir.display()
        );
        let mut config = LlamaConfig::new(dir.join("model.gguf"), dir.join("mmproj.gguf"));
        config.threads = 2;
        config.ctx_size = 8192;
        adjust(&mut config);
        LlamaVisionModel::load(config).expect("tiny model loads")
    }
}

fn request(width: u32, height: u32, schema: Value, max_tokens: u32) -> GenerateRequest {
    let page = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 128])
    });
    let tiled = tile_page(&page, 1, model().info().max_tiles.min(6)).expect("tile");
    let expected_images = tiled.grid.images();
    GenerateRequest {
        system_prompt: "Bạn là Vintern.".into(),
        user_prompt: "Trích xuất JSON.".into(),
        images: vec![request_image(tiled)],
        expected_images,
        output: OutputConstraint::JsonSchema(Arc::new(schema)),
        max_tokens,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        cancel: Cancellation::new(),
    }
}

fn bounded_schema() -> Value {
    json!({
        "type": "object", "additionalProperties": false, "required": ["seller", "total", "currency"],
        "properties": {
            "seller": {"type": "string", "maxLength": 24},
            "total": {"type": "integer", "minimum": 0, "maximum": 100000000000u64},
            "currency": {"enum": ["VND", "USD"]}
        }
    })
}

#[test]
fn projector_metadata_is_read() {
    let meta = read_projector_meta(&model_dir().join("mmproj.gguf")).expect("meta");
    assert_eq!(meta.projector_type, "internvl");
    assert_eq!(meta.image_size, 448);
    assert_eq!(meta.max_tiles, 12);
    assert_eq!(meta.tokens_per_image, 256, "32x32 patches, pixel-shuffled by 2");
    // the tiny preset writes its projector in f32 (general.file_type 0)
    assert_eq!(meta.weight_type, Some("f32"));
    // written as vinscan's converter writes it: the position table in the graph's order
    assert!(meta.class_row_last);
    assert_eq!(meta.repaired_from, None);
}

/// A document's pages read together: every page's tiles and thumbnail reach the encoder, in
/// one prompt, and the image tokens are as many as the model says per image.
#[test]
fn the_pages_of_a_document_are_read_in_one_prompt() {
    let pages = [(1600, 600), (600, 900), (448, 448)];
    let mut req = request(pages[0].0, pages[0].1, bounded_schema(), 64);
    for (w, h) in &pages[1..] {
        let more = request(*w, *h, bounded_schema(), 64);
        req.images.extend(more.images);
        req.expected_images += more.expected_images;
    }
    assert_eq!(req.expected_images, 4 + 7 + 1);
    let g = model().generate(req).expect("generate");
    assert_eq!(g.images, 12, "every page's images reached the encoder");
    assert_eq!(g.image_tokens, 12 * model().info().tokens_per_image);
    assert!(serde_json::from_str::<Value>(&g.text).is_ok(), "{}", g.text);
}

#[test]
fn llm_file_is_refused_as_projector() {
    let e = read_projector_meta(&model_dir().join("model.gguf")).expect_err("not a projector");
    assert!(e.to_string().contains("not a multimodal projector"), "{e}");
}

/// The encoder must see exactly the reference's tiles plus thumbnail, for every grid shape.
#[test]
fn encoder_sees_reference_tile_count() {
    for (w, h, images) in [
        (448, 448, 1),
        (1600, 600, 4),
        (600, 900, 7),
        (400, 300, 7),
        (2000, 500, 5),
    ] {
        let req = request(w, h, bounded_schema(), 64);
        assert_eq!(req.expected_images, images, "{w}x{h}");
        let g = model().generate(req).expect("generate");
        assert_eq!(g.images, images, "{w}x{h}: encoder saw {} images", g.images);
        assert_eq!(g.image_tokens, images * 256, "{w}x{h}");
    }
}

#[test]
fn constrained_output_is_schema_valid_json() {
    for (w, h) in [(448, 448), (900, 500), (300, 1200)] {
        let g = model()
            .generate(request(w, h, bounded_schema(), 256))
            .expect("generate");
        assert_eq!(g.stop, StopReason::EndOfOutput, "{}", g.text);
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
        assert!(
            v["seller"].as_str().is_some_and(|s| s.chars().count() <= 24),
            "{v}"
        );
        assert!(v["total"].as_u64().is_some_and(|t| t <= 100_000_000_000), "{v}");
        assert!(
            ["VND", "USD"].contains(&v["currency"].as_str().unwrap_or("")),
            "{v}"
        );
    }
}

/// A transcription is free text: no grammar masks or forces a token, and only the cap or the
/// end-of-generation token ends it.
#[test]
fn free_text_output_is_sampled_token_by_token_without_a_grammar() {
    let mut r = request(448, 448, bounded_schema(), 24);
    r.output = OutputConstraint::FreeText;
    let g = model().generate(r).expect("generate");
    assert_eq!(g.forced_tokens, 0, "{:?}", g.text);
    // one step per token, and one more when the end token was sampled
    assert_eq!(
        g.model_steps,
        g.generated_tokens + u32::from(g.stop == StopReason::EndOfOutput)
    );
    assert!(g.generated_tokens <= 24, "{}", g.generated_tokens);
    assert!(!g.text.starts_with("{\"seller\""), "{:?}", g.text);
}

#[test]
fn generation_is_deterministic() {
    // one page at a time: beside other pages, a step's batch differs and so may near-ties
    let a = plain_model()
        .generate(request(700, 700, bounded_schema(), 128))
        .expect("a");
    let b = plain_model()
        .generate(request(700, 700, bounded_schema(), 128))
        .expect("b");
    assert_eq!(a.text, b.text);
}

#[test]
fn max_tokens_cuts_generation() {
    let g = model()
        .generate(request(448, 448, bounded_schema(), 3))
        .expect("generate");
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.generated_tokens, 3);
}

#[test]
fn prefix_reuse_keeps_prompt_and_output() {
    let plain = plain_model()
        .generate(request(900, 500, bounded_schema(), 128))
        .expect("plain");
    assert_eq!(plain.reused_prompt_tokens, 0);
    let first = no_ff_model()
        .generate(request(900, 500, bounded_schema(), 128))
        .expect("first");
    let second = no_ff_model()
        .generate(request(900, 500, bounded_schema(), 128))
        .expect("second");
    // split tokenisation gives the whole prompt's tokens, and shared cells the same output
    assert_eq!(first.prompt_tokens, plain.prompt_tokens);
    assert!(
        second.reused_prompt_tokens > 10,
        "{}",
        second.reused_prompt_tokens
    );
    assert!(second.reused_prompt_tokens < second.prompt_tokens);
    assert_eq!(first.text, plain.text);
    assert_eq!(second.text, plain.text);
}

#[test]
fn forced_tokens_save_model_steps() {
    let plain = plain_model()
        .generate(request(448, 448, bounded_schema(), 256))
        .expect("plain");
    assert_eq!(plain.forced_tokens, 0);
    assert_eq!(plain.model_steps, plain.generated_tokens, "one step per token");
    assert_eq!(plain.stop, StopReason::EndOfOutput);
    let g = model()
        .generate(request(448, 448, bounded_schema(), 256))
        .expect("generate");
    assert_eq!(g.stop, StopReason::EndOfOutput);
    // the keys and punctuation of the object are forced: `{"seller":"`, `","total":` ...
    assert!(g.forced_tokens >= 5, "forced {}", g.forced_tokens);
    assert_eq!(g.model_steps + g.forced_tokens, g.generated_tokens);
    let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
    assert!(v["currency"].is_string(), "{v}");
}

#[test]
fn pages_in_flight_decode_together() {
    let sizes = [(448, 448), (900, 500), (300, 1200), (700, 700)];
    let together: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = sizes
            .iter()
            .map(|&(w, h)| {
                scope.spawn(move || {
                    no_ff_model()
                        .generate(request(w, h, bounded_schema(), 128))
                        .expect("together")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    // pages that arrive while others decode join their steps (the prefill of each runs alone,
    // so the first may finish before the last arrives: at least two must have met)
    assert!(
        together.iter().any(|g| g.peak_batch_pages >= 2),
        "{:?}",
        together.iter().map(|g| g.peak_batch_pages).collect::<Vec<_>>()
    );
    for g in &together {
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
        assert!(v["total"].as_u64().is_some(), "{v}");
        assert_eq!(g.stop, StopReason::EndOfOutput);
    }
}

/// Pages are admitted on their prompt plus part of their output budget; when their outputs
/// outgrow the KV cells, the page admitted last stops and starts again once there is room.
#[test]
fn pages_outgrowing_the_cells_are_restarted_not_failed() {
    let long = json!({
        "type": "object", "additionalProperties": false, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 3000, "maxLength": 3000}}
    });
    let prompt = plain_model()
        .generate(request(448, 448, long.clone(), 1))
        .expect("probe")
        .prompt_tokens;
    // room for two prompts and two admission reserves (1,024 output cells each), not for two
    // 1,400-token outputs
    let tight = load(|c| {
        c.parallel = 2;
        c.fast_forward = false;
        c.ctx_size = 2 * (prompt + 1024) + 512 + 64;
    });
    let out: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| tight.generate(request(448, 448, long.clone(), 1400))))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for g in &out {
        let g = g.as_ref().expect("both pages complete");
        assert_eq!(g.generated_tokens, 1400);
        assert_eq!(g.stop, StopReason::MaxTokens);
    }
    let restarts: u32 = out.iter().flatten().map(|g| g.restarts).sum();
    assert!(restarts >= 1, "the second page should have been restarted");
}

/// A long generation: one free string of exactly 6,000 characters.
fn long_schema() -> Value {
    json!({
        "type": "object", "additionalProperties": false, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 6000, "maxLength": 6000}}
    })
}

/// Cancellation reaches the scheduler: a page cancelled before it starts is answered at once, a
/// page cancelled while it decodes stops at its next step, and the engine serves on.
#[test]
fn a_cancelled_page_stops_at_its_next_step() {
    let m = model();
    let before = request(448, 448, long_schema(), 7000);
    before.cancel.cancel();
    let kind = m.generate(before).map(|_| ()).map_err(|e| e.kind());
    assert_eq!(kind, Err(ErrorKind::Cancelled));

    let during = request(448, 448, long_schema(), 7000);
    let cancel = during.cancel.clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        cancel.cancel();
        std::time::Instant::now()
    });
    let result = m.generate(during);
    let answered = std::time::Instant::now();
    let raised = raiser.join().expect("raiser");
    assert_eq!(
        result.map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::Cancelled)
    );
    assert!(
        answered.duration_since(raised) < std::time::Duration::from_secs(2),
        "{:?}",
        answered.duration_since(raised)
    );

    // the engine is still healthy and serves the next page
    assert!(m.health().is_ok());
    let g = m
        .generate(request(448, 448, bounded_schema(), 256))
        .expect("next page");
    assert_eq!(g.stop, StopReason::EndOfOutput);
}
