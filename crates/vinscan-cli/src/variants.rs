//! The published Vintern variants `vinscan model pull NAME` knows by name, and how each one
//! becomes a GGUF pair vinscan runs: the GGUF pair llama.cpp's converter published (its
//! projector repaired, `crate::model_files::graph_order_projector`), or the publisher's own
//! checkpoint downloaded and converted here by `vinscan model convert` (graph order by
//! construction), where no GGUF pair is published.
//!
//! Repository names are the publishers' on the Hugging Face Hub (5CD-AI publishes Vintern;
//! ngxson published the GGUF pair of 1B-v3.5). Each variant's settings travel in its files:
//! the tile budget (`max_dynamic_patch`, or the `-hf` layout's `max_patches`) becomes the
//! projector's `clip.vision.preproc_max_tiles`, the trained context the model's
//! `qwen2.context_length`; `pull` prints both.

// without llama.cpp there is no converter: only the table is used (the CLI's choices)
#![cfg_attr(not(feature = "llama"), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where a variant's files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A GGUF pair: the model file and the projector file of the repository.
    Gguf {
        model: &'static str,
        mmproj: &'static str,
    },
    /// The publisher's checkpoint (config.json, safetensors, tokenizer), converted here to a
    /// q8_0 pair, the type of the published 1B-v3.5 pair.
    Checkpoint,
}

/// A Vintern variant `model pull` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The name `model pull` takes.
    pub name: &'static str,
    /// Hub repository.
    pub repo: &'static str,
    pub published: Published,
}

/// The variants, newest 1B first. `vintern-1b-v3.5` is what `model pull` without a name
/// downloads.
pub const VARIANTS: [Variant; 3] = [
    Variant {
        name: "vintern-1b-v3.5",
        repo: crate::model_files::DEFAULT_REPO,
        published: Published::Gguf {
            model: crate::model_files::DEFAULT_MODEL_FILE,
            mmproj: crate::model_files::DEFAULT_MMPROJ_FILE,
        },
    },
    // InternVL2-1B's layout (Qwen2-0.5B-Instruct + InternViT-300M-448px)
    Variant {
        name: "vintern-1b-v2",
        repo: "5CD-AI/Vintern-1B-v2",
        published: Published::Checkpoint,
    },
    // InternVL2.5-4B's layout: Qwen2.5-3B-Instruct (output head tied to the embeddings) +
    // InternViT-300M-448px-V2_5
    Variant {
        name: "vintern-3b",
        repo: "5CD-AI/Vintern-3B-beta",
        published: Published::Checkpoint,
    },
];

/// The variant named `name`.
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// Whether a checkpoint file is one the converter reads (the rest of a repository: remote
/// code, images, the README, other formats, is not downloaded).
fn wanted(file: &str) -> bool {
    !file.contains('/')
        && (file.ends_with(".safetensors")
            || matches!(
                file,
                "config.json"
                    | "model.safetensors.index.json"
                    | "preprocessor_config.json"
                    | "tokenizer.json"
                    | "tokenizer_config.json"
                    | "special_tokens_map.json"
                    | "added_tokens.json"
                    | "chat_template.jinja"
            ))
}

/// Downloads (or finds in the cache, offline) the checkpoint of `variant` at `revision`, and
/// converts it once into `<HF cache>/vinscan/<name>/<commit>/`; returns the pair. Online, the
/// file list and every download are pinned to the commit the Hub names for `revision`, so a
/// push upstream in between cannot mix two commits' files; offline, a pair converted earlier is
/// found from the cached revision's commit without reading the checkpoint again.
///
/// # Errors
/// The Hub's or the cache's errors, a checkpoint without `config.json`, `tokenizer.json` or
/// safetensors weights (refused before the weights are downloaded), and the converter's (a
/// checkpoint it does not read is refused by name).
#[cfg(feature = "llama")]
pub fn pull_checkpoint(
    variant: &Variant,
    revision: &str,
    offline: bool,
    fetch: impl Fn(&str, &str, &[&str]) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let converted = |commit: &str| {
        let out = hf_hub::Cache::from_env()
            .path()
            .join("vinscan")
            .join(variant.name)
            .join(commit);
        (out.join("model.gguf"), out.join("mmproj.gguf"))
    };
    let (commit, files) = if offline {
        // hf-hub keeps a revision's files side by side in its commit's snapshot folder
        let config = fetch(variant.repo, revision, &["config.json"])?;
        let snapshot = config[0].parent().context("a cached file has no folder")?;
        let commit = snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("a cached snapshot has no name")?;
        let pair = converted(&commit);
        if pair.0.is_file() && pair.1.is_file() {
            return Ok(pair);
        }
        let files = listed(snapshot)?;
        (commit, files)
    } else {
        let repo = hf_hub::Repo::with_revision(
            variant.repo.to_owned(),
            hf_hub::RepoType::Model,
            revision.to_owned(),
        );
        let info = hf_hub::api::sync::ApiBuilder::from_env()
            .build()?
            .repo(repo)
            .info()
            .with_context(|| format!("listing the files of {}", variant.repo))?;
        let files = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| wanted(f))
            .collect();
        (info.sha, files)
    };
    let pair = converted(&commit);
    if pair.0.is_file() && pair.1.is_file() {
        return Ok(pair);
    }
    for needed in ["config.json", "tokenizer.json"] {
        if !files.iter().any(|f| f == needed) {
            bail!(
                "{} has no {needed}: not a checkpoint vinscan converts",
                variant.repo
            );
        }
    }
    let small: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !f.ends_with(".safetensors"))
        .collect();
    let paths = fetch(variant.repo, &commit, &small)?;
    let snapshot = paths[0]
        .parent()
        .context("a downloaded file has no folder")?
        .to_path_buf();
    let weights = weight_files(&snapshot, &files)?;
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    fetch(variant.repo, &commit, &weights)?;
    if !offline {
        // downloads by commit record that commit only: say which one `revision` is, so an
        // offline pull of `revision` finds them
        hf_hub::Cache::from_env()
            .repo(hf_hub::Repo::with_revision(
                variant.repo.to_owned(),
                hf_hub::RepoType::Model,
                revision.to_owned(),
            ))
            .create_ref(&commit)
            .with_context(|| format!("recording {revision} of {} in the cache", variant.repo))?;
    }
    tracing::info!(repo = %variant.repo, commit = %commit, "converting the checkpoint to a q8_0 GGUF pair");
    let options = vinscan_convert::ConvertOptions {
        weights: vinscan_convert::WeightType::Q8_0,
        mmproj_weights: Some(vinscan_convert::WeightType::Q8_0),
        ..Default::default()
    };
    let out = pair.0.parent().context("the pair has no folder")?;
    vinscan_convert::convert(&snapshot, out, &options)
        .with_context(|| format!("converting {} ({})", variant.repo, snapshot.display()))?;
    Ok(pair)
}

/// The safetensors files the converter reads: the shards the index (already in `snapshot`)
/// names, else `model.safetensors`.
#[cfg(feature = "llama")]
fn weight_files(snapshot: &Path, files: &[String]) -> anyhow::Result<Vec<String>> {
    let index = snapshot.join("model.safetensors.index.json");
    if !index.is_file() {
        if files.iter().any(|f| f == "model.safetensors") {
            return Ok(vec!["model.safetensors".to_owned()]);
        }
        bail!("no model.safetensors and no model.safetensors.index.json: not a checkpoint vinscan converts");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index).with_context(|| index.display().to_string())?)
            .with_context(|| index.display().to_string())?;
    let mut shards: Vec<String> = index["weight_map"]
        .as_object()
        .context("model.safetensors.index.json has no weight_map")?
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// The checkpoint files in a cached snapshot folder.
fn listed(snapshot: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(snapshot).with_context(|| snapshot.display().to_string())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if wanted(&name) {
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_found_by_its_name_and_the_default_is_the_gguf_pair() {
        for v in &VARIANTS {
            assert_eq!(variant(v.name), Some(v));
        }
        assert_eq!(
            variant("vintern-1b-v3.5").map(|v| v.repo),
            Some(crate::model_files::DEFAULT_REPO)
        );
        assert!(variant("vintern-9b").is_none());
    }

    #[test]
    fn only_what_the_converter_reads_is_downloaded() {
        for f in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "tokenizer.json",
            "preprocessor_config.json",
        ] {
            assert!(wanted(f), "{f}");
        }
        for f in [
            "modeling_internvl_chat.py",
            "README.md",
            "examples/1.jpg",
            "pytorch_model.bin",
            "sub/config.json",
        ] {
            assert!(!wanted(f), "{f}");
        }
    }
}
