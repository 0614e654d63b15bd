//! Real llama.cpp + mtmd inference on the project's tiny random-weight Vintern-shaped model
//! (`ops/make-test-model.sh tiny target/test-models/tiny`, done by `ops/test.sh`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use vinscan_core::tiling::tile_page;
use vinscan_core::{GenerateRequest, StopReason, VisionModel};
use vinscan_llama::{LlamaConfig, LlamaVisionModel, read_projector_meta};

fn model_dir() -> PathBuf {
    std::env::var_os("VINSCAN_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models/tiny"))
}

fn model() -> &'static LlamaVisionModel {
    static MODEL: OnceLock<LlamaVisionModel> = OnceLock::new();
    MODEL.get_or_init(|| {
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
        LlamaVisionModel::load(config).expect("tiny model loads")
    })
}

fn request(width: u32, height: u32, schema: Value, max_tokens: u32) -> GenerateRequest {
    let page = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 128])
    });
    let tiled = tile_page(&page, 1, model().info().max_tiles.min(6)).expect("tile");
    let (w, h) = tiled.image.dimensions();
    GenerateRequest {
        system_prompt: "Bạn là Vintern.".into(),
        user_prompt: "Trích xuất JSON.".into(),
        width: w,
        height: h,
        rgb: tiled.image.into_raw(),
        expected_images: tiled.grid.images(),
        grammar: Arc::new(schema),
        max_tokens,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
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

#[test]
fn generation_is_deterministic() {
    let a = model()
        .generate(request(700, 700, bounded_schema(), 128))
        .expect("a");
    let b = model()
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
