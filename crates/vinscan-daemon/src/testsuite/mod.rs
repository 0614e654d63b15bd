//! In-memory fakes of every port (feature `testsuite`), with injected faults, so each delivery
//! rule is a unit test of milliseconds: a job source with contiguous per-partition commits, a
//! publisher with the broker's record-size limit, and a scripted model that answers under the
//! schema, dies, fails or runs until cancelled (`model`). Stores are
//! `vinscan_storage::MemoryBuckets`.

mod model;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

pub use model::{Behaviour, ScriptedModel, png, smallest_instance};

use crate::ports::{Delivery, DeliveryId, JobSource, PortError, PortErrorKind, Publisher};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
struct SourceState {
    /// Every message pushed, for redelivery after a restart.
    log: Vec<Delivery>,
    queue: VecDeque<Delivery>,
    next_offset: HashMap<(String, i32), i64>,
    finished: Vec<DeliveryId>,
    abandoned: Vec<DeliveryId>,
    /// Deliveries handed out and not yet finished or abandoned, at most, over the run.
    peak_in_flight: usize,
    in_flight: usize,
    paused: bool,
    closed: bool,
    /// Starts per (topic, partition, offset), kept across restarts as Kafka keeps them in the
    /// group's committed metadata.
    starts: HashMap<(String, i32, i64), u32>,
}

/// A job source over a queue of messages: pausing stops deliveries, and a partition's commit
/// position is the first offset not finished (so an abandoned or unfinished message holds back
/// everything after it, as Kafka's contiguous commits do).
#[derive(Debug, Default)]
pub struct VecJobSource {
    state: Mutex<SourceState>,
    wake: tokio::sync::Notify,
}

impl VecJobSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message on `topic`/`partition` at the partition's next offset; returns its id.
    pub fn push(&self, topic: &str, partition: i32, key: Option<&str>, payload: &[u8]) -> DeliveryId {
        self.push_value(topic, partition, key, Some(payload))
    }

    /// Queues a tombstone (a message with a null value) for `key`.
    pub fn push_tombstone(&self, topic: &str, partition: i32, key: &str) -> DeliveryId {
        self.push_value(topic, partition, Some(key), None)
    }

    fn push_value(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        payload: Option<&[u8]>,
    ) -> DeliveryId {
        let mut s = lock(&self.state);
        let next = s.next_offset.entry((topic.to_owned(), partition)).or_insert(0);
        let id = DeliveryId {
            topic: topic.to_owned(),
            partition,
            offset: *next,
            token: 1,
        };
        *next += 1;
        let d = Delivery {
            id: id.clone(),
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: payload.map(<[u8]>::to_vec),
            timestamp_ms: Some(1_764_522_314_000),
        };
        s.log.push(d.clone());
        s.queue.push_back(d);
        drop(s);
        self.wake.notify_waiters();
        id
    }

    /// A new member after a restart: every message from each partition's commit position on is
    /// delivered again, in order (as Kafka redelivers from the committed offset); nothing is
    /// paused or closed.
    pub fn restart(&self) {
        let partitions: BTreeSet<(String, i32)> = lock(&self.state)
            .log
            .iter()
            .map(|d| (d.id.topic.clone(), d.id.partition))
            .collect();
        let committed: HashMap<(String, i32), i64> = partitions
            .into_iter()
            .map(|(t, p)| {
                let c = self.committed(&t, p);
                ((t, p), c)
            })
            .collect();
        let mut s = lock(&self.state);
        let redeliver: VecDeque<Delivery> = s
            .log
            .iter()
            .filter(|d| d.id.offset >= committed[&(d.id.topic.clone(), d.id.partition)])
            .cloned()
            .collect();
        s.queue = redeliver;
        s.abandoned.clear();
        s.in_flight = 0;
        s.paused = false;
        s.closed = false;
        drop(s);
        self.wake.notify_waiters();
    }

    pub fn finished(&self) -> Vec<DeliveryId> {
        lock(&self.state).finished.clone()
    }

    pub fn abandoned(&self) -> Vec<DeliveryId> {
        lock(&self.state).abandoned.clone()
    }

    /// Messages finished or abandoned so far.
    pub fn settled(&self) -> usize {
        let s = lock(&self.state);
        s.finished.len() + s.abandoned.len()
    }

    /// Whether the daemon has paused the source.
    pub fn is_paused(&self) -> bool {
        lock(&self.state).paused
    }

    /// Messages not yet handed out.
    pub fn queued(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// The most messages in progress at once.
    pub fn peak_in_flight(&self) -> usize {
        lock(&self.state).peak_in_flight
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// The commit position of a partition: the first offset whose message is not finished.
    pub fn committed(&self, topic: &str, partition: i32) -> i64 {
        let s = lock(&self.state);
        let done: BTreeSet<i64> = s
            .finished
            .iter()
            .filter(|d| d.topic == topic && d.partition == partition)
            .map(|d| d.offset)
            .collect();
        let mut next = 0;
        while done.contains(&next) {
            next += 1;
        }
        next
    }

    /// Waits until `n` messages are settled; false after `timeout`.
    pub async fn wait_settled(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.settled() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

#[async_trait]
impl JobSource for VecJobSource {
    async fn recv(&self) -> Result<Delivery, PortError> {
        loop {
            let notified = self.wake.notified();
            {
                let mut s = lock(&self.state);
                if !s.paused
                    && let Some(d) = s.queue.pop_front()
                {
                    s.in_flight += 1;
                    s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
                    return Ok(d);
                }
            }
            notified.await;
        }
    }

    fn finish(&self, id: &DeliveryId) {
        let mut s = lock(&self.state);
        s.starts.remove(&(id.topic.clone(), id.partition, id.offset));
        s.in_flight = s.in_flight.saturating_sub(1);
        s.finished.push(id.clone());
    }

    fn abandon(&self, id: &DeliveryId) {
        let mut s = lock(&self.state);
        // an abandoned start did not crash anything (Kafka's source takes it back too)
        if let Some(n) = s.starts.get_mut(&(id.topic.clone(), id.partition, id.offset)) {
            *n = n.saturating_sub(1);
        }
        s.in_flight = s.in_flight.saturating_sub(1);
        s.abandoned.push(id.clone());
    }

    fn starts(&self, id: &DeliveryId) -> Result<u32, PortError> {
        let s = lock(&self.state);
        Ok(s.starts
            .get(&(id.topic.clone(), id.partition, id.offset))
            .copied()
            .unwrap_or(0))
    }

    fn record_start(&self, id: &DeliveryId) -> Result<u32, PortError> {
        let mut s = lock(&self.state);
        let n = s
            .starts
            .entry((id.topic.clone(), id.partition, id.offset))
            .or_insert(0);
        *n += 1;
        Ok(*n)
    }

    fn set_paused(&self, paused: bool) -> Result<(), PortError> {
        lock(&self.state).paused = paused;
        self.wake.notify_waiters();
        Ok(())
    }

    fn probe(&self, _timeout: Duration) -> Result<i64, PortError> {
        Ok(lock(&self.state).queue.len() as i64)
    }

    fn close(&self) -> Result<(), PortError> {
        lock(&self.state).closed = true;
        Ok(())
    }
}

/// One record a publisher sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
}

impl Sent {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

#[derive(Debug)]
struct PublisherState {
    sent: Vec<Sent>,
    /// (topic, kind, times): the next `times` sends to `topic` fail with `kind`.
    faults: Vec<(String, PortErrorKind, u32)>,
    max_record_bytes: usize,
    /// Topics whose sends panic (a bug in the code around a send).
    panics: Vec<String>,
}

/// A publisher that keeps what it is sent, refuses records over the broker's size limit as
/// Kafka does (`MessageSizeTooLarge`, not retryable), and fails on request.
#[derive(Debug)]
pub struct ScriptedPublisher {
    state: Mutex<PublisherState>,
}

impl Default for ScriptedPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedPublisher {
    /// Kafka's default `message.max.bytes`: 1,000,000 bytes.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(PublisherState {
                sent: Vec::new(),
                faults: Vec::new(),
                max_record_bytes: 1_000_000,
                panics: Vec::new(),
            }),
        }
    }

    /// The next `times` sends to `topic` fail with `kind`.
    pub fn fail(&self, topic: &str, kind: PortErrorKind, times: u32) {
        lock(&self.state).faults.push((topic.to_owned(), kind, times));
    }

    /// Every send to `topic` panics, as a bug in the task around it would.
    pub fn panic_on(&self, topic: &str) {
        lock(&self.state).panics.push(topic.to_owned());
    }

    /// Every record sent to `topic`, as JSON.
    pub fn records(&self, topic: &str) -> Vec<Value> {
        lock(&self.state)
            .sent
            .iter()
            .filter(|s| s.topic == topic)
            .map(Sent::json)
            .collect()
    }

    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.state).sent.clone()
    }
}

#[async_trait]
impl Publisher for ScriptedPublisher {
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        if s.panics.iter().any(|t| t == topic) {
            drop(s);
            panic!("scripted panic sending to {topic}");
        }
        if payload.len() > s.max_record_bytes {
            return Err(PortError::new(
                PortErrorKind::Fatal,
                format!(
                    "produce to {topic}: Message production error: MessageSizeTooLarge ({} bytes)",
                    payload.len()
                ),
            ));
        }
        if let Some(f) = s.faults.iter_mut().find(|f| f.0 == topic && f.2 > 0) {
            f.2 -= 1;
            return Err(PortError::new(
                f.1,
                format!("produce to {topic}: injected failure"),
            ));
        }
        s.sent.push(Sent {
            topic: topic.to_owned(),
            key: key.to_owned(),
            payload: payload.to_vec(),
        });
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<(), PortError> {
        Ok(())
    }
}

/// The handle tests use to reach every fake behind a [`crate::Daemon`].
pub struct Fakes {
    pub source: Arc<VecJobSource>,
    pub publisher: Arc<ScriptedPublisher>,
    pub stores: vinscan_storage::MemoryBuckets,
    pub model: Arc<ScriptedModel>,
}

/// A serve configuration for tests: topics `jobs`, `results`, `dlq`; default output
/// `s3://out/results`; a route for `s3://uploads/scans/…` to `receipt`; retries in
/// milliseconds. `daemon_overrides` are `[daemon]` settings in TOML that replace the defaults.
pub fn config(daemon_overrides: &str) -> crate::ServeConfig {
    let base = r#"
[kafka]
brokers = "memory"
topics = ["jobs"]
results_topic = "results"
dead_letter_topic = "dlq"

[daemon]
default_output = "s3://out/results"
max_in_flight = 3
retry_budget_s = 1
retry_initial_ms = 1
retry_max_delay_ms = 5
shutdown_grace_s = 1
listen = "127.0.0.1:0"

[[routes]]
bucket = "uploads"
prefix = "scans/"
pipeline = "receipt"
output_prefix = "s3://out/uploads"
"#;
    let parse = |text: &str| -> toml::Table {
        match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => panic!("test config: {e}"),
        }
    };
    let mut table = parse(base);
    if let Some(toml::Value::Table(daemon)) = table.get_mut("daemon") {
        daemon.extend(parse(daemon_overrides));
    }
    match crate::ServeConfig::parse(&table.to_string(), &std::collections::BTreeMap::new()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

/// Fresh fakes, the model scripted with `behaviour`.
pub fn fakes(behaviour: Behaviour) -> Fakes {
    Fakes {
        source: Arc::new(VecJobSource::new()),
        publisher: Arc::new(ScriptedPublisher::new()),
        stores: vinscan_storage::MemoryBuckets::new(),
        model: Arc::new(ScriptedModel::new(behaviour)),
    }
}

/// A daemon over fresh fakes, with the shipped pipelines and `behaviour` for the model.
pub fn daemon(config: crate::ServeConfig, behaviour: Behaviour) -> (Arc<crate::Daemon>, Fakes) {
    let f = fakes(behaviour);
    (daemon_over(config, &f), f)
}

/// A daemon over these fakes (a restarted process shares the broker, the stores and, here,
/// the publisher's record of what was sent).
pub fn daemon_over(config: crate::ServeConfig, fakes: &Fakes) -> Arc<crate::Daemon> {
    let catalog = match vinscan_core::Catalog::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded catalog: {e}"),
    };
    daemon_with(config, fakes, catalog, vinscan_core::Extractor::default())
}

/// A daemon over these fakes with its own pipelines and extractor (a text model, say).
pub fn daemon_with(
    config: crate::ServeConfig,
    fakes: &Fakes,
    catalog: vinscan_core::Catalog,
    extractor: vinscan_core::Extractor,
) -> Arc<crate::Daemon> {
    let names: Vec<String> = catalog.pipelines().map(|p| p.name.clone()).collect();
    let routes = match vinscan_jobs::routing::Routes::new(
        config.routes.clone(),
        &names,
        config.daemon.default_output.clone(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("routes: {e}"),
    };
    let metrics = Arc::new(crate::Metrics::new());
    let readiness = Arc::new(crate::Readiness::new(metrics.ready.clone()));
    let daemon = crate::Daemon::new(
        config,
        routes,
        catalog,
        Arc::new(extractor),
        fakes.model.clone(),
        Arc::new(fakes.stores.clone()),
        fakes.publisher.clone(),
        metrics,
        readiness,
    );
    Arc::new(daemon)
}
