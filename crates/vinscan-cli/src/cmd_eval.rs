//! `vinscan eval --labels FILE_OR_DIR --outputs DIR`: records compared with labels
//! (`vinscan_batch::eval`); the report as Markdown on stdout and, with `--json`, as JSON.

use std::process::ExitCode;

use anyhow::Context;
use vinscan_batch::eval;

use crate::cli::{EvalArgs, GlobalArgs};

pub fn run(global: &GlobalArgs, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let labels = eval::read_labels(&args.labels)
        .with_context(|| format!("reading labels {}", args.labels.display()))?;
    if labels.is_empty() {
        anyhow::bail!("{}: no labels", args.labels.display());
    }
    // a source labelled twice would be scored twice
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = labels.iter().find(|l| !seen.insert(l.source.as_str())) {
        anyhow::bail!(
            "{}: {} is labelled more than once",
            args.labels.display(),
            twice.source
        );
    }
    let outputs = eval::read_outputs(&args.outputs)
        .with_context(|| format!("reading records {}", args.outputs.display()))?;
    if outputs.is_empty() {
        anyhow::bail!(
            "{}: no records (give the --out folder of a `vinscan batch` run)",
            args.outputs.display()
        );
    }
    // a record of a pipeline this vinscan does not know is compared without its schema's
    // normalisers (text and numbers only)
    let schemas: std::collections::HashMap<&str, serde_json::Value> = outputs
        .iter()
        .filter_map(|o| {
            let pipeline = catalog.pipeline(&o.pipeline).ok()?;
            Some((o.pipeline.as_str(), pipeline.schema.document().clone()))
        })
        .collect();
    let schema_of = |pipeline: &str| schemas.get(pipeline);
    let report = eval::evaluate(&labels, &outputs, &schema_of);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| path.display().to_string())?;
    }
    print!("{}", report.markdown());
    if report.matched == 0 {
        // every score above is then a miss: more likely the wrong folder or labels than a model
        // that read nothing right
        eprintln!(
            "error: no record in {} is of a labelled source: check --outputs and the labels' source names",
            args.outputs.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
