//! `vinscan pipelines`: the pipelines this run would use, checked (schemas compile and can be
//! bounded, pipeline files are valid; loading reports every problem at once), and with
//! `--check` the default bounds applied to each schema.

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
                    "unit": p.unit,
                    "pages_together": p.pages_together,
                    "tiles": {"min": p.min_tiles, "max": p.max_tiles},
                    "max_tokens": p.max_tokens,
                    "pdf_dpi": p.pdf_dpi,
                    "schema_defaults_applied": p.schema.applied_defaults(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for p in catalog.pipelines() {
            let unit = match p.unit {
                vinscan_core::Unit::Document => format!("document ({} pages a read)", p.pages_together),
                vinscan_core::Unit::Page => "page".to_owned(),
            };
            println!(
                "{:<14} {:<32} {:<26} tiles {}..{}  {}",
                p.name,
                p.schema.path(),
                unit,
                p.min_tiles,
                p.max_tiles,
                p.description
            );
        }
        if args.check {
            for p in catalog.pipelines() {
                let applied = p.schema.applied_defaults();
                println!(
                    "\n{}: {}: {} default bounds applied",
                    p.name,
                    p.schema.path(),
                    applied.len()
                );
                for a in applied {
                    let at = if a.pointer.is_empty() {
                        "(root)"
                    } else {
                        &a.pointer
                    };
                    println!("  {at} {} = {}", a.keyword, a.value);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
