//! "Memory": peak RSS of a fresh process per projector type, of llama-mtmd-cli, and of the
//! benchmark process after the aggregate run.

use std::fmt::Write;

use crate::report::Report;
use crate::stats::Stats;

/// The probe table and the peers' peaks.
pub fn section(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Memory\n");
    let _ = writeln!(
        o,
        "Peak RSS of a fresh vinscan process that loads the q8_0 LLM and a projector ({} context cells, {} sequences) and extracts one page:\n",
        r.settings.ctx_size, r.settings.parallel
    );
    let _ = writeln!(o, "| projector | peak RSS (MB) |\n|---|---|");
    for p in &r.probes {
        let _ = writeln!(o, "| {} | {:.0} |", p.projector, p.peak_rss_mb);
    }
    let main_type = &r.files.mmproj_type;
    let _ = writeln!(
        o,
        "\n`llama-mtmd-cli` ({main_type} projector) peaked at {:.0} MB on its largest page. The benchmark process itself, after the aggregate run ({} pages in flight, {main_type} projector): {:.0} MB.\n",
        mtmd_peak_mb(r),
        r.settings.parallel,
        r.peak_rss_mb
    );
    o
}

/// llama-mtmd-cli's highest peak RSS over every page and run.
fn mtmd_peak_mb(r: &Report) -> f64 {
    let runs = r.per_page.iter().flat_map(|p| &p.mtmd);
    Stats::of(runs.map(|m| m.peak_rss_mb)).max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{probe, report};

    #[test]
    fn one_row_per_probe_and_the_peers_peaks() {
        let mut r = report();
        r.probes.push(probe("f32", 2300.0, 12_000.0));
        r.per_page[0].mtmd[0].peak_rss_mb = 1356.4;
        let md = section(&r);
        assert!(md.contains("(4096 context cells, 4 sequences)"), "{md}");
        assert!(md.contains("| q8_0 | 1000 |\n| f32 | 2300 |\n"), "{md}");
        assert!(md.contains("peaked at 1356 MB on its largest page"), "{md}");
        assert!(
            md.contains("(4 pages in flight, q8_0 projector): 1100 MB.\n\n"),
            "{md}"
        );
    }
}
