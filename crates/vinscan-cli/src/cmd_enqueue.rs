//! `vinscan enqueue s3://bucket/prefix --topic T --pipeline NAME`: one job message per scan
//! under the prefix, so a fleet of daemons in one consumer group shares a large archive.
//! Job ids are deterministic (object, ETag, pipeline): enqueueing twice yields the same jobs,
//! and the daemons' outputs are the same objects.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use vinscan_jobs::ObjectRef;
use vinscan_jobs::keys::object_identity;
use vinscan_kafka::{KafkaSettings, Publisher, admin};
use vinscan_storage::{Location, S3Config};

use crate::cli::{EnqueueArgs, GlobalArgs};
use crate::cmd_batch::is_scan;
use crate::model::catalog;

pub fn run(global: &GlobalArgs, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = catalog(global)?;
    catalog.pipeline(&args.pipeline)?;
    let location = Location::parse(&args.source)?;
    let Location::S3 { bucket, prefix } = &location else {
        bail!("enqueue reads an s3://bucket/prefix; daemons cannot reach a local folder");
    };
    if let Some(p) = &args.output_prefix
        && !p.starts_with("s3://")
    {
        bail!("--output-prefix must be s3://bucket[/prefix]");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (store, _) = vinscan_storage::open_location(&location, &S3Config::from_env())?;
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let objects: Vec<_> = rt
        .block_on(store.list(&list_prefix))?
        .into_iter()
        .filter(|m| is_scan(m.key.strip_prefix(&list_prefix).unwrap_or(&m.key)))
        .collect();

    let settings = KafkaSettings::new(&args.brokers, "vinscan-enqueue");
    if let Some(n) = args.create_partitions {
        rt.block_on(admin::create_topics(&settings, &[(&args.topic, n)]))?;
    }
    let publisher = Publisher::new(&settings)?;
    let bar = ProgressBar::new(objects.len() as u64);
    if args.no_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let enqueued = rt.block_on(async {
        let mut n = 0usize;
        for m in &objects {
            let object = ObjectRef {
                bucket: bucket.clone(),
                key: m.key.clone(),
                version: Some(m.etag.clone()),
            };
            let job_id = format!("enq-{}", &object_identity(&object, &args.pipeline)[..32]);
            let mut message = json!({
                "job_id": job_id,
                "pipeline": args.pipeline,
                "sources": [object.uri()],
            });
            if let Some(p) = &args.output_prefix {
                message["output_prefix"] = json!(p);
            }
            let payload = serde_json::to_vec(&message)?;
            publisher.send(&args.topic, &job_id, &payload, &[]).await?;
            n += 1;
            bar.inc(1);
        }
        anyhow::Ok(n)
    })?;
    bar.finish_and_clear();
    println!(
        "{}",
        json!({
            "enqueued": enqueued,
            "topic": args.topic,
            "source": location.to_string(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })
    );
    Ok(ExitCode::SUCCESS)
}
