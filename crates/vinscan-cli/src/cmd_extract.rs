//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout, one object per document for
//! a document pipeline (every page of a file; every file given, with `--as-document`) and one
//! per page for a page pipeline; or one file per record with `--out`, named after the input
//! file and never overwriting another input's output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vinscan_batch::inputs::OutputNames;
use vinscan_batch::local::{read_file, write_atomic};
use vinscan_batch::resume::{document_path, page_path};
use vinscan_batch::{process_as_document, process_document};
use vinscan_core::{Error, ErrorKind, Extractor, Pipeline, Unit};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::model_load::LazyModel;

fn json<T: serde::Serialize>(value: &T, pretty: bool) -> vinscan_core::Result<Vec<u8>> {
    let r = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    r.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

/// Writes one record: a line on stdout, or a file at `path` when `--out` is set, with its
/// `transcript` (when the pipeline made one) beside it as the same name ending `.txt`.
fn emit<T: serde::Serialize>(
    record: &T,
    transcript: Option<String>,
    path: Option<PathBuf>,
) -> vinscan_core::Result<()> {
    match path {
        Some(path) => {
            let txt = path.with_extension("txt");
            match transcript {
                Some(text) => write_atomic(&txt, text.as_bytes())?,
                // none now: an earlier run's would sit beside a record it is not from
                None => match std::fs::remove_file(&txt) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::from_io(&e, txt.display()));
                    }
                    _ => {}
                },
            }
            write_atomic(&path, &json(record, true)?)
        }
        None => {
            let line = json(record, false)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(|e| Error::from_io(&e, "stdout"))
        }
    }
}

struct Run<'a> {
    extractor: Extractor,
    model: LazyModel,
    pipeline: &'a Pipeline,
    out: Option<&'a Path>,
    names: OutputNames,
    failed: usize,
}

impl Run<'_> {
    fn claim(&mut self, path: &Path) -> String {
        let source = path.display().to_string();
        let name = path
            .file_name()
            .map_or_else(|| source.clone(), |n| n.to_string_lossy().into_owned());
        self.names.claim(&name, path.as_os_str().as_encoded_bytes())
    }

    fn fail(&mut self, source: &str, e: &Error) {
        self.failed += 1;
        tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
    }

    /// `files` as one document named after `named` (its first file, or the folder given):
    /// one record.
    fn document(&mut self, named: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
        if files.is_empty() {
            self.fail(
                &named.display().to_string(),
                &Error::new(ErrorKind::InvalidInput, "the folder holds no files"),
            );
            return Ok(());
        }
        let output_name = self.claim(named);
        let source = named.display().to_string();
        let mut inputs = Vec::with_capacity(files.len());
        for path in files {
            match read_file(path, self.pipeline.limits.max_bytes) {
                Ok(b) => inputs.push((path.display().to_string(), b)),
                Err(e) => {
                    self.fail(&path.display().to_string(), &e);
                    return Ok(());
                }
            }
        }
        let result = process_as_document(&self.extractor, &self.model, self.pipeline, inputs)?;
        match result.and_then(|record| {
            let pages = record.pages.len();
            emit(
                &record,
                record.transcript_file(),
                self.out.map(|d| document_path(d, &output_name)),
            )?;
            Ok(pages)
        }) {
            Ok(pages) => {
                tracing::info!(source = %source, sources = files.len(), pages, "extracted as one document")
            }
            Err(e) => self.fail(&source, &e),
        }
        Ok(())
    }

    /// One record per page of `path`.
    fn pages(&mut self, path: &Path) -> anyhow::Result<()> {
        let output_name = self.claim(path);
        let source = path.display().to_string();
        let bytes = match read_file(path, self.pipeline.limits.max_bytes) {
            Ok(b) => b,
            Err(e) => {
                self.fail(&source, &e);
                return Ok(());
            }
        };
        let out = self.out;
        let result = process_document(
            &self.extractor,
            &self.model,
            self.pipeline,
            bytes,
            &source,
            |record| {
                emit(
                    &record,
                    record.transcript_file(),
                    out.map(|d| page_path(d, &output_name, record.page)),
                )
            },
        )?;
        match result {
            Ok(pages) => tracing::info!(source = %source, pages, "extracted"),
            Err(e) => self.fail(&source, &e),
        }
        Ok(())
    }
}

/// The files given, each folder replaced by the files under it in natural name order (`p2`
/// before `p10`; hidden ones left out).
fn expand_folders(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        if path.is_dir() {
            let mut under = vinscan_batch::inputs::walk_local(path)?;
            under.sort_by(|a, b| natord::compare(&a.to_string_lossy(), &b.to_string_lossy()));
            files.extend(under);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub fn run(global: &GlobalArgs, args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    if args.as_document && pipeline.unit == Unit::Page {
        anyhow::bail!(
            "--as-document needs a document pipeline (unit = \"document\"); {} gives one record per page",
            pipeline.name
        );
    }
    let (extractor, model) = args.model.extractor_and_model(&pipeline)?;
    let mut run = Run {
        extractor,
        model,
        pipeline: &pipeline,
        out: args.out.as_deref(),
        names: OutputNames::default(),
        failed: 0,
    };
    if args.as_document {
        let files = expand_folders(&args.files)?;
        // one folder given: the document is named after it
        let named = match args.files.as_slice() {
            [one] if one.is_dir() => one,
            _ => files.first().unwrap_or(&args.files[0]),
        };
        run.document(named, &files)?;
    } else {
        for path in expand_folders(&args.files)? {
            match pipeline.unit {
                Unit::Document => run.document(&path, std::slice::from_ref(&path))?,
                Unit::Page => run.pages(&path)?,
            }
        }
    }
    Ok(if run.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
