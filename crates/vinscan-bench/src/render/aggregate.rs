//! "Aggregate throughput": every page through one loaded model with pages in flight, against
//! llama-mtmd-cli one page after another; where the aggregate's time went; what another
//! projector type would do to the ratio.

use std::fmt::Write;

use crate::render::figures::{aggregate_rates, alone_steps_s};
use crate::report::Report;

/// The aggregate paragraph and table, the time breakdown and the projector note.
pub fn section(r: &Report) -> String {
    let a = &r.aggregate;
    let parallel = r.settings.parallel;
    let (v_rate, m_rate) = aggregate_rates(r);
    let mut o = String::new();
    let _ = writeln!(o, "## Aggregate throughput\n");
    let _ = writeln!(
        o,
        "All {} pages, the pipeline's work (real schema, capped as above): vinscan loads the model once ({:.1} s, included) and keeps {parallel} pages in flight (their output tokens share one batch per step, {} model steps in all; the system prompt's KV cells are computed once); `llama-mtmd-cli` runs once per page, one after another (sum of its median wall times above, loading included).\n",
        a.pages,
        a.load_ms / 1e3,
        a.model_steps
    );
    let _ = writeln!(o, "| | wall (s) | pages/s |\n|---|---|---|");
    let _ = writeln!(
        o,
        "| vinscan, {parallel} in flight | {:.1} | {v_rate:.4} |",
        a.vinscan_ms / 1e3
    );
    let _ = writeln!(
        o,
        "| llama-mtmd-cli, sequential | {:.1} | {m_rate:.4} |",
        a.mtmd_sequential_ms / 1e3
    );
    let _ = writeln!(o, "| **ratio** | | **{:.2}×** |\n", v_rate / m_rate);
    let _ = writeln!(o, "{}\n", breakdown(r));
    if let Some(note) = projector_note(r) {
        let _ = writeln!(o, "{note}\n");
    }
    o
}

/// Where the aggregate's time went, measured inside that run, against the per-page runs' model
/// steps one page at a time.
fn breakdown(r: &Report) -> String {
    let a = &r.aggregate;
    let (wall, encode, steps) = (a.vinscan_ms / 1e3, a.encode_prefill_ms / 1e3, a.steps_ms / 1e3);
    format!(
        "Inside vinscan's aggregate run: vision encode + prefill {encode:.1} s ({:.0} % of the wall time), model steps for the output tokens {steps:.1} s ({:.0} %), everything else (loading, reading, rendering, tiling, sampling) {:.1} s. The same pages one at a time (the per-page runs above, medians) spent {:.1} s in model steps: a step that carries several pages' tokens reads the weights once for all of them.",
        100.0 * encode / wall,
        100.0 * steps / wall,
        wall - encode - steps,
        alone_steps_s(r)
    )
}

/// The vision encoder is work both peers share, so the projector's type moves the aggregate
/// ratio: with another projector each tile costs both peers the difference the fresh-process
/// probes measured. An estimate from the probes, said to be one.
fn projector_note(r: &Report) -> Option<String> {
    let main = r.probes.first()?;
    // the probes run the smallest page; its tile count is in the per-page table
    let probe_tiles = f64::from(r.per_page.iter().find(|p| p.unit.name == main.page)?.unit.images);
    let tiles: f64 = r.per_page.iter().map(|p| f64::from(p.unit.images)).sum();
    let (v, m) = (r.aggregate.vinscan_ms, r.aggregate.mtmd_sequential_ms);
    let each: Vec<String> = r
        .probes
        .iter()
        .skip(1)
        .filter_map(|p| {
            let per_tile = (p.run.encode_prefill - main.run.encode_prefill) / probe_tiles;
            let extra = per_tile * tiles;
            let ratio = (m + extra) / (v + extra);
            ratio.is_finite().then(|| {
                format!(
                    "{} ({:+.1} s per tile): about {ratio:.2}×",
                    p.projector,
                    per_tile / 1e3
                )
            })
        })
        .collect();
    (!each.is_empty()).then(|| {
        format!(
            "Both peers ran the {} projector. The vision encoder is work they share, so the projector's type moves this ratio: with another one, each of the {tiles:.0} tiles would cost both of them what the fresh-process probes measured on one page. Estimated that way, not measured: {}.",
            r.files.mmproj_type,
            each.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{probe, report};

    #[test]
    fn the_table_gives_rates_and_their_ratio() {
        let md = section(&report());
        assert!(md.contains("| vinscan, 4 in flight | 1.0 | 1.0000 |"), "{md}");
        assert!(
            md.contains("| llama-mtmd-cli, sequential | 2.0 | 0.5000 |"),
            "{md}"
        );
        assert!(md.contains("| **ratio** | | **2.00×** |"), "{md}");
    }

    #[test]
    fn the_breakdown_comes_from_the_aggregate_run() {
        // 0.8 s of its 1 s is encode + prefill, 0.12 s model steps; alone: 0.09 s
        assert_eq!(
            breakdown(&report()).split(". The same").next(),
            Some(
                "Inside vinscan's aggregate run: vision encode + prefill 0.8 s (80 % of the wall time), model steps for the output tokens 0.1 s (12 %), everything else (loading, reading, rendering, tiling, sampling) 0.1 s"
            )
        );
        assert!(breakdown(&report()).contains("spent 0.1 s in model steps"));
    }

    #[test]
    fn another_projector_is_estimated_from_the_probes() {
        let mut r = report();
        assert_eq!(projector_note(&r), None);
        r.aggregate.vinscan_ms = 20_000.0;
        r.aggregate.mtmd_sequential_ms = 30_000.0;
        r.probes.push(probe("f16", 1700.0, 14_000.0));
        // (30 + 4) / (20 + 4) s: one tile, 4 s more per tile for both peers
        let note = projector_note(&r).unwrap_or_default();
        assert!(note.starts_with("Both peers ran the q8_0 projector."), "{note}");
        assert!(
            note.ends_with("not measured: f16 (+4.0 s per tile): about 1.42×."),
            "{note}"
        );
    }
}
