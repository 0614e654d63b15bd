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
    make_checkpoint(preset, layout, &checkpoint);
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

/// `model pull vintern-3b`: the publisher's checkpoint (here tiny-3b in InternVL's original
/// layout, as 5CD-AI publishes Vintern-3B-beta, beside files the converter does not read) is
/// listed through the Hub's model-info endpoint, downloaded, converted once into the cache to a
/// q8_0 pair that matches the reference, and found again offline.
#[test]
fn a_variant_published_as_a_checkpoint_is_pulled_and_converted() {
    let f = fixture();
    let work = f.root.join("pull-3b");
    let repo = work.join("hub/5CD-AI/Vintern-3B-beta");
    make_checkpoint("tiny-3b", "vintern", &repo);
    std::fs::write(repo.join("README.md"), "# Vintern-3B-beta").expect("write");
    std::fs::write(repo.join("modeling_internvl_chat.py"), "raise SystemExit").expect("write");
    // weights no index names and that are not model.safetensors: not the model's
    std::fs::write(repo.join("draft.safetensors"), b"not read").expect("write");
    let server = hub(&work.join("hub"));
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let home = work.join("hf-home");
    let pull = |offline: bool| {
        let mut c = vinscan_plain();
        c.args(["model", "pull", "vintern-3b"]).env("HF_HOME", &home);
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        } else {
            c.env("HF_ENDPOINT", &endpoint).env_remove("HF_HUB_OFFLINE");
        }
        let out = run(&mut c);
        assert!(out.status.success(), "pull offline={offline} failed");
        serde_json::from_slice::<Value>(&out.stdout).expect("pull JSON")
    };
    let pulled = pull(false);
    assert_eq!(pulled["variant"], "vintern-3b", "{pulled}");
    assert_eq!(
        pulled["max_tiles"], 6,
        "the checkpoint's max_dynamic_patch: {pulled}"
    );
    assert_eq!(pulled["context_length"], 32768, "{pulled}");
    let path = |k: &str| PathBuf::from(pulled[k].as_str().expect("path"));
    assert!(path("model").starts_with(&home), "{pulled}");
    let snapshot = std::fs::read_dir(home.join("hub/models--5CD-AI--Vintern-3B-beta/snapshots"))
        .expect("snapshots")
        .next()
        .expect("a snapshot")
        .expect("entry")
        .path();
    assert!(snapshot.join("config.json").is_file());
    for unread in ["README.md", "modeling_internvl_chat.py", "draft.safetensors"] {
        assert!(!snapshot.join(unread).exists(), "{unread} downloaded");
    }
    // the reference reads what was downloaded (the served folder also holds the draft)
    let r = parity_of(&snapshot, &(path("model"), path("mmproj")), &work, "q8_0", &[]);
    for t in check(&r, "embeddings")["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(0.0) > 0.99, "{t}");
    }
    let converted = std::fs::metadata(path("model"))
        .and_then(|m| m.modified())
        .expect("mtime");
    drop(server);
    assert_eq!(pull(true), pulled, "offline: the same pair, from the cache");
    let again = std::fs::metadata(path("model"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(again, converted, "converted once");
}
