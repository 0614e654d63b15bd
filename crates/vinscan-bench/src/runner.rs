//! The full benchmark, step by step: (1) the schemas, (2) per page A/B against llama-mtmd-cli,
//! (3) the aggregate run, (4) fresh-process memory probes, (5) the vision encoder alone,
//! (6) transformers and Tesseract, (7) the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use vinscan_convert::fidelity::{TraceConfig, Tracer};
use vinscan_core::VisionModel;
use vinscan_core::extract::tile_range;
use vinscan_core::tiling::tile_page;
use vinscan_llama::matmul::{MatmulType, probe_matmul};
use vinscan_llama::vision_flops_per_tile;
use vinscan_schema::Schema;

use crate::aggregate::{AggregateRun, aggregate};
use crate::machine::{file_mb, machine, peak_rss_mb};
use crate::measure::{Work, fixed_schema, ms_since, vinscan_page};
use crate::mtmd::MtmdCli;
use crate::pages::{is_single_tile_image, smallest};
use crate::peers::{PeerRequest, PythonPeer, tesseract};
use crate::probe::{LlmAttention, probe, projector_type};
use crate::report::*;
use crate::server::LlamaServer;
use crate::setup::Setup;
use crate::stats::Stats;

/// vinscan's features in this binary: it always runs the product through llama.cpp and pdfium.
const FEATURES: [&str; 2] = ["llama", "pdf"];

/// Progress on stderr, with the seconds since the start.
struct Log(Instant);

impl Log {
    fn say(&self, what: &str) {
        eprintln!("[bench {:>5.0} s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// The two outputs every peer decodes, and their files for llama-mtmd-cli (which converts the
/// same JSON Schema to its own GBNF grammar).
struct Schemas {
    fixed: Arc<Schema>,
    fixed_file: PathBuf,
    real_file: PathBuf,
}

/// Step 1: the schemas exactly as vinscan hands them to llguidance, written for llama-mtmd-cli.
fn schemas(setup: &Setup) -> anyhow::Result<Schemas> {
    let work = &setup.args.work_dir;
    let fixed = Arc::new(fixed_schema(setup.args.tokens)?);
    let fixed_file = work.join("fixed-output.schema.json");
    std::fs::write(&fixed_file, serde_json::to_vec(fixed.grammar())?)?;
    let real_file = work.join("real-output.schema.json");
    std::fs::write(&real_file, serde_json::to_vec(setup.pipeline.schema.grammar())?)?;
    Ok(Schemas {
        fixed,
        fixed_file,
        real_file,
    })
}

/// Step 2's results.
struct PerPage {
    parity: Vec<ParityPage>,
    /// vinscan's time (ms) for engine parity's free string on each page other than the parity
    /// page that the transformers peer runs, one run each: the same work as the peer's.
    free_string_ms: Vec<(String, f64)>,
    pages: Vec<PageResult>,
    system_info: String,
    /// Whether the per-page runs' language model ran flash attention (`ModelInfo`).
    llm_flash_attention: Option<bool>,
    load_ms: f64,
}

/// One A/B series on a page: `reps` pairs, the order alternating.
fn ab(
    model: &dyn VisionModel,
    setup: &Setup,
    mtmd: &MtmdCli,
    unit: &Unit,
    work: &Work,
    schema_file: &std::path::Path,
    reps: u32,
) -> anyhow::Result<(Vec<VinscanRun>, Vec<MtmdRun>)> {
    let (mut v, mut m) = (Vec::new(), Vec::new());
    let vinscan = || vinscan_page(model, &setup.extractor, work, unit);
    for rep in 0..reps.max(1) {
        let vinscan_first = rep % 2 == 0;
        if vinscan_first {
            v.push(vinscan()?);
        }
        m.push(mtmd.run(&work.pipeline, unit, work.pipeline.max_tokens, schema_file)?);
        if !vinscan_first {
            v.push(vinscan()?);
        }
    }
    Ok((v, m))
}

/// Step 2: per page, A/B against llama-mtmd-cli: vinscan warm (the daemon's case),
/// llama-mtmd-cli as a process per page, its model loading measured apart.
fn per_page(setup: &Setup, schemas: &Schemas, mtmd: &MtmdCli, log: &Log) -> anyhow::Result<PerPage> {
    let args = &setup.args;
    let (model, load_ms) = setup.load(&setup.inputs.mmproj, args.parallel)?;
    let first = setup.units.first().context("no pages")?;
    // 2a. warm the page cache and llama.cpp's first-use allocations (4 tokens, else the whole
    //     parity length when the forced opening is longer)
    let warm = Work::fixed(&setup.pipeline, &schemas.fixed, 4);
    let fixed = Work::fixed(&setup.pipeline, &schemas.fixed, args.tokens);
    vinscan_page(&model, &setup.extractor, &warm, first)
        .or_else(|_| vinscan_page(&model, &setup.extractor, &fixed, first))?;
    // 2b. engine parity: a free string of exactly `--tokens` (nothing forced, nothing to
    //     fast-forward), on the single-tile image
    let mut parity = Vec::new();
    for unit in setup.units.iter().filter(|u| is_single_tile_image(u)).take(1) {
        let (vinscan, mtmd_runs) = ab(&model, setup, mtmd, unit, &fixed, &schemas.fixed_file, args.reps)?;
        let p = ParityPage {
            unit: unit.clone(),
            vinscan,
            mtmd: mtmd_runs,
        };
        log.say(&format!(
            "{} (free string): vinscan {:.0} ms, llama-mtmd-cli {:.0} ms (+{:.0} ms load)",
            unit.name,
            p.vinscan_median(|r| r.total),
            p.mtmd_median(|r| r.compute),
            p.mtmd_median(|r| r.load)
        ));
        parity.push(p);
    }
    // 2b'. the same free string once on the other pages the transformers peer will run (its
    //     work; none without the peer)
    let peer_pages = if args.python.is_some() && args.checkpoint.is_some() {
        args.transformers_pages.saturating_sub(parity.len())
    } else {
        0
    };
    let mut free_string_ms = Vec::new();
    for unit in setup
        .units
        .iter()
        .filter(|u| !parity.iter().any(|p| p.unit.name == u.name))
        .take(peer_pages)
    {
        let run = vinscan_page(&model, &setup.extractor, &fixed, unit)?;
        log.say(&format!(
            "{} (free string): vinscan {:.0} ms",
            unit.name, run.total
        ));
        free_string_ms.push((unit.name.clone(), run.total));
    }
    // 2c. the pipeline's work: its real schema, output capped at `--real-tokens`; the
    //     single-tile image gets `--reps`, pages costing more (or PDF pages, alike) fewer
    let real = Work::real(&setup.pipeline, args.real_tokens);
    let mut pages = Vec::new();
    for unit in &setup.units {
        let reps = if is_single_tile_image(unit) {
            args.reps
        } else {
            args.reps_large
        };
        let (vinscan, mtmd_runs) = ab(&model, setup, mtmd, unit, &real, &schemas.real_file, reps)?;
        let p = page_result(unit, vinscan, mtmd_runs);
        log.say(&page_line(&p));
        pages.push(p);
    }
    Ok(PerPage {
        parity,
        free_string_ms,
        pages,
        system_info: model.info().system_info.clone(),
        llm_flash_attention: model.info().llm_flash_attention,
        load_ms,
    })
}

/// A page's runs, with the first outputs compared and vinscan's validation.
fn page_result(unit: &Unit, vinscan: Vec<VinscanRun>, mtmd: Vec<MtmdRun>) -> PageResult {
    let same_output = vinscan.first().map(|r| r.text.trim()) == mtmd.first().map(|r| r.text.as_str());
    let validate = vinscan.first().map(|r| r.validation).unwrap_or_default();
    PageResult {
        unit: unit.clone(),
        vinscan,
        mtmd,
        same_output,
        validate,
    }
}

fn page_line(p: &PageResult) -> String {
    let first = p.vinscan.first();
    format!(
        "{}: vinscan {:.0} ms ({} tokens, {} steps), llama-mtmd-cli {:.0} ms (+{:.0} ms load, {}), same output: {}",
        p.unit.name,
        p.vinscan_median(|r| r.total),
        first.map_or(0, |r| r.generated),
        first.map_or(0, |r| r.steps),
        p.mtmd_median(|r| r.compute),
        p.mtmd_median(|r| r.load),
        p.mtmd.first().map_or(String::new(), |r| r.stop.to_string()),
        p.same_output
    )
}

/// Step 5: llama.cpp's vision encoder alone, per tile, through the tracer (twice).
fn vision_encode(setup: &Setup) -> anyhow::Result<VisionEncode> {
    let mut tracer = Tracer::load(&TraceConfig {
        model: setup.inputs.model.clone(),
        mmproj: setup.inputs.mmproj.clone(),
        threads: setup.args.threads,
        ctx_size: 4096,
        gpu_layers: setup.args.gpu_layers,
    })?;
    let small = smallest(&setup.units)?;
    let img = image::open(&small.image)?.to_rgb8();
    let (min_tiles, max_tiles) = tile_range(&setup.pipeline, setup.meta.max_tiles);
    let tiled = tile_page(&img, min_tiles, max_tiles)?;
    let (w, h) = tiled.image.dimensions();
    let mut per_tile = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let chunks = tracer.encode_image(tiled.image.as_raw(), w, h)?;
        per_tile.push(ms_since(t) / chunks.len().max(1) as f64);
    }
    let largest = setup.units.iter().max_by_key(|u| u.images).context("no pages")?;
    Ok(VisionEncode {
        per_tile_ms: Stats::of(per_tile),
        flops_per_tile: vision_flops_per_tile(&setup.inputs.mmproj),
        batching: tile_batching(&mut tracer, setup, largest)?,
        matmul: matmul_rates(setup.args.gpu_layers, setup.args.threads)?,
    })
}

/// Step 5c: ggml's CPU matrix product per weight type at the encoder's shape; nothing when the
/// model is on the GPU.
fn matmul_rates(gpu_layers: u32, threads: u32) -> anyhow::Result<Vec<MatmulProbe>> {
    if gpu_layers > 0 {
        return Ok(Vec::new());
    }
    Ok(probe_matmul(&MatmulType::ALL, threads)?
        .into_iter()
        .map(|r| MatmulProbe {
            weights: r.weights.name().to_owned(),
            gflops: r.gflops,
        })
        .collect())
}

/// Step 5b: the page with the most tiles, tokenised once, encoded one tile per graph and
/// through mtmd's batch API: one untimed pass each (graph allocation), then two timed pairs,
/// the order alternating; and how far apart the two ways' embeddings are.
fn tile_batching(tracer: &mut Tracer, setup: &Setup, unit: &Unit) -> anyhow::Result<TileBatching> {
    let img = image::open(&unit.image)?.to_rgb8();
    let (min_tiles, max_tiles) = tile_range(&setup.pipeline, setup.meta.max_tiles);
    let tiled = tile_page(&img, min_tiles, max_tiles)?;
    let (w, h) = tiled.image.dimensions();
    let image = tracer.tokenize_image(tiled.image.as_raw(), w, h)?;
    let tiles = image.len().max(1) as f64;
    let mut one_by_one = tracer.encode_tokenized(&image)?;
    let (mut in_batches, mut batch_sizes) = tracer.encode_tokenized_batched(&image)?;
    let (mut unbatched, mut batched) = (Vec::new(), Vec::new());
    for rep in 0..2 {
        for batched_turn in [rep % 2 == 1, rep % 2 == 0] {
            let t = Instant::now();
            if batched_turn {
                (in_batches, batch_sizes) = tracer.encode_tokenized_batched(&image)?;
                batched.push(ms_since(t) / tiles);
            } else {
                one_by_one = tracer.encode_tokenized(&image)?;
                unbatched.push(ms_since(t) / tiles);
            }
        }
    }
    anyhow::ensure!(
        one_by_one.len() == in_batches.len(),
        "{} tiles one by one, {} in batches",
        one_by_one.len(),
        in_batches.len()
    );
    let max_abs_diff = one_by_one
        .iter()
        .zip(&in_batches)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())))
        .fold(0.0, f64::max);
    Ok(TileBatching {
        page: unit.name.clone(),
        tiles: one_by_one.len(),
        unbatched_per_tile_ms: Stats::of(unbatched),
        batched_per_tile_ms: Stats::of(batched),
        batch_sizes,
        max_abs_diff,
    })
}

/// Step 6a: the transformers peer, on the parity page first and then the other pages, up to
/// `--transformers-pages`; `None` without `--python` and `--checkpoint`.
fn transformers(setup: &Setup, pp: &PerPage, log: &Log) -> anyhow::Result<Option<Transformers>> {
    let args = &setup.args;
    let (Some(python), Some(checkpoint)) = (&args.python, &args.checkpoint) else {
        return Ok(None);
    };
    let (mut peer, ready) = PythonPeer::start(python, &args.peer_script, checkpoint, args.threads)?;
    let gemm = peer.gemm()?;
    let parity = pp.parity.iter().map(|p| {
        (
            &p.unit,
            p.vinscan_median(|r| r.total),
            p.mtmd_median(|r| r.compute),
        )
    });
    // every other page: vinscan's one free-string run, beside llama-mtmd-cli's compute on the
    // pipeline's work (the page's only llama-mtmd-cli run)
    let others = pp.pages.iter().filter_map(|p| {
        let free = pp.free_string_ms.iter().find(|(name, _)| *name == p.unit.name)?;
        Some((&p.unit, free.1, p.mtmd_median(|r| r.compute)))
    });
    let mut pages = Vec::new();
    for (unit, vinscan_ms, mtmd_compute_ms) in parity.chain(others).take(args.transformers_pages) {
        let result = peer.page(&PeerRequest::Page {
            image: &unit.image,
            max_tiles: setup.meta.max_tiles,
            tokens: args.tokens,
            system: &setup.pipeline.system_prompt,
            prompt: &setup.pipeline.prompt,
        })?;
        log.say(&format!("transformers {}: {} ms", unit.name, result.total_ms));
        pages.push(TransformersPage {
            page: unit.name.clone(),
            result,
            vinscan_ms,
            mtmd_compute_ms,
        });
    }
    Ok(Some(Transformers {
        load_ms: ready.load_ms,
        gemm,
        pages,
    }))
}

/// What steps 3 to 6 measured, for the report.
struct Rest {
    agg: AggregateRun,
    rss_mb: f64,
    probes: Vec<Probe>,
    llm_flash_attention: Option<Probe>,
    llm_plain_attention: Option<Probe>,
    encode: VisionEncode,
    llama_server: Option<ServerAggregate>,
    transformers: Option<Transformers>,
    tesseract: Option<Vec<TesseractPage>>,
}

/// The full benchmark: measures, writes report.json (to `--work-dir` and `--report-json`) and
/// the Markdown report.
pub fn run(setup: &Setup, started: Instant) -> anyhow::Result<()> {
    let args = &setup.args;
    let log = Log(started);
    let names: Vec<String> = setup
        .units
        .iter()
        .map(|u| format!("{} ({} images)", u.name, u.images))
        .collect();
    log.say(&format!("{} pages: {}", setup.units.len(), names.join(", ")));
    // 1. the schemas
    let schemas = schemas(setup)?;
    // 2. per page A/B (the model is dropped before the aggregate run loads its own)
    let mtmd = MtmdCli {
        exe: args
            .mtmd_cli
            .clone()
            .context("--mtmd-cli is required for the full benchmark")?,
        model: setup.inputs.model.clone(),
        mmproj: setup.inputs.mmproj.clone(),
        threads: args.threads,
        ctx: args.ctx_size,
        gpu_layers: args.gpu_layers,
    };
    let pp = per_page(setup, &schemas, &mtmd, &log)?;
    // 3. aggregate: every page through one freshly loaded model, `--parallel` in flight,
    //    against llama-mtmd-cli run once per page, one after another (medians of step 2c)
    let agg = aggregate(setup)?;
    let rss_mb = peak_rss_mb()?;
    log.say(&format!(
        "aggregate: {} pages in {:.1} s",
        setup.units.len(),
        agg.wall_ms / 1e3
    ));
    if agg.llm_flash_attention != pp.llm_flash_attention {
        // each load times both attentions; a near tie can come out either way
        log.say(&format!("note: the aggregate's engine chose flash attention {:?}, the per-page runs' {:?}; the report records the per-page runs'", agg.llm_flash_attention, pp.llm_flash_attention));
    }
    // 3b. the llama-server peer on the same pages, as many slots and clients as pages in flight
    let llama_server = match &args.llama_server {
        Some(exe) => {
            let server = LlamaServer {
                exe: exe.clone(),
                source: args.llama_server_source.clone(),
                model: setup.inputs.model.clone(),
                mmproj: setup.inputs.mmproj.clone(),
                threads: args.threads,
                ctx: args.ctx_size,
                parallel: args.parallel,
                gpu_layers: args.gpu_layers,
                log: args.work_dir.join("llama-server.log"),
            };
            let run = server.aggregate(
                &setup.pipeline,
                &setup.units,
                args.real_tokens,
                &schemas.real_file,
            )?;
            log.say(&format!(
                "llama-server: {} pages in {:.1} s",
                run.pages.len(),
                run.wall_ms / 1e3
            ));
            Some(run)
        }
        None => None,
    };
    // 4. memory: a fresh process per projector type, one page each; the projector every peer
    //    ran comes first
    let probes = std::iter::once(&setup.inputs.mmproj)
        .chain(&args.probe_mmproj)
        .map(|mmproj| probe(setup, mmproj, LlmAttention::Engine))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // 4b. the first probe again with the language model's flash attention on (llama.cpp's
    //     default) and off: vinscan's engine picks one by the pages in flight on the CPU
    let (llm_flash_attention, llm_plain_attention) = if args.gpu_layers == 0 {
        (
            Some(probe(setup, &setup.inputs.mmproj, LlmAttention::Flash)?),
            Some(probe(setup, &setup.inputs.mmproj, LlmAttention::Plain)?),
        )
    } else {
        (None, None)
    };
    log.say("memory probes done");
    // 5. the vision encoder alone
    let encode = vision_encode(setup)?;
    log.say("vision encode measured");
    // 6. transformers and Tesseract
    let transformers = transformers(setup, &pp, &log)?;
    let tesseract = match &args.tesseract {
        Some(exe) => Some(tesseract(exe, &setup.units, args.threads)?),
        None => None,
    };
    // 7. the report
    let rest = Rest {
        agg,
        rss_mb,
        probes,
        llm_flash_attention,
        llm_plain_attention,
        encode,
        llama_server,
        transformers,
        tesseract,
    };
    let report = report(setup, pp, rest, started)?;
    report.save(&args.work_dir.join("report.json"))?;
    report.save(&args.report_json)?;
    let others = crate::save_machine_figures(&report, &args.report_json)?;
    crate::write_markdown(&report, &others, &args.report)?;
    log.say(&format!(
        "wrote {}, {} and {}",
        args.report.display(),
        args.report_json.display(),
        args.work_dir.join("report.json").display()
    ));
    Ok(())
}

/// Step 7: everything measured, as the report.
fn report(setup: &Setup, pp: PerPage, rest: Rest, started: Instant) -> anyhow::Result<Report> {
    let (args, inputs) = (&setup.args, &setup.inputs);
    let agg = &rest.agg;
    Ok(Report {
        format: FORMAT,
        build: Build {
            version: vinscan_core::VERSION.to_owned(),
            features: FEATURES.map(str::to_owned).to_vec(),
            llama_cpp_sys_2: env!("VINSCAN_LLAMA_CPP_SYS_2").to_owned(),
            system_info: pp.system_info,
        },
        machine: machine()?,
        settings: Settings {
            threads: args.threads,
            tokens: args.tokens,
            real_tokens: args.real_tokens,
            ctx_size: args.ctx_size,
            parallel: args.parallel,
            gpu_layers: args.gpu_layers,
            // what the per-page runs' engine chose (or was told): `None` is llama.cpp's `auto`
            llm_flash_attention: pp.llm_flash_attention.unwrap_or(false),
        },
        files: ModelFiles {
            model: inputs.model.clone(),
            mmproj: inputs.mmproj.clone(),
            mmproj_type: projector_type(&inputs.mmproj)?,
            model_mb: file_mb(&inputs.model)?,
            mmproj_mb: file_mb(&inputs.mmproj)?,
        },
        load_ms: pp.load_ms,
        aggregate: Aggregate {
            pages: setup.units.len(),
            vinscan_ms: agg.wall_ms,
            load_ms: agg.load_ms,
            model_steps: agg.steps(),
            tokens: agg.runs.iter().map(|r| r.generated).sum(),
            encode_prefill_ms: agg.encode_prefill_ms(),
            steps_ms: agg.steps_ms(),
            mtmd_sequential_ms: pp.pages.iter().map(|p| p.mtmd_median(|m| m.wall)).sum(),
        },
        parity: pp.parity,
        per_page: pp.pages,
        probes: rest.probes,
        llm_flash_attention: rest.llm_flash_attention,
        llm_plain_attention: rest.llm_plain_attention,
        encode: rest.encode,
        llama_server: rest.llama_server,
        transformers: rest.transformers,
        tesseract: rest.tesseract,
        peak_rss_mb: rest.rss_mb,
        timing: Timing {
            wall_s: started.elapsed().as_secs_f64(),
            setup_s: args.setup_s,
            clean_clone: args.clean_clone,
        },
    })
}
