//! One record from the partial records of a document read in page groups, by rules the schema
//! declares with `x-vinscan-merge`:
//!
//! - `"concat"` (the default for arrays): the groups' arrays joined in page order, so line items
//!   that continue over pages end up in one list;
//! - `"most-confident"` (the default for every other value): the non-null value with the
//!   highest confidence (the lowest token probability of the value, see
//!   [`crate::confidence`]); ties go to the earlier group. Groups that give different non-null
//!   values are recorded as a [`Disagreement`];
//! - `"first"`: the first group's non-null value (a header printed once, on page 1).
//!
//! Objects without a rule of their own are merged property by property. A null (or absent)
//! value means "not on these pages" and never wins over a value that is there.
//!
//! Every merged value keeps the confidence it had in the group it came from, re-keyed to its
//! place in the merged record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The schema keyword naming a value's merge rule.
pub const MERGE_KEYWORD: &str = "x-vinscan-merge";

/// How the groups' values at one place in the record become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    Concat,
    MostConfident,
    First,
}

impl MergeRule {
    fn parse(v: &Value) -> Option<Self> {
        match v.as_str()? {
            "concat" => Some(Self::Concat),
            "most-confident" => Some(Self::MostConfident),
            "first" => Some(Self::First),
            _ => None,
        }
    }
}

/// One group's partial record: its validated `data` and per-leaf confidence (JSON Pointer →
/// [0, 1]).
#[derive(Debug, Clone)]
pub struct Part {
    pub data: Value,
    pub confidence: BTreeMap<String, f64>,
}

/// Groups that read different values for one place in the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// JSON Pointer into the merged `data`.
    pub pointer: String,
    /// 1-based group whose value was kept.
    pub kept_group: u32,
    /// Every group's non-null value there, in group order.
    pub values: Vec<GroupValue>,
}

/// One group's value in a [`Disagreement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupValue {
    pub group: u32,
    pub value: Value,
    /// `None` when the model reported no probabilities.
    pub confidence: Option<f64>,
}

/// The merged record.
#[derive(Debug, Clone)]
pub struct Merged {
    pub data: Value,
    pub confidence: BTreeMap<String, f64>,
    pub disagreements: Vec<Disagreement>,
    /// JSON Pointers of the arrays joined by `concat`: a schema's `maxItems` bounds one read, so
    /// the joined array may be longer.
    pub concatenated: Vec<String>,
}

/// Every `x-vinscan-merge` in `schema` that is not one of the rules, or that sits where the
/// merge never looks (only the root and subschemas reached from it through `properties` are
/// merged by rule; inside `items`, `$defs`, `anyOf` and the like a rule would be ignored), as
/// `"<schema pointer>: <why>"`, for refusing a pipeline at load time.
pub fn rule_problems(schema: &Value) -> Vec<String> {
    /// `reached`: whether the merge reads this node's rule.
    fn walk(node: &Value, at: &str, reached: bool, out: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{at}/{}", escape(k));
                    if k == MERGE_KEYWORD {
                        if MergeRule::parse(v).is_none() {
                            out.push(format!(
                                "{here}: {v} is not a merge rule (\"concat\", \"most-confident\" or \"first\")"
                            ));
                        } else if !reached {
                            out.push(format!(
                                "{here}: merge rules apply only to the root and to properties reached through \"properties\" (not inside items, $defs, anyOf or the like)"
                            ));
                        }
                    } else if k == "properties" && reached {
                        for (name, sub) in v.as_object().into_iter().flatten() {
                            walk(sub, &format!("{here}/{}", escape(name)), true, out);
                        }
                    } else {
                        walk(v, &here, false, out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), false, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, "", true, &mut out);
    out
}

/// Merges `parts` (in page order) under `schema` (the schema document, with its
/// `x-vinscan-merge` rules). With one part the result is that part.
pub fn merge(schema: &Value, parts: &[Part]) -> Merged {
    let mut m = Merger {
        confidence: BTreeMap::new(),
        disagreements: Vec::new(),
        concatenated: Vec::new(),
    };
    let values: Vec<Found<'_>> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| Found {
            group: i as u32 + 1,
            value: &p.data,
            at: String::new(),
            part: p,
        })
        .collect();
    let data = m.node(Some(schema), "", &values);
    Merged {
        data,
        confidence: m.confidence,
        disagreements: m.disagreements,
        concatenated: m.concatenated,
    }
}

/// One group's value at the place being merged, and where it sits in that group's record.
struct Found<'a> {
    group: u32,
    value: &'a Value,
    at: String,
    part: &'a Part,
}

impl Found<'_> {
    /// The value's confidence: the lowest over its leaves, `None` without any.
    fn confidence(&self) -> Option<f64> {
        subtree(&self.part.confidence, &self.at)
            .map(|(_, c)| c)
            .reduce(f64::min)
    }
}

struct Merger {
    confidence: BTreeMap<String, f64>,
    disagreements: Vec<Disagreement>,
    concatenated: Vec<String>,
}

impl Merger {
    fn node(&mut self, schema: Option<&Value>, at: &str, found: &[Found<'_>]) -> Value {
        let present: Vec<&Found<'_>> = found.iter().filter(|f| !f.value.is_null()).collect();
        let declared = schema
            .and_then(|s| s.get(MERGE_KEYWORD))
            .and_then(MergeRule::parse);
        let rule = declared.unwrap_or(
            if !present.is_empty() && present.iter().all(|f| f.value.is_array()) {
                MergeRule::Concat
            } else {
                MergeRule::MostConfident
            },
        );
        if present.is_empty() {
            return self.keep(at, found.first());
        }
        match rule {
            MergeRule::Concat if present.iter().all(|f| f.value.is_array()) => self.concat(at, &present),
            MergeRule::First => self.keep(at, present.first().copied()),
            _ if declared.is_none() && present.iter().all(|f| f.value.is_object()) => {
                self.object(schema, at, &present)
            }
            _ => self.most_confident(at, &present),
        }
    }

    /// Copies `chosen`'s value and its confidences to `at`.
    fn keep(&mut self, at: &str, chosen: Option<&Found<'_>>) -> Value {
        let Some(f) = chosen else { return Value::Null };
        for (k, c) in subtree(&f.part.confidence, &f.at) {
            self.confidence.insert(format!("{at}{}", &k[f.at.len()..]), c);
        }
        f.value.clone()
    }

    fn concat(&mut self, at: &str, present: &[&Found<'_>]) -> Value {
        self.concatenated.push(at.to_owned());
        if present
            .iter()
            .all(|f| f.value.as_array().is_some_and(Vec::is_empty))
        {
            // an empty array is a leaf: it keeps the first group's confidence
            return self.keep(at, present.first().copied());
        }
        let mut out = Vec::new();
        for f in present {
            for (i, item) in f.value.as_array().into_iter().flatten().enumerate() {
                let element = Found {
                    group: f.group,
                    value: item,
                    at: format!("{}/{i}", f.at),
                    part: f.part,
                };
                out.push(self.keep(&format!("{at}/{}", out.len()), Some(&element)));
            }
        }
        Value::Array(out)
    }

    fn object(&mut self, schema: Option<&Value>, at: &str, present: &[&Found<'_>]) -> Value {
        let mut keys: Vec<&String> = Vec::new();
        for f in present {
            for k in f.value.as_object().into_iter().flat_map(Map::keys) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        if keys.is_empty() {
            // an empty object is a leaf: it keeps the first group's confidence
            return self.keep(at, present.first().copied());
        }
        let mut out = Map::new();
        for key in keys {
            let sub = schema.and_then(|s| s.get("properties")).and_then(|p| p.get(key));
            let values: Vec<Found<'_>> = present
                .iter()
                .filter_map(|f| {
                    f.value.get(key).map(|v| Found {
                        group: f.group,
                        value: v,
                        at: format!("{}/{}", f.at, escape(key)),
                        part: f.part,
                    })
                })
                .collect();
            let merged = self.node(sub, &format!("{at}/{}", escape(key)), &values);
            out.insert(key.clone(), merged);
        }
        Value::Object(out)
    }

    fn most_confident(&mut self, at: &str, present: &[&Found<'_>]) -> Value {
        let mut best = present[0];
        let mut best_c = best.confidence().unwrap_or(0.0);
        for f in &present[1..] {
            let c = f.confidence().unwrap_or(0.0);
            if c > best_c {
                (best, best_c) = (f, c);
            }
        }
        if present.iter().any(|f| f.value != best.value) {
            self.disagreements.push(Disagreement {
                pointer: at.to_owned(),
                kept_group: best.group,
                values: present
                    .iter()
                    .map(|f| GroupValue {
                        group: f.group,
                        value: f.value.clone(),
                        confidence: f.confidence(),
                    })
                    .collect(),
            });
        }
        self.keep(at, Some(best))
    }
}

/// The entries of `confidence` at `at` or below it.
fn subtree<'a>(
    confidence: &'a BTreeMap<String, f64>,
    at: &'a str,
) -> impl Iterator<Item = (&'a String, f64)> + 'a {
    confidence
        .range(at.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(at))
        .filter(move |(k, _)| k.len() == at.len() || k.as_bytes()[at.len()] == b'/')
        .map(|(k, c)| (k, *c))
}

/// A JSON Pointer reference token (RFC 6901 §3: `~` as `~0`, `/` as `~1`).
pub(crate) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn part(data: Value, confidence: &[(&str, f64)]) -> Part {
        Part {
            data,
            confidence: confidence.iter().map(|(k, c)| ((*k).to_owned(), *c)).collect(),
        }
    }

    fn invoice_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "number": {"type": ["string", "null"]},
                "seller": {"type": "object", "properties": {"name": {"type": ["string", "null"]}}},
                "items": {"type": "array", "items": {"type": "object"}},
                "note": {"type": ["string", "null"], "x-vinscan-merge": "first"},
                "pages_seen": {"type": "array", "x-vinscan-merge": "most-confident"}
            }
        })
    }

    #[test]
    fn line_items_concatenate_in_page_order_with_their_confidence() {
        let a = part(
            json!({"items": [{"d": "A"}, {"d": "B"}]}),
            &[("/items/0/d", 0.9), ("/items/1/d", 0.8)],
        );
        let b = part(json!({"items": [{"d": "C"}]}), &[("/items/0/d", 0.7)]);
        let m = merge(&invoice_schema(), &[a, b]);
        assert_eq!(m.data["items"], json!([{"d": "A"}, {"d": "B"}, {"d": "C"}]));
        assert_eq!(m.confidence["/items/2/d"], 0.7);
        assert_eq!(m.confidence["/items/1/d"], 0.8);
        assert_eq!(m.concatenated, vec!["/items".to_owned()]);
        assert!(m.disagreements.is_empty());
    }

    #[test]
    fn a_scalar_takes_the_most_confident_non_null_value_and_the_disagreement_is_recorded() {
        let a = part(
            json!({"number": "0000123", "seller": {"name": null}}),
            &[("/number", 0.4), ("/seller/name", 0.99)],
        );
        let b = part(
            json!({"number": "0000128", "seller": {"name": "CÔNG TY A"}}),
            &[("/number", 0.8), ("/seller/name", 0.6)],
        );
        let c = part(
            json!({"number": null, "seller": null}),
            &[("/number", 1.0), ("/seller", 1.0)],
        );
        let m = merge(&invoice_schema(), &[a, b, c]);
        assert_eq!(m.data["number"], json!("0000128"));
        assert_eq!(m.confidence["/number"], 0.8);
        assert_eq!(m.data["seller"]["name"], json!("CÔNG TY A"), "null never wins");
        assert_eq!(m.confidence["/seller/name"], 0.6);
        assert_eq!(m.disagreements.len(), 1, "{:?}", m.disagreements);
        let d = &m.disagreements[0];
        assert_eq!((d.pointer.as_str(), d.kept_group), ("/number", 2));
        assert_eq!(d.values.len(), 2, "only non-null values disagree");
    }

    #[test]
    fn ties_go_to_the_earlier_group_and_agreement_is_not_a_disagreement() {
        let a = part(json!({"number": "1"}), &[("/number", 0.5)]);
        let b = part(json!({"number": "2"}), &[("/number", 0.5)]);
        let m = merge(&invoice_schema(), &[a.clone(), b]);
        assert_eq!(m.data["number"], json!("1"));
        let m = merge(&invoice_schema(), &[a.clone(), a]);
        assert!(m.disagreements.is_empty());
    }

    #[test]
    fn declared_rules_override_the_defaults() {
        let a = part(
            json!({"note": "trang 1", "pages_seen": [1]}),
            &[("/note", 0.1), ("/pages_seen/0", 0.2)],
        );
        let b = part(
            json!({"note": "trang 2", "pages_seen": [2, 3]}),
            &[("/note", 0.9), ("/pages_seen/0", 0.9), ("/pages_seen/1", 0.8)],
        );
        let m = merge(&invoice_schema(), &[a, b]);
        assert_eq!(m.data["note"], json!("trang 1"), "first, whatever the confidence");
        assert_eq!(
            m.data["pages_seen"],
            json!([2, 3]),
            "the most confident whole array"
        );
        assert_eq!(m.confidence["/pages_seen/1"], 0.8);
        assert!(!m.confidence.contains_key("/pages_seen/2"));
    }

    #[test]
    fn empty_arrays_stay_a_leaf_with_a_confidence() {
        let a = part(json!({"items": []}), &[("/items", 0.6)]);
        let b = part(json!({"items": []}), &[("/items", 0.9)]);
        let m = merge(&invoice_schema(), &[a.clone(), b]);
        assert_eq!(m.data["items"], json!([]));
        assert_eq!(m.confidence["/items"], 0.6);
        let c = part(json!({"items": [{"d": "x"}]}), &[("/items/0/d", 0.7)]);
        let m = merge(&invoice_schema(), &[a, c]);
        assert_eq!(m.data["items"], json!([{"d": "x"}]));
        assert!(!m.confidence.contains_key("/items"), "{:?}", m.confidence);
    }

    #[test]
    fn one_part_is_returned_as_it_is() {
        let a = part(
            json!({"number": "1", "items": [{"d": "x"}]}),
            &[("/number", 0.3), ("/items/0/d", 0.2)],
        );
        let m = merge(&invoice_schema(), std::slice::from_ref(&a));
        assert_eq!(m.data, a.data);
        assert_eq!(m.confidence, a.confidence);
    }

    #[test]
    fn keys_with_slashes_are_escaped_and_prefixes_do_not_leak() {
        let schema = json!({"type": "object"});
        let a = part(
            json!({"a/b": "x", "ab": "y", "a": "z"}),
            &[("/a~1b", 0.3), ("/ab", 0.4), ("/a", 0.5)],
        );
        let m = merge(&schema, &[a]);
        assert_eq!(m.confidence.len(), 3);
        assert_eq!(m.confidence["/a"], 0.5);
    }

    #[test]
    fn rules_where_the_merge_never_looks_are_refused() {
        let schema = json!({"properties": {
            "items": {"type": "array", "items": {"properties": {"d": {"x-vinscan-merge": "first"}}}},
            "x": {"anyOf": [{"x-vinscan-merge": "first"}]},
            "ok": {"properties": {"deep": {"x-vinscan-merge": "first"}}}
        }});
        let problems = rule_problems(&schema);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("apply only")), "{problems:?}");
    }

    #[test]
    fn an_empty_object_keeps_its_confidence() {
        let a = part(json!({"seller": {}}), &[("/seller", 0.3)]);
        let m = merge(&invoice_schema(), std::slice::from_ref(&a));
        assert_eq!(m.data, a.data);
        assert_eq!(m.confidence, a.confidence);
    }

    #[test]
    fn bad_rules_are_listed() {
        let schema =
            json!({"properties": {"a": {"x-vinscan-merge": "sum"}, "b": {"x-vinscan-merge": "first"}}});
        let problems = rule_problems(&schema);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("/properties/a/x-vinscan-merge"),
            "{problems:?}"
        );
    }
}
