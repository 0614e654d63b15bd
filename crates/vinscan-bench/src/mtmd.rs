//! The llama-mtmd-cli peer: one process per page, as a user runs it, its loading measured
//! apart and its peak RSS taken from `wait4`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use vinscan_core::Pipeline;

use crate::measure::{ms_between, ms_since};
use crate::report::{MtmdRun, Stop, Unit};

/// How to run llama-mtmd-cli.
pub struct MtmdCli {
    pub exe: PathBuf,
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub threads: u32,
    pub ctx: u32,
    /// Layers offloaded to the GPU (`-ngl`).
    pub gpu_layers: u32,
}

/// What llama-mtmd-cli's stderr told: when it was ready, the chunks of the user turn, the end.
struct Stderr {
    /// Its "experimental CLI" warning, which comes right after model and projector are loaded.
    ready: Option<Instant>,
    /// "encoding mtmd batch, n_chunks = 4 (done = 1, total = 7)": every chunk of the user
    /// turn, the image chunks between two text chunks.
    chunks: u32,
    tail: VecDeque<String>,
}

fn read_stderr(stderr: ChildStderr) -> Stderr {
    let mut seen = Stderr {
        ready: None,
        chunks: 0,
        tail: VecDeque::new(),
    };
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if seen.ready.is_none() && line.contains("experimental CLI") {
            seen.ready = Some(Instant::now());
        }
        if let Some(total) = line.split("total = ").nth(1) {
            let n: String = total.chars().take_while(char::is_ascii_digit).collect();
            seen.chunks = seen.chunks.max(n.parse().unwrap_or(0));
        }
        seen.tail.push_back(line);
        if seen.tail.len() > 20 {
            seen.tail.pop_front();
        }
    }
    seen
}

impl MtmdCli {
    fn command(&self, pipeline: &Pipeline, unit: &Unit, tokens: u32, schema_file: &Path) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("-m")
            .arg(&self.model)
            .arg("--mmproj")
            .arg(&self.mmproj)
            .arg("--image")
            .arg(&unit.grid_image)
            .args(["-sys", &pipeline.system_prompt])
            .args(["-p", &format!("<__media__>\n{}", pipeline.prompt)])
            .args(["-n", &tokens.to_string(), "--temp", "0"])
            .args(["--repeat-penalty", &pipeline.repeat_penalty.to_string()])
            .args(["--repeat-last-n", &pipeline.repeat_last_n.to_string()])
            .args(["-t", &self.threads.to_string(), "-c", &self.ctx.to_string()])
            .args(["-b", "2048", "-ub", "512", "-ngl", &self.gpu_layers.to_string()])
            .arg("-jf")
            .arg(schema_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// One process on `unit`, `tokens` at most under the schema in `schema_file`. `load`: until
    /// the CLI reports its model and projector loaded, `compute`: the rest.
    pub fn run(
        &self,
        pipeline: &Pipeline,
        unit: &Unit,
        tokens: u32,
        schema_file: &Path,
    ) -> anyhow::Result<MtmdRun> {
        let t0 = Instant::now();
        let mut child = self
            .command(pipeline, unit, tokens, schema_file)
            .spawn()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let reader = std::thread::spawn(move || read_stderr(stderr));
        // a token budget can end inside a multi-byte character: keep what is text
        let mut raw = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut raw)?;
        }
        let out = String::from_utf8_lossy(&raw).trim().to_owned();
        let (status_ok, status, peak_rss_mb) = wait_rss(&mut child)?;
        let wall = ms_since(t0);
        let seen = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
        if !status_ok || !out.starts_with('{') {
            let tail: Vec<String> = seen.tail.into_iter().collect();
            bail!(
                "llama-mtmd-cli failed on {} ({status}): {}",
                unit.name,
                tail.join("\n")
            );
        }
        // with one image chunk mtmd logs no batch line; with more, the images must be the unit's
        if seen.chunks > 0 && seen.chunks != unit.images + 2 {
            bail!(
                "llama-mtmd-cli encoded {} images of {}, vinscan {}: the work is not the same",
                seen.chunks.saturating_sub(2),
                unit.name,
                unit.images
            );
        }
        let ready = seen.ready.with_context(|| {
            format!(
                "llama-mtmd-cli on {} never said it was loaded (its \"experimental CLI\" line): load and compute cannot be told apart",
                unit.name
            )
        })?;
        let load = ms_between(t0, ready);
        Ok(MtmdRun {
            wall,
            load,
            compute: wall - load,
            output_chars: out.chars().count(),
            stop: if serde_json::from_str::<serde_json::Value>(&out).is_ok() {
                Stop::End
            } else {
                Stop::Cap
            },
            peak_rss_mb,
            text: out,
        })
    }
}

/// Waits for a child and returns (success, exit description, its peak RSS in MB).
fn wait_rss(child: &mut Child) -> anyhow::Result<(bool, String, f64)> {
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child, which
    // `Child` has not reaped (we never call its wait before this)
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux
    Ok((
        ok,
        format!("wait status {status}"),
        usage.ru_maxrss as f64 / 1024.0,
    ))
}
