//! `vinscan serve --config FILE`: the daemon. A consumer-group member that turns job messages
//! and S3 upload events into output objects, result events and dead-letter records.
//!
//! Flow: load the model (readiness waits for it) → subscribe → poll forever; each message gets
//! a task ([`job::handle`]); when `max_in_flight` messages are being worked on, the partitions
//! are paused (polling continues, so the member stays in the group and rebalances are served)
//! and resumed when work drains. Offsets move only over finished messages (`vinscan-kafka`).
//! SIGTERM/SIGINT: stop taking messages, let in-flight work finish within the grace period,
//! abandon the rest uncommitted, commit, leave the group.

pub mod config;
mod http;
mod job;
mod metrics;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vinscan_core::Extractor;
use vinscan_jobs::routing::Routes;
use vinscan_kafka::{JobConsumer, KafkaSettings, Publisher};
use vinscan_storage::{ObjectStore, S3Config, StorageErrorKind};

use crate::cli::{GlobalArgs, ModelArgs, ServeArgs};
use crate::model::{LazyPdf, ModelFiles, catalog, load_model};
use config::ServeConfig;
use metrics::Metrics;

pub fn kafka_settings(config: &ServeConfig) -> KafkaSettings {
    let mut k = KafkaSettings::new(&config.kafka.brokers, &config.kafka.group_id);
    k.session_timeout = Duration::from_millis(config.kafka.session_timeout_ms);
    k.properties = config.kafka.properties.clone();
    k
}

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
    let config = ServeConfig::load(&args.config)?;
    let catalog = catalog(global)?;
    let names: Vec<String> = catalog.pipelines().map(|p| p.name.clone()).collect();
    let routes = Routes::new(
        config.routes.clone(),
        &names,
        config.daemon.default_output.clone(),
    )
    .map_err(|e| anyhow::anyhow!("routes: {e}"))?;
    let model_args = ModelArgs {
        model: config.model.model.clone(),
        mmproj: config.model.mmproj.clone(),
        threads: config.model.threads,
        ctx_size: config.model.ctx_size.unwrap_or(12288),
        gpu_layers: config.model.gpu_layers.unwrap_or(0),
        // every message in flight can decode in the same batch
        parallel: (config.daemon.max_in_flight as u32).clamp(1, 64),
    };
    let files = ModelFiles::resolve(&model_args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(config, routes, catalog, files, model_args))
}

async fn serve(
    config: ServeConfig,
    routes: Routes,
    catalog: vinscan_core::Catalog,
    files: ModelFiles,
    model_args: ModelArgs,
) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.daemon.listen)
        .await
        .with_context(|| format!("listen on {}", config.daemon.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(http::serve(listener, metrics.clone()));
    tracing::info!(listen = %addr, "operations endpoint up: /metrics /healthz /readyz");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(signals(shutdown_tx));

    // the model first: a member that holds partitions while loading would stall them
    let t = Instant::now();
    let model = tokio::task::spawn_blocking(move || load_model(&files, &model_args))
        .await
        .context("model loading task")??;
    metrics.set_check("model", true);
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, "model loaded");

    let settings = kafka_settings(&config);
    let consumer = Arc::new(JobConsumer::subscribe(&settings, &config.kafka.topics)?);
    let publisher = Publisher::new(&settings)?;
    let shared = Arc::new(job::Shared {
        s3: s3_config(&config),
        routes,
        catalog,
        extractor: Arc::new(Extractor::new(Some(Arc::new(LazyPdf::default())))),
        model,
        stores: Mutex::new(HashMap::new()),
        publisher: publisher.clone(),
        consumer: consumer.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown_rx.clone(),
        config,
    });
    let readiness = tokio::spawn(readiness(shared.clone()));
    tracing::info!(topics = ?shared.config.kafka.topics, group = %shared.config.kafka.group_id, "consuming");

    let max_in_flight = shared.config.daemon.max_in_flight;
    let mut tasks = JoinSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut shutdown = shutdown_rx.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(()) = done_rx.recv() => {
                while tasks.try_join_next().is_some() {}
                metrics.in_flight.set(consumer.in_flight() as i64);
                if consumer.is_paused() && consumer.in_flight() < max_in_flight {
                    match consumer.resume() {
                        Ok(()) => { metrics.paused.set(0); tracing::debug!("partitions resumed"); }
                        Err(e) => tracing::warn!(error = %e, "resume failed"),
                    }
                }
            }
            r = consumer.recv() => match r {
                Ok(d) => {
                    metrics.messages.inc();
                    let shared = shared.clone();
                    let done = done_tx.clone();
                    tasks.spawn(async move {
                        job::handle(shared, d).await;
                        let _ = done.send(());
                    });
                    metrics.in_flight.set(consumer.in_flight() as i64);
                    if consumer.in_flight() >= max_in_flight && !consumer.is_paused() {
                        match consumer.pause() {
                            Ok(()) => { metrics.paused.set(1); tracing::debug!(in_flight = consumer.in_flight(), "partitions paused"); }
                            Err(e) => tracing::warn!(error = %e, "pause failed"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }

    // shutdown: no new work; in-flight work gets the grace period
    let grace = shared.config.shutdown_grace();
    tracing::info!(
        in_flight = consumer.in_flight(),
        grace_s = grace.as_secs(),
        "shutting down"
    );
    if let Err(e) = consumer.pause() {
        tracing::warn!(error = %e, "pause on shutdown failed");
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            // keep serving the consumer (commit callbacks, rebalances); a prefetched message
            // that still arrives is left uncommitted for redelivery
            r = consumer.recv() => if let Ok(d) = r { consumer.abandon(&d.id); },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(in_flight = consumer.in_flight(), "grace period over: abandoning unfinished work");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    readiness.abort();
    drop(shared);
    if let Err(e) = consumer.close() {
        tracing::warn!(error = %e, "final commit failed; finished work since the last commit will be redone");
    }
    if let Err(e) = publisher.flush(Duration::from_secs(5)) {
        tracing::warn!(error = %e, "flushing the producer failed");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn signals(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    let _ = tx.send(true);
}

/// Every few seconds: does the broker answer, does the output bucket answer, how far behind
/// is the group.
async fn readiness(shared: Arc<job::Shared>) {
    let bucket = job::split_s3(&shared.config.daemon.default_output).0.to_owned();
    loop {
        let consumer = shared.consumer.clone();
        let broker = tokio::task::spawn_blocking(move || {
            consumer.check_broker(Duration::from_secs(3))?;
            consumer.lag(Duration::from_secs(3))
        })
        .await;
        match broker {
            Ok(Ok(lag)) => {
                shared.metrics.set_check("broker", true);
                shared.metrics.consumer_lag.set(lag);
            }
            Ok(Err(e)) => {
                if shared
                    .metrics
                    .broker_ready
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::warn!(error = %e, "broker not answering");
                }
                shared.metrics.set_check("broker", false);
            }
            Err(_) => shared.metrics.set_check("broker", false),
        }
        let store_ok = match shared.store(&bucket) {
            Ok(store) => {
                match tokio::time::timeout(Duration::from_secs(5), store.head("vinscan-readyz-probe")).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => e.kind == StorageErrorKind::NotFound,
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        if !store_ok
            && shared
                .metrics
                .store_ready
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(bucket = %bucket, "output bucket not answering");
        }
        shared.metrics.set_check("store", store_ok);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
