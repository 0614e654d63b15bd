//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout (one object per page), or one
//! file per page with `--out`, named after the input file and never overwriting another
//! input's output.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use vinscan_core::hash::sha256_hex;
use vinscan_core::{Cancellation, Error, ErrorKind, Extractor, PageRecord, Pipeline};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::inputs::OutputNames;
use crate::local::{read_file, write_atomic};
use crate::model_files::ModelFiles;
use crate::model_load::LazyModel;
use crate::output::page_path;
use crate::pdf::LazyPdf;

/// Runs every page of one document through the pipeline, handing each record to `sink`.
/// Returns the page count; stops at the first failing page. The outer error is for the whole
/// run (the model cannot load, or its engine is gone); the inner one is this document's.
pub fn process_document(
    extractor: &Extractor,
    model: &LazyModel,
    pipeline: &Pipeline,
    bytes: Vec<u8>,
    source: &str,
    mut sink: impl FnMut(PageRecord) -> vinscan_core::Result<()>,
) -> anyhow::Result<Result<u32, Error>> {
    let sha = sha256_hex(&bytes);
    let doc = match extractor.open(source, bytes, pipeline) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    // A model that cannot load is a configuration error for the whole run, not this input.
    let vision = model.get()?;
    let never = Cancellation::new();
    for page in extractor.extract_document(vision, &doc, &sha, pipeline, &never) {
        let outcome = page.and_then(&mut sink);
        match outcome {
            Ok(()) => {}
            // every later input would fail the same way: stop the run
            Err(e) if e.kind() == ErrorKind::Unavailable => anyhow::bail!("{e}"),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(doc.page_count()))
}

fn json<T: serde::Serialize>(value: &T, pretty: bool) -> vinscan_core::Result<Vec<u8>> {
    let r = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    r.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

pub fn run(global: &GlobalArgs, args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let files = ModelFiles::resolve(args.model.model.as_deref(), args.model.mmproj.as_deref())?;
    let model = LazyModel::new(files, args.model.settings());
    let extractor = Extractor::new(Some(Arc::new(LazyPdf::default())));
    let stdout = std::io::stdout();
    let mut names = OutputNames::default();
    let mut failed = 0usize;
    for path in &args.files {
        let source = path.display().to_string();
        let name = path
            .file_name()
            .map_or_else(|| source.clone(), |n| n.to_string_lossy().into_owned());
        let output_name = names.claim(&name, path.as_os_str().as_encoded_bytes());
        let bytes = match read_file(path, pipeline.limits.max_bytes) {
            Ok(b) => b,
            Err(e) => {
                failed += 1;
                tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
                continue;
            }
        };
        let result = process_document(
            &extractor,
            &model,
            &pipeline,
            bytes,
            &source,
            |record| match &args.out {
                Some(dir) => write_atomic(&page_path(dir, &output_name, record.page), &json(&record, true)?),
                None => {
                    let line = json(&record, false)?;
                    let mut out = stdout.lock();
                    out.write_all(&line)
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush())
                        .map_err(|e| Error::from_io(&e, "stdout"))
                }
            },
        )?;
        match result {
            Ok(pages) => tracing::info!(source = %source, pages, "extracted"),
            Err(e) => {
                failed += 1;
                tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
