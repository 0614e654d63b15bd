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
        let mmproj = pick(mmproj, DEFAULT_MMPROJ_FILE, "--mmproj")?;
        for (p, what) in [(&model, "model"), (&mmproj, "mmproj")] {
            if !p.is_file() {
                bail!("{what} file {} not found", p.display());
            }
        }
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
