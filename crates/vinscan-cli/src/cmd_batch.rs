//! `vinscan batch SRC --pipeline NAME --out DST`: wires a `vinscan-batch` run — its inputs
//! (a folder, a file or an S3 prefix), its output store, the model loaded on first use and a
//! progress bar — and prints the summary.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vinscan_batch::inputs::{Input, InputPlace, folder_documents, local_inputs, s3_inputs};
use vinscan_batch::{Batch, Place, Progress};
use vinscan_storage::{Location, S3Config};

use crate::cli::{BatchArgs, GlobalArgs};

/// The progress bar on a terminal; where stderr is not one (a log file, a pipe, CI), indicatif
/// draws nothing, so each finished input is logged instead (`log_each`).
struct Bar {
    bar: ProgressBar,
    log_each: bool,
    /// Inputs done, counted and logged under one lock: workers finish concurrently, and a count
    /// read back from the bar after its increment could repeat or run backwards in the log.
    logged: std::sync::Mutex<u64>,
}

impl Progress for Bar {
    fn start(&self, source: &str) {
        self.bar.set_message(source.to_owned());
    }

    fn done(&self) {
        self.bar.inc(1);
        if self.log_each {
            let mut done = self
                .logged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *done += 1;
            tracing::info!(
                done = *done,
                of = self.bar.length().unwrap_or(0),
                elapsed_s = self.bar.elapsed().as_secs(),
                "batch progress: an input is done"
            );
        }
    }

    fn log(&self, log: &mut dyn FnMut()) {
        self.bar.suspend(log);
    }
}

/// `hidden` (`--no-progress`): neither a bar nor progress lines.
fn progress_bar(len: usize, hidden: bool) -> Bar {
    let bar = ProgressBar::new(len as u64);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let log_each = !hidden && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Bar {
        bar,
        log_each,
        logged: std::sync::Mutex::new(0),
    }
}

/// `inputs` less the local files under any of the local folders `outputs` (compared after
/// resolving links); S3 inputs and outputs are left as they are (an output prefix inside the
/// source prefix holds `.json` files that are refused as unsupported, not read as scans).
fn without_outputs(inputs: Vec<Input>, outputs: &[&OsString]) -> Vec<Input> {
    let dirs: Vec<std::path::PathBuf> = outputs
        .iter()
        .filter_map(|o| match Location::parse_os(o) {
            Ok(Location::Local(dir)) => std::fs::canonicalize(dir).ok(),
            _ => None,
        })
        .collect();
    if dirs.is_empty() {
        return inputs;
    }
    let before = inputs.len();
    let kept: Vec<Input> = inputs
        .into_iter()
        .filter(|i| match &i.place {
            InputPlace::File(path) => {
                !std::fs::canonicalize(path).is_ok_and(|real| dirs.iter().any(|d| real.starts_with(d)))
            }
            _ => true,
        })
        .collect();
    if kept.len() < before {
        tracing::info!(
            left_out = before - kept.len(),
            "files under --out or --review-out are not inputs"
        );
    }
    kept
}

pub fn run(global: &GlobalArgs, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let s3 = S3Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.folder_documents && pipeline.unit == vinscan_core::Unit::Page {
        anyhow::bail!(
            "--folder-documents needs a document pipeline (unit = \"document\"); {} gives one record per page",
            pipeline.name
        );
    }
    let source = Location::parse_os(&args.source)?;
    let mut inputs: Vec<Input> = match &source {
        Location::Local(path) => local_inputs(path)?,
        location => {
            let (store, prefix) = vinscan_storage::open_location(location, &s3)?;
            rt.block_on(s3_inputs(store, &prefix))?
        }
    };
    // an earlier run's outputs under the source (`--out` inside it) are not scans to read
    let outputs: Vec<&OsString> = std::iter::once(&args.out)
        .chain(args.review_out.as_ref())
        .collect();
    inputs = without_outputs(inputs, &outputs);
    if args.folder_documents {
        let top = match &source {
            Location::Local(path) => std::path::absolute(path)?
                .file_name()
                .map_or_else(|| "documents".to_owned(), |n| n.to_string_lossy().into_owned()),
            Location::S3(uri) => match uri.prefix().rsplit('/').next() {
                Some(last) if !last.is_empty() => last.to_owned(),
                _ => uri.bucket().to_owned(),
            },
        };
        inputs = folder_documents(inputs, &top);
    }
    let out_location = Location::parse_os(&args.out)?;
    let (out, out_prefix) = vinscan_storage::open_location(&out_location, &s3)?;
    if let Location::Local(dir) = &out_location {
        std::fs::create_dir_all(dir)?;
    }
    let out_uri = out.uri();
    let out_name = |key: &str| match &out_location {
        Location::Local(dir) => dir.join(key).display().to_string(),
        Location::S3(_) => format!("{out_uri}/{key}"),
    };
    let review = match &args.review_out {
        Some(location) => {
            let location = Location::parse_os(location)?;
            if same_place(&location, &out_location) {
                anyhow::bail!(
                    "--review-out must be another place than --out (a folder or prefix of its own, not inside --out)"
                );
            }
            let (store, prefix) = vinscan_storage::open_location(&location, &s3)?;
            if let Location::Local(dir) = &location {
                std::fs::create_dir_all(dir)?;
            }
            Some((location, store, prefix))
        }
        None => None,
    };
    let review_uri = review
        .as_ref()
        .map(|(_, store, _)| store.uri())
        .unwrap_or_default();
    let review_name = |key: &str| match review.as_ref().map(|(l, _, _)| l) {
        Some(Location::Local(dir)) => dir.join(key).display().to_string(),
        _ => format!("{review_uri}/{key}"),
    };
    let (extractor, model) = args.model.extractor_and_model(&pipeline)?;
    let bar = progress_bar(inputs.len(), args.no_progress);
    let mut batch = Batch::new(
        rt, out, out_prefix, &out_name, extractor, &model, pipeline, args.force, &bar,
    );
    if let Some((_, store, prefix)) = &review {
        batch = batch.with_review_out(Place {
            store: store.clone(),
            prefix: prefix.clone(),
            name: &review_name,
        });
    }
    let summary = batch.run(&inputs, args.model.parallel as usize, started)?;
    bar.bar.finish_and_clear();
    println!("{}", serde_json::to_string(&summary)?);
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether two output locations are the same place or one is inside the other (the review
/// place must be separate, or writing a record there would remove it from the other).
fn same_place(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Local(a), Location::Local(b)) => {
            let canon = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let (a, b) = (canon(a), canon(b));
            a.starts_with(&b) || b.starts_with(&a)
        }
        (Location::S3(a), Location::S3(b)) => {
            let (pa, pb) = (format!("{}/", a.prefix()), format!("{}/", b.prefix()));
            a.bucket() == b.bucket() && (pa.starts_with(&pb) || pb.starts_with(&pa))
        }
        _ => false,
    }
}
