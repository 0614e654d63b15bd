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
    if let Some(server) = server_section(r) {
        let _ = writeln!(o, "{server}");
    }
    if let Some(note) = projector_note(r) {
        let _ = writeln!(o, "{note}\n");
    }
    o
}

/// vinscan against llama-server on the same pages, both warm (loading apart), with where each
/// one's time went: the server's own `prompt_ms` (encode + prefill) and `predicted_ms`
/// (generation) summed over the pages against vinscan's stages in its aggregate run.
fn server_section(r: &Report) -> Option<String> {
    let s = r.llama_server.as_ref()?;
    let (v_rate, s_rate) = server_rates(r)?;
    let a = &r.aggregate;
    let sum = |f: fn(&crate::report::ServerPage) -> f64| s.pages.iter().map(f).sum::<f64>() / 1e3;
    let (s_prompt, s_gen) = (sum(|p| p.prompt_ms), sum(|p| p.predicted_ms));
    let s_tokens: u32 = s.pages.iter().map(|p| p.tokens).sum();
    let mut o = String::new();
    let _ = writeln!(o, "### vinscan vs llama-server\n");
    let _ = writeln!(
        o,
        "The same {} pages, prompts, images and JSON Schema through `llama-server` ({}) with `--parallel {}` (continuous batching), driven by {} concurrent clients posting to `/completion` (the schema as `json_schema`, which the server turns into its GBNF grammar; greedy, the same cap). Both are warm: loading is left out of both walls (vinscan {:.1} s, llama-server {:.1} s until `/health` answered).\n",
        a.pages,
        s.source,
        s.parallel,
        s.parallel,
        a.load_ms / 1e3,
        s.load_ms / 1e3
    );
    let _ = writeln!(
        o,
        "| | wall (s) | pages/s | encode + prefill (s, summed over pages) | generation (s, summed) | output tokens |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        o,
        "| vinscan, {} in flight | {:.1} | {v_rate:.4} | {:.1} | {:.1} | {} |",
        r.settings.parallel,
        (a.vinscan_ms - a.load_ms) / 1e3,
        a.encode_prefill_ms / 1e3,
        a.steps_ms / 1e3,
        a.tokens
    );
    let _ = writeln!(
        o,
        "| llama-server, {} slots | {:.1} | {s_rate:.4} | {s_prompt:.1} | {s_gen:.1} | {s_tokens} |",
        s.parallel,
        s.wall_ms / 1e3
    );
    let _ = writeln!(o, "| **ratio** | | **{:.2}×** | | | |\n", v_rate / s_rate);
    let _ = writeln!(
        o,
        "Each side ran once (the other comparisons alternate A/B runs). The server's figures are its own per-request `timings`, which overlap in time across slots, as vinscan's per-page stage times do; a slot's generation time includes waiting for the other slots' image encodes, which llama-server runs between decode steps."
    );
    Some(o)
}

/// vinscan's and llama-server's warm pages/s (loading left out of both); `None` without the
/// server peer.
pub fn server_rates(r: &Report) -> Option<(f64, f64)> {
    let s = r.llama_server.as_ref()?;
    let pages = r.aggregate.pages as f64;
    Some((
        pages / ((r.aggregate.vinscan_ms - r.aggregate.load_ms) / 1e3),
        s.pages.len() as f64 / (s.wall_ms / 1e3),
    ))
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
    fn llama_server_is_compared_warm_with_its_own_timings() {
        let mut r = report();
        assert!(!section(&r).contains("llama-server"));
        r.llama_server = Some(crate::render::testdata::server(1800.0));
        let md = section(&r);
        // vinscan: 1 page in 1.0 s less 0.1 s of loading; llama-server: 1 page in 1.8 s
        assert!(
            md.contains("| vinscan, 4 in flight | 0.9 | 1.1111 | 0.8 | 0.1 | 10 |"),
            "{md}"
        );
        assert!(
            md.contains("| llama-server, 4 slots | 1.8 | 0.5556 | 1.2 | 0.5 | 12 |"),
            "{md}"
        );
        assert!(md.contains("| **ratio** | | **2.00×** | | | |"), "{md}");
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
