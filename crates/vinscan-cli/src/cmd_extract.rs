//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout (one object per page), or one
//! file per page with `--out`, named after the input file and never overwriting another
//! input's output.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use vinscan_batch::inputs::OutputNames;
use vinscan_batch::local::{read_file, write_atomic};
use vinscan_batch::process_document;
use vinscan_batch::resume::page_path;
use vinscan_core::{Error, ErrorKind, Extractor};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::model_files::ModelFiles;
use crate::model_load::LazyModel;
use crate::pdf::LazyPdf;

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
