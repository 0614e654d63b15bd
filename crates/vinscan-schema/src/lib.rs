//! Output schemas: a JSON Schema (2020-12) file loaded, checked that constrained decoding over
//! it always terminates, compiled for validation, and used to normalise extracted values.
//!
//! Architecture invariant: this crate does no IO beyond what the caller hands it (bytes and a
//! display path) and never names a model, a store or a broker.

mod bounds;
mod normalise;

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use bounds::{AppliedDefault, BoundDefaults, bound, check_bounds};
pub use normalise::{Normaliser, normalise_value};
pub use vinscan_checks::{
    CHECK_KEYWORD, CHECK_NAMES, CheckOutcome, CheckPlan, CheckResult, Correction, Status as CheckStatus,
    today_in_vietnam,
};

/// The meta-schema every vinscan schema must declare.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keyword vinscan adds to string properties to pick a normaliser (see [`Normaliser`]).
pub const NORMALISE_KEYWORD: &str = "x-vinscan-normalise";

/// Why a schema file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: must declare \"$schema\": \"{DRAFT_2020_12}\"")]
    Draft { path: String },
    #[error("{path}: not a valid JSON Schema 2020-12 document: {message}")]
    Invalid { path: String, message: String },
    /// Every problem with the schema's `x-vinscan-check` declarations, one per line.
    #[error("{path}: x-vinscan-check declarations refused:\n{}", problems.join("\n"))]
    Checks { path: String, problems: Vec<String> },
    /// Every part of the schema no default bound can make decodable, as (JSON Pointer, reason).
    #[error("{path}: cannot be bounded for constrained decoding:\n{}", problems.iter().map(|(p, m)| format!("  {p}: {m}")).collect::<Vec<_>>().join("\n"))]
    Unbounded {
        path: String,
        problems: Vec<(String, String)>,
    },
}

/// One problem found when validating an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the instance.
    pub instance_path: String,
    /// The JSON Schema keyword the instance fails (`maxItems`, `pattern`, `required`, …).
    pub keyword: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// A loaded, bound-checked and compiled output schema.
pub struct Schema {
    id: String,
    path: String,
    sha256: String,
    document: Value,
    grammar: Value,
    validator: jsonschema::Validator,
    checks: CheckPlan,
    defaults: BoundDefaults,
    applied: Vec<AppliedDefault>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Parses and checks a schema, with the default bounds where it sets none. `path` is how
    /// the schema is named in errors and in outputs (the repository-relative path, e.g.
    /// `schemas/invoice.schema.json`).
    pub fn from_bytes(path: &str, bytes: &[u8]) -> Result<Self, SchemaError> {
        Self::from_bytes_with(path, bytes, &BoundDefaults::default())
    }

    /// [`from_bytes`](Self::from_bytes) with `defaults` applied where the schema sets no bound
    /// (see [`bound`]). Decoding and validation use the bounded schema; [`document`](Self::document)
    /// stays as declared.
    pub fn from_bytes_with(path: &str, bytes: &[u8], defaults: &BoundDefaults) -> Result<Self, SchemaError> {
        let document: Value = serde_json::from_slice(bytes).map_err(|source| SchemaError::Json {
            path: path.to_owned(),
            source,
        })?;
        if document.get("$schema").and_then(Value::as_str) != Some(DRAFT_2020_12) {
            return Err(SchemaError::Draft {
                path: path.to_owned(),
            });
        }
        jsonschema::draft202012::meta::validate(&document).map_err(|e| SchemaError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let (bounded, applied) = bound(&document, defaults).map_err(|problems| SchemaError::Unbounded {
            path: path.to_owned(),
            problems,
        })?;
        let validator = jsonschema::draft202012::new(&bounded).map_err(|e| SchemaError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let checks = CheckPlan::from_schema(&document).map_err(|errors| SchemaError::Checks {
            path: path.to_owned(),
            problems: errors.iter().map(ToString::to_string).collect(),
        })?;
        let id = document
            .get("$id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| path.to_owned());
        let grammar = grammar_view(&bounded);
        Ok(Self {
            id,
            path: path.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            document,
            grammar,
            validator,
            checks,
            defaults: *defaults,
            applied,
        })
    }

    /// `$id` of the schema (its path when it has none).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Repository-relative path, as written into every output's `schema` field.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// sha256 of the schema file's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The schema as declared.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The schema handed to the constrained decoder: the declared one without annotations
    /// (`title`, `description`, `examples`, `$comment`, `x-*` keywords) that only document.
    pub fn grammar(&self) -> &Value {
        &self.grammar
    }

    /// Every violation of the schema by `instance` (empty when it conforms).
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(instance)
            .map(|e| Violation {
                instance_path: e.instance_path().to_string(),
                keyword: e.kind().keyword().to_owned(),
                message: e.to_string(),
            })
            .collect()
    }

    /// The default bounds this schema was compiled with.
    pub fn defaults(&self) -> &BoundDefaults {
        &self.defaults
    }

    /// Where a default bound was applied because the schema set none, in document order.
    pub fn applied_defaults(&self) -> &[AppliedDefault] {
        &self.applied
    }

    /// The checks the schema declares with `x-vinscan-check` (see [`vinscan_checks`]).
    pub fn checks(&self) -> &CheckPlan {
        &self.checks
    }

    /// Normalises `instance` in place by the schema's `x-vinscan-normalise` annotations,
    /// returning the JSON pointers of the values it changed.
    pub fn normalise(&self, instance: &mut Value) -> Vec<String> {
        let mut changed = Vec::new();
        normalise_value(&self.document, instance, "", &mut changed);
        changed
    }
}

const ANNOTATIONS: &[&str] = &["title", "description", "examples", "$comment", "default"];

fn grammar_view(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()) && !k.starts_with("x-"))
                .map(|(k, v)| {
                    // `properties` maps names to schemas: its keys are names, never keywords.
                    let v = if k == "properties" || k == "$defs" {
                        match v {
                            Value::Object(props) => Value::Object(
                                props.iter().map(|(n, s)| (n.clone(), grammar_view(s))).collect(),
                            ),
                            other => other.clone(),
                        }
                    } else if k == "enum" || k == "const" {
                        v.clone()
                    } else {
                        grammar_view(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(grammar_view).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Result<Schema, SchemaError> {
        Schema::from_bytes("schemas/t.json", v.to_string().as_bytes())
    }

    fn bounded() -> Value {
        json!({
            "$schema": DRAFT_2020_12,
            "$id": "t",
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "date"],
            "properties": {
                "name": {"type": "string", "maxLength": 8, "description": "who"},
                "date": {"type": ["string", "null"], "maxLength": 16, "x-vinscan-normalise": "date"},
                "title": {"type": "string", "maxLength": 4}
            }
        })
    }

    #[test]
    fn loads_bounded_schema_and_validates() {
        let s = schema(bounded()).expect("bounded schema loads");
        assert_eq!(s.id(), "t");
        assert_eq!(s.sha256().len(), 64);
        assert!(s.violations(&json!({"name": "An", "date": null})).is_empty());
        let v = s.violations(&json!({"name": "far too long", "date": null, "x": 1}));
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn grammar_view_drops_annotations_but_keeps_property_names() {
        let s = schema(bounded()).expect("loads");
        let g = s.grammar();
        assert!(g["properties"]["name"].get("description").is_none());
        assert!(g["properties"]["date"].get("x-vinscan-normalise").is_none());
        // a property called "title" is data, not an annotation
        assert!(g["properties"].get("title").is_some());
    }

    #[test]
    fn refuses_wrong_draft() {
        let mut v = bounded();
        v["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        assert!(matches!(schema(v), Err(SchemaError::Draft { .. })));
    }

    #[test]
    fn an_unbounded_string_gets_the_default_and_the_grammar_and_validator_use_it() {
        let mut v = bounded();
        v["properties"]["name"] = json!({"type": "string"});
        let s = schema(v).expect("loads with a default");
        let applied: Vec<(&str, &str)> = s
            .applied_defaults()
            .iter()
            .map(|a| (a.pointer.as_str(), a.keyword))
            .collect();
        assert_eq!(applied, vec![("/properties/name", "maxLength")]);
        assert_eq!(s.grammar()["properties"]["name"]["maxLength"], json!(200));
        assert!(
            s.document()["properties"]["name"].get("maxLength").is_none(),
            "declared as written"
        );
        let long = "x".repeat(201);
        assert_eq!(s.violations(&json!({"name": long, "date": null})).len(), 1);
    }

    #[test]
    fn refuses_what_cannot_be_bounded_listing_every_pointer() {
        let mut v = bounded();
        v["properties"]["name"] = json!({});
        v["properties"]["title"] = json!(true);
        match schema(v) {
            Err(e @ SchemaError::Unbounded { .. }) => {
                let text = e.to_string();
                assert!(text.contains("  /properties/name: no `type`"), "{text}");
                assert!(text.contains("  /properties/title: `true`"), "{text}");
            }
            other => panic!("expected Unbounded, got {other:?}"),
        }
    }

    #[test]
    fn refuses_invalid_json() {
        let e = Schema::from_bytes("schemas/x.json", b"{").expect_err("must fail");
        assert!(e.to_string().contains("schemas/x.json"), "{e}");
    }

    #[test]
    fn refuses_bad_check_declarations_listing_each() {
        let mut v = bounded();
        v["properties"]["name"]["x-vinscan-check"] = json!("luhn");
        v["properties"]["date"]["x-vinscan-check"] = json!({"check": "date", "when": "0"});
        let e = schema(v).expect_err("refused");
        let text = e.to_string();
        assert!(
            matches!(e, SchemaError::Checks { ref problems, .. } if problems.len() == 2),
            "{text}"
        );
        assert!(
            text.contains("/properties/name/x-vinscan-check: unknown check \"luhn\""),
            "{text}"
        );
        assert!(
            text.contains("/properties/date/x-vinscan-check: date takes no argument \"when\""),
            "{text}"
        );
    }

    #[test]
    fn declared_checks_are_kept_and_left_out_of_the_grammar() {
        let mut v = bounded();
        v["properties"]["date"]["x-vinscan-check"] = json!("date");
        let s = schema(v).expect("loads");
        assert_eq!(s.checks().len(), 1);
        assert!(s.grammar()["properties"]["date"].get("x-vinscan-check").is_none());
    }

    #[test]
    fn patterns_are_enforced_by_the_validator() {
        let mut v = bounded();
        v["properties"]["name"]["pattern"] = json!("^(?:[0-9]{10}(?:-[0-9]{3})?|[0-9]{12})$");
        v["properties"]["name"]["maxLength"] = json!(20);
        let s = schema(v).expect("loads");
        for ok in ["0100233488", "0314409058-002", "001099012345"] {
            assert!(
                s.violations(&json!({"name": ok, "date": null})).is_empty(),
                "{ok}"
            );
        }
        for bad in [
            "01002334",
            "0314409058002",
            "MST 0100233488",
            "０１００２３３４８８",
        ] {
            assert_eq!(
                s.violations(&json!({"name": bad, "date": null})).len(),
                1,
                "{bad}"
            );
        }
    }
}
