//! The schemas and pipelines a run uses: the ones built into the binary, or
//! `--pipelines-dir`/`--schemas-dir`.

use std::path::Path;

use vinscan_core::Catalog;

/// The catalog of this run: from the two directories when both are given, else the embedded one.
pub fn catalog(pipelines_dir: Option<&Path>, schemas_dir: Option<&Path>) -> anyhow::Result<Catalog> {
    let catalog = match (pipelines_dir, schemas_dir) {
        (Some(p), Some(s)) => Catalog::from_dirs(p, s)?,
        _ => Catalog::embedded()?,
    };
    Ok(catalog)
}
