//! Where the model files are: the paths given, else the Vintern GGUF pair `vinscan model pull`
//! put in the Hugging Face cache; and their sha256, for provenance and resumability.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vinscan_core::hash::sha256_file;

/// The Hub repository `vinscan model pull` downloads from by default.
pub const DEFAULT_REPO: &str = "ngxson/Vintern-1B-v3_5-GGUF";
/// Its LLM file (Qwen2-0.5B, q8_0).
pub const DEFAULT_MODEL_FILE: &str = "Vintern-1B-v3_5-Q8_0.gguf";
/// Its vision projector file (InternViT-300M + MLP, q8_0).
pub const DEFAULT_MMPROJ_FILE: &str = "mmproj-Vintern-1B-v3_5-Q8_0.gguf";

/// The text models `vinscan model pull --text NAME` knows: short name, Hub repository, file.
/// VinaLLaMA (VILM's Vietnamese LLaMA-2 chat models, ChatML template) as VILM publishes it in
/// GGUF, q5_0.
pub const TEXT_MODELS: [(&str, &str, &str); 2] = [
    (
        "vinallama-2.7b",
        "vilm/vinallama-2.7b-chat-GGUF",
        "vinallama-2.7b-chat_q5_0.gguf",
    ),
    (
        "vinallama-7b",
        "vilm/vinallama-7b-chat-GGUF",
        "vinallama-7b-chat_q5_0.gguf",
    ),
];

/// The repository and file of a known text model's short name.
pub fn text_model_source(name: &str) -> Option<(&'static str, &'static str)> {
    TEXT_MODELS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, repo, file)| (*repo, *file))
}

/// `--text-model`'s value as a file: a path that exists, or a known short name
/// ([`TEXT_MODELS`]) that `vinscan model pull --text NAME` put in the Hub cache.
pub fn resolve_text_model(given: &Path) -> anyhow::Result<PathBuf> {
    if given.is_file() {
        return Ok(given.to_path_buf());
    }
    let name = given.to_string_lossy();
    match text_model_source(&name) {
        Some((repo, file)) => hf_hub::Cache::from_env()
            .repo(hf_hub::Repo::model(repo.to_owned()))
            .get(file)
            .with_context(|| format!("{file} of {repo} is not in the Hugging Face cache: run `vinscan model pull --text {name}`")),
        None => bail!(
            "text model {} not found (a GGUF path, or one of: {})",
            given.display(),
            TEXT_MODELS.map(|(n, _, _)| n).join(", ")
        ),
    }
}

/// The projector to run for `path`, a file `vinscan model pull` cached: itself, or for an
/// InternVL projector from llama.cpp's converter its copy with the position table in the
/// graph's order, made beside it when missing (`vinscan_convert::repair`). Returns the path
/// and whether it is such a copy. Without the `llama` feature, `path` itself.
/// A copy that cannot be written (a read-only or full cache) leaves `path` in use, with a
/// warning.
pub fn graph_order_projector(path: &Path) -> anyhow::Result<(PathBuf, bool)> {
    #[cfg(feature = "llama")]
    {
        match vinscan_convert::repair::ensure_repaired(path) {
            Ok((p, repaired)) => {
                if repaired {
                    tracing::info!(mmproj = %p.display(), from = %path.display(), "projector repaired: the class token's position row moved last");
                }
                Ok((p, repaired))
            }
            // a cache that cannot be written to (read-only, full) still runs, as it is
            Err(e) => {
                tracing::warn!(mmproj = %path.display(), error = %e, "the projector could not be repaired; it is used as it is, every patch with its neighbour's position (`vinscan model repair` writes the copy elsewhere)");
                Ok((path.to_path_buf(), false))
            }
        }
    }
    #[cfg(not(feature = "llama"))]
    Ok((path.to_path_buf(), false))
}

/// Model and projector paths with their sha256.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "llama"), allow(dead_code))]
pub struct ModelFiles {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub model_sha256: String,
    pub mmproj_sha256: String,
}

fn cached(file: &str) -> Option<PathBuf> {
    hf_hub::Cache::from_env()
        .repo(hf_hub::Repo::model(DEFAULT_REPO.to_owned()))
        .get(file)
}

impl ModelFiles {
    /// The paths given, else the files `vinscan model pull` put in the Hub cache; both must
    /// exist. Reads both files once for their sha256.
    pub fn resolve(model: Option<&Path>, mmproj: Option<&Path>) -> anyhow::Result<Self> {
        let pick = |given: Option<&Path>, default: &str, flag: &str| -> anyhow::Result<PathBuf> {
            match given {
                Some(p) => Ok(p.to_path_buf()),
                None => cached(default).with_context(|| {
                    format!("no {flag} given and {default} is not in the Hugging Face cache: pass {flag} (or its env var) or run `vinscan model pull`")
                }),
            }
        };
        let model = pick(model, DEFAULT_MODEL_FILE, "--model")?;
        let given = mmproj.is_some();
        let mmproj = pick(mmproj, DEFAULT_MMPROJ_FILE, "--mmproj")?;
        for (p, what) in [(&model, "model"), (&mmproj, "mmproj")] {
            if !p.is_file() {
                bail!("{what} file {} not found", p.display());
            }
        }
        // the pulled projector is used in the graph's order; one given is used as it is (the
        // engine warns when it is not)
        let mmproj = if given {
            mmproj
        } else {
            graph_order_projector(&mmproj)?.0
        };
        let model_sha256 = sha256_file(&model)?;
        let mmproj_sha256 = sha256_file(&mmproj)?;
        Ok(Self {
            model,
            mmproj,
            model_sha256,
            mmproj_sha256,
        })
    }
}
