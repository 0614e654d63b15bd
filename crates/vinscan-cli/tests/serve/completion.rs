//! Whether a fixture's run is complete: every job's result or dead letter there and every
//! offset committed, and what is missing when not.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vinscan_kafka::admin;

use crate::fixture::Fixture;

impl Fixture {
    /// What is not yet there (empty once every job has its result or dead-letter record and
    /// every offset is committed): expected jobs without their result or dead-letter record (each
    /// with what the dead-letter topic says about it, when anything), unseen poison messages,
    /// uncommitted offsets.
    pub fn incomplete(&self) -> Vec<String> {
        let results = self.read(&self.results_topic);
        let ok: BTreeSet<&str> = results
            .iter()
            .filter(|r| r["status"] == "ok")
            .filter_map(|r| r["job_id"].as_str())
            .collect();
        let dlq = self.read(&self.dlq_topic);
        let dead: BTreeSet<&str> = dlq.iter().filter_map(|r| r["job_id"].as_str()).collect();
        let poison: BTreeSet<&str> = dlq
            .iter()
            .filter(|r| r["job_id"].is_null())
            .filter_map(|r| r["original"]["payload"].as_str())
            .collect();
        let binary: BTreeSet<&str> = dlq
            .iter()
            .filter_map(|r| r["original"]["payload_sha256"].as_str())
            .collect();
        let dead_letter_of = |job: &str| {
            dlq.iter()
                .find(|r| r["job_id"] == job)
                .map(|r| {
                    format!(
                        " (dead-lettered: {} {})",
                        r["error"]["kind"], r["error"]["message"]
                    )
                })
                .unwrap_or_default()
        };
        let mut missing: Vec<String> = self
            .expected
            .ok
            .keys()
            .filter(|j| !ok.contains(j.as_str()))
            .map(|j| format!("no ok result for {j}{}", dead_letter_of(j)))
            .collect();
        missing.extend(
            self.expected
                .bad_jobs
                .keys()
                .filter(|j| !dead.contains(j.as_str()))
                .map(|j| format!("no dead letter for {j}")),
        );
        missing.extend(
            self.expected
                .poison
                .iter()
                .filter(|p| !poison.contains(p.as_str()))
                .map(|p| format!("no dead letter for poison {p:?}")),
        );
        missing.extend(
            self.expected
                .binary_poison
                .iter()
                .filter(|p| !binary.contains(p.as_str()))
                .map(|p| format!("no dead letter for binary poison {p}")),
        );
        if !self.committed_all() {
            missing.push("offsets not all committed".to_owned());
        }
        missing
    }

    pub fn committed_all(&self) -> bool {
        let mut s = self.settings();
        s.group_id = self.group.clone();
        admin::group_progress(&s, &self.jobs_topic, Duration::from_secs(10))
            .map(|parts| !parts.is_empty() && parts.iter().all(|(_, c, high)| *c == Some(*high)))
            .unwrap_or(false)
    }

    pub fn wait_complete(&self, timeout: Duration) {
        let t = Instant::now();
        loop {
            let missing = self.incomplete();
            if missing.is_empty() {
                return;
            }
            // a dead letter is final: waiting longer cannot bring the job's result
            let lost: Vec<&String> = missing.iter().filter(|m| m.contains("(dead-lettered")).collect();
            assert!(lost.is_empty(), "dead-lettered, expected to succeed: {lost:?}");
            assert!(
                t.elapsed() < timeout,
                "not complete after {timeout:?}: {}",
                missing.join("; ")
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
