//! `JobConsumer` and `Publisher` against the real broker (`VINSCAN_TEST_KAFKA`, started by
//! `ops/test.sh`): offsets move only over contiguous finished work, pause stops deliveries
//! and resume restarts them, and a new member starts after what was committed.

use std::time::Duration;

use vinscan_kafka::{JobConsumer, KafkaSettings, Publisher, admin};

/// The broker `ops/test.sh` starts; a missing broker fails the test, never skips it.
fn broker() -> String {
    std::env::var("VINSCAN_TEST_KAFKA")
        .unwrap_or_else(|_| panic!("VINSCAN_TEST_KAFKA is unset: run the tests through ops/test.sh"))
}

/// A topic or group name no other test (in this process or an earlier run) uses. The tests run
/// in parallel: without the counter two of them could start in the same microsecond and share a
/// group, whose members then disagree on the assignment protocol (InconsistentGroupProtocol).
fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() % 1_000_000_000)
            .unwrap_or(0),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn produce(settings: &KafkaSettings, topic: &str, n: std::ops::Range<u32>) {
    let p = Publisher::new(settings).expect("producer");
    for i in n {
        p.send(topic, "k", format!("m{i}").as_bytes(), &[("n", &i.to_string())])
            .await
            .expect("produce");
    }
}

fn committed(settings: &KafkaSettings, topic: &str) -> Option<i64> {
    let parts = admin::group_progress(settings, topic, Duration::from_secs(10)).expect("progress");
    parts[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_contiguous_finished_offsets_and_a_new_member_resumes_there() {
    let brokers = broker();
    let topic = unique("offsets");
    let mut settings = KafkaSettings::new(&brokers, unique("group"));
    settings.session_timeout = Duration::from_secs(6);
    admin::create_topics(&settings, &[(&topic, 1)])
        .await
        .expect("topic");
    produce(&settings, &topic, 0..5).await;

    let consumer = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message in time")
            .expect("message");
        got.push(d);
    }
    assert_eq!(
        got.iter().map(|d| d.id.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(got[2].payload.as_deref(), Some(b"m2".as_slice()));
    assert!(got[2].headers.iter().any(|(k, v)| k == "n" && v == b"2"));
    assert_eq!(consumer.in_flight(), 5);

    // 1, 2 and 4 finish first: nothing may be committed past the unfinished 0
    for i in [1, 2, 4] {
        assert_eq!(consumer.finish(&got[i].id), None);
    }
    consumer.commit_sync().expect("commit");
    let s = settings.clone();
    let t = topic.clone();
    let c = tokio::task::spawn_blocking(move || committed(&s, &t))
        .await
        .expect("join");
    assert!(
        c.is_none_or(|c| c == 0),
        "committed {c:?} past unfinished offset 0"
    );
    assert_eq!(
        consumer.finish(&got[0].id),
        Some(3),
        "0 done: 0..=2 are contiguous"
    );
    assert_eq!(consumer.finish(&got[3].id), Some(5));
    assert_eq!(consumer.in_flight(), 0);
    consumer.close().expect("close");
    let (s, t) = (settings.clone(), topic.clone());
    assert_eq!(
        tokio::task::spawn_blocking(move || committed(&s, &t))
            .await
            .expect("join"),
        Some(5)
    );
    drop(consumer);

    // a new member of the group starts after the committed position
    produce(&settings, &topic, 5..6).await;
    let next = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let d = tokio::time::timeout(Duration::from_secs(30), next.recv())
        .await
        .expect("a message in time")
        .expect("message");
    assert_eq!((d.id.offset, d.payload.as_deref()), (5, Some(b"m5".as_slice())));
    next.abandon(&d.id);
    next.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_deliveries_and_resume_restarts_them() {
    let brokers = broker();
    let topic = unique("pause");
    let mut settings = KafkaSettings::new(&brokers, unique("group"));
    settings.session_timeout = Duration::from_secs(6);
    admin::create_topics(&settings, &[(&topic, 2)])
        .await
        .expect("topic");
    produce(&settings, &topic, 0..1).await;
    let consumer = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("first message")
        .expect("message");
    consumer.finish(&first.id);

    consumer.pause().expect("pause");
    assert!(consumer.is_paused());
    produce(&settings, &topic, 1..4).await;
    // polling goes on while paused, but nothing is delivered
    let quiet = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await;
    assert!(quiet.is_err(), "a message arrived while paused");

    consumer.resume().expect("resume");
    let mut n = 0;
    while n < 3 {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("messages after resume")
            .expect("message");
        consumer.finish(&d.id);
        n += 1;
    }
    assert_eq!(consumer.in_flight(), 0);
    consumer.close().expect("close");
}

/// With the cooperative protocol a joining member takes one partition from the first. The
/// first member's finished work on it is committed on revocation; its unfinished message is
/// redelivered to the new owner, and finishing it late moves no offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalance_hands_over_at_the_first_unfinished_offset() {
    let brokers = broker();
    let topic = unique("coop");
    let mut settings = KafkaSettings::new(&brokers, unique("group"));
    settings.session_timeout = Duration::from_secs(6);
    settings.properties.insert(
        "partition.assignment.strategy".into(),
        "cooperative-sticky".into(),
    );
    admin::create_topics(&settings, &[(&topic, 2)])
        .await
        .expect("topic");
    let p = Publisher::new(&settings).expect("producer");
    for i in 0..20u32 {
        p.send(&topic, &format!("key-{i}"), format!("m{i}").as_bytes(), &[])
            .await
            .expect("produce");
    }

    let a = std::sync::Arc::new(JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("a"));
    let mut got = Vec::new();
    while got.len() < 20 {
        let d = tokio::time::timeout(Duration::from_secs(30), a.recv())
            .await
            .expect("all 20 messages")
            .expect("message");
        got.push(d);
    }
    assert_eq!(a.assignment().len(), 2, "a alone owns both partitions");
    // everything finishes except the second message of each partition: the committed
    // position can then only be 1 if the finished first message was committed
    let mut held = std::collections::BTreeMap::new();
    let mut seen = std::collections::BTreeMap::new();
    for d in &got {
        let n = seen.entry(d.id.partition).or_insert(0);
        if *n == 1 {
            held.insert(d.id.partition, d.clone());
        } else {
            a.finish(&d.id);
        }
        *n += 1;
    }
    assert_eq!(held.len(), 2, "both partitions got at least two messages");
    assert!(held.values().all(|d| d.id.offset == 1));

    // a keeps polling (serving the rebalance) while b joins
    let poller = {
        let a = a.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(d) = a.recv().await {
                    a.abandon(&d.id);
                }
            }
        })
    };
    let b = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("b");
    let first = tokio::time::timeout(Duration::from_secs(60), b.recv())
        .await
        .expect("b receives after the rebalance")
        .expect("message");
    let moved = first.id.partition;
    assert_eq!(
        first.id.offset, held[&moved].id.offset,
        "b starts at a's first unfinished offset of the partition it took"
    );
    assert_eq!(
        a.assignment().len(),
        1,
        "a kept one partition: {:?}",
        a.assignment()
    );
    assert_eq!(b.assignment().len(), 1);
    // a finishing its stale delivery of the moved partition commits nothing
    assert_eq!(a.finish(&held[&moved].id), None);
    // the partition a kept still commits normally
    let kept = held.keys().find(|&&p| p != moved).expect("kept partition");
    assert!(a.finish(&held[kept].id).is_some());
    poller.abort();
    b.abandon(&first.id);
    b.close().expect("close b");
    a.close().expect("close a");
}

/// The broker's SASL_SSL listener (SCRAM-SHA-512, a certificate signed by the CA
/// `ops/kafka-broker.sh` made), with `password`, trusting that CA only when `trust_ca`.
fn secure(group: &str, password: &str, trust_ca: bool) -> KafkaSettings {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset: run the tests through ops/test.sh"))
    };
    let mut s = KafkaSettings::new(var("VINSCAN_TEST_KAFKA_SASL_SSL"), group);
    for (k, v) in [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", var("VINSCAN_TEST_KAFKA_USER")),
        ("sasl.password", password.to_owned()),
    ] {
        s.properties.insert(k.into(), v);
    }
    if trust_ca {
        s.properties
            .insert("ssl.ca.location".into(), var("VINSCAN_TEST_KAFKA_CA"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_produces_and_consumes() {
    let password = std::env::var("VINSCAN_TEST_KAFKA_PASSWORD").expect("VINSCAN_TEST_KAFKA_PASSWORD");
    let settings = secure(&unique("secure"), &password, true);
    let topic = unique("secure");
    admin::create_topics(&settings, &[(&topic, 1)])
        .await
        .expect("topic over SASL_SSL");
    produce(&settings, &topic, 0..2).await;
    let consumer = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let d = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message in time")
        .expect("message");
    assert_eq!(d.payload.as_deref(), Some(b"m0".as_slice()));
    consumer.check_broker(Duration::from_secs(5)).expect("metadata");
    // the password never shows in the settings' Debug
    assert!(!format!("{settings:?}").contains(&password));
}

/// A wrong password and an untrusted certificate each fail the first request, at once, with
/// an error that names the cause and is of the `Credentials` kind.
#[test]
fn a_wrong_password_or_an_untrusted_certificate_is_a_clear_credentials_error() {
    for (what, settings, cause) in [
        (
            "wrong password",
            secure("g", "not-the-password", true),
            "Authentication failed",
        ),
        (
            "untrusted certificate",
            secure("g", "irrelevant", false),
            "certificate verify failed",
        ),
    ] {
        let publisher = Publisher::new(&settings).expect("producer");
        let err = publisher
            .check(Duration::from_secs(10))
            .expect_err("the broker must refuse");
        assert!(err.message.contains(cause), "{what}: {}", err.message);
        assert_eq!(
            err.kind,
            vinscan_kafka::KafkaErrorKind::Credentials,
            "{what}: {}",
            err.message
        );
        assert!(!err.message.contains("not-the-password"), "{}", err.message);
    }
}

/// A message's start is durable before `record_start` returns: the group's committed
/// metadata shows it while the member works. A member that leaves gracefully (here: dropped,
/// its partition revoked) takes its unfinished start back, since nothing crashed; one that
/// finishes removes it. (A start that dies with the process stays: the serve suite's
/// crash-loop test kills a real daemon.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_durable_while_working_and_taken_back_by_a_graceful_end() {
    let brokers = broker();
    let topic = unique("starts");
    let mut settings = KafkaSettings::new(&brokers, unique("group"));
    settings.session_timeout = Duration::from_secs(6);
    admin::create_topics(&settings, &[(&topic, 1)])
        .await
        .expect("topic");
    produce(&settings, &topic, 0..2).await;
    let recorded = || admin::recorded_starts(&settings, &topic, 0, Duration::from_secs(10)).expect("starts");

    let a = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let d0 = tokio::time::timeout(Duration::from_secs(30), a.recv())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(a.starts(&d0.id, Duration::from_secs(10)).expect("starts"), 0);
    assert_eq!(
        a.record_start(&d0.id, Duration::from_secs(10)).expect("recorded"),
        1
    );
    assert_eq!(recorded().get(&0), Some(&1), "durable while the member works");
    assert_eq!(
        a.record_start(&d0.id, Duration::from_secs(10)).expect("recorded"),
        2
    );
    drop(a);
    assert_eq!(
        recorded().get(&0),
        Some(&1),
        "the graceful leave took its start back"
    );

    let b = JobConsumer::subscribe(&settings, std::slice::from_ref(&topic)).expect("consumer");
    let d0 = tokio::time::timeout(Duration::from_secs(30), b.recv())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(d0.id.offset, 0);
    assert_eq!(
        b.starts(&d0.id, Duration::from_secs(10)).expect("starts"),
        1,
        "read from the group"
    );
    assert_eq!(
        b.record_start(&d0.id, Duration::from_secs(10)).expect("recorded"),
        2
    );
    let d1 = tokio::time::timeout(Duration::from_secs(30), b.recv())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(
        b.record_start(&d1.id, Duration::from_secs(10)).expect("recorded"),
        1
    );
    b.finish(&d0.id);
    b.finish(&d1.id);
    b.commit_sync().expect("commit");
    assert!(
        recorded().is_empty(),
        "finished messages keep no starts: {:?}",
        recorded()
    );
}
