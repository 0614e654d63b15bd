//! "Every CPU measured": the machine-dependent figures of this report beside the latest report
//! of each other CPU the benchmark has run on (`docs/bench/machines/`), so one page shows how
//! the engine fares on each kind of server users run.

use std::fmt::Write;

use crate::render::aggregate::server_rates;
use crate::render::figures::*;
use crate::report::Report;

/// The table, this report's row first.
pub fn section(r: &Report, others: &[Report]) -> String {
    let mut o = String::from("## Every CPU measured\n\n");
    let _ = writeln!(
        o,
        "The latest `ops/bench.sh` run on each CPU (its report.json is kept in `docs/bench/machines/`), this report's first. Each row is a run of its own, on its own machine; the sections above are this report's.\n"
    );
    let _ = writeln!(
        o,
        "| CPU | cores | transformers / vinscan, slowest page | vision encode, GFLOP/s (share of f32 GEMM peak) | aggregate / llama-mtmd-cli sequential | aggregate / llama-server | batched / one graph per tile |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(o, "{}", row(r, " (this report)"));
    for other in others {
        let _ = writeln!(o, "{}", row(other, ""));
    }
    o.push('\n');
    o
}

/// One CPU's figures; `n/a` for what its run did not measure.
fn row(r: &Report, mark: &str) -> String {
    let (gflops, peak) = (vision_gflops(r), gemm_gflops(r));
    let encode = match (gflops.is_finite(), peak.is_finite()) {
        (true, true) => format!("{gflops:.0} ({:.0} % of {peak:.0})", 100.0 * gflops / peak),
        (true, false) => format!("{gflops:.0}"),
        _ => "n/a".into(),
    };
    let server = server_rates(r).map_or("n/a".into(), |(v, s)| times(v / s));
    let b = &r.encode.batching;
    format!(
        "| {}{mark} | {} | {} | {encode} | {} | {server} | {} |",
        r.machine.cpu.as_deref().unwrap_or("n/a"),
        r.machine.cores,
        times(transformers_speedup(r)),
        times(aggregate_ratio(r)),
        times(b.batched_per_tile_ms.median / b.unbatched_per_tile_ms.median),
    )
}

/// A ratio as `1.23×`, `n/a` when it could not be measured (NaN or infinite).
fn times(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}×")
    } else {
        "n/a".into()
    }
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
        let md = section(&this, &[other]);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert_eq!(
            rows[1],
            "| CPU (this report) | 2 | 0.89× | 100 (33 % of 300) | 2.00× | 0.56× | 0.90× |"
        );
        assert!(rows[2].starts_with("| AMD EPYC | 2 | n/a |"), "{md}");
        // without the transformers peer there is no GEMM peak to compare against
        assert!(rows[2].contains("| 100 | 2.00× | n/a |"), "{md}");
    }

    #[test]
    fn ratios_that_were_not_measured_say_so() {
        assert_eq!(times(f64::INFINITY), "n/a");
        assert_eq!(times(f64::NAN), "n/a");
        assert_eq!(times(1.234), "1.23×");
    }
}
