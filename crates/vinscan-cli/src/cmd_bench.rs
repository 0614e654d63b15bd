//! `vinscan bench`: vinscan against llama.cpp's own `llama-mtmd-cli` (built from the same
//! vendored source), the reference Python code (transformers) and Tesseract, in one run, on the
//! same GGUF, pages and output length; alternating A/B, min/median/max and ratios; writes
//! docs/BENCHMARKS.md and a JSON report (ops/bench.sh drives it and draws the plot).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use vinscan_convert::fidelity::{TraceConfig, Tracer};
use vinscan_core::document::{Document, Format, PdfRenderer};
use vinscan_core::extract::{page_request, parse_and_validate, tile_range};
use vinscan_core::tiling::tile_page;
use vinscan_core::{Pipeline, StopReason, VisionModel};
use vinscan_llama::{
    LlamaConfig, LlamaVisionModel, ProjectorMeta, read_projector_meta, vision_flops_per_tile,
};

use crate::cli::{BenchArgs, GlobalArgs};
use crate::model::{LazyPdf, catalog};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The fixed-length output every peer produces: one string the grammar keeps open for longer
/// than any run's token budget, so each run generates exactly `--tokens` tokens.
fn fixed_schema(tokens: u32) -> Value {
    let chars = (tokens as u64 * 16).max(256);
    json!({
        "type": "object", "additionalProperties": false, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": chars, "maxLength": chars}}
    })
}

/// One page the peers all process: an image file, or one page of a PDF rendered to PNG for the
/// peers that cannot read PDF (vinscan still renders it itself, inside its timing).
#[derive(Debug, Clone, Serialize)]
struct Unit {
    name: String,
    source: PathBuf,
    page: u32,
    /// The image file transformers and Tesseract read (the original, or the rendered PDF page).
    image: PathBuf,
    /// The page stretched to InternVL's tile grid, for `llama-mtmd-cli`: its own slicing
    /// (LLaVA-UHD's best-resolution search) picks other grids than InternVL's
    /// `dynamic_preprocess` for some pages (600×600: 2×2 + thumbnail instead of 1 tile), while on
    /// an image already at grid size it cuts exactly InternVL's tiles; vinscan hands mtmd the
    /// same stretched image internally.
    grid_image: PathBuf,
    images: u32,
    grid: (u32, u32),
}

#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    n: usize,
    min: f64,
    median: f64,
    max: f64,
}

fn stats(values: &[f64]) -> Stats {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Stats::default();
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Stats {
        n: v.len(),
        min: v[0],
        median,
        max: v[v.len() - 1],
    }
}

/// One vinscan run on a page, stage by stage (milliseconds).
#[derive(Debug, Clone, Default, Serialize)]
struct VinscanRun {
    read: f64,
    decode: f64,
    tiling: f64,
    encode_prefill: f64,
    generate: f64,
    /// The page's share of the model steps' decode time (`ModelTimings::step_share_ms`).
    steps_ms: f64,
    sample: f64,
    total: f64,
    prompt_tokens: u32,
    generated: u32,
    steps: u32,
    forced: u32,
    /// "end" (the JSON closed) or "cap" (the token budget ran out)
    stop: &'static str,
    #[serde(skip)]
    text: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct MtmdRun {
    wall: f64,
    load: f64,
    compute: f64,
    output_chars: usize,
    /// "end" when its output is a whole JSON value, else "cap"
    stop: &'static str,
    /// peak RSS of the process (wait4), MB
    peak_rss_mb: f64,
    #[serde(skip)]
    text: String,
}

/// Which output a run produces: the engine-parity free string of exactly `--tokens`, or the
/// pipeline's own schema capped at `--real-tokens` (ends earlier if the JSON closes).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Work {
    Fixed,
    Real,
}

fn vinscan_page(
    model: &dyn VisionModel,
    pdf: &dyn PdfRenderer,
    pipeline: &Pipeline,
    unit: &Unit,
    grammar: &Arc<Value>,
    tokens: u32,
    work: Work,
) -> anyhow::Result<VinscanRun> {
    let t0 = Instant::now();
    let bytes = std::fs::read(&unit.source).with_context(|| unit.source.display().to_string())?;
    let read = ms(t0);
    let t = Instant::now();
    let doc = Document::open(&unit.name, bytes, &pipeline.limits, Some(pdf))?;
    let page = doc.page(unit.page, pipeline.pdf_dpi, &pipeline.limits, Some(pdf))?;
    let decode = ms(t);
    let t = Instant::now();
    let (min_tiles, max_tiles) = tile_range(pipeline, model.info().max_tiles);
    let tiled = tile_page(&page.image, min_tiles, max_tiles)?;
    let tiling = ms(t);
    let g = model.generate(page_request(pipeline, tiled, Arc::clone(grammar), tokens))?;
    let exact_miss = work == Work::Fixed && g.generated_tokens != tokens;
    if exact_miss || g.images != unit.images {
        bail!(
            "{}: vinscan generated {} tokens from {} images, expected {tokens} from {}",
            unit.name,
            g.generated_tokens,
            g.images,
            unit.images
        );
    }
    Ok(VinscanRun {
        read,
        decode,
        tiling,
        encode_prefill: g.timings.encode_prefill_ms,
        generate: g.timings.generate_ms,
        steps_ms: g.timings.step_share_ms,
        sample: g.timings.sample_ms,
        total: ms(t0),
        prompt_tokens: g.prompt_tokens,
        generated: g.generated_tokens,
        steps: g.model_steps,
        forced: g.forced_tokens,
        stop: match g.stop {
            StopReason::EndOfOutput => "end",
            StopReason::MaxTokens => "cap",
        },
        text: g.text,
    })
}

struct MtmdCli<'a> {
    exe: &'a Path,
    model: &'a Path,
    mmproj: &'a Path,
    threads: u32,
    ctx: u32,
}

impl MtmdCli<'_> {
    /// One process per page, as a user runs it. `load`: until the CLI reports its model and
    /// projector loaded (its "experimental CLI" warning comes right after), `compute`: the rest.
    fn run(
        &self,
        pipeline: &Pipeline,
        unit: &Unit,
        tokens: u32,
        schema_file: &Path,
    ) -> anyhow::Result<MtmdRun> {
        let t0 = Instant::now();
        let mut child = Command::new(self.exe)
            .arg("-m")
            .arg(self.model)
            .arg("--mmproj")
            .arg(self.mmproj)
            .arg("--image")
            .arg(&unit.grid_image)
            .args(["-sys", &pipeline.system_prompt])
            .args(["-p", &format!("<__media__>\n{}", pipeline.prompt)])
            .args(["-n", &tokens.to_string(), "--temp", "0"])
            .args(["--repeat-penalty", &pipeline.repeat_penalty.to_string()])
            .args(["--repeat-last-n", &pipeline.repeat_last_n.to_string()])
            .args(["-t", &self.threads.to_string(), "-c", &self.ctx.to_string()])
            .args(["-b", "2048", "-ub", "512"])
            .arg("-jf")
            .arg(schema_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let reader = std::thread::spawn(move || {
            let mut ready = None;
            let mut chunks = 0u32;
            let mut tail = VecDeque::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if ready.is_none() && line.contains("experimental CLI") {
                    ready = Some(Instant::now());
                }
                // "encoding mtmd batch, n_chunks = 4 (done = 1, total = 7)": every chunk of the
                // user turn, the image chunks between two text chunks
                if let Some(total) = line.split("total = ").nth(1) {
                    let n: String = total.chars().take_while(char::is_ascii_digit).collect();
                    chunks = chunks.max(n.parse().unwrap_or(0));
                }
                tail.push_back(line);
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
            (ready, chunks, tail)
        });
        // a token budget can end inside a multi-byte character: keep what is text
        let mut raw = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            std::io::Read::read_to_end(&mut stdout, &mut raw)?;
        }
        let out = String::from_utf8_lossy(&raw).into_owned();
        let (status_ok, status, peak_rss_mb) = wait_rss(&mut child)?;
        let wall = ms(t0);
        let (ready, chunks, tail) = reader.join().map_err(|_| anyhow::anyhow!("stderr reader"))?;
        if !status_ok || !out.trim_start().starts_with('{') {
            bail!(
                "llama-mtmd-cli failed on {} ({status}): {}",
                unit.name,
                tail.into_iter().collect::<Vec<_>>().join("\n")
            );
        }
        // with one image chunk mtmd logs no batch line; with more, the images must be the unit's
        if chunks > 0 && chunks != unit.images + 2 {
            bail!(
                "llama-mtmd-cli encoded {} images of {}, vinscan {}: the work is not the same",
                chunks.saturating_sub(2),
                unit.name,
                unit.images
            );
        }
        let load = ready.map_or(f64::NAN, |r| (r - t0).as_secs_f64() * 1e3);
        let text = out.trim().to_owned();
        Ok(MtmdRun {
            wall,
            load,
            compute: wall - load,
            output_chars: text.chars().count(),
            stop: if serde_json::from_str::<Value>(&text).is_ok() {
                "end"
            } else {
                "cap"
            },
            peak_rss_mb,
            text,
        })
    }
}

/// The transformers peer: a long-lived Python worker (ops/bench/transformers_peer.py).
struct PythonPeer {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl PythonPeer {
    fn start(python: &Path, script: &Path, checkpoint: &Path, threads: u32) -> anyhow::Result<(Self, Value)> {
        let mut child = Command::new(python)
            .arg(script)
            .arg(checkpoint)
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut peer = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let ready = peer.read()?;
        Ok((peer, ready))
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let line = self.lines.next().context("the transformers peer exited")??;
        Ok(serde_json::from_str(&line)?)
    }

    fn ask(&mut self, request: &Value) -> anyhow::Result<Value> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "{request}")?;
        stdin.flush()?;
        self.read()
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Waits for a child and returns (success, exit description, its peak RSS in MB).
fn wait_rss(child: &mut Child) -> anyhow::Result<(bool, String, f64)> {
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child, which
    // `Child` has not reaped (we never call its wait before this)
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux
    Ok((
        ok,
        format!("wait status {status}"),
        usage.ru_maxrss as f64 / 1024.0,
    ))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn load(
    args: &BenchArgs,
    mmproj: &Path,
    parallel: u32,
    fast_forward: bool,
) -> anyhow::Result<(LlamaVisionModel, f64)> {
    let t = Instant::now();
    let mut config = LlamaConfig::new(args.model.clone(), mmproj.to_path_buf());
    config.threads = args.threads;
    config.ctx_size = args.ctx_size;
    config.parallel = parallel;
    config.fast_forward = fast_forward;
    let m = LlamaVisionModel::load(config)?;
    Ok((m, ms(t)))
}

fn units(
    args: &BenchArgs,
    pdf: &LazyPdf,
    pipeline: &Pipeline,
    max_tiles: u32,
    work: &Path,
) -> anyhow::Result<Vec<Unit>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.pages)
        .with_context(|| args.pages.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("page")
            .to_owned();
        let bytes = std::fs::read(&f)?;
        let Some(format) = Format::sniff(&bytes) else {
            continue;
        };
        let doc = Document::open(&name, bytes, &pipeline.limits, Some(pdf))?;
        for index in 0..doc.page_count() {
            let page = doc.page(index, pipeline.pdf_dpi, &pipeline.limits, Some(pdf))?;
            let (min_tiles, max_tiles) = tile_range(pipeline, max_tiles);
            let tiled = tile_page(&page.image, min_tiles, max_tiles)?;
            let (image, label) = if format == Format::Pdf {
                let png = work.join(format!("{name}.p{}.png", index + 1));
                page.image.save(&png)?;
                (png, format!("{name} p{}", index + 1))
            } else {
                (f.clone(), name.clone())
            };
            let grid_image = work.join(format!("{name}.p{}.grid.png", index + 1));
            tiled.image.save(&grid_image)?;
            out.push(Unit {
                name: label,
                source: f.clone(),
                page: index,
                image,
                grid_image,
                images: tiled.grid.images(),
                grid: (tiled.grid.cols, tiled.grid.rows),
            });
        }
    }
    if out.is_empty() {
        bail!("{}: no pages to benchmark", args.pages.display());
    }
    Ok(out)
}

/// One A/B series on a page: `reps` pairs, the order alternating.
#[allow(clippy::too_many_arguments)]
fn ab(
    model: &dyn VisionModel,
    pdf: &dyn PdfRenderer,
    pipeline: &Pipeline,
    mtmd: &MtmdCli,
    unit: &Unit,
    (grammar, schema_file): (&Arc<Value>, &Path),
    tokens: u32,
    work: Work,
    reps: u32,
) -> anyhow::Result<(Vec<VinscanRun>, Vec<MtmdRun>)> {
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for rep in 0..reps.max(1) {
        let vinscan_first = rep % 2 == 0;
        if vinscan_first {
            v.push(vinscan_page(model, pdf, pipeline, unit, grammar, tokens, work)?);
        }
        m.push(mtmd.run(pipeline, unit, tokens, schema_file)?);
        if !vinscan_first {
            v.push(vinscan_page(model, pdf, pipeline, unit, grammar, tokens, work)?);
        }
    }
    Ok((v, m))
}

/// A fresh process of this binary (`--rss-probe`) loads the model with `mmproj` and extracts
/// the smallest page once: its peak RSS is the memory a one-page run needs.
fn probe(global: &GlobalArgs, args: &BenchArgs, mmproj: &Path) -> anyhow::Result<Value> {
    let projector = type_name(&read_projector_meta(mmproj)?);
    let mut cmd = Command::new(std::env::current_exe()?);
    if let (Some(p), Some(s)) = (&global.pipelines_dir, &global.schemas_dir) {
        cmd.arg("--pipelines-dir").arg(p).arg("--schemas-dir").arg(s);
    }
    let out = cmd
        .arg("bench")
        .arg("--rss-probe")
        .arg("--pages")
        .arg(&args.pages)
        .arg("--model")
        .arg(&args.model)
        .arg("--mmproj")
        .arg(mmproj)
        .arg("--mtmd-cli")
        .arg(&args.mtmd_cli)
        .args(["--threads", &args.threads.to_string()])
        .args(["--ctx-size", &args.ctx_size.to_string()])
        .args(["--parallel", &args.parallel.to_string()])
        .args(["--real-tokens", &args.real_tokens.to_string()])
        .args(["--pipeline", &args.pipeline])
        .arg("--work-dir")
        .arg(args.work_dir.join("probe"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("the memory probe failed ({})", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let mut v: Value = serde_json::from_str(line.trim()).context("the memory probe's report")?;
    v["mmproj"] = json!(mmproj);
    v["projector"] = json!(projector);
    v["mmproj_mb"] = file_mb(mmproj);
    Ok(v)
}

/// The projector's weight type as the report names it (`f16`, `q8_0`, …).
fn type_name(meta: &ProjectorMeta) -> &'static str {
    meta.weight_type.unwrap_or("unknown type")
}

/// The aggregate run: one freshly loaded model, every page queued, `--parallel` workers each
/// taking the next page (their pages are in flight in the model together).
struct Aggregate {
    /// Wall time, model loading included.
    wall_ms: f64,
    load_ms: f64,
    steps: u32,
    /// Summed over the pages: vision encode + prefill, and their shares of the model steps.
    encode_prefill_ms: f64,
    steps_ms: f64,
    runs: Vec<VinscanRun>,
}

fn aggregate(
    args: &BenchArgs,
    pdf: &LazyPdf,
    pipeline: &Pipeline,
    units: &[Unit],
    real: &Arc<Value>,
) -> anyhow::Result<Aggregate> {
    let (model, load_ms) = load(args, &args.mmproj, args.parallel, true)?;
    let queue = Mutex::new(units.iter().collect::<VecDeque<_>>());
    let t = Instant::now();
    let done: Vec<anyhow::Result<VinscanRun>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.parallel)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                        let Some(unit) = next else { break };
                        done.push(vinscan_page(
                            &model,
                            pdf,
                            pipeline,
                            unit,
                            real,
                            args.real_tokens,
                            Work::Real,
                        ));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let wall_ms = ms(t) + load_ms;
    let runs = done
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .context("aggregate run")?;
    Ok(Aggregate {
        wall_ms,
        load_ms,
        steps: runs.iter().map(|r| r.steps).sum(),
        encode_prefill_ms: runs.iter().map(|r| r.encode_prefill).sum(),
        steps_ms: runs.iter().map(|r| r.steps_ms).sum(),
        runs,
    })
}

/// `--aggregate-only`: the aggregate run alone, its figures as one JSON line.
fn run_aggregate_only(args: &BenchArgs, pipeline: &Pipeline, pdf: &LazyPdf) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.work_dir)?;
    let meta = read_projector_meta(&args.mmproj)?;
    let units = units(args, pdf, pipeline, meta.max_tiles, &args.work_dir)?;
    let real = Arc::new(pipeline.schema.grammar().clone());
    let agg = aggregate(args, pdf, pipeline, &units, &real)?;
    println!(
        "{}",
        json!({"pages": units.len(), "parallel": args.parallel, "wall_ms": agg.wall_ms,
            "load_ms": agg.load_ms, "model_steps": agg.steps,
            "tokens": agg.runs.iter().map(|r| r.generated).sum::<u32>(),
            "encode_prefill_ms": agg.encode_prefill_ms, "steps_ms": agg.steps_ms,
            "peak_rss_mb": peak_rss_mb()})
    );
    Ok(ExitCode::SUCCESS)
}

fn run_probe(args: &BenchArgs, pipeline: &Pipeline, pdf: &LazyPdf) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.work_dir)?;
    let meta = read_projector_meta(&args.mmproj)?;
    let units = units(args, pdf, pipeline, meta.max_tiles, &args.work_dir)?;
    let small = units.iter().min_by_key(|u| u.images).context("pages")?;
    let (model, load_ms) = load(args, &args.mmproj, args.parallel, true)?;
    let real = Arc::new(pipeline.schema.grammar().clone());
    let r = vinscan_page(&model, pdf, pipeline, small, &real, args.real_tokens, Work::Real)?;
    println!(
        "{}",
        json!({"page": small.name, "load_ms": load_ms, "run": r, "peak_rss_mb": peak_rss_mb()})
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = catalog(global)?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let pdf = LazyPdf::default();
    if args.rss_probe {
        return run_probe(&args, &pipeline, &pdf);
    }
    if args.aggregate_only {
        return run_aggregate_only(&args, &pipeline, &pdf);
    }
    if args.rewrite_report {
        let path = args.work_dir.join("report.json");
        let mut report: Value =
            serde_json::from_slice(&std::fs::read(&path).with_context(|| path.display().to_string())?)?;
        file_sizes(&args, &mut report);
        return write_report(&args, &report);
    }
    let work = args.work_dir.clone();
    std::fs::create_dir_all(&work)?;
    let fixed = Arc::new(fixed_schema(args.tokens));
    let fixed_file = work.join("fixed-output.schema.json");
    std::fs::write(&fixed_file, serde_json::to_vec(fixed.as_ref())?)?;
    // the schema exactly as vinscan hands it to llguidance; llama-mtmd-cli converts the same
    // JSON Schema to its own GBNF grammar
    let real = Arc::new(pipeline.schema.grammar().clone());
    let real_file = work.join("real-output.schema.json");
    std::fs::write(&real_file, serde_json::to_vec(real.as_ref())?)?;
    let meta = read_projector_meta(&args.mmproj)?;
    let units = units(&args, &pdf, &pipeline, meta.max_tiles, &work)?;
    let log = |what: &str| eprintln!("[bench {:>5.0} s] {what}", started.elapsed().as_secs_f64());
    log(&format!(
        "{} pages: {}",
        units.len(),
        units
            .iter()
            .map(|u| format!("{} ({} images)", u.name, u.images))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 1. per page, A/B against llama-mtmd-cli: vinscan warm (the daemon's case), mtmd-cli as a
    //    process per page; its model loading is measured apart
    let (model, load_ms) = load(&args, &args.mmproj, args.parallel, true)?;
    let system_info = model.info().system_info.clone();
    let mtmd = MtmdCli {
        exe: &args.mtmd_cli,
        model: &args.model,
        mmproj: &args.mmproj,
        threads: args.threads,
        ctx: args.ctx_size,
    };
    // warm the page cache and llama.cpp's first-use allocations for both
    vinscan_page(&model, &pdf, &pipeline, &units[0], &fixed, 4, Work::Fixed).or_else(|_| {
        vinscan_page(
            &model,
            &pdf,
            &pipeline,
            &units[0],
            &fixed,
            args.tokens,
            Work::Fixed,
        )
    })?;
    // 1a. engine parity: a free string of exactly `--tokens` (nothing forced, nothing to
    //     fast-forward), on the single-tile image
    let mut parity = Vec::new();
    for unit in units
        .iter()
        .filter(|u| u.images == 1 && u.image == u.source)
        .take(1)
    {
        let (v, m) = ab(
            &model,
            &pdf,
            &pipeline,
            &mtmd,
            unit,
            (&fixed, &fixed_file),
            args.tokens,
            Work::Fixed,
            args.reps,
        )?;
        log(&format!(
            "{} (free string): vinscan {:.0} ms, llama-mtmd-cli {:.0} ms (+{:.0} ms load)",
            unit.name,
            stats(&v.iter().map(|r| r.total).collect::<Vec<_>>()).median,
            stats(&m.iter().map(|r| r.compute).collect::<Vec<_>>()).median,
            stats(&m.iter().map(|r| r.load).collect::<Vec<_>>()).median
        ));
        parity.push((unit.clone(), v, m));
    }
    // 1b. the pipeline's work: its real schema, output capped at `--real-tokens`
    let mut per_page = Vec::new();
    for unit in &units {
        // the single-tile image gets `--reps`; pages costing more (or PDF pages, three alike) fewer
        let single = unit.images == 1 && unit.image == unit.source;
        let reps = if single { args.reps } else { args.reps_large };
        let (v, m) = ab(
            &model,
            &pdf,
            &pipeline,
            &mtmd,
            unit,
            (&real, &real_file),
            args.real_tokens,
            Work::Real,
            reps,
        )?;
        log(&format!(
            "{}: vinscan {:.0} ms ({} tokens, {} steps), llama-mtmd-cli {:.0} ms (+{:.0} ms load, {}), same output: {}",
            unit.name,
            stats(&v.iter().map(|r| r.total).collect::<Vec<_>>()).median,
            v.first().map_or(0, |r| r.generated),
            v.first().map_or(0, |r| r.steps),
            stats(&m.iter().map(|r| r.compute).collect::<Vec<_>>()).median,
            stats(&m.iter().map(|r| r.load).collect::<Vec<_>>()).median,
            m.first().map_or("", |r| r.stop),
            v.first().map(|r| r.text.trim()) == m.first().map(|r| r.text.as_str())
        ));
        per_page.push((unit.clone(), v, m));
    }
    // validation cost: the pipeline's own parse + validate on each page's output
    let mut validate = Vec::new();
    for (_, v, _) in &per_page {
        if let Some(r) = v.first() {
            let stop = if r.stop == "end" {
                StopReason::EndOfOutput
            } else {
                StopReason::MaxTokens
            };
            let t = Instant::now();
            let ok = parse_and_validate(&pipeline, &r.text, stop).is_ok();
            validate.push(json!({"ms": ms(t), "valid": ok}));
        }
    }
    drop(model);

    // 2. aggregate: every page through one freshly loaded model, `--parallel` in flight,
    //    against llama-mtmd-cli run once per page, one after another (medians of step 1b)
    let agg = aggregate(&args, &pdf, &pipeline, &units, &real)?;
    let (agg_ms, agg_load_ms, agg_steps) = (agg.wall_ms, agg.load_ms, agg.steps);
    let rss_mb = peak_rss_mb();
    log(&format!(
        "aggregate: {} pages in {:.1} s",
        units.len(),
        agg_ms / 1e3
    ));

    // 3. memory: a fresh process per projector type, one page each
    // the projector every peer ran comes first
    let mut probes = Vec::new();
    for mmproj in std::iter::once(&args.mmproj).chain(&args.probe_mmproj) {
        probes.push(probe(global, &args, mmproj)?);
    }
    log("memory probes done");

    // 5. vision encode alone, per tile (llama.cpp's encoder through the trace API)
    let flops = vision_flops_per_tile(&args.mmproj);
    let mut encode = Vec::new();
    {
        let mut tracer = Tracer::load(&TraceConfig {
            model: args.model.clone(),
            mmproj: args.mmproj.clone(),
            threads: args.threads,
            ctx_size: 4096,
        })?;
        let small = units.iter().min_by_key(|u| u.images).context("pages")?;
        let img = image::open(&small.image)?.to_rgb8();
        let (min_tiles, max_tiles) = tile_range(&pipeline, meta.max_tiles);
        let tiled = tile_page(&img, min_tiles, max_tiles)?;
        let (w, h) = tiled.image.dimensions();
        for _ in 0..2 {
            let t = Instant::now();
            let chunks = tracer.encode_image(tiled.image.as_raw(), w, h)?;
            encode.push(ms(t) / chunks.len().max(1) as f64);
        }
    }
    log("vision encode measured");

    // 6. transformers and Tesseract
    let mut transformers = Vec::new();
    let mut gemm = Value::Null;
    if let (Some(python), Some(ckpt)) = (&args.python, &args.checkpoint) {
        let (mut peer, ready) = PythonPeer::start(python, &args.peer_script, ckpt, args.threads)?;
        gemm = peer.ask(&json!({"op": "gemm", "n": 2048}))?;
        let peers = parity.iter().chain(
            per_page
                .iter()
                .filter(|(u, _, _)| !parity.iter().any(|(p, _, _)| p.name == u.name)),
        );
        for (unit, v, m) in peers.take(args.transformers_pages) {
            let r = peer.ask(
                &json!({"op": "page", "image": unit.image, "max_tiles": meta.max_tiles, "tokens": args.tokens,
                "system": pipeline.system_prompt, "prompt": pipeline.prompt}),
            )?;
            log(&format!("transformers {}: {}", unit.name, r));
            let vt = stats(&v.iter().map(|r| r.total).collect::<Vec<_>>()).median;
            let mc = stats(&m.iter().map(|r| r.compute).collect::<Vec<_>>()).median;
            transformers
                .push(json!({"page": unit.name, "result": r, "vinscan_ms": vt, "mtmd_compute_ms": mc}));
        }
        transformers.push(json!({"load": ready}));
    }
    let mut tesseract = Vec::new();
    if let Some(exe) = &args.tesseract {
        for unit in &units {
            let t = Instant::now();
            let out = Command::new(exe)
                .arg(&unit.image)
                .args(["stdout", "-l", "vie"])
                .env("OMP_THREAD_LIMIT", args.threads.to_string())
                .stderr(Stdio::null())
                .output()?;
            let wall = ms(t);
            if !out.status.success() {
                bail!("tesseract failed on {}", unit.name);
            }
            tesseract.push(json!({"page": unit.name, "ms": wall, "chars": String::from_utf8_lossy(&out.stdout).chars().count()}));
        }
    }

    let features: Vec<&str> = [
        ("llama", cfg!(feature = "llama")),
        ("pdf", cfg!(feature = "pdf")),
        ("kafka", cfg!(feature = "kafka")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    let report = json!({
        "version": vinscan_core::VERSION,
        "features": features,
        "llama_cpp_sys_2": "0.1.161",
        "system_info": system_info,
        "machine": machine(),
        "threads": args.threads,
        "tokens": args.tokens,
        "real_tokens": args.real_tokens,
        "ctx_size": args.ctx_size,
        "parallel": args.parallel,
        "model": args.model, "mmproj": args.mmproj, "mmproj_type": type_name(&meta),
        "load_ms": load_ms,
        "parity": parity.iter().map(|(u, v, m)| json!({"unit": u, "vinscan": v, "mtmd": m})).collect::<Vec<_>>(),
        "per_page": per_page.iter().map(|(u, v, m)| json!({"unit": u, "vinscan": v, "mtmd": m,
            "same_output": v.first().map(|r| r.text.trim()) == m.first().map(|r| r.text.as_str())})).collect::<Vec<_>>(),
        "validate": validate,
        "aggregate": {"pages": units.len(), "vinscan_ms": agg_ms, "load_ms": agg_load_ms, "model_steps": agg_steps,
            "encode_prefill_ms": agg.encode_prefill_ms, "steps_ms": agg.steps_ms,
            "mtmd_sequential_ms": per_page.iter().map(|(_, _, m)| stats(&m.iter().map(|r| r.wall).collect::<Vec<_>>()).median).sum::<f64>()},
        "probes": probes,
        "encode_per_tile_ms": stats(&encode),
        "vision_flops_per_tile": flops,
        "gemm": gemm,
        "transformers": transformers,
        "tesseract": tesseract,
        "peak_rss_mb": rss_mb,
        "wall_s": started.elapsed().as_secs_f64(),
        "setup_s": args.setup_s,
        "clean_clone": args.clean_clone,
    });
    let mut report = report;
    file_sizes(&args, &mut report);
    std::fs::write(work.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    write_report(&args, &report)?;
    log(&format!(
        "wrote {} and {}",
        args.report.display(),
        work.join("report.json").display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The GGUF files' sizes (MB), for the memory figures.
fn file_sizes(args: &BenchArgs, report: &mut Value) {
    report["model_mb"] = file_mb(&args.model);
    report["mmproj_mb"] = file_mb(&args.mmproj);
}

fn file_mb(path: &Path) -> Value {
    std::fs::metadata(path).map_or(Value::Null, |m| json!(m.len() as f64 / 1048576.0))
}

fn write_report(args: &BenchArgs, report: &Value) -> anyhow::Result<ExitCode> {
    let md = crate::bench_report::markdown(report);
    if let Some(dir) = args.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, md)?;
    Ok(ExitCode::SUCCESS)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    });
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines().next().map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap_or("0")
                .parse::<f64>()
                .unwrap_or(0.0)
                / 1048576.0
        })
    });
    json!({
        "cpu": cpu, "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": mem, "os": std::env::consts::OS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_min_median_max() {
        let s = stats(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.min, s.median, s.max), (3, 1.0, 2.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0]).median, 2.5);
        assert_eq!(stats(&[]).n, 0);
    }

    #[test]
    fn fixed_schema_keeps_the_string_open_past_the_budget() {
        let s = fixed_schema(64);
        let n = s["properties"]["text"]["minLength"].as_u64().unwrap_or(0);
        assert!(n >= 64 * 16, "{n}");
    }
}
