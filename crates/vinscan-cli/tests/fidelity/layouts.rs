//! The other checkpoints `vinscan model convert` reads, held to the same parity as Vintern's own
//! layout: transformers' port (`InternVLForConditionalGeneration`, as `save_pretrained` writes
//! the `-hf` repositories: `vision_tower.*` with q, k and v apart, `multi_modal_projector.*`,
//! the tile budget in `preprocessor_config.json`), and Vintern-3B's structure (Qwen2.5-3B: the
//! output head tied to the embeddings, 8 query heads per key/value head) in both layouts.

use super::*;

/// `make_checkpoint.py PRESET --layout LAYOUT`, converted to f32, traced and held to f32
/// parity (every check passes); returns what `model convert` printed.
fn converts_and_matches(preset: &str, layout: &str) -> Value {
    let f = fixture();
    let work = f.root.join(format!("{preset}-{layout}"));
    let checkpoint = work.join("checkpoint");
    let out = Command::new(ref_python())
        .arg(repo_root().join("ops/reference/make_checkpoint.py"))
        .args([preset, "--layout", layout])
        .arg(&checkpoint)
        .output()
        .expect("run make_checkpoint.py");
    assert!(
        out.status.success(),
        "make_checkpoint.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gguf = work.join("gguf");
    let o = convert(&checkpoint, &gguf, "f32");
    assert!(o.status.success(), "convert {preset} {layout} failed");
    let converted: Value = serde_json::from_slice(&o.stdout).expect("convert JSON");
    assert_eq!(converted["unused_tensors"], serde_json::json!([]), "{converted}");
    let pair = (gguf.join("model.gguf"), gguf.join("mmproj.gguf"));
    let r = parity_of(&checkpoint, &pair, &work, "f32", &[]);
    assert_eq!(check(&r, "prompt")["first_difference"], Value::Null);
    for t in check(&r, "embeddings")["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(0.0) > 0.9999, "{t}");
    }
    let logits = check(&r, "logits");
    assert!(logits["rel"].as_f64().unwrap_or(1.0) <= 1e-2, "{logits}");
    assert_eq!(check(&r, "greedy")["identical_prefix"], 32);
    converted
}

#[test]
fn the_transformers_layout_converts_and_matches_the_reference() {
    let converted = converts_and_matches("tiny", "hf");
    // embeddings, norm, the untied head, 12 per layer
    assert_eq!(converted["model_tensors"], 3 + 12 * 2, "{converted}");
}

#[test]
fn vintern_3b_structure_converts_and_matches_the_reference() {
    for layout in ["vintern", "hf"] {
        let converted = converts_and_matches("tiny-3b", layout);
        // no output head of its own: llama.cpp reads the tied one from the embeddings
        assert_eq!(converted["model_tensors"], 2 + 12 * 2, "{converted}");
    }
}
