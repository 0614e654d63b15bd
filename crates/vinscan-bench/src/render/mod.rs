//! docs/BENCHMARKS.md from the report: every figure, the ratios, and whether each goal of the
//! benchmark holds, with the reason when it does not. One function per section.

mod aggregate;
pub mod cpus;
mod decoding;
mod figures;
mod goals;
mod machine;
mod memory;
mod peers;
mod per_page;
mod stages;
#[cfg(test)]
mod testdata;

use crate::machines::CpuFigures;
use crate::report::Report;
use crate::stats::Stats;

/// The whole Markdown report: this run's, with the figures of each other CPU measured
/// (`others`, [`crate::machines::others`]) beside its own.
pub fn markdown(r: &Report, others: &[CpuFigures]) -> String {
    [
        machine::section(r),
        per_page::section(r),
        stages::section(r),
        aggregate::section(r),
        decoding::section(r),
        peers::section(r),
        memory::section(r),
        goals::section(r),
        cpus::section(&cpus::figures(r), others),
        goals::gpu_section(),
    ]
    .concat()
}

/// `min / **median** / max` in seconds, two decimals.
fn secs(s: Stats) -> String {
    format!("{:.2} / **{:.2}** / {:.2}", s.min, s.median, s.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed docs/BENCHMARKS.md is exactly the rendering of the committed
    /// docs/bench/report.json: `vinscan-bench --rewrite-report` reproduces it byte for byte.
    #[test]
    fn the_committed_report_renders_to_the_committed_benchmarks_md() {
        let report = Report::from_json(include_bytes!("../../../../docs/bench/report.json"))
            .expect("docs/bench/report.json");
        let machines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench/machines");
        let others =
            crate::machines::others(&machines, &cpus::figures(&report)).expect("docs/bench/machines");
        let rendered = markdown(&report, &others);
        let committed = include_str!("../../../../docs/BENCHMARKS.md");
        if rendered != committed {
            let first = rendered
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "differs from docs/BENCHMARKS.md at line {}:\n  rendered:  {:?}\n  committed: {:?}",
                first + 1,
                rendered.lines().nth(first),
                committed.lines().nth(first)
            );
        }
    }

    #[test]
    fn sections_come_in_order() {
        let md = markdown(&testdata::report(), &[]);
        let at = |h: &str| md.find(h).unwrap_or(usize::MAX);
        let order = [
            "# Benchmarks",
            "## Machine and builds",
            "## Per page",
            "### Stage profile",
            "## Aggregate throughput",
            "## Constrained decoding",
            "## Reference Python",
            "## Memory",
            "## Goals",
            "## Every CPU measured",
            "## GPU",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{md}");
    }

    #[test]
    fn secs_bolds_the_median() {
        assert_eq!(secs(Stats::of([1.0, 2.5, 4.0])), "1.00 / **2.50** / 4.00");
    }
}
