//! Per-field confidence: for every leaf of the model's JSON output, the lowest probability the
//! model gave a token it chose for that value, among the tokens the grammar allowed there.
//!
//! Why this rule:
//! - Under constrained decoding a token's probability is its softmax over the tokens the
//!   grammar allows at that step (the distribution the greedy choice was made from), so a
//!   value's confidence measures the model's doubt between well-formed alternatives, not its
//!   doubt about JSON syntax.
//! - Tokens the grammar forced (keys, punctuation, the rest of `null` once `n` is chosen) had
//!   no alternative and carry no information: they do not count. A value made only of forced
//!   tokens has confidence 1.
//! - The minimum, not the product or the mean: one doubtful digit makes a tax code doubtful
//!   however sure the other nine were, while a product would punish long values (an address of
//!   40 tokens at 0.99 each would score 0.67) and a mean would hide the one doubtful digit.
//! - A token counts for a value when its bytes overlap the value's text: for a string that
//!   includes the quotes (choosing to open a string rather than write `null`, and to close it
//!   here rather than go on); for a number, the byte after it too (choosing `,` over another
//!   digit is choosing where the number ends).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// One output token: where its bytes end in the output text, and the probability the model
/// gave it among the tokens the grammar allowed (`None` when the grammar forced it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutputToken {
    /// Byte offset in the output text just past this token's bytes.
    pub end: u32,
    pub probability: Option<f32>,
}

/// Every leaf of `text` (a JSON document): its JSON Pointer and the byte range that decides it
/// (see the module docs). Empty objects and arrays are leaves. `Err` when `text` is not JSON.
pub fn leaves(text: &str) -> Result<Vec<(String, Range<usize>)>, String> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        out: Vec::new(),
    };
    scanner.value(String::new())?;
    scanner.skip_ws();
    if scanner.at != scanner.bytes.len() {
        return Err(format!("trailing bytes at {}", scanner.at));
    }
    Ok(scanner.out)
}

/// The confidence of every leaf of `text`, keyed by JSON Pointer, from the tokens that made it.
/// Empty when `tokens` is (a model that reports no token probabilities) or `text` is not JSON.
pub fn field_confidence(text: &str, tokens: &[OutputToken]) -> BTreeMap<String, f64> {
    if tokens.is_empty() {
        return BTreeMap::new();
    }
    let Ok(leaves) = leaves(text) else {
        return BTreeMap::new();
    };
    let starts: Vec<usize> = std::iter::once(0)
        .chain(tokens.iter().map(|t| t.end as usize))
        .collect();
    leaves
        .into_iter()
        .map(|(pointer, range)| {
            // the first token ending after the range starts, then every one starting before it ends
            let first = tokens.partition_point(|t| (t.end as usize) <= range.start);
            let lowest = tokens[first..]
                .iter()
                .zip(&starts[first..])
                .take_while(|(_, start)| **start < range.end)
                .filter_map(|(t, _)| t.probability)
                .fold(1.0f32, f32::min);
            (pointer, (f64::from(lowest) * 1e4).round() / 1e4)
        })
        .collect()
}

/// A hand-written scanner because serde_json gives no byte positions; it follows RFC 8259 for
/// structure and leaves the full validation to serde_json, which has parsed `text` already.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    out: Vec<(String, Range<usize>)>,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", byte as char, self.at))
        }
    }

    fn string_end(&self, start: usize) -> Result<usize, String> {
        let mut i = start + 1;
        while let Some(&b) = self.bytes.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => return Ok(i + 1),
                _ => i += 1,
            }
        }
        Err(format!("unterminated string at {start}"))
    }

    fn value(&mut self, pointer: String) -> Result<(), String> {
        self.skip_ws();
        let start = self.at;
        match self.bytes.get(start) {
            Some(b'{') => self.container(pointer, b'}', true),
            Some(b'[') => self.container(pointer, b']', false),
            Some(b'"') => {
                self.at = self.string_end(start)?;
                self.out.push((pointer, start..self.at));
                Ok(())
            }
            Some(_) => {
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| !b",]} \t\r\n".contains(b))
                {
                    self.at += 1;
                }
                let number = self.bytes[start] == b'-' || self.bytes[start].is_ascii_digit();
                let end = if number {
                    (self.at + 1).min(self.bytes.len())
                } else {
                    self.at
                };
                self.out.push((pointer, start..end));
                Ok(())
            }
            None => Err("unexpected end".into()),
        }
    }

    fn container(&mut self, pointer: String, close: u8, object: bool) -> Result<(), String> {
        let start = self.at;
        self.at += 1;
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            self.out.push((pointer, start..self.at));
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            let member = if object {
                self.skip_ws();
                let key_start = self.at;
                if self.bytes.get(key_start) != Some(&b'"') {
                    return Err(format!("expected a key at {key_start}"));
                }
                self.at = self.string_end(key_start)?;
                let key: String = serde_json::from_str(&self.text[key_start..self.at])
                    .map_err(|e| format!("key at {key_start}: {e}"))?;
                self.expect(b':')?;
                key.replace('~', "~0").replace('/', "~1")
            } else {
                index.to_string()
            };
            self.value(format!("{pointer}/{member}"))?;
            index += 1;
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(&b) if b == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(format!("expected ',' or {:?} at {}", close as char, self.at)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(String, &str)> {
        leaves(text)
            .expect("JSON")
            .into_iter()
            .map(|(p, r)| (p, &text[r]))
            .collect()
    }

    #[test]
    fn leaves_cover_every_value_with_its_deciding_bytes() {
        let text = r#"{"a":"x\"y","b":[1,-2.5e3,null],"c":{"d/e":true,"f~":{}},"g":[],"h":12}"#;
        assert_eq!(
            spans(text),
            vec![
                ("/a".into(), r#""x\"y""#),
                ("/b/0".into(), "1,"),
                ("/b/1".into(), "-2.5e3,"),
                ("/b/2".into(), "null"),
                ("/c/d~1e".into(), "true"),
                ("/c/f~0".into(), "{}"),
                ("/g".into(), "[]"),
                ("/h".into(), "12}"),
            ]
        );
        assert_eq!(spans("  7 "), vec![(String::new(), "7 ")]);
        for bad in ["", "{", r#"{"a" 1}"#, r#"{"a":1,}"#, "[1 2]", r#""open"#, "{} x"] {
            assert!(leaves(bad).is_err(), "{bad:?}");
        }
    }

    fn tokens(pieces: &[(&str, Option<f32>)]) -> (String, Vec<OutputToken>) {
        let mut text = String::new();
        let mut out = Vec::new();
        for (piece, p) in pieces {
            text.push_str(piece);
            out.push(OutputToken {
                end: text.len() as u32,
                probability: *p,
            });
        }
        (text, out)
    }

    #[test]
    fn the_least_certain_sampled_token_of_a_value_is_its_confidence() {
        let (text, toks) = tokens(&[
            (r#"{"tax":"#, None),
            (r#""01"#, Some(0.9)),
            ("002", Some(0.4)),
            ("33488", Some(0.95)),
            (r#"","n":"#, Some(0.8)),
            ("12", Some(0.99)),
            ("3", Some(0.7)),
            (r#","z":"#, Some(0.6)),
            ("null", Some(0.5)),
            (r#","k":"#, None),
            ("true", None),
            ("}", None),
        ]);
        let c = field_confidence(&text, &toks);
        assert_eq!(c["/tax"], 0.4, "the weakest digit");
        assert_eq!(c["/n"], 0.6, "where the number ends is a choice too");
        assert_eq!(c["/z"], 0.5);
        assert_eq!(c["/k"], 1.0, "forced: no information, full confidence");
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn no_tokens_or_no_json_give_no_confidence() {
        assert!(field_confidence(r#"{"a":1}"#, &[]).is_empty());
        let (text, toks) = tokens(&[("{\"a\":", Some(0.5))]);
        assert!(field_confidence(&text, &toks).is_empty());
    }
}
