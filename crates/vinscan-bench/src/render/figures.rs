//! Figures derived from the report that more than one section prints (ratios, shares, the
//! probes by projector), each computed in one place.

use crate::report::{Probe, Report, Runs};
use crate::stats::Stats;

/// The worst (largest) vinscan / llama-mtmd-cli compute ratio over the pages; 0 without pages.
pub fn worst_page_ratio(r: &Report) -> f64 {
    r.per_page.iter().map(Runs::ratio).fold(0.0, f64::max)
}

/// The engine-parity ratio (of the last parity page; NaN when parity was not run).
pub fn parity_ratio(r: &Report) -> f64 {
    r.parity.last().map_or(f64::NAN, Runs::ratio)
}

/// Pages per second: vinscan's aggregate run and llama-mtmd-cli one page after another.
pub fn aggregate_rates(r: &Report) -> (f64, f64) {
    let a = &r.aggregate;
    let pages = a.pages as f64;
    (pages / (a.vinscan_ms / 1e3), pages / (a.mtmd_sequential_ms / 1e3))
}

/// vinscan's aggregate pages/s over llama-mtmd-cli's.
pub fn aggregate_ratio(r: &Report) -> f64 {
    let (v, m) = aggregate_rates(r);
    v / m
}

/// Seconds the per-page runs (medians, one page at a time) spent in model steps.
pub fn alone_steps_s(r: &Report) -> f64 {
    r.per_page
        .iter()
        .map(|p| Stats::of_field(&p.vinscan, |v| v.steps_ms).in_seconds().median)
        .sum()
}

/// Seconds of llama-mtmd-cli's median wall times, summed over the pages.
pub fn mtmd_wall_s(r: &Report) -> f64 {
    r.per_page
        .iter()
        .map(|p| Stats::of_field(&p.mtmd, |m| m.wall).in_seconds().median)
        .sum()
}

/// The largest share of generation time spent in sampling and the grammar, first run of each
/// page (real schema).
pub fn real_sampling_share(r: &Report) -> f64 {
    r.per_page
        .iter()
        .filter_map(|p| p.vinscan.first())
        .map(|x| x.sample / x.generate)
        .fold(0.0, f64::max)
}

/// The same share on the engine-parity runs (medians; free string).
pub fn free_sampling_share(r: &Report) -> f64 {
    r.parity
        .iter()
        .map(|p| {
            let s = Stats::of_field(&p.vinscan, |v| v.sample).in_seconds();
            let g = Stats::of_field(&p.vinscan, |v| v.generate).in_seconds();
            s.median / g.median
        })
        .fold(0.0, f64::max)
}

/// The share of output tokens the grammar forced (first run of each page); NaN without tokens.
pub fn forced_share(r: &Report) -> f64 {
    let firsts = r.per_page.iter().filter_map(|p| p.vinscan.first());
    let (tokens, forced) = firsts.fold((0.0, 0.0), |(t, f), x| {
        (t + f64::from(x.generated), f + f64::from(x.forced))
    });
    if tokens > 0.0 { forced / tokens } else { f64::NAN }
}

/// How many times faster than transformers vinscan is on its slowest page (transformers /
/// vinscan); infinite when transformers ran no page.
pub fn transformers_speedup(r: &Report) -> f64 {
    let pages = r.transformers.iter().flat_map(|t| &t.pages);
    pages
        .map(|t| 1.0 / (t.vinscan_ms / t.result.total_ms))
        .fold(f64::INFINITY, f64::min)
}

/// The projector's floating-point operations per tile (NaN when its file lacks one of the
/// hyper-parameters).
pub fn flops_per_tile(r: &Report) -> f64 {
    r.encode.flops_per_tile.unwrap_or(f64::NAN)
}

/// What llama.cpp's vision encoder reaches, GFLOP/s (median time per tile).
pub fn vision_gflops(r: &Report) -> f64 {
    flops_per_tile(r) / (r.encode.per_tile_ms.median / 1e3) / 1e9
}

/// The machine's f32 GEMM peak as torch measured it (NaN when the transformers peer did not
/// run).
pub fn gemm_gflops(r: &Report) -> f64 {
    r.transformers.as_ref().map_or(f64::NAN, |t| t.gemm.gflops)
}

/// The fresh-process probe of a projector type.
pub fn probe<'a>(r: &'a Report, projector: &str) -> Option<&'a Probe> {
    r.probes.iter().find(|p| p.projector == projector)
}

/// The probe the memory goal reads: the q8_0 pair, else the f16 projector standing in.
pub fn memory_probe(r: &Report) -> Option<&Probe> {
    probe(r, "q8_0").or_else(|| probe(r, "f16"))
}

/// A probe's encode + prefill in seconds (NaN when that projector was not probed).
pub fn probe_encode_s(r: &Report, projector: &str) -> f64 {
    probe(r, projector).map_or(f64::NAN, |p| p.run.encode_prefill / 1e3)
}

/// The one-command goal's figures: (measurement minutes, setup minutes if given, from a clean
/// clone with the setup known).
pub fn run_minutes(r: &Report) -> (f64, Option<f64>, bool) {
    let setup = r.timing.setup_s.map(|s| s / 60.0);
    (
        r.timing.wall_s / 60.0,
        setup,
        r.timing.clean_clone && setup.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{page, report};

    #[test]
    fn ratios_follow_the_medians() {
        let mut r = report();
        r.per_page = vec![page("a", 1, 900.0, 1000.0), page("b", 3, 2200.0, 2000.0)];
        assert!((worst_page_ratio(&r) - 1.1).abs() < 1e-12);
        assert!(parity_ratio(&r).is_nan());
        r.aggregate.vinscan_ms = 1000.0;
        r.aggregate.mtmd_sequential_ms = 2000.0;
        assert!((aggregate_ratio(&r) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn shares_take_the_first_runs() {
        let mut r = report();
        r.per_page = vec![page("a", 1, 900.0, 1000.0)];
        // the test page: 10 tokens, 5 forced, 1 ms sampling of 100 ms generation
        assert_eq!(forced_share(&r), 0.5);
        assert_eq!(real_sampling_share(&r), 0.01);
        r.per_page.clear();
        assert!(forced_share(&r).is_nan());
    }

    #[test]
    fn the_memory_probe_is_q8_0_else_f16() {
        let mut r = report();
        let mut p = r.probes[0].clone();
        p.projector = "f16".into();
        r.probes = vec![p.clone()];
        assert_eq!(memory_probe(&r).map(|p| p.projector.as_str()), Some("f16"));
        p.projector = "q8_0".into();
        r.probes.push(p);
        assert_eq!(memory_probe(&r).map(|p| p.projector.as_str()), Some("q8_0"));
        assert!(probe_encode_s(&r, "bf16").is_nan());
    }
}
