//! "Reference Python (transformers) and Tesseract": the other two peers, when they ran.

use std::fmt::Write;

use crate::report::{Report, TesseractPage, Transformers};

/// Both peers' tables, or why each did not run.
pub fn section(r: &Report) -> String {
    let mut o = String::from("## Reference Python (transformers) and Tesseract\n\n");
    match &r.transformers {
        None => o.push_str("The transformers peer was not run (no `--python`/`--checkpoint`).\n\n"),
        Some(t) => o.push_str(&transformers(r, t)),
    }
    match &r.tesseract {
        None => o.push_str("Tesseract was not run (no `--tesseract`).\n\n"),
        Some(pages) => o.push_str(&tesseract(pages)),
    }
    o
}

/// transformers' time per page beside vinscan's.
fn transformers(r: &Report, t: &Transformers) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "transformers' InternVL with the same checkpoint (bf16 weights loaded as f32, CPU, {} threads, `generate` greedy, exactly {} new tokens, InternVL's own tiling), one run per page:\n",
        r.settings.threads, r.settings.tokens
    );
    let _ = writeln!(
        o,
        "vinscan's column is the same work: its whole page (warm: file read, decode, tiling, encode, prefill) with exactly {} free tokens (engine parity's string, nothing forced), {}.\n",
        r.settings.tokens,
        match r.parity.first() {
            Some(p) => format!(
                "the parity runs' median on {}, one run on every other page",
                p.unit.name
            ),
            None => "one run per page".to_owned(),
        }
    );
    let _ = writeln!(
        o,
        "| page | tiles | transformers (s) | vinscan (s) | vinscan / transformers |\n|---|---|---|---|---|"
    );
    for p in &t.pages {
        let ms = p.result.total_ms;
        let _ = writeln!(
            o,
            "| {} | {} | {:.2} | {:.2} | {:.3} |",
            p.page,
            p.result.tiles,
            ms / 1e3,
            p.vinscan_ms / 1e3,
            p.vinscan_ms / ms
        );
    }
    let _ = writeln!(o);
    o
}

/// Tesseract's time and output length per page.
fn tesseract(pages: &[TesseractPage]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Tesseract 5 (`-l vie`, OCR only: text, no structure), seconds per page:\n"
    );
    let _ = writeln!(o, "| page | seconds | characters |\n|---|---|---|");
    for t in pages {
        let _ = writeln!(o, "| {} | {:.2} | {} |", t.page, t.ms / 1e3, t.chars);
    }
    let _ = writeln!(o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::report;
    use crate::report::{Gemm, TransformersPage, TransformersResult};

    #[test]
    fn peers_that_did_not_run_say_why() {
        let md = section(&report());
        assert!(
            md.contains("The transformers peer was not run (no `--python`/`--checkpoint`).\n\n"),
            "{md}"
        );
        assert!(
            md.ends_with("Tesseract was not run (no `--tesseract`).\n\n"),
            "{md}"
        );
    }

    #[test]
    fn peers_that_ran_get_a_row_per_page() {
        let mut r = report();
        r.transformers = Some(Transformers {
            load_ms: 5000.0,
            gemm: Gemm {
                gflops: 200.0,
                threads: 2,
            },
            pages: vec![TransformersPage {
                page: "p".into(),
                result: TransformersResult {
                    tiles: 1,
                    prompt_tokens: 300,
                    generated: 32,
                    preprocess_ms: 10.0,
                    total_ms: 2000.0,
                },
                vinscan_ms: 900.0,
                mtmd_compute_ms: 1000.0,
            }],
        });
        r.tesseract = Some(vec![TesseractPage {
            page: "p".into(),
            ms: 1500.0,
            chars: 700,
        }]);
        let md = section(&r);
        assert!(
            md.contains(
                "(bf16 weights loaded as f32, CPU, 2 threads, `generate` greedy, exactly 32 new tokens"
            ),
            "{md}"
        );
        assert!(md.contains("| p | 1 | 2.00 | 0.90 | 0.450 |\n\n"), "{md}");
        assert!(
            md.contains(
                "with exactly 32 free tokens (engine parity's string, nothing forced), one run per page.\n"
            ),
            "{md}"
        );
        assert!(md.contains("| p | 1.50 | 700 |\n\n"), "{md}");
    }
}
