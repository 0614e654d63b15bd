//! Values vinscan knows exactly and the model can only guess, declared in a schema with
//! `x-vinscan-value` on a property of the root object: the record gets vinscan's value (with
//! confidence 1) in place of what was read.
//!
//! - `"page-count"`: the pages the document record covers (an integer property; a page
//!   record's is 1).
//!
//! The model still writes the property (the grammar is the schema's); its reading is replaced
//! before validation, checks and review.

use std::collections::BTreeMap;

use serde_json::Value;

/// The schema keyword naming a value vinscan fills.
pub const VALUE_KEYWORD: &str = "x-vinscan-value";

/// Every `x-vinscan-value` in `schema` that is not a known value or not on a property of the
/// root object, as `"<schema pointer>: <why>"`, for refusing a pipeline at load time.
pub fn problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "", 0, &mut out);
    out
}

/// `depth`: 1 on a property of the root object, where the keyword is read.
fn walk(node: &Value, at: &str, depth: u32, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                if k == VALUE_KEYWORD {
                    if v.as_str() != Some("page-count") {
                        out.push(format!(
                            "{here}: {v} is not a value vinscan knows (\"page-count\")"
                        ));
                    } else if depth != 1 {
                        out.push(format!("{here}: applies only to a property of the root object"));
                    }
                } else if k == "properties" && depth == 0 && at.is_empty() {
                    for (name, sub) in v.as_object().into_iter().flatten() {
                        let name = name.replace('~', "~0").replace('/', "~1");
                        walk(sub, &format!("{here}/{name}"), 1, out);
                    }
                } else {
                    walk(v, &here, 2, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{at}/{i}"), 2, out);
            }
        }
        _ => {}
    }
}

/// Puts vinscan's values into `data` (a record's root object covering `page_count` pages) where
/// `schema` declares them, each with confidence 1 at its JSON Pointer.
pub fn fill(schema: &Value, data: &mut Value, confidence: &mut BTreeMap<String, f64>, page_count: u32) {
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        data.as_object_mut(),
    ) else {
        return;
    };
    for (name, sub) in props {
        if sub.get(VALUE_KEYWORD).and_then(Value::as_str) == Some("page-count") {
            obj.insert(name.clone(), Value::from(page_count));
            let pointer = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
            confidence.insert(pointer, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_count_replaces_the_models_guess() {
        let schema = json!({"properties": {"pages": {"type": "integer", "x-vinscan-value": "page-count"},
            "title": {"type": "string"}}});
        let mut data = json!({"pages": 7, "title": "x"});
        let mut confidence = BTreeMap::from([("/pages".to_owned(), 0.2)]);
        fill(&schema, &mut data, &mut confidence, 3);
        assert_eq!(data, json!({"pages": 3, "title": "x"}));
        assert_eq!(confidence["/pages"], 1.0);
        assert!(problems(&schema).is_empty());
    }

    #[test]
    fn unknown_or_misplaced_values_are_refused() {
        let schema = json!({"properties": {
            "a": {"x-vinscan-value": "word-count"},
            "b": {"type": "object", "properties": {"c": {"x-vinscan-value": "page-count"}}}}});
        let p = problems(&schema);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("/properties/a/x-vinscan-value: "), "{p:?}");
        assert!(p[1].contains("root object"), "{p:?}");
    }
}
