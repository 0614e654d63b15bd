//! `vinscan batch SRC --pipeline NAME --out DST`: every file under a folder or object under an
//! S3 prefix, into a folder or an S3 prefix. Resumable (inputs whose outputs exist and match are
//! skipped without loading the model), with a progress bar and `DST/manifest.jsonl` listing
//! every input found with its outcome: ok, skipped, failed or unsupported, and the reason.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, Extractor, PageRecord, Pipeline};
use vinscan_daemon::errors::pipeline_error;
use vinscan_storage::{Location, ObjectStore, S3Config, join_key};

use crate::cli::{BatchArgs, GlobalArgs};
use crate::cmd_extract::process_document;
use crate::inputs::{Input, local_inputs, not_a_scan, s3_inputs};
use crate::model_files::ModelFiles;
use crate::model_load::LazyModel;
use crate::output::{Expected, matches, page_name};
use crate::pdf::LazyPdf;

/// One line of `manifest.jsonl`.
#[derive(Debug, Serialize)]
struct ManifestEntry<'a> {
    source: &'a str,
    /// `ok`, `skipped` (outputs exist and match), `failed` or `unsupported` (not a scan).
    status: &'static str,
    pages: u32,
    outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ManifestError>,
    elapsed_ms: u64,
}

#[derive(Debug, Serialize)]
struct ManifestError {
    kind: ErrorKind,
    message: String,
}

/// The summary printed on stdout at the end of a run.
#[derive(Debug, Serialize)]
struct Summary {
    inputs: usize,
    processed: usize,
    skipped: usize,
    failed: usize,
    unsupported: usize,
    pages_written: u32,
    model_loaded: bool,
    manifest: String,
    elapsed_ms: u64,
}

#[derive(Default)]
struct Counts {
    processed: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    unsupported: AtomicUsize,
    pages_written: AtomicU32,
}

/// What every worker of a run shares.
struct Batch<'a> {
    rt: tokio::runtime::Runtime,
    out: Arc<dyn ObjectStore>,
    out_prefix: String,
    out_location: &'a Location,
    extractor: Extractor,
    model: LazyModel,
    pipeline: Arc<Pipeline>,
    force: bool,
    bar: ProgressBar,
    counts: Counts,
}

impl Batch<'_> {
    fn out_name(&self, key: &str) -> String {
        match self.out_location {
            Location::Local(dir) => dir.join(key).display().to_string(),
            Location::S3(_) => format!("{}/{key}", self.out.uri()),
        }
    }

    fn page_key(&self, input: &Input, page: u32) -> String {
        join_key(&self.out_prefix, &page_name(&input.output_name, page))
    }

    fn read_record(&self, key: &str) -> Option<PageRecord> {
        let o = self.rt.block_on(self.out.get(key, 64 << 20, None)).ok()?;
        serde_json::from_slice(&o.bytes).ok()
    }

    /// Output names of an input whose pages all exist and match; `None` to process it.
    fn reusable(&self, input: &Input, expected: &Expected<'_>) -> Option<Vec<String>> {
        let first_key = self.page_key(input, 1);
        let first = self.read_record(&first_key).filter(|r| matches(r, expected))?;
        let mut names = vec![self.out_name(&first_key)];
        for page in 2..=first.provenance.page_count {
            let key = self.page_key(input, page);
            self.read_record(&key).filter(|r| matches(r, expected))?;
            names.push(self.out_name(&key));
        }
        Some(names)
    }

    fn failed(&self, input: &Input, e: Error, pages: u32, outputs: Vec<String>) -> Outcome {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        self.bar.suspend(
            || tracing::error!(source = %input.source, kind = %e.kind(), error = %e, "input failed"),
        );
        ("failed", pages, outputs, Some(e))
    }

    /// One input to its manifest entry: read, reuse or extract, write its pages. `Err` only for
    /// what stops the whole run (the model cannot load or is gone, the output cannot be written).
    fn one_input<'i>(&self, input: &'i Input) -> anyhow::Result<ManifestEntry<'i>> {
        let t = Instant::now();
        self.bar.set_message(input.source.clone());
        let (status, pages, outputs, error) =
            match self.rt.block_on(input.read(self.pipeline.limits.max_bytes)) {
                Err(e) if !input.scan_extension && e.kind() == ErrorKind::TooLarge => {
                    self.counts.unsupported.fetch_add(1, Ordering::Relaxed);
                    let why = e.context("not a scan by its name, and too large to read for its content");
                    ("unsupported", 0, Vec::new(), Some(why))
                }
                Err(e) => self.failed(input, e.context(&input.source), 0, Vec::new()),
                Ok(bytes) => match (!input.scan_extension).then(|| not_a_scan(&bytes)).flatten() {
                    Some(why) => {
                        self.counts.unsupported.fetch_add(1, Ordering::Relaxed);
                        ("unsupported", 0, Vec::new(), Some(why))
                    }
                    None => self.scan(input, bytes)?,
                },
            };
        Ok(ManifestEntry {
            source: &input.source,
            status,
            pages,
            outputs,
            error: error.map(|e| ManifestError {
                kind: e.kind(),
                message: e.message().to_owned(),
            }),
            elapsed_ms: t.elapsed().as_millis() as u64,
        })
    }

    fn scan(&self, input: &Input, bytes: Vec<u8>) -> anyhow::Result<Outcome> {
        let sha = sha256_hex(&bytes);
        let f = self.model.files();
        let expected = Expected {
            source_sha256: &sha,
            pipeline_sha256: &self.pipeline.sha256,
            schema_sha256: self.pipeline.schema.sha256(),
            model_sha256: &f.model_sha256,
            mmproj_sha256: &f.mmproj_sha256,
        };
        if !self.force
            && let Some(existing) = self.reusable(input, &expected)
        {
            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(("skipped", existing.len() as u32, existing, None));
        }
        let mut outputs = Vec::new();
        let result = process_document(
            &self.extractor,
            &self.model,
            &self.pipeline,
            bytes,
            &input.source,
            |record| {
                let key = self.page_key(input, record.page);
                let json = serde_json::to_vec_pretty(&record)
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                self.rt
                    .block_on(self.out.put(&key, Bytes::from(json), "application/json"))
                    .map_err(pipeline_error)?;
                outputs.push(self.out_name(&key));
                Ok(())
            },
        )?;
        self.counts
            .pages_written
            .fetch_add(outputs.len() as u32, Ordering::Relaxed);
        Ok(match result {
            Ok(pages) => {
                self.counts.processed.fetch_add(1, Ordering::Relaxed);
                ("ok", pages, outputs, None)
            }
            Err(e) => {
                let pages = outputs.len() as u32;
                self.failed(input, e, pages, outputs)
            }
        })
    }
}

/// status, pages, outputs, error
type Outcome = (&'static str, u32, Vec<String>, Option<Error>);

fn progress_bar(len: usize, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(global: &GlobalArgs, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let s3 = S3Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let inputs: Vec<Input> = match Location::parse_os(&args.source)? {
        Location::Local(path) => local_inputs(&path).map_err(|e| anyhow::anyhow!("{e}"))?,
        location => {
            let (store, prefix) = vinscan_storage::open_location(&location, &s3)?;
            rt.block_on(s3_inputs(store, &prefix))
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    let out_location = Location::parse_os(&args.out)?;
    let (out, out_prefix) = vinscan_storage::open_location(&out_location, &s3)?;
    if let Location::Local(dir) = &out_location {
        std::fs::create_dir_all(dir)?;
    }
    let files = ModelFiles::resolve(args.model.model.as_deref(), args.model.mmproj.as_deref())?;
    let batch = Batch {
        rt,
        out,
        out_prefix,
        out_location: &out_location,
        extractor: Extractor::new(Some(Arc::new(LazyPdf::default()))),
        model: LazyModel::new(files, args.model.settings()),
        pipeline,
        force: args.force,
        bar: progress_bar(inputs.len(), args.no_progress),
        counts: Counts::default(),
    };
    let manifest_key = join_key(&batch.out_prefix, "manifest.jsonl");
    let manifest = run_workers(&batch, &inputs, &manifest_key, args.model.parallel as usize)?;
    batch.bar.finish_and_clear();
    batch.rt.block_on(
        batch
            .out
            .put(&manifest_key, Bytes::from(manifest), "application/x-ndjson"),
    )?;
    let c = &batch.counts;
    let summary = Summary {
        inputs: inputs.len(),
        processed: c.processed.load(Ordering::Relaxed),
        skipped: c.skipped.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        unsupported: c.unsupported.load(Ordering::Relaxed),
        pages_written: c.pages_written.load(Ordering::Relaxed),
        model_loaded: batch.model.is_loaded(),
        manifest: batch.out_name(&manifest_key),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `parallel` inputs at once: their pages decode together in the model (one batch per step),
/// and one input's read, decode and write overlap the others' inference. Returns the manifest.
fn run_workers(
    batch: &Batch<'_>,
    inputs: &[Input],
    manifest_key: &str,
    parallel: usize,
) -> anyhow::Result<Vec<u8>> {
    let manifest = Mutex::new(Vec::<u8>::new());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let workers = parallel.clamp(1, inputs.len().max(1));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    while let Some(input) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let entry = batch.one_input(input)?;
                        let mut m = manifest
                            .lock()
                            .map_err(|_| anyhow::anyhow!("manifest lock poisoned"))?;
                        serde_json::to_writer(&mut *m, &entry)?;
                        m.push(b'\n');
                        // checkpoint the manifest now and then, so an interrupted run leaves a record
                        if done.fetch_add(1, Ordering::Relaxed) % 20 == 19 {
                            batch.rt.block_on(batch.out.put(
                                manifest_key,
                                Bytes::from(m.clone()),
                                "application/x-ndjson",
                            ))?;
                        }
                        drop(m);
                        batch.bar.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a batch worker panicked"))??;
        }
        Ok(())
    })?;
    manifest
        .into_inner()
        .map_err(|_| anyhow::anyhow!("manifest lock poisoned"))
}
