//! `vinscan export OUT --format csv|xlsx`: a batch's records as spreadsheet tables
//! (`vinscan_batch::export`).

use std::process::ExitCode;

use anyhow::Context;
use vinscan_batch::export;

use crate::cli::{ExportArgs, ExportFormat};

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let records =
        export::read_records(&args.out).with_context(|| format!("reading {}", args.out.display()))?;
    if records.is_empty() {
        anyhow::bail!("{}: no records to export", args.out.display());
    }
    let tables = export::tables(&records);
    let written = match args.format {
        ExportFormat::Csv => {
            let dir = args.output.unwrap_or_else(|| args.out.clone());
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            export::write_csv(&tables, &dir, "export")?
        }
        ExportFormat::Xlsx => {
            let path = args.output.unwrap_or_else(|| args.out.join("export.xlsx"));
            export::write_xlsx(&tables, &path)?;
            vec![path]
        }
    };
    let summary = serde_json::json!({
        "records": records.len(),
        "tables": tables.iter().map(|t| serde_json::json!({"name": t.name, "rows": t.rows.len()})).collect::<Vec<_>>(),
        "written": written,
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
