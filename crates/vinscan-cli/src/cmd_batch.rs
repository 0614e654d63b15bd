//! `vinscan batch SRC --pipeline NAME --out DST`: every scan under a folder or an S3 prefix,
//! into a folder or an S3 prefix. Resumable (inputs whose outputs exist and match are skipped
//! without loading the model), with a progress bar and `DST/manifest.jsonl` listing every
//! input's outcome.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, Extractor, Format, PageRecord, Pipeline};
use vinscan_storage::{
    Location, ObjectMeta, ObjectStore, S3Config, StorageError, StorageErrorKind, join_key,
};

use crate::cli::{BatchArgs, GlobalArgs};
use crate::cmd_extract::process_document;
use crate::model::{LazyModel, LazyPdf, ModelFiles, catalog};
use crate::output::{Expected, matches};

/// One line of `manifest.jsonl`.
#[derive(Debug, Serialize)]
struct ManifestEntry<'a> {
    source: &'a str,
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
    pages_written: u32,
    model_loaded: bool,
    manifest: String,
    elapsed_ms: u64,
}

/// Storage errors as pipeline errors: the kind carries over (retryable stays retryable).
pub fn storage_error(e: StorageError) -> Error {
    let kind = match e.kind {
        StorageErrorKind::NotFound => ErrorKind::NotFound,
        StorageErrorKind::TooLarge => ErrorKind::TooLarge,
        StorageErrorKind::InvalidKey => ErrorKind::InvalidInput,
        StorageErrorKind::Denied => ErrorKind::Config,
        StorageErrorKind::Transient => ErrorKind::Transient,
        StorageErrorKind::Other => ErrorKind::Transient,
    };
    Error::new(kind, e.message)
}

pub fn is_scan(key: &str) -> bool {
    let hidden = key.split('/').any(|s| s.starts_with('.'));
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    !hidden && Format::EXTENSIONS.contains(&ext.as_str())
}

/// Where an input is read from: its store, its key, and how records name it.
struct Input {
    key: String,
    relative: String,
    source: String,
}

fn page_key(out_prefix: &str, relative: &str, page: u32) -> String {
    join_key(out_prefix, &format!("{relative}.p{page:04}.json"))
}

struct Run<'a> {
    rt: tokio::runtime::Runtime,
    out: Arc<dyn ObjectStore>,
    out_prefix: String,
    out_location: &'a Location,
}

impl Run<'_> {
    fn out_name(&self, key: &str) -> String {
        match self.out_location {
            Location::Local(dir) => dir.join(key).display().to_string(),
            Location::S3 { .. } => format!("{}/{key}", self.out.uri()),
        }
    }

    fn read_record(&self, key: &str) -> Option<PageRecord> {
        let o = self.rt.block_on(self.out.get(key, 64 << 20)).ok()?;
        serde_json::from_slice(&o.bytes).ok()
    }

    /// Output names of an input whose pages all exist and match; `None` to process it.
    fn reusable(&self, relative: &str, expected: &Expected<'_>) -> Option<Vec<String>> {
        let first_key = page_key(&self.out_prefix, relative, 1);
        let first = self.read_record(&first_key).filter(|r| matches(r, expected))?;
        let mut names = vec![self.out_name(&first_key)];
        for page in 2..=first.provenance.page_count {
            let key = page_key(&self.out_prefix, relative, page);
            self.read_record(&key).filter(|r| matches(r, expected))?;
            names.push(self.out_name(&key));
        }
        Some(names)
    }
}

pub fn run(global: &GlobalArgs, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = catalog(global)?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let s3 = S3Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // the source: a store, and the inputs in it
    let src_location = Location::parse(&args.source)?;
    let (src, inputs): (Arc<dyn ObjectStore>, Vec<Input>) = match &src_location {
        Location::Local(path) if path.is_file() => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let store: Arc<dyn ObjectStore> = Arc::new(vinscan_storage::LocalStore::new(dir));
            (
                store,
                vec![Input {
                    key: name.clone(),
                    relative: name.clone(),
                    source: name,
                }],
            )
        }
        location => {
            if let Location::Local(p) = location
                && !p.is_dir()
            {
                anyhow::bail!("{}: no such file or folder", p.display());
            }
            let (store, prefix) = vinscan_storage::open_location(location, &s3)?;
            // a prefix names a folder: `in` must not pick up `inbox/…`
            let prefix = if prefix.is_empty() {
                prefix
            } else {
                format!("{prefix}/")
            };
            let listed: Vec<ObjectMeta> = rt.block_on(store.list(&prefix))?;
            let inputs = listed
                .into_iter()
                .filter(|m| {
                    let rel = m
                        .key
                        .strip_prefix(&prefix)
                        .unwrap_or(&m.key)
                        .trim_start_matches('/');
                    is_scan(rel)
                })
                .map(|m| {
                    let relative = m
                        .key
                        .strip_prefix(&prefix)
                        .unwrap_or(&m.key)
                        .trim_start_matches('/')
                        .to_owned();
                    let source = if location.is_s3() {
                        format!("{}/{}", store.uri(), m.key)
                    } else {
                        relative.clone()
                    };
                    Input {
                        key: m.key,
                        relative,
                        source,
                    }
                })
                .collect();
            (store, inputs)
        }
    };

    let out_location = Location::parse(&args.out)?;
    let (out, out_prefix) = vinscan_storage::open_location(&out_location, &s3)?;
    if let Location::Local(dir) = &out_location {
        std::fs::create_dir_all(dir)?;
    }
    let run = Run {
        rt,
        out,
        out_prefix,
        out_location: &out_location,
    };

    let files = ModelFiles::resolve(&args.model)?;
    let model = LazyModel::new(files, &args.model);
    let extractor = Extractor::new(Some(Arc::new(LazyPdf::default())));
    let manifest_key = join_key(&run.out_prefix, "manifest.jsonl");
    let manifest = Vec::<u8>::new();

    let bar = ProgressBar::new(inputs.len() as u64);
    if args.no_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    // `--parallel` inputs at once: their pages decode together in the model (one batch per
    // step), and one input's fetch, decode and write overlap the others' inference
    let counts = Counts::default();
    let manifest = Mutex::new(manifest);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let workers = (args.model.parallel as usize).clamp(1, inputs.len().max(1));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    while let Some(input) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let entry = one_input(
                            &run, &src, input, &extractor, &model, &pipeline, &args, &bar, &counts,
                        )?;
                        let mut m = manifest
                            .lock()
                            .map_err(|_| anyhow::anyhow!("manifest lock poisoned"))?;
                        serde_json::to_writer(&mut *m, &entry)?;
                        m.push(b'\n');
                        // checkpoint the manifest now and then, so an interrupted run leaves a record
                        if done.fetch_add(1, Ordering::Relaxed) % 20 == 19 {
                            run.rt.block_on(run.out.put(
                                &manifest_key,
                                Bytes::from(m.clone()),
                                "application/x-ndjson",
                            ))?;
                        }
                        drop(m);
                        bar.inc(1);
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
    let manifest = manifest
        .into_inner()
        .map_err(|_| anyhow::anyhow!("manifest lock poisoned"))?;
    let (processed, skipped, failed, pages_written) = (
        counts.processed.load(Ordering::Relaxed),
        counts.skipped.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.pages_written.load(Ordering::Relaxed),
    );
    bar.finish_and_clear();
    run.rt.block_on(
        run.out
            .put(&manifest_key, Bytes::from(manifest), "application/x-ndjson"),
    )?;

    let summary = Summary {
        inputs: inputs.len(),
        processed,
        skipped,
        failed,
        pages_written,
        model_loaded: model.is_loaded(),
        manifest: run.out_name(&manifest_key),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Default)]
struct Counts {
    processed: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    pages_written: AtomicU32,
}

/// One input to its manifest entry: fetch, reuse or extract, write its pages. `Err` only for
/// what stops the whole run (the model cannot load, the output cannot be written).
#[allow(clippy::too_many_arguments)]
fn one_input<'i>(
    run: &Run<'_>,
    src: &Arc<dyn ObjectStore>,
    input: &'i Input,
    extractor: &Extractor,
    model: &LazyModel<'_>,
    pipeline: &Pipeline,
    args: &BatchArgs,
    bar: &ProgressBar,
    counts: &Counts,
) -> anyhow::Result<ManifestEntry<'i>> {
    let t = Instant::now();
    bar.set_message(input.relative.clone());
    let fetched = run
        .rt
        .block_on(src.get(&input.key, pipeline.limits.max_bytes))
        .map_err(storage_error);
    let (status, pages, outputs, error) = match fetched {
        Err(e) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            bar.suspend(
                || tracing::error!(source = %input.source, kind = %e.kind(), error = %e, "input failed"),
            );
            let e = e.context(&input.source);
            (
                "failed",
                0,
                Vec::new(),
                Some(ManifestError {
                    kind: e.kind(),
                    message: e.message().to_owned(),
                }),
            )
        }
        Ok(object) => {
            let bytes = object.bytes.to_vec();
            let sha = sha256_hex(&bytes);
            let f = model.files();
            let expected = Expected {
                source_sha256: &sha,
                pipeline_sha256: &pipeline.sha256,
                schema_sha256: pipeline.schema.sha256(),
                model_sha256: &f.model_sha256,
                mmproj_sha256: &f.mmproj_sha256,
            };
            match (!args.force)
                .then(|| run.reusable(&input.relative, &expected))
                .flatten()
            {
                Some(existing) => {
                    counts.skipped.fetch_add(1, Ordering::Relaxed);
                    ("skipped", existing.len() as u32, existing, None)
                }
                None => {
                    let mut outputs = Vec::new();
                    let result =
                        process_document(extractor, model, pipeline, bytes, &input.source, |record| {
                            let key = page_key(&run.out_prefix, &input.relative, record.page);
                            let json = serde_json::to_vec_pretty(&record)
                                .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                            run.rt
                                .block_on(run.out.put(&key, Bytes::from(json), "application/json"))
                                .map_err(storage_error)?;
                            outputs.push(run.out_name(&key));
                            Ok(())
                        })?;
                    counts
                        .pages_written
                        .fetch_add(outputs.len() as u32, Ordering::Relaxed);
                    match result {
                        Ok(pages) => {
                            counts.processed.fetch_add(1, Ordering::Relaxed);
                            ("ok", pages, outputs, None)
                        }
                        Err(e) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            bar.suspend(|| {
                                tracing::error!(source = %input.source, kind = %e.kind(), error = %e, "input failed");
                            });
                            let pages = outputs.len() as u32;
                            let error = ManifestError {
                                kind: e.kind(),
                                message: e.message().to_owned(),
                            };
                            ("failed", pages, outputs, Some(error))
                        }
                    }
                }
            }
        }
    };
    Ok(ManifestEntry {
        source: &input.source,
        status,
        pages,
        outputs,
        error,
        elapsed_ms: t.elapsed().as_millis() as u64,
    })
}
