//! The throughput peer users pick when they do not pick vinscan: llama.cpp's `llama-server` with
//! `--parallel` slots and continuous batching, driven by as many concurrent clients as vinscan
//! keeps pages in flight, every page once, the same prompt, image and JSON Schema.
//!
//! Each client posts a page to `/completion` (llama.cpp `tools/server/README.md`): the ChatML
//! prompt vinscan feeds llama.cpp (mtmd's marker where the image goes, then the task), the page's grid image
//! as `multimodal_data`, `json_schema` (the server turns it into its GBNF grammar), greedy, the
//! pipeline's repetition penalty and the same output cap.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use vinscan_core::Pipeline;

use crate::aggregate::in_flight;
use crate::measure::ms_since;
use crate::report::{ServerAggregate, ServerPage, Unit};

/// How to run llama-server.
pub struct LlamaServer {
    pub exe: PathBuf,
    /// Where the binary's llama.cpp came from (for the report).
    pub source: String,
    pub model: PathBuf,
    pub mmproj: PathBuf,
    pub threads: u32,
    /// Context per slot, as vinscan's per-page context.
    pub ctx: u32,
    pub parallel: u32,
    /// Layers offloaded to the GPU (`-ngl`).
    pub gpu_layers: u32,
    /// The server's log.
    pub log: PathBuf,
}

/// The server process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free local port (bound and released; the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LlamaServer {
    /// Starts the server and waits for `/health` to answer 200 (model and projector loaded).
    fn start(&self) -> anyhow::Result<(Running, String, f64)> {
        let port = free_port()?;
        let log = std::fs::File::create(&self.log)?;
        let t = Instant::now();
        let child = Command::new(&self.exe)
            .arg("-m")
            .arg(&self.model)
            .arg("--mmproj")
            .arg(&self.mmproj)
            .args(["-t", &self.threads.to_string(), "-tb", &self.threads.to_string()])
            // slots share the context: each gets ctx / parallel
            .args(["-c", &(self.ctx * self.parallel).to_string()])
            .args(["-np", &self.parallel.to_string(), "-b", "2048", "-ub", "512"])
            .args(["-ngl", &self.gpu_layers.to_string()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // the server draws a random media marker per process unless told one
            // (`get_media_marker`, tools/server/server-common.cpp): the prompt carries mtmd's
            .env("LLAMA_MEDIA_MARKER", vinscan_llama::tools::image_marker())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let mut running = Running(child);
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        loop {
            if let Some(status) = running.0.try_wait()? {
                bail!(
                    "llama-server exited ({status}) before it was ready: see {}",
                    self.log.display()
                );
            }
            if let Ok(r) = agent.get(&format!("{base}/health")).call()
                && r.status() == 200
            {
                return Ok((running, base, ms_since(t)));
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("llama-server not ready after 300 s: see {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every page once through `parallel` concurrent clients; the wall time runs from the first
    /// request to the last answer (loading apart, as `load_ms`).
    pub fn aggregate(
        &self,
        pipeline: &Pipeline,
        units: &[Unit],
        tokens: u32,
        schema_file: &Path,
    ) -> anyhow::Result<ServerAggregate> {
        let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(schema_file)?)?;
        let (_server, base, load_ms) = self.start()?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(3600))
            .build();
        let client = Client {
            agent: &agent,
            url: format!("{base}/completion"),
            pipeline,
            schema: &schema,
            tokens,
        };
        let t = Instant::now();
        let mut pages = in_flight(units, self.parallel, |unit| client.page(unit))
            .context("llama-server aggregate run")?;
        let wall_ms = ms_since(t);
        pages.sort_by(|a, b| a.page.cmp(&b.page));
        Ok(ServerAggregate {
            source: self.source.clone(),
            parallel: self.parallel,
            load_ms,
            wall_ms,
            pages,
        })
    }
}

/// One client's request template.
struct Client<'a> {
    agent: &'a ureq::Agent,
    url: String,
    pipeline: &'a Pipeline,
    schema: &'a serde_json::Value,
    tokens: u32,
}

impl Client<'_> {
    fn page(&self, unit: &Unit) -> anyhow::Result<ServerPage> {
        let image = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&unit.grid_image)?);
        let body = serde_json::json!({
            "prompt": {
                "prompt_string": vinscan_llama::tools::chat_prompt(&self.pipeline.system_prompt, &self.pipeline.prompt),
                "multimodal_data": [image],
            },
            "json_schema": self.schema,
            "n_predict": self.tokens,
            "temperature": 0.0,
            "repeat_penalty": self.pipeline.repeat_penalty,
            "repeat_last_n": self.pipeline.repeat_last_n,
            "cache_prompt": true,
        });
        let t = Instant::now();
        let answer: serde_json::Value = match self.agent.post(&self.url).send_json(body) {
            Ok(r) => r.into_json()?,
            Err(ureq::Error::Status(code, r)) => {
                bail!(
                    "llama-server answered {code}: {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => return Err(e.into()),
        };
        let wall_ms = ms_since(t);
        let content = answer["content"].as_str().unwrap_or_default();
        if !content.trim_start().starts_with('{') {
            bail!("llama-server's answer is no JSON object: {answer}");
        }
        let number = |v: &serde_json::Value, key: &str| {
            v.as_f64()
                .with_context(|| format!("llama-server's answer has no `{key}`: {answer}"))
        };
        Ok(ServerPage {
            page: unit.name.clone(),
            wall_ms,
            prompt_ms: number(&answer["timings"]["prompt_ms"], "timings.prompt_ms")?,
            predicted_ms: number(&answer["timings"]["predicted_ms"], "timings.predicted_ms")?,
            tokens: number(&answer["tokens_predicted"], "tokens_predicted")? as u32,
            prompt_tokens: number(&answer["tokens_evaluated"], "tokens_evaluated")? as u32,
            stop: answer["stop_type"].as_str().unwrap_or("unknown").to_owned(),
        })
    }
}
