//! `vinscan model pull`: the Vintern GGUF pair from the Hugging Face Hub (hf-hub), into the
//! standard cache. Honours HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE; verifies each file's sha256
//! against the Hub's content ETag when the Hub gives one (LFS files).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use vinscan_core::hash::sha256_file;

use crate::cli::{ModelCommand, PullArgs};

pub fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Pull(args) => pull(&args),
        #[cfg(feature = "llama")]
        ModelCommand::Convert(args) => crate::cmd_convert::run_convert(&args),
        #[cfg(feature = "llama")]
        ModelCommand::Trace(args) => crate::cmd_convert::run_trace(&args),
        #[cfg(feature = "llama")]
        ModelCommand::Repair(args) => run_repair(&args),
    }
}

/// `vinscan model repair FILE`: prints `{"mmproj": COPY, "repaired": true, ...}`, or
/// `{"mmproj": FILE, "repaired": false, "reason": ...}` for a projector already in the graph's
/// order; another file is an error.
#[cfg(feature = "llama")]
fn run_repair(args: &crate::cli::RepairArgs) -> anyhow::Result<ExitCode> {
    use vinscan_convert::repair::{PositionOrder, inspect, repair, repaired_path};
    match inspect(&args.file)? {
        PositionOrder::ClassLast => {
            let mut reason =
                "the position table is already in the graph's order (class row last): use the file as it is"
                    .to_owned();
            if let Some(out) = &args.out {
                reason.push_str(&format!("; nothing was written to {}", out.display()));
            }
            println!(
                "{}",
                serde_json::json!({"mmproj": args.file, "repaired": false, "reason": reason})
            );
            Ok(ExitCode::SUCCESS)
        }
        PositionOrder::NotInternvl => bail!("{}: not an InternVL projector", args.file.display()),
        PositionOrder::Upstream => {
            let beside = repaired_path(&args.file);
            let out = match &args.out {
                // a folder: the repaired copy goes in it under its usual name
                Some(dir) if dir.is_dir() => dir.join(beside.file_name().unwrap_or_default()),
                Some(out) => out.clone(),
                None => beside,
            };
            let done = repair(&args.file, &out)?;
            println!(
                "{}",
                serde_json::json!({"mmproj": out, "repaired": true, "rows": done.rows,
                    "repaired_from": done.from_sha256})
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The Hub names LFS blobs by their sha256: when the blob's name is one, the bytes must match.
fn verify_blob(path: &Path) -> anyhow::Result<()> {
    let blob = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    let name = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let sha = sha256_file(&blob)?;
        if !sha.eq_ignore_ascii_case(name) {
            let _ = std::fs::remove_file(&blob);
            bail!(
                "{}: downloaded bytes have sha256 {sha}, the Hub announced {name}; removed, run again",
                path.display()
            );
        }
    }
    Ok(())
}

fn pull(args: &PullArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.text {
        let Some((repo, file)) = crate::model_files::text_model_source(name) else {
            bail!("unknown text model {name}");
        };
        let paths = fetch(repo, &args.revision, &[file])?;
        println!("{}", serde_json::json!({"text_model": paths[0]}));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = &args.variant {
        return pull_variant(name, &args.revision);
    }
    let paths = fetch(&args.repo, &args.revision, &[&args.model_file, &args.mmproj_file])?;
    let (mmproj, repaired) = crate::model_files::graph_order_projector(&paths[1])?;
    println!(
        "{}",
        serde_json::json!({"model": paths[0], "mmproj": mmproj, "mmproj_repaired": repaired})
    );
    Ok(ExitCode::SUCCESS)
}

/// `model pull NAME`: the variant's pair, with the settings its files carry.
#[cfg(feature = "llama")]
fn pull_variant(name: &str, revision: &str) -> anyhow::Result<ExitCode> {
    use crate::variants::{Published, pull_checkpoint, variant};
    let v = variant(name).with_context(|| format!("unknown Vintern variant {name}"))?;
    let (model, mmproj, repaired) = match v.published {
        Published::Gguf { model, mmproj } => {
            let paths = fetch(v.repo, revision, &[model, mmproj])?;
            let (mmproj, repaired) = crate::model_files::graph_order_projector(&paths[1])?;
            (paths[0].clone(), mmproj, repaired)
        }
        Published::Checkpoint => {
            let (model, mmproj) = pull_checkpoint(v, revision, offline(), fetch)?;
            (model, mmproj, false)
        }
    };
    let meta = vinscan_llama::read_projector_meta(&mmproj)?;
    println!(
        "{}",
        serde_json::json!({"variant": v.name, "repo": v.repo, "model": model, "mmproj": mmproj,
            "mmproj_repaired": repaired, "max_tiles": meta.max_tiles,
            "context_length": vinscan_llama::trained_context(&model)})
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "llama"))]
fn pull_variant(_: &str, _: &str) -> anyhow::Result<ExitCode> {
    bail!("this vinscan was built without the `llama` feature: it cannot convert or check a model")
}

/// `files` of the Hub repository `repo` at `revision`, from the cache when HF_HUB_OFFLINE is
/// set, else downloaded into it (and verified).
fn fetch(repo_name: &str, revision: &str, files: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let repo = Repo::with_revision(repo_name.to_owned(), RepoType::Model, revision.to_owned());
    let mut paths: Vec<PathBuf> = Vec::new();
    if offline() {
        let cache = Cache::from_env().repo(repo);
        for f in files {
            let p = cache.get(f).with_context(|| {
                format!("HF_HUB_OFFLINE is set and {f} of {repo_name} is not in the cache")
            })?;
            paths.push(p);
        }
    } else {
        let api = ApiBuilder::from_env()
            .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .build()?;
        let api_repo = api.repo(repo);
        for f in files {
            tracing::info!(repo = %repo_name, file = %f, "downloading");
            let p = api_repo
                .get(f)
                .with_context(|| format!("downloading {f} from {repo_name}"))?;
            verify_blob(&p)?;
            paths.push(p);
        }
    }
    Ok(paths)
}
