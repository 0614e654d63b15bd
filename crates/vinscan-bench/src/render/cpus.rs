//! "Every CPU measured": this run's machine-dependent figures beside those of each other CPU
//! the benchmark has run on (`docs/bench/machines/`, [`crate::machines`]), so one page shows how
//! the engine fares on each kind of server users run.

use std::fmt::Write;

use crate::machines::{CpuFigures, FORMAT};
use crate::render::aggregate::server_rates;
use crate::render::figures::*;
use crate::report::Report;

/// This run's figures for its machine file.
pub fn figures(r: &Report) -> CpuFigures {
    let b = &r.encode.batching;
    CpuFigures {
        format: FORMAT,
        cpu: r.machine.cpu.clone(),
        cores: r.machine.cores,
        gpu_layers: r.settings.gpu_layers,
        llama_cpp_sys_2: r.build.llama_cpp_sys_2.clone(),
        transformers_over_vinscan: finite(transformers_speedup(r)),
        vision_gflops: finite(vision_gflops(r)),
        gemm_gflops: finite(gemm_gflops(r)),
        aggregate_over_mtmd: finite(aggregate_ratio(r)),
        aggregate_over_server: server_rates(r).and_then(|(v, s)| finite(v / s)),
        batched_over_unbatched: finite(b.batched_per_tile_ms.median / b.unbatched_per_tile_ms.median),
        note: None,
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The table, this run's row first.
pub fn section(this: &CpuFigures, others: &[CpuFigures]) -> String {
    let mut o = String::from("## Every CPU measured\n\n");
    let _ = writeln!(
        o,
        "The latest `ops/bench.sh` run on each CPU (kept in `docs/bench/machines/`), this report's first. Each row is a run of its own, on its own machine; the sections above are this report's.\n"
    );
    let _ = writeln!(
        o,
        "| CPU | cores | llama.cpp (llama-cpp-sys-2) | transformers / vinscan, slowest page | vision encode, GFLOP/s (share of f32 GEMM peak) | aggregate / llama-mtmd-cli sequential | aggregate / llama-server | batched / one graph per tile |\n|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(o, "{}", row(this, " (this report)"));
    for other in others {
        let _ = writeln!(o, "{}", row(other, ""));
    }
    o.push('\n');
    // what makes a kept row differ from this run's method, under the table
    let notes: Vec<String> = others
        .iter()
        .filter_map(|f| {
            Some(format!(
                "- {}: {}\n",
                f.cpu.as_deref().unwrap_or("n/a"),
                f.note.as_ref()?
            ))
        })
        .collect();
    if !notes.is_empty() {
        o.push_str(&notes.concat());
        o.push('\n');
    }
    o
}

/// One CPU's figures; `n/a` for what its run did not measure.
fn row(f: &CpuFigures, mark: &str) -> String {
    let encode = match (f.vision_gflops, f.gemm_gflops) {
        (Some(v), Some(peak)) => format!("{v:.0} ({:.0} % of {peak:.0})", 100.0 * v / peak),
        (Some(v), None) => format!("{v:.0}"),
        (None, _) => "n/a".into(),
    };
    let gpu = if f.gpu_layers > 0 { ", GPU" } else { "" };
    format!(
        "| {}{gpu}{mark} | {} | {} | {} | {encode} | {} | {} | {} |",
        f.cpu.as_deref().unwrap_or("n/a"),
        f.cores,
        f.llama_cpp_sys_2,
        times(f.transformers_over_vinscan),
        times(f.aggregate_over_mtmd),
        times(f.aggregate_over_server),
        times(f.batched_over_unbatched),
    )
}

/// A ratio as `1.23×`, `n/a` when it was not measured.
fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{x:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{report, server, transformers};

    #[test]
    fn this_report_comes_first_then_each_other_cpu() {
        let mut this = report();
        this.transformers = Some(transformers(300.0));
        this.llama_server = Some(server(500.0));
        let mut other = report();
        other.machine.cpu = Some("AMD EPYC".into());
        other.transformers = None;
        other.llama_server = None;
        let md = section(&figures(&this), &[figures(&other)]);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert_eq!(
            rows[1],
            "| CPU (this report) | 2 | 0.1.161 | 0.89× | 100 (33 % of 300) | 2.00× | 0.56× | 0.90× |"
        );
        // without the transformers peer there is no GEMM peak to compare against
        assert_eq!(
            rows[2],
            "| AMD EPYC | 2 | 0.1.161 | n/a | 100 | 2.00× | n/a | 0.90× |"
        );
        assert!(md.ends_with("| 0.90× |\n\n"), "no notes, no list: {md}");
    }

    #[test]
    fn a_kept_rows_note_goes_under_the_table() {
        let this = figures(&report());
        let mut other = report();
        other.machine.cpu = Some("AMD EPYC".into());
        let mut other = figures(&other);
        other.note = Some("measured at -O2".into());
        let md = section(&this, &[other]);
        assert!(
            md.ends_with("| 0.90× |\n\n- AMD EPYC: measured at -O2\n\n"),
            "{md}"
        );
    }

    /// Every committed machine file parses and is named after its own figures, and the
    /// committed report's figures are its CPU's file.
    #[test]
    fn the_committed_machine_files_are_current_and_hold_the_committed_report() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench/machines");
        let paths = crate::machines::files(&dir).expect("docs/bench/machines");
        for path in &paths {
            let bytes = std::fs::read(path).expect("read");
            let f = CpuFigures::from_json(&bytes).expect("a current machine file");
            assert_eq!(
                path.file_name().and_then(|n| n.to_str()),
                Some(f.file_name().as_str())
            );
        }
        let committed = Report::from_json(include_bytes!("../../../../docs/bench/report.json"))
            .expect("docs/bench/report.json");
        let this = figures(&committed);
        let bytes =
            std::fs::read(dir.join(this.file_name())).expect("the committed report's CPU has its file");
        assert_eq!(CpuFigures::from_json(&bytes).expect("parse"), this);
    }

    #[test]
    fn a_gpu_run_says_so_and_unmeasured_ratios_are_not_numbers() {
        let mut r = report();
        r.settings.gpu_layers = 99;
        r.encode.per_tile_ms = crate::stats::Stats::of([0.0, 0.0]);
        let f = figures(&r);
        assert_eq!(f.vision_gflops, None, "infinite GFLOP/s is not a figure");
        assert!(row(&f, "").starts_with("| CPU, GPU | 2 |"), "{}", row(&f, ""));
        assert_eq!(times(None), "n/a");
        assert_eq!(times(Some(1.234)), "1.23×");
    }
}
