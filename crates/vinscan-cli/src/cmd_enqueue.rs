//! `vinscan enqueue s3://bucket/prefix --topic T --pipeline NAME`: one job message per scan
//! under the prefix, so a fleet of daemons in one consumer group shares a large archive.
//! Each job pins its source to the ETag listed (a scan replaced before a daemon reads it ends
//! `superseded`), and its id derives from the object, that ETag and the pipeline: enqueueing
//! twice yields the same jobs, and the daemons' outputs are the same objects.
//!
//! Scheduled runs (a nightly CronJob over a growing archive) enqueue only what is new: the
//! objects enqueued, with their ETags, are kept in a state object
//! (`vinscan_jobs::schedule`), saved every [`SAVE_EVERY`] jobs and at the end. A run that dies
//! between saves enqueues at most that many jobs again next time (the same job ids: the
//! daemons rewrite the same outputs).

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use vinscan_core::Format;
use vinscan_jobs::schedule::{EnqueueState, default_state_key};
use vinscan_jobs::{JobMessage, ObjectRef, SourceSpec, VersionedSource};
use vinscan_kafka::{KafkaSettings, Publisher, admin};
use vinscan_storage::{Location, ObjectVersion, S3Config};

use crate::cli::{EnqueueArgs, GlobalArgs};

/// Jobs sent between two saves of the state.
pub const SAVE_EVERY: usize = 500;

/// Where the state is kept, and what it holds.
struct State {
    store: std::sync::Arc<dyn vinscan_storage::ObjectStore>,
    key: String,
    uri: String,
    state: EnqueueState,
}

impl State {
    /// The state at `--state` or the default key beside the scans; a fresh one where none is.
    async fn load(args: &EnqueueArgs, source_prefix: &str) -> anyhow::Result<Self> {
        let uri = match &args.state {
            Some(uri) => uri.clone(),
            None => format!(
                "s3://{}/{}",
                args.source.bucket(),
                default_state_key(source_prefix, &args.pipeline)
            )
            .parse()?,
        };
        let (store, key) = vinscan_storage::open_location(&Location::S3(uri.clone()), &S3Config::from_env())?;
        let state = match store.get(&key, 1 << 30, None).await {
            Ok(o) => {
                EnqueueState::parse(&o.bytes, &args.pipeline).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?
            }
            Err(e) if e.kind == vinscan_storage::StorageErrorKind::NotFound => {
                EnqueueState::new(&args.pipeline)
            }
            Err(e) => return Err(anyhow::anyhow!("cannot read the enqueue state {uri}: {e}")),
        };
        Ok(Self {
            store,
            key,
            uri: uri.to_string(),
            state,
        })
    }

    async fn save(&self) -> anyhow::Result<()> {
        let bytes = self.state.to_bytes().map_err(|e| anyhow::anyhow!(e))?;
        self.store
            .put(&self.key, bytes::Bytes::from(bytes), "application/json")
            .await
            .map_err(|e| anyhow::anyhow!("cannot save the enqueue state {}: {e}", self.uri))
    }
}

pub fn run(global: &GlobalArgs, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    catalog.pipeline(&args.pipeline)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let location = Location::S3(args.source.clone());
    let (store, prefix) = vinscan_storage::open_location(&location, &S3Config::from_env())?;
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listed = rt.block_on(store.list(&list_prefix))?;
    let mut state = rt.block_on(State::load(&args, &prefix))?;
    let listed_keys: std::collections::BTreeSet<String> = listed.iter().map(|m| m.key.clone()).collect();
    let relative =
        |m: &vinscan_storage::ObjectMeta| m.key.strip_prefix(&list_prefix).unwrap_or(&m.key).to_owned();
    // hidden paths (dot folders: the state object among them) are neither scans nor "not scans"
    let (objects, other): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .filter(|m| !relative(m).split('/').any(|s| s.starts_with('.')))
        .partition(|m| enqueued(&relative(m)));
    // some S3-compatible stores list objects without their ETags: ask each such object (real S3
    // always lists them, so this costs nothing there)
    let objects = rt.block_on(with_etags(std::sync::Arc::clone(&store), objects))?;
    let (objects, already): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|m| args.all || state.state.is_new(&m.key, &m.etag));

    let mut settings = KafkaSettings::new(&args.brokers, "vinscan-enqueue");
    // VINSCAN_KAFKA_PROPERTY_* first, then the flags, which win
    let env: std::collections::BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    settings
        .properties
        .extend(vinscan_daemon::kafka_properties_from_env(&env));
    settings.properties.extend(args.kafka_properties.iter().cloned());
    vinscan_daemon::check_kafka_properties(&settings.properties).map_err(|e| anyhow::anyhow!("{e}"))?;
    let publisher = Publisher::new(&settings)?;
    // fail fast, with the reason (credentials refused, untrusted certificate), before sending
    publisher
        .check(std::time::Duration::from_secs(15))
        .map_err(|e| anyhow::anyhow!("cannot reach the Kafka cluster at {}: {e}", args.brokers))?;
    if let Some(n) = args.create_partitions {
        rt.block_on(admin::create_topics(&settings, &[(&args.topic, n)]))?;
    }
    let bar = ProgressBar::new(objects.len() as u64);
    if args.no_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let bucket = args.source.bucket();
    let enqueued = rt.block_on(async {
        let mut n = 0usize;
        for m in &objects {
            let object = ObjectRef {
                bucket: bucket.to_owned(),
                key: m.key.clone(),
                version: Some(ObjectVersion::ETag(m.etag.clone())),
            };
            let job_id = format!("enq-{}", &object.identity(&args.pipeline)[..32]);
            let message = JobMessage {
                job_id: job_id.clone(),
                pipeline: args.pipeline.clone(),
                sources: vec![SourceSpec::Versioned(VersionedSource {
                    uri: args.source.join_object(&m.key),
                    version_id: None,
                    etag: Some(m.etag.clone()),
                })],
                output_prefix: args.output_prefix.clone(),
                metadata: serde_json::Value::Null,
            };
            let payload = serde_json::to_vec(&message)?;
            publisher.send(&args.topic, &job_id, &payload, &[]).await?;
            state.state.record(&m.key, &m.etag);
            n += 1;
            bar.inc(1);
            if n.is_multiple_of(SAVE_EVERY) {
                state.save().await?;
            }
        }
        // a complete listing: objects deleted from the prefix leave the state
        state.state.keep_only(|k| listed_keys.contains(k));
        state.save().await?;
        anyhow::Ok(n)
    })?;
    bar.finish_and_clear();
    println!(
        "{}",
        json!({
            "enqueued": enqueued,
            "already_enqueued": already.len(),
            "not_scans": other.len(),
            "state": state.uri,
            "topic": args.topic,
            "source": location.to_string(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// HEAD requests in flight at once when a listing lacks ETags.
const HEADS_IN_FLIGHT: usize = 16;

/// `objects` with every missing ETag filled in by a HEAD request, [`HEADS_IN_FLIGHT`] at a time.
async fn with_etags(
    store: std::sync::Arc<dyn vinscan_storage::ObjectStore>,
    mut objects: Vec<vinscan_storage::ObjectMeta>,
) -> anyhow::Result<Vec<vinscan_storage::ObjectMeta>> {
    let mut missing = (0..objects.len())
        .filter(|&i| objects[i].etag.is_empty())
        .collect::<Vec<_>>()
        .into_iter();
    let mut heads = tokio::task::JoinSet::new();
    loop {
        while heads.len() < HEADS_IN_FLIGHT
            && let Some(i) = missing.next()
        {
            let (store, key) = (std::sync::Arc::clone(&store), objects[i].key.clone());
            heads.spawn(async move { (i, store.head(&key).await) });
        }
        let Some(done) = heads.join_next().await else {
            return Ok(objects);
        };
        let (i, head) = done?;
        objects[i].etag = head?.etag;
    }
}

/// Whether an object is put on the topic: a scan by its extension, or an `.xml` file (an
/// e-invoice; the daemon dead-letters any other XML as unsupported, with the reason). Names
/// only: listing a prefix reads no object.
fn enqueued(relative: &str) -> bool {
    Format::has_scan_extension(relative)
        || relative
            .rsplit_once('.')
            .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("xml"))
}
