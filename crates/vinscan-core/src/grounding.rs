//! Grounding: where each extracted string is on the page. Every string leaf of a record's
//! `data` is looked for in the transcripts of the record's pages, after both are folded the same
//! way (NFC, lower case, Vietnamese tone marks moved to the end of their syllable so that old
//! and new placement — `hòa` and `hoà` — agree, runs of whitespace as one space), first as a
//! substring and then approximately (the fewest character edits against any stretch of the
//! transcript, Sellers' algorithm). A match scoring at least [`FOUND_SCORE`] is found; with an
//! OCR transcript it also has the box of the words it covers, in page pixels — the bounding
//! regions document-AI users expect beside a value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::transcript::PageTranscript;

/// The least score (1 − edits ÷ folded length) at which a value counts as found: one wrong
/// character in ten, about what OCR of a clean scan gets wrong.
pub const FOUND_SCORE: f64 = 0.9;

/// Values shorter than this many folded characters are not looked for (a one-letter value
/// matches almost any page).
pub const MIN_CHARS: usize = 2;

/// Values shorter than this many folded characters count only as a whole word found exactly: a
/// language code `vi` is not grounded by the `VI` of `VIỆT`, nor a `3` by a `2023`.
pub const WHOLE_WORD_BELOW: usize = 5;

/// Where one value was found, or that it was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldGrounding {
    pub found: bool,
    /// 1 − edits ÷ the value's folded length, at the best match (0..=1, 4 decimals).
    pub score: f64,
    /// The source and 1-based page of the best match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The box around the matched words in page pixels (left, top, right, bottom), with an
    /// OCR transcript; absent for a text layer, which has no word boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[u32; 4]>,
}

/// One page's transcript and which page it is.
#[derive(Debug, Clone, Copy)]
pub struct GroundingPage<'a> {
    pub source: &'a str,
    /// 1-based.
    pub page: u32,
    pub transcript: &'a PageTranscript,
}

/// Vietnamese tone marks as combining characters (NFD): grave, acute, tilde, hook above, dot
/// below. The vowel-shape marks (circumflex, breve, horn) stay on their letter.
fn is_tone_mark(c: char) -> bool {
    matches!(c, '\u{300}' | '\u{301}' | '\u{303}' | '\u{309}' | '\u{323}')
}

/// `text` folded for comparison (see the module docs), with the index in `text` (in chars) each
/// folded char came from; a tone mark moved to its syllable's end maps to the syllable's last
/// char.
pub fn fold(text: &str) -> (Vec<char>, Vec<usize>) {
    fold_case(text, true)
}

/// `text` as [`fold`] folds it but with its letter case kept, recomposed in NFC where a tone
/// mark ends up after a vowel: a form for comparing, not for showing (`Bình` becomes `Binh`
/// and a combining grave). `vinscan eval` compares values with labels in it (`Hoà Bình` and
/// `Hòa  Bình` agree, `HÒA BÌNH` does not).
pub fn normalise_text(text: &str) -> String {
    fold_case(text, false)
        .0
        .into_iter()
        .collect::<String>()
        .nfc()
        .collect()
}

fn fold_case(text: &str, lower: bool) -> (Vec<char>, Vec<usize>) {
    let mut out = Vec::new();
    let mut from = Vec::new();
    let mut tones: Vec<char> = Vec::new();
    let mut last = 0;
    let mut pending_space: Option<usize> = None;
    let flush = |out: &mut Vec<char>, from: &mut Vec<usize>, tones: &mut Vec<char>, at: usize| {
        tones.sort_unstable();
        for t in tones.drain(..) {
            out.push(t);
            from.push(at);
        }
    };
    for (i, c) in text.chars().enumerate() {
        let cased: String = if lower {
            c.to_lowercase().collect()
        } else {
            c.into()
        };
        for d in cased.nfd() {
            if d.is_whitespace() {
                flush(&mut out, &mut from, &mut tones, last);
                if !out.is_empty() {
                    pending_space = Some(i);
                }
            } else if is_tone_mark(d) {
                tones.push(d);
            } else {
                if let Some(at) = pending_space.take() {
                    out.push(' ');
                    from.push(at);
                }
                out.push(d);
                from.push(i);
                last = i;
            }
        }
    }
    flush(&mut out, &mut from, &mut tones, last);
    (out, from)
}

/// The best approximate occurrence of `needle` in `haystack`: (edits, start, end) with
/// `haystack[start..end]` the matched stretch. Sellers (1980): edit distance where the match
/// may start and end anywhere in the haystack.
fn best_match(needle: &[char], haystack: &[char]) -> Option<(usize, usize, usize)> {
    if needle.is_empty() || haystack.is_empty() {
        return None;
    }
    let m = needle.len();
    // cost[i] = edits to match needle[..i] ending here; start[i] = where that match began
    let mut cost: Vec<usize> = (0..=m).collect();
    let mut start: Vec<usize> = vec![0; m + 1];
    let mut best: Option<(usize, usize, usize)> = None;
    for (j, &h) in haystack.iter().enumerate() {
        let (mut diag_cost, mut diag_start) = (cost[0], start[0]);
        cost[0] = 0;
        start[0] = j + 1;
        for i in 1..=m {
            let (up_cost, up_start) = (cost[i], start[i]);
            let substitute = diag_cost + usize::from(needle[i - 1] != h);
            let delete = cost[i - 1] + 1;
            let insert = up_cost + 1;
            let (c, s) = if substitute <= delete && substitute <= insert {
                (substitute, diag_start)
            } else if delete <= insert {
                (delete, start[i - 1])
            } else {
                (insert, up_start)
            };
            diag_cost = up_cost;
            diag_start = up_start;
            cost[i] = c;
            start[i] = s;
        }
        if best.is_none_or(|(b, _, _)| cost[m] < b) {
            best = Some((cost[m], start[m], j + 1));
        }
    }
    best
}

/// The first exact occurrence of `needle` in `haystack` that is a whole word (no letter or digit
/// right before or after it), as (0 edits, start, end).
fn whole_word_match(needle: &[char], haystack: &[char]) -> Option<(usize, usize, usize)> {
    let is_word = |i: Option<&char>| i.is_some_and(|c| c.is_alphanumeric());
    (0..=haystack.len().checked_sub(needle.len())?)
        .find(|&s| {
            haystack[s..s + needle.len()] == *needle
                && !is_word(s.checked_sub(1).and_then(|b| haystack.get(b)))
                && !is_word(haystack.get(s + needle.len()))
        })
        .map(|s| (0, s, s + needle.len()))
}

/// A page's transcript folded, with the word each folded char belongs to (OCR pages; `None`
/// for a text layer).
struct FoldedPage<'a> {
    page: GroundingPage<'a>,
    chars: Vec<char>,
    word_of: Vec<Option<usize>>,
}

fn folded_page<'a>(page: GroundingPage<'a>) -> FoldedPage<'a> {
    let t = page.transcript;
    if t.words.is_empty() {
        let (chars, _) = fold(&t.text);
        let word_of = vec![None; chars.len()];
        return FoldedPage { page, chars, word_of };
    }
    // OCR: the words in reading order joined by spaces, each char knowing its word
    let mut joined = String::new();
    let mut owner = Vec::new();
    for (w, word) in t.words.iter().enumerate() {
        if !joined.is_empty() {
            joined.push(' ');
            owner.push(w);
        }
        for c in word.text.chars() {
            joined.push(c);
            owner.push(w);
        }
    }
    let (chars, from) = fold(&joined);
    // a space between words belongs to neither
    let word_of = chars
        .iter()
        .zip(&from)
        .map(|(&c, &i)| if c == ' ' { None } else { owner.get(i).copied() })
        .collect();
    FoldedPage { page, chars, word_of }
}

/// The box around `words` of `t`.
fn union_box(t: &PageTranscript, words: impl Iterator<Item = usize>) -> Option<[u32; 4]> {
    words.filter_map(|w| t.words.get(w)).fold(None, |acc, w| {
        let b = w.bbox;
        Some(match acc {
            None => b,
            Some(a) => [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])],
        })
    })
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Grounds every string leaf of `data` (keyed by JSON Pointer) in `pages`. Empty when there are
/// no transcripts. Values shorter than [`MIN_CHARS`] folded characters are left out.
pub fn ground(data: &Value, pages: &[GroundingPage<'_>]) -> BTreeMap<String, FieldGrounding> {
    let mut out = BTreeMap::new();
    if pages.is_empty() {
        return out;
    }
    let folded: Vec<FoldedPage<'_>> = pages.iter().map(|&p| folded_page(p)).collect();
    let mut strings = Vec::new();
    string_leaves(data, String::new(), &mut strings);
    for (pointer, value) in strings {
        let (needle, _) = fold(value);
        if needle.len() < MIN_CHARS {
            continue;
        }
        let best = folded
            .iter()
            .filter_map(|p| {
                if needle.len() < WHOLE_WORD_BELOW {
                    whole_word_match(&needle, &p.chars)
                } else {
                    best_match(&needle, &p.chars)
                }
                .map(|m| (p, m))
            })
            .min_by_key(|(_, (edits, _, _))| *edits);
        let grounding = match best {
            Some((p, (edits, start, end))) => {
                let score = round4(1.0 - edits as f64 / needle.len() as f64).max(0.0);
                let found = score >= FOUND_SCORE;
                let words = (start..end).filter_map(|i| p.word_of.get(i).copied().flatten());
                FieldGrounding {
                    found,
                    score,
                    source: found.then(|| p.page.source.to_owned()),
                    page: found.then_some(p.page.page),
                    bbox: if found {
                        union_box(p.page.transcript, words)
                    } else {
                        None
                    },
                }
            }
            None => FieldGrounding {
                found: false,
                score: 0.0,
                source: None,
                page: None,
                bbox: None,
            },
        };
        out.insert(pointer, grounding);
    }
    out
}

/// [`ground`] for one page's record: empty without a transcript.
pub fn ground_page(
    data: &Value,
    source: &str,
    page: u32,
    transcript: Option<&PageTranscript>,
) -> BTreeMap<String, FieldGrounding> {
    transcript.map_or_else(BTreeMap::new, |transcript| {
        ground(
            data,
            &[GroundingPage {
                source,
                page,
                transcript,
            }],
        )
    })
}

fn string_leaves<'a>(value: &'a Value, pointer: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((pointer, s)),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                string_leaves(v, format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                string_leaves(v, format!("{pointer}/{}", crate::merge::escape(k)), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::transcript::{TranscriptSource, Word};

    fn s(chars: &[char]) -> String {
        chars.iter().collect()
    }

    #[test]
    fn folding_agrees_on_case_spacing_and_tone_mark_placement() {
        // "Hoà" (new style, NFD input) and "hòa" (old style, NFC) fold alike
        assert_eq!(s(&fold("Ho\u{61}\u{300}  Bình").0), s(&fold("hòa bình").0));
        assert_eq!(s(&fold("THUỶ").0), s(&fold("thủy").0));
        // the shape marks stay: "hoa" is not "hoá", "đ" is not "d"
        assert_ne!(s(&fold("hoa").0), s(&fold("hoá").0));
        assert_ne!(s(&fold("đơn").0), s(&fold("don").0));
        let (chars, from) = fold(" A  b ");
        assert_eq!(s(&chars), "a b");
        assert_eq!(from, [1, 3, 4]);
    }

    #[test]
    fn normalised_text_keeps_case_and_puts_tone_marks_at_the_syllable_end() {
        assert_eq!(normalise_text("  Hòa \t Bình "), normalise_text("Hoà Bình"));
        assert_eq!(normalise_text("Ho\u{61}\u{300} Bình"), normalise_text("Hoà Bình"));
        assert_eq!(
            normalise_text("Hòa").chars().count(),
            3,
            "recomposed where it can be"
        );
        assert_ne!(normalise_text("HÒA"), normalise_text("hòa"));
    }

    #[test]
    fn the_best_match_is_the_fewest_edits_anywhere() {
        let hay: Vec<char> = "số 1234/qđ-ubnd ngày 5".chars().collect();
        let needle: Vec<char> = "1234/qđ-ubnd".chars().collect();
        assert_eq!(best_match(&needle, &hay), Some((0, 3, 15)));
        let typo: Vec<char> = "1284/qđ-ubnd".chars().collect();
        assert_eq!(best_match(&typo, &hay).map(|m| m.0), Some(1));
    }

    fn ocr_page() -> PageTranscript {
        let word = |text: &str, bbox: [u32; 4]| Word {
            text: text.into(),
            bbox,
            confidence: 0.9,
        };
        PageTranscript::new(
            TranscriptSource::Tesseract,
            "CỬA HÀNG TẠP HOÁ MINH ANH\nMST: 0312345678",
            vec![
                word("CỬA", [10, 10, 50, 30]),
                word("HÀNG", [55, 10, 110, 30]),
                word("TẠP", [115, 10, 150, 30]),
                word("HOÁ", [155, 10, 200, 30]),
                word("MINH", [205, 10, 260, 30]),
                word("ANH", [265, 10, 300, 30]),
                word("MST:", [10, 40, 60, 60]),
                word("0312345678", [65, 40, 190, 60]),
            ],
            "t".into(),
            0.0,
        )
    }

    #[test]
    fn values_on_the_page_are_found_with_their_words_box_and_others_are_not() {
        let page = ocr_page();
        let pages = [GroundingPage {
            source: "hoa-don.png",
            page: 1,
            transcript: &page,
        }];
        let data = json!({
            // old-style tone placement and lower case: still the shop's name
            "merchant_name": "Cửa hàng tạp hòa Minh Anh",
            "tax_code": "0312345678",
            "cashier": "Nguyễn Văn Bình",
            "items": [{"name": "x", "amount": 5}],
            "currency": null
        });
        let g = ground(&data, &pages);
        let name = &g["/merchant_name"];
        assert!(name.found, "{name:?}");
        assert_eq!(name.bbox, Some([10, 10, 300, 30]));
        assert_eq!(
            (name.source.as_deref(), name.page),
            (Some("hoa-don.png"), Some(1))
        );
        assert_eq!(g["/tax_code"].bbox, Some([65, 40, 190, 60]));
        assert_eq!(g["/tax_code"].score, 1.0);
        let cashier = &g["/cashier"];
        assert!(!cashier.found && cashier.score < FOUND_SCORE, "{cashier:?}");
        assert_eq!((cashier.page, cashier.bbox), (None, None));
        assert!(!g.contains_key("/items/0/name"), "one letter is not looked for");
        assert!(!g.contains_key("/items/0/amount") && !g.contains_key("/currency"));
        // a short value only as a whole word: "Anh" is on the page, "An" and "45" are not
        let short = ground(&json!({"a": "Anh", "b": "An", "c": "45"}), &pages);
        assert!(short["/a"].found && short["/a"].bbox == Some([265, 10, 300, 30]));
        assert!(!short["/b"].found && !short["/c"].found, "{short:?}");
        // one OCR error in ten characters is still found
        let misread = ground(&json!({"tax_code": "0312345670"}), &pages);
        assert!(misread["/tax_code"].found && misread["/tax_code"].score == 0.9);
    }

    #[test]
    fn a_text_layer_grounds_without_boxes_and_no_transcript_grounds_nothing() {
        let layer = PageTranscript::new(
            TranscriptSource::PdfText,
            "QUYẾT ĐỊNH\nSố: 12/QĐ-UBND",
            Vec::new(),
            "pdfium".into(),
            0.0,
        );
        let pages = [GroundingPage {
            source: "qd.pdf",
            page: 2,
            transcript: &layer,
        }];
        let g = ground(&json!({"number": "12/QĐ-UBND"}), &pages);
        assert!(g["/number"].found);
        assert_eq!((g["/number"].page, g["/number"].bbox), (Some(2), None));
        assert!(ground(&json!({"number": "12/QĐ-UBND"}), &[]).is_empty());
    }
}
