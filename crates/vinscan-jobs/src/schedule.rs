//! What scheduled `enqueue` runs remember: the objects of a prefix already put on the topic for
//! a pipeline, each with the ETag it had, so that a nightly run over a growing archive enqueues
//! only what is new or replaced. Kept as one JSON object beside the scans (by default
//! `<prefix>/.vinscan/enqueued-<pipeline>.json`; listing skips dot folders) or wherever
//! `--state` says.
//!
//! Shape: `{"format": 1, "pipeline": "archive-page", "enqueued": {"<key>": "<etag>", ...}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state's format version this vinscan writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// The objects a pipeline's scheduled runs have enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueState {
    pub format: u32,
    pub pipeline: String,
    /// Object key → the ETag it had when it was enqueued.
    pub enqueued: BTreeMap<String, String>,
}

impl EnqueueState {
    /// No object enqueued yet.
    pub fn new(pipeline: &str) -> Self {
        Self {
            format: STATE_FORMAT,
            pipeline: pipeline.to_owned(),
            enqueued: BTreeMap::new(),
        }
    }

    /// A state read back. Errors: not this format, or another pipeline's state (each pipeline
    /// keeps its own: the same scans can go through several).
    pub fn parse(bytes: &[u8], pipeline: &str) -> Result<Self, String> {
        let state: Self = serde_json::from_slice(bytes).map_err(|e| format!("not an enqueue state: {e}"))?;
        if state.format != STATE_FORMAT {
            return Err(format!(
                "enqueue state format {} (this vinscan reads {STATE_FORMAT})",
                state.format
            ));
        }
        if state.pipeline != pipeline {
            return Err(format!(
                "the enqueue state is pipeline {:?}'s, not {pipeline:?}'s",
                state.pipeline
            ));
        }
        Ok(state)
    }

    /// Whether the object `key` with `etag` has not been enqueued yet (new, or replaced since).
    pub fn is_new(&self, key: &str, etag: &str) -> bool {
        self.enqueued.get(key).is_none_or(|e| e != etag)
    }

    /// Records that `key` with `etag` was enqueued.
    pub fn record(&mut self, key: &str, etag: &str) {
        self.enqueued.insert(key.to_owned(), etag.to_owned());
    }

    /// Forgets objects no longer listed (deleted from the prefix), so the state stays the
    /// size of the archive. Call only after a complete listing.
    pub fn keep_only(&mut self, is_listed: impl Fn(&str) -> bool) {
        self.enqueued.retain(|k, _| is_listed(k));
    }

    /// The JSON to store.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }
}

/// The default key of a pipeline's state under the prefix key `prefix` (no trailing `/`; empty
/// for a bucket's root).
pub fn default_state_key(prefix: &str, pipeline: &str) -> String {
    let name = format!(".vinscan/enqueued-{pipeline}.json");
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_replaced_objects_are_new_and_the_state_round_trips() {
        let mut s = EnqueueState::new("archive-page");
        assert!(s.is_new("a.png", "e1"));
        s.record("a.png", "e1");
        s.record("b.png", "e2");
        assert!(!s.is_new("a.png", "e1"));
        assert!(s.is_new("a.png", "e9"), "replaced since");
        let back = EnqueueState::parse(&s.to_bytes().expect("json"), "archive-page").expect("parses");
        assert_eq!(back, s);
        s.keep_only(|k| k == "b.png");
        assert_eq!(s.enqueued.keys().collect::<Vec<_>>(), ["b.png"]);
    }

    #[test]
    fn another_pipelines_or_formats_state_is_refused() {
        let s = EnqueueState::new("receipt").to_bytes().expect("json");
        assert!(
            EnqueueState::parse(&s, "archive-page")
                .expect_err("other")
                .contains("receipt")
        );
        let v2 = br#"{"format": 2, "pipeline": "receipt", "enqueued": {}}"#;
        assert!(
            EnqueueState::parse(v2, "receipt")
                .expect_err("format")
                .contains("format 2")
        );
        assert!(EnqueueState::parse(b"[]", "receipt").is_err());
    }

    #[test]
    fn the_default_state_sits_in_a_dot_folder_of_the_prefix() {
        assert_eq!(
            default_state_key("archive", "archive-page"),
            "archive/.vinscan/enqueued-archive-page.json"
        );
        assert_eq!(default_state_key("", "receipt"), ".vinscan/enqueued-receipt.json");
    }
}
