//! `vinscan model pull` against a local HTTP server speaking the Hub's file protocol (no hub is
//! reachable here): download into HF_HOME, verify, reuse offline, refuse a corrupted download.

mod common;

use std::process::Command;

use common::*;

fn pull(home: &std::path::Path, endpoint: &str) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["model", "pull"])
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE"))
}

#[test]
fn pulls_into_the_cache_then_works_offline() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("hub/ngxson/Vintern-1B-v3_5-GGUF");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let model = model_dir();
    std::fs::copy(model.join("model.gguf"), repo.join("Vintern-1B-v3_5-Q8_0.gguf")).expect("copy");
    std::fs::copy(
        model.join("mmproj.gguf"),
        repo.join("mmproj-Vintern-1B-v3_5-Q8_0.gguf"),
    )
    .expect("copy");
    let home = tmp.path().join("hf-home");
    let server = hub(&tmp.path().join("hub"));

    let out = pull(&home, &format!("http://127.0.0.1:{}", server.port));
    assert!(out.status.success(), "pull failed");
    let paths: serde_json::Value = serde_json::from_slice(&out.stdout).expect("paths JSON");
    let got = std::fs::read(paths["model"].as_str().expect("model path")).expect("downloaded model");
    assert_eq!(got, std::fs::read(model.join("model.gguf")).expect("original"));
    assert!(
        paths["model"]
            .as_str()
            .expect("path")
            .starts_with(home.to_str().expect("utf8")),
        "{paths}"
    );

    // offline with the server gone: served from the cache
    drop(server);
    let offline = run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["model", "pull"])
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1"));
    assert!(offline.status.success());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&offline.stdout).expect("json"),
        paths
    );
    // the default by its name: the same files, with the settings they carry
    let named = run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["model", "pull", "vintern-1b-v3.5"])
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1"));
    assert!(
        named.status.success(),
        "{}",
        String::from_utf8_lossy(&named.stderr)
    );
    let named: serde_json::Value = serde_json::from_slice(&named.stdout).expect("json");
    assert_eq!(
        (&named["model"], &named["mmproj"]),
        (&paths["model"], &paths["mmproj"])
    );
    assert_eq!(named["variant"], "vintern-1b-v3.5");
    assert!(named["max_tiles"].as_u64() > Some(0), "{named}");

    // and extract finds the pulled files without --model/--mmproj
    let page = tmp.path().join("page.png");
    std::fs::write(&page, encode(&scan(500, 400, 1), image::ImageFormat::Png)).expect("write");
    let ex = run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["extract", "--pipeline", "receipt", "--threads", "1"])
        .arg(&page)
        .env("HF_HOME", &home)
        .env_remove("VINSCAN_MODEL")
        .env_remove("VINSCAN_MMPROJ"));
    assert!(ex.status.success());
    assert_eq!(String::from_utf8_lossy(&ex.stdout).lines().count(), 1);
}

#[test]
fn missing_file_and_empty_offline_cache_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("hub")).expect("mkdir");
    let server = hub(&tmp.path().join("hub"));
    let out = pull(
        &tmp.path().join("home"),
        &format!("http://127.0.0.1:{}", server.port),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Vintern-1B-v3_5-Q8_0.gguf"));
    let offline = run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["model", "pull"])
        .env("HF_HOME", tmp.path().join("empty"))
        .env("HF_HUB_OFFLINE", "1"));
    assert_eq!(offline.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&offline.stderr).contains("not in the cache"));
}

#[test]
fn pulls_vinallama_by_name_and_the_text_stage_finds_it_in_the_cache() {
    let tmp = tempfile::tempdir().expect("tmp");
    // the published layout, with the tiny llama-architecture model in place of the weights
    let repo = tmp.path().join("hub/vilm/vinallama-2.7b-chat-GGUF");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::copy(text_model(), repo.join("vinallama-2.7b-chat_q5_0.gguf")).expect("copy");
    let home = tmp.path().join("hf-home");
    let server = hub(&tmp.path().join("hub"));
    let out = run(Command::new(env!("CARGO_BIN_EXE_vinscan"))
        .args(["model", "pull", "--text", "vinallama-2.7b"])
        .env("HF_HOME", &home)
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{}", server.port))
        .env_remove("HF_HUB_OFFLINE"));
    assert!(out.status.success(), "pull failed");
    let paths: serde_json::Value = serde_json::from_slice(&out.stdout).expect("paths JSON");
    let pulled = paths["text_model"].as_str().expect("text_model path").to_owned();
    assert_eq!(
        std::fs::read(&pulled).expect("downloaded"),
        std::fs::read(text_model()).expect("original")
    );
    drop(server);

    // `--text-model vinallama-2.7b` is the cached file; no Vintern is needed
    let pdf = repo_root().join("tests/fixtures/archive/quyet-dinh-born-digital.pdf");
    let ex = run(vinscan(tmp.path())
        .args([
            "extract",
            "--pipeline",
            "archive",
            "--text-model",
            "vinallama-2.7b",
        ])
        .arg(&pdf)
        .env("HF_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("VINSCAN_MODEL")
        .env_remove("VINSCAN_MMPROJ"));
    assert!(ex.status.success(), "{}", String::from_utf8_lossy(&ex.stderr));
    let record: serde_json::Value = serde_json::from_slice(&ex.stdout).expect("one record");
    let used = record["provenance"]["text_model"]["file"]
        .as_str()
        .expect("text model");
    assert_eq!(
        std::fs::canonicalize(used).ok(),
        std::fs::canonicalize(&pulled).ok()
    );

    // a name that was never pulled says how to get it
    let missing = run(vinscan(tmp.path())
        .args(["extract", "--pipeline", "archive", "--text-model", "vinallama-7b"])
        .arg(&pdf)
        .env("HF_HOME", &home));
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("vinscan model pull --text vinallama-7b"),
        "{stderr}"
    );
}
