//! "Per page: vinscan vs `llama-mtmd-cli`": the A/B table of the pipeline's work and the
//! engine-parity line.

use std::fmt::Write;

use crate::render::secs;
use crate::report::{ParityPage, Report, Runs};
use crate::stats::Stats;

const INTRO: &str = "Seconds, min / **median** / max over alternating A/B runs (the single-tile image: `--reps` pairs; every other page: `--reps-large`). vinscan is warm (the daemon's and batch mode's case: the model stays loaded); `llama-mtmd-cli` is a process per page, its model and projector loading shown apart (`load`), and `compute` is the rest of its run. The ratio compares vinscan's whole page (file read, decode or PDF render, tiling, encode, prefill, generation) with `llama-mtmd-cli`'s compute alone, so loading is never counted against it. Both decode the same schema (llguidance in vinscan, llama.cpp's GBNF from the same JSON Schema in `llama-mtmd-cli`) up to the same cap; vinscan fast-forwards the tokens the grammar forces, `llama-mtmd-cli` runs the model once per token. `same output` compares the two outputs byte for byte.\n";

/// The per-page table, then one line per engine-parity page.
pub fn section(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Per page: vinscan vs `llama-mtmd-cli`\n");
    let _ = writeln!(o, "{INTRO}");
    let _ = writeln!(
        o,
        "| page | images | runs | vinscan | tokens (forced, model steps) | mtmd-cli compute | mtmd-cli load | mtmd-cli stop | same output | vinscan / mtmd compute |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for p in &r.per_page {
        let v = Stats::of_field(&p.vinscan, |x| x.total).in_seconds();
        let c = Stats::of_field(&p.mtmd, |x| x.compute).in_seconds();
        let load = Stats::of_field(&p.mtmd, |x| x.load).in_seconds();
        let tokens = p.vinscan.first().map_or("n/a".to_owned(), |x| {
            format!("{} ({}, {})", x.generated, x.forced, x.steps)
        });
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {tokens} | {} | {:.2} | {} | {} | {:.3} |",
            p.unit.name,
            p.unit.images,
            p.vinscan.len(),
            secs(v),
            secs(c),
            load.median,
            p.mtmd.first().map_or("n/a".to_owned(), |m| m.stop.to_string()),
            if p.same_output { "yes" } else { "no" },
            p.ratio()
        );
    }
    let _ = writeln!(o);
    for p in &r.parity {
        let _ = writeln!(o, "{}\n", parity_line(r, p));
    }
    o
}

/// "Engine parity, PAGE (…): vinscan …, `llama-mtmd-cli` compute …, load …; ratio **…**."
fn parity_line(r: &Report, p: &ParityPage) -> String {
    let v = Stats::of_field(&p.vinscan, |x| x.total).in_seconds();
    let c = Stats::of_field(&p.mtmd, |x| x.compute).in_seconds();
    let load = Stats::of_field(&p.mtmd, |x| x.load).in_seconds();
    format!(
        "Engine parity, {} (a free string of exactly {} tokens: nothing forced, so both run the model once per token): vinscan {}, `llama-mtmd-cli` compute {}, load {:.2} s; ratio **{:.3}**.",
        p.unit.name,
        r.settings.tokens,
        secs(v),
        secs(c),
        load.median,
        p.ratio()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{page, report};

    #[test]
    fn one_row_per_page_with_its_ratio() {
        let mut r = report();
        r.per_page = vec![page("a.png", 1, 900.0, 1000.0), page("b.png", 7, 3300.0, 3000.0)];
        r.per_page[1].same_output = true;
        let md = section(&r);
        assert!(
            md.contains("| a.png | 1 | 1 | 0.90 / **0.90** / 0.90 | 10 (5, 5) | 1.00 / **1.00** / 1.00 | 0.50 | cap | no | 0.900 |"),
            "{md}"
        );
        assert!(
            md.contains("| b.png | 7 | 1 |") && md.contains("| yes | 1.100 |"),
            "{md}"
        );
        assert!(!md.contains("Engine parity"), "{md}");
    }

    #[test]
    fn the_parity_line_gives_its_ratio() {
        let mut r = report();
        let p = page("a.png", 1, 450.0, 500.0);
        r.parity = vec![ParityPage {
            unit: p.unit,
            vinscan: p.vinscan,
            mtmd: p.mtmd,
        }];
        let md = section(&r);
        assert!(
            md.contains("Engine parity, a.png (a free string of exactly 32 tokens"),
            "{md}"
        );
        assert!(md.contains("load 0.50 s; ratio **0.900**.\n\n"), "{md}");
    }
}
