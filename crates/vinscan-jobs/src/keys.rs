//! Deterministic output keys: the same source object (bucket, key, version) through the same
//! pipeline always maps to the same output key, so a redelivered or retried job overwrites
//! its own output instead of adding one. Keys are built from sanitised segments and a hash,
//! so nothing in a job can make them escape their prefix.

use sha2::{Digest, Sha256};

use crate::object::ObjectRef;

/// A path segment safe in any store: letters (any script), digits, `-`, `_`, `.`; everything
/// else becomes `_`; never `.`/`..`, never empty, at most 100 characters. The name is put in
/// Unicode NFC first, so a name typed in NFD ("ảnh" as macOS writes it, `a` + U+0309 …) keeps
/// its letters instead of losing its combining marks to `_`.
pub fn sanitise_segment(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out: String = s
        .nfc()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if out.chars().all(|c| c == '.') {
        out = out.replace('.', "_");
    }
    if out.is_empty() { "_".into() } else { out }
}

/// The one output object of a job: `<prefix>/<pipeline>/<id>/<first source name>.json`, where
/// the id hashes the pipeline and every source's identity (bucket, key, version), in order.
/// A redelivered job rewrites the same object; the key cannot escape `prefix_key`.
pub fn job_output_key(prefix_key: &str, pipeline: &str, sources: &[ObjectRef]) -> String {
    let id = match sources {
        [one] => one.identity(pipeline),
        many => {
            let mut h = Sha256::new();
            for s in many {
                h.update(s.identity(pipeline).as_bytes());
            }
            hex::encode(h.finalize())
        }
    };
    let name = sources
        .first()
        .and_then(|s| s.key.rsplit('/').next())
        .unwrap_or_default();
    // the prefix's segments, sanitised: whatever the job said, no `..` or empty segment
    let mut parts: Vec<String> = prefix_key
        .split('/')
        .filter(|s| !s.is_empty())
        .map(sanitise_segment)
        .collect();
    parts.push(sanitise_segment(pipeline));
    parts.push(id[..16].to_owned());
    parts.push(format!("{}.json", sanitise_segment(name)));
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(key: &str, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "in".into(),
            key: key.into(),
            version: version.map(|v| vinscan_storage::ObjectVersion::ETag(v.to_owned())),
        }
    }

    #[test]
    fn deterministic_and_version_sensitive() {
        let key = |pipeline: &str, version: &str| {
            job_output_key("results", pipeline, &[obj("a/hoá đơn.jpg", Some(version))])
        };
        let a = key("invoice", "e1");
        assert_eq!(a, key("invoice", "e1"));
        assert!(
            a.starts_with("results/invoice/") && a.ends_with("/hoá_đơn.jpg.json"),
            "{a}"
        );
        assert_ne!(a, key("invoice", "e2"));
        assert_ne!(a, key("receipt", "e1"));
    }

    #[test]
    fn job_keys_depend_on_every_source() {
        let front = obj("cccd/front.jpg", Some("e1"));
        let back = obj("cccd/back.jpg", Some("e2"));
        let both = job_output_key("out", "id-card", &[front.clone(), back.clone()]);
        assert_eq!(
            both,
            job_output_key("out", "id-card", &[front.clone(), back.clone()])
        );
        assert!(
            both.starts_with("out/id-card/") && both.ends_with("/front.jpg.json"),
            "{both}"
        );
        assert_ne!(
            both,
            job_output_key("out", "id-card", std::slice::from_ref(&front))
        );
        assert_ne!(both, job_output_key("out", "id-card", &[back, front]));
    }

    /// Regression: an NFD name lost its tone marks (`a_nh_chu_p`) while its NFC twin kept them.
    #[test]
    fn nfd_names_keep_their_letters() {
        let nfd = "a\u{0309}nh chu\u{0323}p";
        assert_eq!(sanitise_segment(nfd), "ảnh_chụp");
        assert_eq!(sanitise_segment("ảnh chụp"), "ảnh_chụp");
    }

    proptest! {
        /// Whatever the key, pipeline or prefix contain, the output key stays under the prefix
        /// and has no segment that could climb out of it.
        #[test]
        fn never_escapes(prefix in "[a-z/.]{0,12}", pipeline in ".{0,12}", key in ".{1,40}", n in 1usize..4) {
            let sources: Vec<ObjectRef> = (0..n).map(|i| obj(&format!("{key}{i}"), None)).collect();
            let k = job_output_key(&prefix, &pipeline, &sources);
            let segments: Vec<&str> = k.split('/').collect();
            prop_assert!(segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "{}", k);
            prop_assert!(!k.starts_with('/') && !k.contains('\\') && !k.contains('\0'));
            let clean: Vec<String> = prefix.split('/').filter(|s| !s.is_empty()).map(sanitise_segment).collect();
            prop_assert!(k.starts_with(&clean.join("/")));
        }
    }
}
