//! `vinscan serve --config FILE`: wires the daemon (`vinscan-daemon`) to its real ports — the
//! Kafka consumer and producer, the S3 service, llama.cpp — and runs it. Exit codes: 0 after a
//! requested stop, 1 after a fault that needs a restart (the work left undone is redelivered),
//! 2 for a configuration error.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vinscan_core::model::DEFAULT_CTX_SIZE;
use vinscan_daemon::kafka::kafka_settings;
use vinscan_daemon::{Daemon, Exit, Metrics, Readiness, ServeConfig};
use vinscan_jobs::routing::Routes;
use vinscan_kafka::{JobConsumer, Publisher};
use vinscan_storage::{S3Client, S3Config};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::model_files::ModelFiles;
use crate::model_load::{ModelSettings, load_model};

fn s3_config(config: &ServeConfig) -> S3Config {
    let mut s3 = S3Config::from_env();
    if let Some(e) = &config.s3.endpoint {
        s3.endpoint = Some(e.clone());
        s3.path_style = true;
    }
    if let Some(r) = &config.s3.region {
        s3.region = r.clone();
    }
    if let Some(p) = config.s3.path_style {
        s3.path_style = p;
    }
    s3.attempt_timeout = config.s3.attempt_timeout_s.map(Duration::from_secs);
    s3
}

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let config =
        ServeConfig::parse(&text, &env).with_context(|| format!("config {}", args.config.display()))?;
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let names: Vec<String> = catalog.pipelines().map(|p| p.name.clone()).collect();
    let routes = Routes::new(
        config.routes.clone(),
        &names,
        config.daemon.default_output.clone(),
    )
    .map_err(|e| anyhow::anyhow!("routes: {e}"))?;
    let files = ModelFiles::resolve(config.model.model.as_deref(), config.model.mmproj.as_deref())?;
    let settings = ModelSettings {
        threads: config.model.threads,
        ctx_size: config.model.ctx_size.unwrap_or(DEFAULT_CTX_SIZE),
        gpu_layers: config.model.gpu_layers.unwrap_or(0),
        // every message in flight can decode in the same batch
        parallel: (config.daemon.max_in_flight as u32).clamp(1, 64),
    };
    // the text stage's model is loaded with Vintern, before consuming: a load that fails
    // stops the start instead of holding every text-stage job
    let text = config
        .model
        .text_model
        .as_deref()
        .map(|path| {
            let ctx = config
                .model
                .text_ctx_size
                .unwrap_or(vinscan_core::text_stage::DEFAULT_TEXT_CTX_SIZE);
            crate::model_load::LazyTextModel::new(path, ctx, settings).map(Arc::new)
        })
        .transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let exit = rt.block_on(serve(config, routes, catalog, text, files, settings))?;
    // Blocking work the grace period cancelled may still be finishing a vision encode: its
    // delivery is already abandoned, so the process does not wait for it (tokio's runtime drop
    // would wait forever), nor for the model thread to wind down.
    rt.shutdown_timeout(Duration::from_secs(1));
    let code = match exit {
        Exit::Stopped => 0,
        Exit::Fault(_) => 1,
    };
    std::process::exit(code)
}

async fn serve(
    config: ServeConfig,
    routes: Routes,
    catalog: vinscan_core::Catalog,
    text: Option<Arc<crate::model_load::LazyTextModel>>,
    files: ModelFiles,
    settings: ModelSettings,
) -> anyhow::Result<Exit> {
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new(metrics.ready.clone()));
    let listener = tokio::net::TcpListener::bind(config.daemon.listen)
        .await
        .with_context(|| format!("listen on {}", config.daemon.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(vinscan_daemon::ops::serve(
        listener,
        metrics.clone(),
        readiness.clone(),
    ));
    tracing::info!(listen = %addr, "operations endpoint up: /metrics /healthz /readyz");

    let mut extractor = crate::pdf::extractor();
    if let Some(text) = &text {
        extractor = extractor.with_text_model(text.clone());
    }
    // a text-stage pipeline whose reads cannot fit the text model's context would fail every
    // job sent to it: refuse the start, before the models load
    for pipeline in catalog.pipelines() {
        extractor.check_text_stage(pipeline)?;
    }

    // the model first: a member that holds partitions while loading would stall them
    let t = Instant::now();
    let text_model = text.clone();
    let model = tokio::task::spawn_blocking(move || {
        let model = load_model(&files, settings)?;
        if let Some(text) = text_model {
            text.load()?;
        }
        anyhow::Ok(model)
    })
    .await
    .context("model loading task")??;
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, "model loaded");

    let kafka = kafka_settings(&config);
    let source = Arc::new(JobConsumer::subscribe(&kafka, &config.kafka.topics)?);
    let publisher = Arc::new(Publisher::new(&kafka)?);
    let stores = Arc::new(S3Client::new(&s3_config(&config))?);
    tracing::info!(topics = ?config.kafka.topics, group = %config.kafka.group_id, "consuming");
    let daemon = Arc::new(Daemon::new(
        config,
        routes,
        catalog,
        Arc::new(extractor),
        model,
        stores,
        publisher,
        metrics,
        readiness,
    ));
    let exit = vinscan_daemon::serve(daemon, source.clone()).await;
    // The daemon has already committed and left the group (off the async threads); dropping
    // the consumer here would close it again inside librdkafka's destructor, blocking this
    // thread. The process exits right after, so it is left to the exit.
    std::mem::forget(source);
    Ok(exit)
}
