//! The transformers peer (a long-lived Python worker, `ops/bench/transformers_peer.py`) and
//! Tesseract.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::measure::ms_since;
use crate::report::{Gemm, TesseractPage, TransformersResult, Unit};

/// One request line to the worker.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PeerRequest<'a> {
    /// torch's f32 matmul of `n`² matrices: the machine's GEMM peak.
    Gemm { n: u32 },
    /// One page through transformers' InternVL, exactly `tokens` new tokens.
    Page {
        image: &'a Path,
        max_tiles: u32,
        tokens: u32,
        system: &'a str,
        prompt: &'a str,
    },
}

/// The worker's first line, once the checkpoint is loaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerReady {
    pub ready: bool,
    pub load_ms: f64,
}

/// The transformers worker, stopped when dropped.
pub struct PythonPeer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PythonPeer {
    /// Starts the worker on `checkpoint` and waits until it has loaded it.
    pub fn start(
        python: &Path,
        script: &Path,
        checkpoint: &Path,
        threads: u32,
    ) -> anyhow::Result<(Self, PeerReady)> {
        let mut child = Command::new(python)
            .arg(script)
            .arg(checkpoint)
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut peer = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let ready: PeerReady = peer.read()?;
        if !ready.ready {
            bail!("the transformers peer did not get ready");
        }
        Ok((peer, ready))
    }

    fn read<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let line = self.lines.next().context("the transformers peer exited")??;
        serde_json::from_str(&line).with_context(|| format!("the transformers peer said {line:?}"))
    }

    fn ask<T: DeserializeOwned>(&mut self, request: &PeerRequest) -> anyhow::Result<T> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "{}", serde_json::to_string(request)?)?;
        stdin.flush()?;
        self.read()
    }

    /// The machine's f32 GEMM peak through torch.
    pub fn gemm(&mut self) -> anyhow::Result<Gemm> {
        self.ask(&PeerRequest::Gemm { n: 2048 })
    }

    /// One page through transformers.
    pub fn page(&mut self, request: &PeerRequest) -> anyhow::Result<TransformersResult> {
        self.ask(request)
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Every page through Tesseract 5 (`-l vie`) on `threads` threads.
pub fn tesseract(exe: &Path, units: &[Unit], threads: u32) -> anyhow::Result<Vec<TesseractPage>> {
    let mut pages = Vec::new();
    for unit in units {
        let t = Instant::now();
        let out = Command::new(exe)
            .arg(&unit.image)
            .args(["stdout", "-l", "vie"])
            .env("OMP_THREAD_LIMIT", threads.to_string())
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        let ms = ms_since(t);
        if !out.status.success() {
            bail!("tesseract failed on {}", unit.name);
        }
        pages.push(TesseractPage {
            page: unit.name.clone(),
            ms,
            chars: String::from_utf8_lossy(&out.stdout).chars().count(),
        });
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_lines_the_worker_reads() {
        let gemm = serde_json::to_string(&PeerRequest::Gemm { n: 2048 }).unwrap_or_default();
        assert_eq!(gemm, r#"{"op":"gemm","n":2048}"#);
        let page = PeerRequest::Page {
            image: Path::new("a.png"),
            max_tiles: 6,
            tokens: 64,
            system: "s",
            prompt: "p",
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap_or_default(),
            r#"{"op":"page","image":"a.png","max_tiles":6,"tokens":64,"system":"s","prompt":"p"}"#
        );
    }

    #[test]
    fn answers_are_typed() {
        let r: TransformersResult = serde_json::from_str(
            r#"{"tiles": 1, "prompt_tokens": 300, "generated": 64, "preprocess_ms": 40.5, "total_ms": 17000.0}"#,
        )
        .expect("page answer");
        assert_eq!((r.tiles, r.generated), (1, 64));
        let gemm: Gemm = serde_json::from_str(r#"{"gflops": 196.3, "threads": 2}"#).expect("gemm");
        assert_eq!(gemm.threads, 2);
    }
}
