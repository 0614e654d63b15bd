//! How many times each unfinished message of a partition was started, kept in the metadata of
//! the consumer group's committed offset for that partition.
//!
//! Why there: a message that kills the process (a native abort, the OOM killer) never
//! finishes, so the group's committed position never passes it, and its start count must
//! survive the process and the node. The committed offset's metadata is stored by the group
//! coordinator with the position itself (Kafka's `OffsetCommit` request, `committed_metadata`,
//! up to `offset.metadata.max.bytes`, 4,096 bytes by default), read back by whichever member
//! owns the partition next, and scoped to exactly the group and partition the count is about.
//! A compacted side topic would hold the same facts but need its own reader and writer.
//!
//! Format: `vinscan-starts:v1 ` followed by a JSON object `{"<offset>": <starts>}`. Anything
//! else (another tool's metadata, an empty string, a damaged value) reads as no starts.

use std::collections::BTreeMap;

const PREFIX: &str = "vinscan-starts:v1 ";

/// The most offsets recorded: with a 20-digit offset and a 10-digit count an entry is at most
/// 35 bytes, so 100 stay under the broker's default 4,096-byte metadata limit.
pub const MAX_ENTRIES: usize = 100;

/// Starts per offset.
pub type Starts = BTreeMap<i64, u32>;

/// The metadata string for `starts`: the lowest offsets are kept when there are more than
/// [`MAX_ENTRIES`] (the lowest unfinished one holds the partition's position: it is the one
/// whose count must not be lost). Only messages in flight are recorded, and the daemon allows
/// at most 100 in flight, so the cap is a guard, not a rule that bites.
pub fn encode(starts: &Starts) -> String {
    let kept: BTreeMap<String, u32> = starts
        .iter()
        .take(MAX_ENTRIES)
        .map(|(o, n)| (o.to_string(), *n))
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    format!("{PREFIX}{}", serde_json::to_string(&kept).unwrap_or_default())
}

/// The starts in a committed offset's metadata; empty for anything not written by [`encode`].
pub fn decode(metadata: &str) -> Starts {
    let Some(json) = metadata.strip_prefix(PREFIX) else {
        return Starts::new();
    };
    let Ok(map) = serde_json::from_str::<BTreeMap<String, u32>>(json) else {
        return Starts::new();
    };
    map.into_iter()
        .filter_map(|(o, n)| Some((o.parse::<i64>().ok().filter(|o| *o >= 0)?, n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_foreign_metadata() {
        let starts = Starts::from([(17, 1), (18, 3)]);
        let text = encode(&starts);
        assert_eq!(text, r#"vinscan-starts:v1 {"17":1,"18":3}"#);
        assert_eq!(decode(&text), starts);
        for foreign in [
            "",
            "other-tool",
            "vinscan-starts:v1 {",
            r#"vinscan-starts:v1 {"x":1}"#,
        ] {
            assert!(decode(foreign).is_empty(), "{foreign}");
        }
        assert_eq!(encode(&Starts::new()), "");
    }

    #[test]
    fn stays_under_the_default_metadata_limit() {
        let starts: Starts = (0..500).map(|i| (i64::MAX - i, u32::MAX)).collect();
        let text = encode(&starts);
        assert!(text.len() <= 4096, "{}", text.len());
        let back = decode(&text);
        assert_eq!(back.len(), MAX_ENTRIES);
        assert!(
            back.contains_key(&(i64::MAX - 499)),
            "the lowest offsets are kept"
        );
    }
}
