//! The aggregate run: one freshly loaded model, every page queued, `--parallel` workers each
//! taking the next page (their pages are in flight in the model together). A worker that fails
//! or panics fails the run: the aggregate is never computed over fewer pages.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use vinscan_core::VisionModel;

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

/// Takes pages off the queue until it is empty; stops at the first failure.
fn worker(
    model: &dyn VisionModel,
    setup: &Setup,
    work: &Work,
    queue: &Mutex<VecDeque<&Unit>>,
) -> anyhow::Result<Vec<VinscanRun>> {
    let mut done = Vec::new();
    loop {
        let next = queue
            .lock()
            .map_err(|_| anyhow!("the page queue was poisoned by a panicked worker"))?
            .pop_front();
        let Some(unit) = next else { break };
        let run = vinscan_page(model, &setup.extractor, work, unit).with_context(|| unit.name.clone())?;
        done.push(run);
    }
    Ok(done)
}

/// Every page through one freshly loaded model, `--parallel` in flight, the pipeline's schema
/// capped at `--real-tokens`.
pub fn aggregate(setup: &Setup) -> anyhow::Result<AggregateRun> {
    let parallel = setup.args.parallel;
    let (model, load_ms) = setup.load(&setup.inputs.mmproj, parallel)?;
    let work = Work::real(&setup.pipeline, setup.args.real_tokens);
    let queue = Mutex::new(setup.units.iter().collect::<VecDeque<_>>());
    let t = Instant::now();
    let per_worker: Vec<anyhow::Result<Vec<VinscanRun>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| scope.spawn(|| worker(&model, setup, &work, &queue)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("an aggregate worker panicked")))
            })
            .collect()
    });
    let wall_ms = ms_since(t) + load_ms;
    let mut runs = Vec::new();
    for done in per_worker {
        runs.extend(done.context("aggregate run")?);
    }
    if runs.len() != setup.units.len() {
        bail!(
            "the aggregate run measured {} of {} pages",
            runs.len(),
            setup.units.len()
        );
    }
    Ok(AggregateRun {
        wall_ms,
        load_ms,
        runs,
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
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}
