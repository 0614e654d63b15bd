//! The figures that depend on the machine, kept per CPU: every run writes its own to
//! `docs/bench/machines/` beside the committed report.json, and docs/BENCHMARKS.md sets those of
//! every CPU measured side by side ("Every CPU measured"), so a run on one kind of server does
//! not erase what another kind measured.
//!
//! A file holds a few figures, not the whole report: a change to the report's format leaves
//! the other machines' files readable, since they cannot be measured again at will.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The shape of a machine file; removing, renaming or redefining a field bumps it (an optional
/// field that older files lack does not).
pub const FORMAT: u32 = 1;

/// One run's machine-dependent figures. Ratios are plain numbers (`1.2` for 1.2×); `None` for
/// what the run did not measure (no transformers peer, no llama-server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuFigures {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The CPU's model name from /proc/cpuinfo.
    pub cpu: Option<String>,
    pub cores: usize,
    /// LLM layers on the GPU (0: a CPU run).
    pub gpu_layers: u32,
    /// The vendored llama.cpp (`llama-cpp-sys-2` version) the run measured.
    pub llama_cpp_sys_2: String,
    /// transformers' time over vinscan's on vinscan's slowest page against it (> 1: vinscan
    /// faster on every page).
    pub transformers_over_vinscan: Option<f64>,
    /// llama.cpp's vision encoder, GFLOP/s (median time per tile).
    pub vision_gflops: Option<f64>,
    /// torch's f32 GEMM on the same cores, GFLOP/s.
    pub gemm_gflops: Option<f64>,
    /// vinscan's aggregate pages/s over `llama-mtmd-cli` one page after another.
    pub aggregate_over_mtmd: Option<f64>,
    /// vinscan's aggregate pages/s over llama-server's with as many slots.
    pub aggregate_over_server: Option<f64>,
    /// Time per tile, mtmd's batched encode over one graph per tile.
    pub batched_over_unbatched: Option<f64>,
    /// How this run differs from what the benchmark measures now, where it does (a build or a
    /// method changed after the file was written): shown under the table beside the CPU. Runs
    /// write none; it is added by hand to a kept file when the benchmark changes under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CpuFigures {
    /// The file these figures are kept under: the CPU's model name in lower case with each run
    /// of other characters as one `-`, then the cores, then `-gpu` for a run with layers on the
    /// GPU (`Intel(R) Xeon(R) Processor`, 2 cores → `intel-r-xeon-r-processor-2-cores.json`).
    /// A hypervisor's generic model name covers several CPU generations: the latest of them
    /// replaces the others.
    pub fn file_name(&self) -> String {
        let name = self.cpu.as_deref().unwrap_or("");
        let mut slug = String::with_capacity(name.len() + 16);
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_end_matches('-');
        let slug = if slug.is_empty() { "unknown-cpu" } else { slug };
        let gpu = if self.gpu_layers > 0 { "-gpu" } else { "" };
        format!("{slug}-{}-cores{gpu}.json", self.cores)
    }

    /// Parses a machine file, refusing another [`FORMAT`] and missing or unknown fields.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let figures: Self = serde_json::from_slice(bytes).context("not a machine file of this format")?;
        if figures.format != FORMAT {
            bail!(
                "machine file format {}, this benchmark reads format {FORMAT}",
                figures.format
            );
        }
        Ok(figures)
    }

    /// Writes the figures as `dir/`[`CpuFigures::file_name`] (creating the folder); returns
    /// the path.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let path = dir.join(self.file_name());
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        std::fs::write(&path, json).with_context(|| path.display().to_string())?;
        Ok(path)
    }
}

/// The folder of machine files for a report.json: `machines/` beside it.
pub fn dir(report_json: &Path) -> PathBuf {
    report_json
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join("machines")
}

/// Every machine file in `dir` (`*.json`) but `this` run's own, sorted by file name; none when
/// the folder does not exist.
///
/// Errors: a file that cannot be read or is not a machine file of this [`FORMAT`].
pub fn others(dir: &Path, this: &CpuFigures) -> anyhow::Result<Vec<CpuFigures>> {
    let mut others = Vec::new();
    for path in files(dir)? {
        let own = path.file_name().and_then(|n| n.to_str()) == Some(this.file_name().as_str());
        if !own {
            let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
            others.push(CpuFigures::from_json(&bytes).with_context(|| path.display().to_string())?);
        }
    }
    Ok(others)
}

/// The `*.json` files in `dir`, sorted; none when it does not exist.
pub fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| dir.display().to_string())?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> CpuFigures {
        CpuFigures {
            format: FORMAT,
            cpu: Some("Intel(R) Xeon(R) Processor".into()),
            cores: 2,
            gpu_layers: 0,
            llama_cpp_sys_2: "0.1.161".into(),
            transformers_over_vinscan: Some(0.45),
            vision_gflops: Some(92.0),
            gemm_gflops: None,
            aggregate_over_mtmd: Some(1.45),
            aggregate_over_server: None,
            batched_over_unbatched: Some(1.04),
            note: None,
        }
    }

    #[test]
    fn file_names_are_the_cpu_in_lower_case_words_and_its_cores() {
        let mut f = figures();
        assert_eq!(f.file_name(), "intel-r-xeon-r-processor-2-cores.json");
        f.cpu = Some("AMD EPYC 9B14 96-Core Processor ".into());
        f.cores = 96;
        assert_eq!(f.file_name(), "amd-epyc-9b14-96-core-processor-96-cores.json");
        f.gpu_layers = u32::MAX;
        assert_eq!(f.file_name(), "amd-epyc-9b14-96-core-processor-96-cores-gpu.json");
        f.gpu_layers = 0;
        f.cpu = Some("(?)".into());
        assert_eq!(f.file_name(), "unknown-cpu-96-cores.json");
        f.cpu = None;
        assert_eq!(f.file_name(), "unknown-cpu-96-cores.json");
        assert_eq!(
            dir(Path::new("docs/bench/report.json")),
            Path::new("docs/bench/machines")
        );
    }

    #[test]
    fn machine_files_round_trip_and_other_formats_or_shapes_are_refused() {
        let mut json = serde_json::to_value(figures()).expect("json");
        let bytes = serde_json::to_vec(&json).expect("bytes");
        assert_eq!(CpuFigures::from_json(&bytes).expect("parse"), figures());
        json["format"] = serde_json::json!(FORMAT + 1);
        let bytes = serde_json::to_vec(&json).expect("bytes");
        let said = format!("{:#}", CpuFigures::from_json(&bytes).expect_err("another format"));
        assert!(said.contains(&format!("format {}", FORMAT + 1)), "{said}");
        json["format"] = serde_json::json!(FORMAT);
        json["gflops"] = serde_json::json!(1.0);
        let bytes = serde_json::to_vec(&json).expect("bytes");
        assert!(CpuFigures::from_json(&bytes).is_err());
    }
}
