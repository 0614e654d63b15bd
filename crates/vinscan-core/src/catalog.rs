//! The set of schemas and pipelines a process runs with: the ones embedded in the binary, or
//! those of a directory pair (`pipelines/`, `schemas/`) chosen by the user.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vinscan_schema::{BoundDefaults, Schema};

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
    (
        "schemas/archive.schema.json",
        include_str!("../../../schemas/archive.schema.json"),
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
    (
        "pipelines/archive.toml",
        include_str!("../../../pipelines/archive.toml"),
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

    /// Loads every schema and pipeline, reporting every problem found at once (one per line).
    pub(crate) fn build(
        schema_files: Vec<(String, Vec<u8>)>,
        pipeline_files: Vec<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let mut problems = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for (path, bytes) in schema_files {
            match Schema::from_bytes(&path, &bytes) {
                Ok(schema) => {
                    schemas.insert(path.clone(), Arc::new(schema));
                }
                Err(e) => problems.push(e.to_string()),
            }
            sources.insert(path, bytes);
        }
        // a pipeline with its own default bounds gets its own compilation of the schema
        let resolve = |name: &str, defaults: &BoundDefaults| -> std::result::Result<Arc<Schema>, String> {
            let key = format!("schemas/{name}");
            match (schemas.get(&key), sources.get(&key)) {
                (Some(shared), _) if shared.defaults() == defaults => Ok(Arc::clone(shared)),
                (Some(_), Some(bytes)) => Schema::from_bytes_with(&key, bytes, defaults)
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
                (None, Some(_)) => Err(format!("schema {name:?} did not load (see its own error)")),
                _ => Err(format!("schema {name:?} not found in the schemas directory")),
            }
        };
        let mut pipelines = BTreeMap::new();
        for (path, bytes) in pipeline_files {
            let Ok(text) = String::from_utf8(bytes.clone()) else {
                problems.push(format!("{path}: not UTF-8"));
                continue;
            };
            let pipeline = PipelineFile::parse(&path, &text)
                .and_then(|file| file.validate(&path, sha256_hex(&bytes), resolve));
            match pipeline {
                Ok(p) => {
                    if let Some(previous) = pipelines.insert(p.name.clone(), Arc::new(p)) {
                        problems.push(format!("{path}: pipeline name {:?} is used twice", previous.name));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            return Err(Error::new(ErrorKind::Config, problems.join("\n")));
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
    fn embedded_catalog_loads_the_five_pipelines() {
        let c = Catalog::embedded().expect("embedded catalog is valid");
        for name in ["invoice", "receipt", "id-card", "archive-page", "archive"] {
            let p = c.pipeline(name).expect(name);
            assert!(p.schema.path().starts_with("schemas/"));
        }
        assert!(c.pipeline("nope").is_err());
    }

    fn files(items: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        items
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    const OPEN: &str = r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"n": {"type": "string"}}}"#;

    #[test]
    fn a_pipeline_with_its_own_default_bounds_gets_its_own_schema() {
        let c = Catalog::build(
            files(&[("schemas/open.json", OPEN)]),
            files(&[
                ("pipelines/a.toml", "name = \"a\"\nschema = \"open.json\"\nprompt = \"p\"\n"),
                (
                    "pipelines/b.toml",
                    "name = \"b\"\nschema = \"open.json\"\nprompt = \"p\"\n[schema_defaults]\nmax_string_length = 7\n",
                ),
            ]),
        )
        .expect("loads");
        let max = |name: &str| {
            c.pipeline(name).expect(name).schema.grammar()["properties"]["n"]["maxLength"].clone()
        };
        assert_eq!(max("a"), serde_json::json!(200));
        assert_eq!(max("b"), serde_json::json!(7));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = Catalog::build(
            files(&[(
                "schemas/bad.json",
                r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "properties": {"x": {}}}"#,
            )]),
            files(&[
                (
                    "pipelines/a.toml",
                    "name = \"a\"\nschema = \"bad.json\"\nprompt = \"p\"\n",
                ),
                (
                    "pipelines/b.toml",
                    "name = \"b\"\nschema = \"none.json\"\nprompt = \"p\"\n",
                ),
                (
                    "pipelines/c.toml",
                    "name = \"c\"\nschema = \"bad.json\"\nprompt = \"\"\n",
                ),
            ]),
        )
        .expect_err("refused");
        let text = e.to_string();
        for expected in [
            "/properties/x: no `type`",
            "did not load",
            "not found",
            "prompt must not be empty",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
    }
}
