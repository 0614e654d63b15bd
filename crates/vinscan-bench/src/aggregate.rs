//! The aggregate run: one freshly loaded model, every page queued, `--parallel` workers each
//! taking the next page (their pages are in flight in the model together). A worker that fails
//! or panics fails the run: the aggregate is never computed over fewer pages.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use crate::measure::{Work, ms_since, vinscan_page};
use crate::report::{Unit, VinscanRun};
use crate::setup::Setup;

/// What the aggregate run measured.
pub struct AggregateRun {
    /// Wall time, model loading included.
    pub wall_ms: f64,
    pub load_ms: f64,
    /// One run per page.
    pub runs: Vec<VinscanRun>,
    /// Whether its language model ran flash attention (`None`: llama.cpp's `auto`, on a GPU).
    pub llm_flash_attention: Option<bool>,
}

impl AggregateRun {
    /// Model steps over every page.
    pub fn steps(&self) -> u32 {
        self.runs.iter().map(|r| r.steps).sum()
    }

    /// Vision encode + prefill summed over the pages.
    pub fn encode_prefill_ms(&self) -> f64 {
        self.runs.iter().map(|r| r.encode_prefill).sum()
    }

    /// The pages' shares of the model steps, summed: the model's whole generation time.
    pub fn steps_ms(&self) -> f64 {
        self.runs.iter().map(|r| r.steps_ms).sum()
    }
}

/// Every unit through `run` on `n` threads, each taking the next unit off one FIFO queue until
/// it is empty, so `n` units are in flight and they start in the order given (rayon's
/// work-stealing would start them in another order, which changes what is in flight together).
/// Returns one result per unit, grouped by thread (each thread's in the order it ran them); a
/// failure (a unit's error, named by the unit, or a panicked thread) fails the whole, the first
/// thread's failure reported when several fail.
pub fn in_flight<T: Send>(
    units: &[Unit],
    n: u32,
    run: impl Fn(&Unit) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let queue = Mutex::new(units.iter().collect::<VecDeque<_>>());
    let drain = || -> anyhow::Result<Vec<T>> {
        let mut done = Vec::new();
        loop {
            let next = queue
                .lock()
                .map_err(|_| anyhow!("the page queue was poisoned by a panicked thread"))?
                .pop_front();
            let Some(unit) = next else { break };
            done.push(run(unit).with_context(|| unit.name.clone())?);
        }
        Ok(done)
    };
    let per_thread: Vec<anyhow::Result<Vec<T>>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n.max(1)).map(|_| scope.spawn(drain)).collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a thread panicked"))))
            .collect()
    });
    let mut all = Vec::with_capacity(units.len());
    for done in per_thread {
        all.extend(done?);
    }
    if all.len() != units.len() {
        bail!("{} of {} pages measured", all.len(), units.len());
    }
    Ok(all)
}

/// Every page through one freshly loaded model, `--parallel` in flight, the pipeline's schema
/// capped at `--real-tokens`.
pub fn aggregate(setup: &Setup) -> anyhow::Result<AggregateRun> {
    let parallel = setup.args.parallel;
    let (model, load_ms) = setup.load(&setup.inputs.mmproj, parallel)?;
    let work = Work::real(&setup.pipeline, setup.args.real_tokens);
    let t = Instant::now();
    let runs = in_flight(&setup.units, parallel, |unit| {
        vinscan_page(&model, &setup.extractor, &work, unit)
    })
    .context("aggregate run")?;
    let wall_ms = ms_since(t) + load_ms;
    Ok(AggregateRun {
        wall_ms,
        load_ms,
        runs,
        llm_flash_attention: vinscan_core::VisionModel::info(&model).llm_flash_attention,
    })
}

/// `--aggregate-only`'s one JSON line.
#[derive(Serialize)]
struct AggregateOnly {
    pages: usize,
    parallel: u32,
    wall_ms: f64,
    load_ms: f64,
    model_steps: u32,
    tokens: u32,
    encode_prefill_ms: f64,
    steps_ms: f64,
    peak_rss_mb: f64,
    /// The engine's flash-attention setting for the language model (`null`: llama.cpp's).
    llm_flash_attention: Option<bool>,
}

/// `--aggregate-only`: the aggregate run alone, its figures as one JSON line on stdout.
pub fn run_aggregate_only(setup: &Setup) -> anyhow::Result<()> {
    let agg = aggregate(setup)?;
    let line = AggregateOnly {
        pages: setup.units.len(),
        parallel: setup.args.parallel,
        wall_ms: agg.wall_ms,
        load_ms: agg.load_ms,
        model_steps: agg.steps(),
        tokens: agg.runs.iter().map(|r| r.generated).sum(),
        encode_prefill_ms: agg.encode_prefill_ms(),
        steps_ms: agg.steps_ms(),
        peak_rss_mb: crate::machine::peak_rss_mb()?,
        llm_flash_attention: agg.llm_flash_attention,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn units(n: usize) -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                name: format!("u{i}"),
                source: PathBuf::from("p.png"),
                page: 0,
                image: PathBuf::from("p.png"),
                grid_image: PathBuf::from("p.png"),
                images: 1,
                grid: (1, 1),
            })
            .collect()
    }

    #[test]
    fn every_unit_runs_once_with_at_most_n_in_flight() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut done = in_flight(&units(9), 3, |u| {
            let k = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(k, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(u.name.clone())
        })
        .expect("all ran");
        done.sort();
        assert_eq!(done, (0..9).map(|i| format!("u{i}")).collect::<Vec<_>>());
        assert!((1..=3).contains(&most.load(Ordering::SeqCst)));
    }

    #[test]
    fn a_failing_unit_fails_the_whole_and_is_named() {
        let e = in_flight(&units(4), 2, |u| {
            if u.name == "u2" {
                bail!("broken page")
            }
            Ok(())
        })
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert_eq!(e, "u2: broken page");
    }

    #[test]
    fn a_panicking_thread_fails_the_whole() {
        let r = in_flight(&units(2), 2, |u| {
            if u.name == "u1" {
                panic!("boom")
            }
            Ok(())
        });
        assert!(r.is_err());
    }
}
