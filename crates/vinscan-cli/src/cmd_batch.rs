//! `vinscan batch SRC --pipeline NAME --out DIR`: every scan under a folder, resumable (inputs
//! whose outputs exist and match are skipped without loading the model), with a progress bar
//! and `DIR/manifest.jsonl` listing every input's outcome.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, Extractor, Format};

use crate::cli::{BatchArgs, GlobalArgs};
use crate::cmd_extract::process_document;
use crate::model::{LazyModel, LazyPdf, ModelFiles, catalog};
use crate::output::{Expected, page_path, reusable_outputs, write_atomic};

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

/// Every file under `root` with a supported extension, sorted, hidden entries skipped.
fn walk(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| Format::EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(global: &GlobalArgs, args: BatchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = catalog(global)?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let inputs = walk(&args.source)?;
    let files = ModelFiles::resolve(&args.model)?;
    let model = LazyModel::new(files, &args.model);
    let extractor = Extractor::new(Some(Arc::new(LazyPdf::default())));
    std::fs::create_dir_all(&args.out)?;
    let manifest_path = args.out.join("manifest.jsonl");
    let partial = args.out.join("manifest.jsonl.partial");
    let mut manifest = std::io::BufWriter::new(std::fs::File::create(&partial)?);

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

    let root = if args.source.is_file() {
        args.source.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        args.source.clone()
    };
    let (mut processed, mut skipped, mut failed, mut pages_written) = (0, 0, 0, 0u32);
    for path in &inputs {
        let t = Instant::now();
        let relative = path.strip_prefix(&root).unwrap_or(path).to_path_buf();
        let source = relative.display().to_string();
        bar.set_message(source.clone());

        let reuse = if args.force {
            None
        } else {
            std::fs::read(path).ok().and_then(|bytes| {
                let sha = sha256_hex(&bytes);
                let f = model.files();
                let expected = Expected {
                    source_sha256: &sha,
                    pipeline_sha256: &pipeline.sha256,
                    schema_sha256: pipeline.schema.sha256(),
                    model_sha256: &f.model_sha256,
                    mmproj_sha256: &f.mmproj_sha256,
                };
                reusable_outputs(&args.out, &relative, &expected)
            })
        };

        let (status, pages, outputs, error) = if let Some(existing) = reuse {
            skipped += 1;
            let outputs = existing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>();
            ("skipped", outputs.len() as u32, outputs, None)
        } else {
            let mut outputs = Vec::new();
            let result = process_document(&extractor, &model, &pipeline, path, &source, |record| {
                let out = page_path(&args.out, &relative, record.page);
                let bytes = serde_json::to_vec_pretty(&record)
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                write_atomic(&out, &bytes)?;
                outputs.push(out.display().to_string());
                Ok(())
            })?;
            pages_written += outputs.len() as u32;
            match result {
                Ok(pages) => {
                    processed += 1;
                    ("ok", pages, outputs, None)
                }
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| {
                        tracing::error!(source = %source, kind = %e.kind(), error = %e, "input failed");
                    });
                    let pages = outputs.len() as u32;
                    (
                        "failed",
                        pages,
                        outputs,
                        Some(ManifestError {
                            kind: e.kind(),
                            message: e.message().to_owned(),
                        }),
                    )
                }
            }
        };
        let entry = ManifestEntry {
            source: &source,
            status,
            pages,
            outputs,
            error,
            elapsed_ms: t.elapsed().as_millis() as u64,
        };
        serde_json::to_writer(&mut manifest, &entry)?;
        manifest.write_all(b"\n")?;
        manifest.flush()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(manifest);
    std::fs::rename(&partial, &manifest_path)?;

    let summary = Summary {
        inputs: inputs.len(),
        processed,
        skipped,
        failed,
        pages_written,
        model_loaded: model.is_loaded(),
        manifest: manifest_path.display().to_string(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
