//! `vinscan pipelines`: the pipelines this run would use, checked (schemas compile and are
//! bounded, pipeline files are valid).

use std::process::ExitCode;

use crate::cli::{GlobalArgs, PipelinesArgs};

pub fn run(global: &GlobalArgs, args: PipelinesArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    if args.json {
        let list: Vec<_> = catalog
            .pipelines()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "description": p.description,
                    "schema": p.schema.path(),
                    "schema_id": p.schema.id(),
                    "tiles": {"min": p.min_tiles, "max": p.max_tiles},
                    "max_tokens": p.max_tokens,
                    "pdf_dpi": p.pdf_dpi,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for p in catalog.pipelines() {
            println!(
                "{:<14} {:<32} tiles {}..{}  {}",
                p.name,
                p.schema.path(),
                p.min_tiles,
                p.max_tiles,
                p.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
