//! The set of schemas and pipelines a process runs with: the ones embedded in the binary, or
//! those of a directory pair (`pipelines/`, `schemas/`) chosen by the user.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vinscan_schema::Schema;

use crate::error::{Error, ErrorKind, Result};
use crate::hash::sha256_hex;
use crate::pipeline::{Pipeline, PipelineFile};

/// Schemas and pipelines shipped with vinscan, as (repository path, contents).
const EMBEDDED_SCHEMAS: &[(&str, &str)] = &[
    (
        "schemas/invoice.schema.json",
        include_str!("../../../schemas/invoice.schema.json"),
    ),
    (
        "schemas/receipt.schema.json",
        include_str!("../../../schemas/receipt.schema.json"),
    ),
    (
        "schemas/id-card.schema.json",
        include_str!("../../../schemas/id-card.schema.json"),
    ),
    (
        "schemas/archive-page.schema.json",
        include_str!("../../../schemas/archive-page.schema.json"),
    ),
];
const EMBEDDED_PIPELINES: &[(&str, &str)] = &[
    (
        "pipelines/invoice.toml",
        include_str!("../../../pipelines/invoice.toml"),
    ),
    (
        "pipelines/receipt.toml",
        include_str!("../../../pipelines/receipt.toml"),
    ),
    (
        "pipelines/id-card.toml",
        include_str!("../../../pipelines/id-card.toml"),
    ),
    (
        "pipelines/archive-page.toml",
        include_str!("../../../pipelines/archive-page.toml"),
    ),
];

/// Loaded, validated schemas and pipelines.
#[derive(Debug, Clone)]
pub struct Catalog {
    schemas: BTreeMap<String, Arc<Schema>>,
    pipelines: BTreeMap<String, Arc<Pipeline>>,
}

impl Catalog {
    /// The schemas and pipelines compiled into vinscan.
    pub fn embedded() -> Result<Self> {
        let schemas = EMBEDDED_SCHEMAS
            .iter()
            .map(|(p, s)| (p.to_string(), s.as_bytes().to_vec()))
            .collect();
        let pipelines = EMBEDDED_PIPELINES
            .iter()
            .map(|(p, s)| (p.to_string(), s.as_bytes().to_vec()))
            .collect();
        Self::build(schemas, pipelines)
    }

    /// Every `*.json` under `schemas_dir` and `*.toml` under `pipelines_dir`.
    pub fn from_dirs(pipelines_dir: &Path, schemas_dir: &Path) -> Result<Self> {
        let read = |dir: &Path, ext: &str, prefix: &str| -> Result<Vec<(String, Vec<u8>)>> {
            let entries = std::fs::read_dir(dir).map_err(|e| Error::from_io(&e, dir.display()))?;
            let mut out = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| Error::from_io(&e, dir.display()))?.path();
                if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                    let bytes = std::fs::read(&path).map_err(|e| Error::from_io(&e, path.display()))?;
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    out.push((format!("{prefix}/{name}"), bytes));
                }
            }
            out.sort();
            Ok(out)
        };
        Self::build(
            read(schemas_dir, "json", "schemas")?,
            read(pipelines_dir, "toml", "pipelines")?,
        )
    }

    pub(crate) fn build(
        schema_files: Vec<(String, Vec<u8>)>,
        pipeline_files: Vec<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let config = |m: String| Error::new(ErrorKind::Config, m);
        let mut schemas = BTreeMap::new();
        for (path, bytes) in schema_files {
            let schema = Schema::from_bytes(&path, &bytes).map_err(|e| config(e.to_string()))?;
            schemas.insert(path, Arc::new(schema));
        }
        let mut pipelines = BTreeMap::new();
        for (path, bytes) in pipeline_files {
            let text = String::from_utf8(bytes.clone()).map_err(|_| config(format!("{path}: not UTF-8")))?;
            let file = PipelineFile::parse(&path, &text).map_err(|e| config(e.to_string()))?;
            let pipeline = file
                .validate(&path, sha256_hex(&bytes), |name| {
                    schemas.get(&format!("schemas/{name}")).cloned()
                })
                .map_err(|e| config(e.to_string()))?;
            if let Some(previous) = pipelines.insert(pipeline.name.clone(), Arc::new(pipeline)) {
                return Err(config(format!(
                    "{path}: pipeline name {:?} is used twice",
                    previous.name
                )));
            }
        }
        Ok(Self { schemas, pipelines })
    }

    pub fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>> {
        self.pipelines.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.pipelines.keys().map(String::as_str).collect();
            Error::new(
                ErrorKind::Config,
                format!("unknown pipeline {name:?} (known: {})", known.join(", ")),
            )
        })
    }

    pub fn pipelines(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.values()
    }

    pub fn schemas(&self) -> impl Iterator<Item = &Arc<Schema>> {
        self.schemas.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_loads_the_four_pipelines() {
        let c = Catalog::embedded().expect("embedded catalog is valid");
        for name in ["invoice", "receipt", "id-card", "archive-page"] {
            let p = c.pipeline(name).expect(name);
            assert!(p.schema.path().starts_with("schemas/"));
        }
        assert!(c.pipeline("nope").is_err());
    }
}
