//! The broker is SIGKILLed mid-run and restarted on its log directory: the daemon rides it out
//! and the totals are those of an undisturbed run — one output object per valid job at its
//! deterministic key, one dead letter per bad message, every offset committed. The broker is
//! this test's own (its own ports and log directory), so killing it disturbs no other test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::*;

/// A private Apache Kafka started by `ops/kafka-broker.sh` on `DATA_DIR`.
struct Broker {
    data: PathBuf,
    port: u16,
    pid: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/kafka-broker.sh")
}

impl Broker {
    fn start(data: &Path, port: u16) -> Self {
        let out = Command::new("bash")
            .arg(script())
            .args(["start"])
            .arg(data)
            .env("VINSCAN_KAFKA_PORT", port.to_string())
            .output()
            .expect("run ops/kafka-broker.sh");
        assert!(
            out.status.success(),
            "broker did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exports = String::from_utf8_lossy(&out.stdout);
        let pid = exports
            .split_whitespace()
            .find_map(|w| w.strip_prefix("VINSCAN_TEST_KAFKA_PID="))
            .expect("pid")
            .to_owned();
        Broker {
            data: data.to_owned(),
            port,
            pid,
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&self) {
        signal(&self.pid, "-KILL");
        // the port is free once the process is gone (a zombie, exited but not yet reaped by
        // whoever adopted it, holds no port)
        let t = Instant::now();
        let alive = || {
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().next())
                        .map(str::to_owned)
                })
                .is_some_and(|state| state != "Z")
        };
        while alive() {
            assert!(t.elapsed() < Duration::from_secs(10), "broker survived SIGKILL");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.data)
            .status();
    }
}

#[test]
fn a_broker_killed_and_restarted_mid_run_changes_no_totals() {
    let (_, s3) = services();
    let _slot = Slot::take();
    let data = tempfile::tempdir().expect("broker dir");
    // ports apart from the shared broker's (19092..19094)
    let port = 19192 + (std::process::id() % 50) as u16 * 4;
    let broker = Broker::start(data.path(), port);
    let f = Fixture::new("crash", broker.address(), s3);
    let mut daemon = f.daemon(0);
    let t = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while ok_results(&f) < 10 {
            assert!(t.elapsed() < Duration::from_secs(600), "stalled before the crash");
            std::thread::sleep(Duration::from_millis(300));
        }
        broker.kill();
        let killed = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let restarted = Broker::start(data.path(), port);
        eprintln!(
            "broker down for {:.1} s (pid {} -> {})",
            killed.elapsed().as_secs_f64(),
            broker.pid,
            restarted.pid
        );
        std::mem::forget(restarted); // `broker`'s Drop stops it: same data dir
        f.wait_complete(Duration::from_secs(600));
    }));
    if let Err(e) = outcome {
        let _ = daemon.kill();
        dump_logs(&f, 1);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut daemon).success());
    eprintln!("broker crash test done in {:.0} s", t.elapsed().as_secs_f64());
    // outputs exact; result events and dead letters may repeat for work finished but not yet
    // committed when the group was rebuilt (at-least-once), never go missing
    f.check(false);
}
