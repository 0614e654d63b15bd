//! The daemon with a text model: a document pipeline with a `[text_stage]` is read by the text
//! model from the pages' transcripts (here Vintern's, `transcriber = "vintern"`), and the output
//! names both models. Every port is an in-memory fake (`testsuite`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use vinscan_core::{
    Catalog, Extractor, Generation, ModelTimings, Result, StopReason, TextModel, TextModelInfo, TextRequest,
};
use vinscan_daemon::testsuite::{Behaviour, config, daemon_with, fakes, png};
use vinscan_storage::ObjectStore;

/// Answers every request with one record and keeps the user prompts.
struct FakeText {
    info: TextModelInfo,
    prompts: Mutex<Vec<String>>,
}

impl TextModel for FakeText {
    fn info(&self) -> &TextModelInfo {
        &self.info
    }

    fn complete(&self, request: TextRequest) -> Result<Generation> {
        self.prompts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.user_prompt);
        Ok(Generation {
            text: json!({"number": "12/QĐ"}).to_string(),
            stop: StopReason::EndOfOutput,
            prompt_tokens: 40,
            image_tokens: 0,
            images: 0,
            generated_tokens: 8,
            model_steps: 8,
            forced_tokens: 0,
            reused_prompt_tokens: 0,
            peak_batch_pages: 1,
            restarts: 0,
            tokens: Vec::new(),
            timings: ModelTimings::default(),
        })
    }
}

/// One pipeline, named `receipt` so the test config's route finds it: Vintern transcribes,
/// the text model fills `{"number"}`.
fn catalog(dir: &std::path::Path) -> Catalog {
    let (p, s) = (dir.join("pipelines"), dir.join("schemas"));
    std::fs::create_dir_all(&p).expect("dir");
    std::fs::create_dir_all(&s).expect("dir");
    std::fs::write(
        p.join("receipt.toml"),
        "name = \"receipt\"\nschema = \"doc.schema.json\"\nprompt = \"read\"\nunit = \"document\"\n\
         transcriber = \"vintern\"\n\n[text_stage]\nprompt = \"Điền số văn bản.\"\n",
    )
    .expect("pipeline");
    std::fs::write(
        s.join("doc.schema.json"),
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
               "additionalProperties": false, "required": ["number"],
               "properties": {"number": {"type": ["string", "null"], "maxLength": 20}}})
        .to_string(),
    )
    .expect("schema");
    Catalog::from_dirs(&p, &s).expect("catalog")
}

#[tokio::test]
async fn a_text_stage_job_is_read_by_the_text_model_from_vinterns_transcripts() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = fakes(Behaviour::Answer);
    let text = Arc::new(FakeText {
        info: TextModelInfo {
            name: Some("fake-llama".into()),
            file: "llama.gguf".into(),
            sha256: "ab".repeat(32),
            ctx_size: 8192,
        },
        prompts: Mutex::new(Vec::new()),
    });
    let extractor = Extractor::default().with_text_model(text.clone());
    let d = daemon_with(config(""), &f, catalog(dir.path()), extractor);
    f.stores
        .store("src")
        .put("a/qd.png", Bytes::from(png(64, 48)), "image/png")
        .await
        .expect("put");
    let message = json!({"job_id": "j1", "pipeline": "receipt", "sources": ["s3://src/a/qd.png"]});
    f.source
        .push("jobs", 0, Some("j1"), message.to_string().as_bytes());
    let run = tokio::spawn(vinscan_daemon::run(d.clone(), f.source.clone()));
    assert!(f.source.wait_settled(1, Duration::from_secs(10)).await);
    d.request_stop();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the daemon stops")
        .expect("run task");

    let results = f.publisher.records("results");
    assert_eq!(results.len(), 1, "{results:?} {:?}", f.publisher.records("dlq"));
    assert_eq!(results[0]["status"], "ok", "{}", results[0]);
    let outputs = f.stores.store("out").contents();
    let output: Value = outputs
        .iter()
        .find(|(k, _)| k.ends_with(".json"))
        .map(|(_, v)| serde_json::from_slice(v).expect("output JSON"))
        .expect("an output");
    let record = &output["document"];
    assert_eq!(record["data"]["number"], "12/QĐ", "{output}");
    let p = &record["provenance"];
    assert_eq!(p["text_model"]["sha256"], "ab".repeat(32), "{p}");
    assert_eq!(p["model"]["name"], "scripted", "Vintern transcribed: {p}");
    assert_eq!(p["transcripts"][0]["transcriber"], "vintern", "{p}");
    // the scripted Vintern's transcript is what the text model read
    let prompts = text
        .prompts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(prompts.len(), 1);
    assert!(
        prompts[0].contains("Trang 1:\nTrang đã chép.") && prompts[0].ends_with("Điền số văn bản."),
        "{}",
        prompts[0]
    );
}
