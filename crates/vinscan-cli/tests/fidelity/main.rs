//! Faithful to Vintern: a seeded random-weight checkpoint in Vintern's Hugging Face layout
//! (`ops/reference/make_checkpoint.py tiny`, built by transformers' InternVL port) is converted
//! by `vinscan model convert`, traced through llama.cpp by `vinscan model trace`, and held
//! against the reference (PyTorch + transformers) by `ops/reference/parity.py`: tiles, prompt
//! token ids, per-tile vision embeddings, 201 teacher-forced next-token logit rows and a
//! 32-token greedy continuation. The tolerances and their reasons live in parity.py.
//! Broken checkpoints are refused with a message naming the problem; `layouts` holds the same
//! parity for transformers' `-hf` layout and Vintern-3B's structure.

#[path = "../common/mod.rs"]
mod common;
mod layouts;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use image::ImageFormat;
use serde_json::Value;

fn ref_python() -> PathBuf {
    let p = std::env::var_os("VINSCAN_REF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-ref/bin/python"));
    assert!(
        p.exists(),
        "{} missing: run ops/reference-env.sh (ops/test.sh does)",
        p.display()
    );
    p
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    checkpoint: PathBuf,
    page: PathBuf,
}

/// `make_checkpoint.py PRESET --layout LAYOUT` (`vintern`: InternVL's original names; `hf`:
/// transformers' port) into `checkpoint`.
fn make_checkpoint(preset: &str, layout: &str, checkpoint: &Path) {
    let out = Command::new(ref_python())
        .arg(repo_root().join("ops/reference/make_checkpoint.py"))
        .args([preset, "--layout", layout])
        .arg(checkpoint)
        .output()
        .expect("run make_checkpoint.py");
    assert!(
        out.status.success(),
        "make_checkpoint.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tiny checkpoint and a 1200×600 page (a 2×1 grid plus the thumbnail), made once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let checkpoint = root.join("vintern-tiny-hf");
        make_checkpoint("tiny", "vintern", &checkpoint);
        let page = root.join("page.png");
        std::fs::write(&page, encode(&scan(1200, 600, 7), ImageFormat::Png)).expect("page");
        Fixture {
            _dir: dir,
            root,
            checkpoint,
            page,
        }
    })
}

fn vinscan_plain() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vinscan"));
    c.env("VINSCAN_THREADS", "2")
        .env("VINSCAN_LOG_FORMAT", "json")
        .env("VINSCAN_NO_PROGRESS", "1")
        .env_remove("VINSCAN_MODEL")
        .env_remove("VINSCAN_MMPROJ")
        .env_remove("VINSCAN_PIPELINES_DIR")
        .env_remove("VINSCAN_SCHEMAS_DIR");
    c
}

fn convert(checkpoint: &Path, out: &Path, weights: &str) -> std::process::Output {
    run(vinscan_plain()
        .args(["model", "convert"])
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .args(["--type", weights]))
}

fn converted(weights: &str) -> PathBuf {
    // Tests run in parallel and share conversions: one at a time.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let f = fixture();
    let out = f.root.join(format!("gguf-{weights}"));
    if !out.join("mmproj.gguf").is_file() {
        let o = convert(&f.checkpoint, &out, weights);
        assert!(o.status.success(), "convert --type {weights} failed");
    }
    out
}

/// trace + parity for one weight type, with parity.py's `extra` flags; returns its JSON report.
fn parity(weights: &str, extra: &[&str]) -> Value {
    let f = fixture();
    let gguf = converted(weights);
    let pair = (gguf.join("model.gguf"), gguf.join("mmproj.gguf"));
    parity_of(&f.checkpoint, &pair, &f.root.join(weights), weights, extra)
}

/// `vinscan model trace` of the fixture's page on the GGUF `(model, mmproj)` pair (into
/// `work`), then parity.py against `checkpoint` for `weights`, with its `extra` flags, which
/// must pass; returns the report.
fn parity_of(
    checkpoint: &Path,
    pair: &(PathBuf, PathBuf),
    work: &Path,
    weights: &str,
    extra: &[&str],
) -> Value {
    let f = fixture();
    let trace = work.join("trace");
    let o = run(vinscan_plain()
        .args(["model", "trace"])
        .arg(&f.page)
        .arg("--out")
        .arg(&trace)
        .arg("--model")
        .arg(&pair.0)
        .arg("--mmproj")
        .arg(&pair.1));
    assert!(o.status.success(), "trace failed");
    let report = work.join("parity.json");
    let out = Command::new(ref_python())
        .arg(repo_root().join("ops/reference/parity.py"))
        .arg(checkpoint)
        .arg(&trace)
        .args(["--weights", weights])
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .expect("run parity.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("parity {weights} of {}:\n{text}", checkpoint.display());
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report JSON");
    assert!(out.status.success(), "parity {weights} failed:\n{text}");
    report
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    let c = &report["checks"][name];
    assert_eq!(c["ok"], Value::Bool(true), "{name}: {c}");
    c
}

#[test]
fn f32_conversion_matches_the_reference() {
    let r = parity("f32", &[]);
    assert_eq!(check(&r, "prompt")["first_difference"], Value::Null);
    check(&r, "tiles");
    for t in check(&r, "embeddings")["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(0.0) > 0.9999, "{t}");
    }
    let logits = check(&r, "logits");
    assert_eq!(logits["positions"], 201);
    assert!(logits["rel"].as_f64().unwrap_or(1.0) <= 1e-2, "{logits}");
    assert_eq!(check(&r, "greedy")["identical_prefix"], 32);
}

#[test]
fn f16_conversion_matches_the_reference() {
    let r = parity("f16", &[]);
    check(&r, "embeddings");
    let logits = check(&r, "logits");
    assert!(logits["rel"].as_f64().unwrap_or(1.0) <= 1e-2, "{logits}");
    assert_eq!(check(&r, "greedy")["identical_prefix"], 32);
}

/// bf16 keeps a bf16 checkpoint's weights exactly; ggml rounds activations to bf16, four times
/// coarser than f16, so the logits are held to the issue's conversion bound and greedy decoding
/// is reported rather than required (parity.py has the reasons).
#[test]
fn bf16_conversion_matches_the_reference() {
    let r = parity("bf16", &[]);
    for t in check(&r, "embeddings")["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(0.0) > 0.9999, "{t}");
    }
    let logits = check(&r, "logits");
    assert!(logits["rel"].as_f64().unwrap_or(1.0) <= 1e-2, "{logits}");
    assert!(
        logits["top1_agreement"].as_f64().unwrap_or(0.0) >= 0.98,
        "{logits}"
    );
}

/// Also runs the q8_0 diagnostics that docs/FIDELITY.md quotes for the full size, and checks
/// that they measure what they say: the logit error grows in proportion to the fraction of the
/// q8_0 rounding applied, and the full rounding is the q8_0-weight reference computed again.
#[test]
fn q8_0_conversion_keeps_the_top_token() {
    let r = parity("q8_0", &["--q8-weight-reference", "--q8-sensitivity"]);
    check(&r, "embeddings");
    let logits = check(&r, "logits");
    assert!(
        logits["top1_agreement"].as_f64().unwrap_or(0.0) >= 0.99,
        "{logits}"
    );
    let sens = &logits["q8_0_sensitivity"];
    let groups = sens["one_group_rounded"].as_object().expect("groups");
    assert_eq!(groups.len(), 6, "{sens}");
    let sweep = &sens["every_matrix_moved_by_alpha_of_its_rounding"];
    let rel = |alpha: &str| sweep[alpha]["rel"].as_f64().unwrap_or(f64::NAN);
    let alphas = ["0.125", "0.25", "0.5", "0.75", "1.0"];
    for pair in alphas.windows(2) {
        assert!(rel(pair[0]) < rel(pair[1]), "{sweep}");
    }
    // Linear to first order: half the rounding, half the logit error (tiny model: 2.0x).
    let ratio = rel("1.0") / rel("0.5");
    assert!((1.6..=2.4).contains(&ratio), "ratio {ratio}: {sweep}");
    assert_eq!(
        sweep["1.0"]["reference_top1_kept"],
        logits["vs_q8_0_weight_reference"]["reference_top1_kept_by_weight_rounding"],
        "{logits}"
    );
}

/// The class token's position row goes last in llama.cpp's graph: written in upstream's order,
/// every patch gets its neighbour's position embedding and the embeddings drift visibly.
#[test]
fn upstream_position_order_is_measurably_off() {
    let f = fixture();
    let out = f.root.join("gguf-upstream");
    let o = run(vinscan_plain()
        .args(["model", "convert"])
        .arg(&f.checkpoint)
        .arg("--out")
        .arg(&out)
        .args(["--type", "f32", "--upstream-position-order"]));
    assert!(o.status.success());
    let trace = f.root.join("trace-upstream");
    let o = run(vinscan_plain()
        .args(["model", "trace"])
        .arg(&f.page)
        .arg("--out")
        .arg(&trace)
        .args(["--teacher-tokens", "0", "--greedy-tokens", "0"])
        .arg("--model")
        .arg(out.join("model.gguf"))
        .arg("--mmproj")
        .arg(out.join("mmproj.gguf")));
    assert!(o.status.success());
    let report = f.root.join("parity-upstream.json");
    // Captured: its "parity FAILED" is the expected outcome here, not news for the CI log.
    let out = Command::new(ref_python())
        .arg(repo_root().join("ops/reference/parity.py"))
        .arg(&f.checkpoint)
        .arg(&trace)
        .args(["--weights", "f32", "--report"])
        .arg(&report)
        .output()
        .expect("parity");
    assert!(!out.status.success(), "upstream order should fail parity");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let e = &r["checks"]["embeddings"];
    assert_eq!(e["ok"], Value::Bool(false), "{e}");
    for t in e["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(1.0) < 0.999, "{t}");
    }
}

/// A small pipeline whose schema bounds every string tightly, so the random model finishes.
fn probe_pipeline(root: &Path) -> (PathBuf, PathBuf) {
    let (p, s) = (root.join("pipelines"), root.join("schemas"));
    std::fs::create_dir_all(&p).expect("dir");
    std::fs::create_dir_all(&s).expect("dir");
    std::fs::write(
        p.join("probe.toml"),
        "name = \"probe\"\ndescription = \"fidelity probe\"\nschema = \"probe.schema.json\"\nprompt = \"Trích xuất số hoá đơn và tổng tiền.\"\n\n[tiles]\nmin = 1\nmax = 6\n\n[generation]\nmax_tokens = 256\n",
    )
    .expect("pipeline");
    std::fs::write(
        s.join("probe.schema.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "probe", "type": "object",
            "additionalProperties": false, "required": ["so", "tong"],
            "properties": {"so": {"type": "string", "maxLength": 6}, "tong": {"type": "integer", "minimum": 0, "maximum": 999}}}"#,
    )
    .expect("schema");
    (p, s)
}

fn extract_with(gguf: &Path) -> Value {
    let f = fixture();
    let (pipelines, schemas) = probe_pipeline(&f.root);
    let o = run(vinscan_plain()
        .arg("extract")
        .arg(&f.page)
        .args(["--pipeline", "probe"])
        .arg("--model")
        .arg(gguf.join("model.gguf"))
        .arg("--mmproj")
        .arg(gguf.join("mmproj.gguf"))
        .arg("--pipelines-dir")
        .arg(pipelines)
        .arg("--schemas-dir")
        .arg(schemas));
    assert!(o.status.success(), "extract failed");
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    serde_json::from_str(&line).expect("a JSON record")
}

#[test]
fn extract_runs_on_converted_pairs() {
    for weights in ["q8_0", "q4_0"] {
        let record = extract_with(&converted(weights));
        let data = &record["data"];
        assert!(
            data["so"].is_string() && data["tong"].is_u64(),
            "{weights}: {record}"
        );
        assert_eq!(record["provenance"]["tiles"]["images"], 3, "{weights}: {record}");
    }
}

/// Copies the checkpoint, letting `edit` change config.json and the tensors.
fn broken(name: &str, edit: impl FnOnce(&mut Value, &mut Vec<(String, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let f = fixture();
    let dir = f.root.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    for file in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(f.checkpoint.join(file), dir.join(file)).expect("copy");
    }
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(f.checkpoint.join("config.json")).expect("config"))
            .expect("JSON");
    let bytes = std::fs::read(f.checkpoint.join("model.safetensors")).expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut config, &mut tensors);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).expect("JSON"),
    )
    .expect("config");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let v =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).expect("view");
            (n.clone(), v)
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).expect("serialize"),
    )
    .expect("weights");
    dir
}

fn refused(dir: &Path) -> String {
    let out = convert(dir, &dir.join("out"), "f16");
    assert_eq!(
        out.status.code(),
        Some(2),
        "conversion of {} should be refused",
        dir.display()
    );
    assert!(!dir.join("out/model.gguf").exists() && !dir.join("out/mmproj.gguf").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn broken_checkpoints_are_refused_by_name() {
    let missing = broken("missing-tensor", |_, t| {
        t.retain(|(n, _, _)| n != "vision_model.encoder.layers.1.mlp.fc2.weight");
    });
    let e = refused(&missing);
    assert!(
        e.contains("missing tensor vision_model.encoder.layers.1.mlp.fc2.weight"),
        "{e}"
    );

    let shape = broken("wrong-shape", |_, t| {
        for (n, s, d) in t.iter_mut() {
            if n == "mlp1.1.weight" {
                *s = vec![64, 96];
                d.truncate(64 * 96 * 4);
            }
        }
    });
    let e = refused(&shape);
    assert!(
        e.contains("tensor mlp1.1.weight has shape [64, 96], expected [64, 128]"),
        "{e}"
    );

    let arch = broken("unknown-arch", |c, _| {
        c["architectures"] = serde_json::json!(["LlavaForConditionalGeneration"]);
    });
    let e = refused(&arch);
    assert!(
        e.contains("unsupported architecture") && e.contains("LlavaForConditionalGeneration"),
        "{e}"
    );

    let llm = broken("unknown-llm", |c, _| {
        c["llm_config"]["architectures"] = serde_json::json!(["InternLM2ForCausalLM"]);
    });
    let e = refused(&llm);
    assert!(e.contains("InternLM2ForCausalLM"), "{e}");
}

/// Vintern-3B and larger checkpoints come in shards listed by `model.safetensors.index.json`:
/// the same tensors split over two files convert to byte-identical GGUFs.
#[test]
fn sharded_checkpoint_converts_identically() {
    let f = fixture();
    let dir = f.root.join("sharded");
    std::fs::create_dir_all(&dir).expect("dir");
    for file in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(f.checkpoint.join(file), dir.join(file)).expect("copy");
    }
    let bytes = std::fs::read(f.checkpoint.join("model.safetensors")).expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).expect("tensor")))
            .collect();
        std::fs::write(
            dir.join(&file),
            safetensors::serialize(views, None).expect("serialize"),
        )
        .expect("shard");
        for n in part {
            weight_map.insert(n.clone(), Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");
    let single = converted("f16");
    let out = dir.join("out");
    assert!(
        convert(&dir, &out, "f16").status.success(),
        "sharded conversion failed"
    );
    for file in ["model.gguf", "mmproj.gguf"] {
        let a = std::fs::read(single.join(file)).expect("single");
        let b = std::fs::read(out.join(file)).expect("sharded");
        // general.name is the directory's name, so the metadata (at the front, well under
        // 16 KiB here) differs; the tensor data after it must be identical.
        let tail = a.len().min(b.len()) - 16384;
        assert_eq!(
            a[a.len() - tail..],
            b[b.len() - tail..],
            "{file}: tensor data differs"
        );
    }
}

/// A projector in upstream's order, as the published GGUF pair is made, pulled from the local
/// hub: `model pull` writes the repaired copy beside the cached file and answers with it, that
/// copy passes the whole parity the f32 conversion passes (`upstream_position_order_is_measurably_off`
/// shows the same file failing it unrepaired), `model repair` makes the same bytes, and a
/// record read through the pulled files names the file it was repaired from.
#[test]
fn a_pulled_upstream_projector_is_repaired_and_matches_the_reference() {
    let f = fixture();
    let upstream = f.root.join("gguf-upstream-pull");
    let o = run(vinscan_plain()
        .args(["model", "convert"])
        .arg(&f.checkpoint)
        .arg("--out")
        .arg(&upstream)
        .args(["--type", "f32", "--upstream-position-order"]));
    assert!(o.status.success());
    let repo = f.root.join("hub/ngxson/Vintern-1B-v3_5-GGUF");
    std::fs::create_dir_all(&repo).expect("mkdir");
    for (from, to) in [
        ("model.gguf", "Vintern-1B-v3_5-Q8_0.gguf"),
        ("mmproj.gguf", "mmproj-Vintern-1B-v3_5-Q8_0.gguf"),
    ] {
        std::fs::copy(upstream.join(from), repo.join(to)).expect("copy");
    }
    let server = hub(&f.root.join("hub"));
    let home = f.root.join("hf-pull");
    let pulled = run(vinscan_plain()
        .args(["model", "pull"])
        .env("HF_HOME", &home)
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{}", server.port))
        .env_remove("HF_HUB_OFFLINE"));
    assert!(pulled.status.success());
    drop(server);
    let paths: Value = serde_json::from_slice(&pulled.stdout).expect("paths JSON");
    assert_eq!(paths["mmproj_repaired"], true, "{paths}");
    let mmproj = PathBuf::from(paths["mmproj"].as_str().expect("mmproj"));
    assert!(
        mmproj.starts_with(&home) && mmproj.to_string_lossy().ends_with(".repaired.gguf"),
        "{paths}"
    );

    let model = PathBuf::from(paths["model"].as_str().expect("model"));
    let r = parity_of(
        &f.checkpoint,
        &(model, mmproj.clone()),
        &f.root.join("pulled"),
        "f32",
        &[],
    );
    for t in check(&r, "embeddings")["per_tile"].as_array().expect("tiles") {
        assert!(t["cosine"].as_f64().unwrap_or(0.0) > 0.9999, "{t}");
    }

    // `model repair` writes the same bytes; a second repair has nothing to do
    let copy = f.root.join("repaired-by-hand.gguf");
    let o = run(vinscan_plain()
        .args(["model", "repair"])
        .arg(upstream.join("mmproj.gguf"))
        .arg("--out")
        .arg(&copy));
    assert!(o.status.success());
    assert!(std::fs::read(&copy).expect("copy") == std::fs::read(&mmproj).expect("pulled"));
    let again = run(vinscan_plain().args(["model", "repair"]).arg(&copy));
    assert!(again.status.success());
    let again: Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["repaired"], false, "{again}");

    // a record read with the pulled files says which published file was repaired
    let (pipelines, schemas) = probe_pipeline(&f.root);
    let ex = run(vinscan_plain()
        .args(["extract", "--pipeline", "probe"])
        .arg(&f.page)
        .arg("--pipelines-dir")
        .arg(pipelines)
        .arg("--schemas-dir")
        .arg(schemas)
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1"));
    assert!(ex.status.success());
    let record: Value = serde_json::from_slice(&ex.stdout).expect("record");
    let original = vinscan_core::hash::sha256_file(&upstream.join("mmproj.gguf")).expect("sha");
    assert_eq!(
        record["provenance"]["model"]["mmproj_repaired_from"],
        original.as_str(),
        "{}",
        record["provenance"]
    );
}
