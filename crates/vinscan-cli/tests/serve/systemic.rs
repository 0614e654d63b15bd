//! Faults that are not the job's fault never dead-letter it. An S3 server of this test's own
//! (its own port and data directory) refuses the daemon's credentials for a while: it is
//! restarted with another secret key, as when a key is rotated on the server before the
//! daemons get the new one, then restarted with the daemon's key again. Meanwhile the daemon
//! holds its work, takes no new message and answers `/readyz` 503; afterwards every valid job
//! has its output once and only the bad messages are dead-lettered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/s3-server.sh")
}

/// Starts `ops/s3-server.sh` on `data` and `port` with `secret_key`; returns its endpoint.
fn start_s3(data: &Path, port: u16, secret_key: &str) -> String {
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(data)
        .env("VINSCAN_S3_PORT", port.to_string())
        .env("VINSCAN_S3_TEST_SECRET_KEY", secret_key)
        .output()
        .expect("run ops/s3-server.sh");
    assert!(
        out.status.success(),
        "S3 server did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("http://127.0.0.1:{port}")
}

/// Stops the server on `data` and waits until its process is gone (its port free).
fn stop_s3(data: &Path) {
    let pid = std::fs::read_to_string(data.join(".pid")).unwrap_or_default();
    let _ = Command::new("bash").arg(script()).arg("stop").arg(data).status();
    let t = Instant::now();
    while !pid.trim().is_empty()
        && t.elapsed() < Duration::from_secs(10)
        && Command::new("kill")
            .args(["-0", pid.trim()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct StopOnDrop(PathBuf);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop_s3(&self.0);
    }
}

#[test]
fn refused_credentials_hold_the_work_and_dead_letter_nothing() {
    let (brokers, mut s3) = services();
    let _slot = Slot::take();
    let data = tempfile::tempdir().expect("S3 data dir");
    let _stop = StopOnDrop(data.path().to_owned());
    // ports apart from the shared server's (18014)
    let s3_port = 18114 + (std::process::id() % 50) as u16;
    let right = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
    s3.endpoint = Some(start_s3(data.path(), s3_port, &right));
    let f = Fixture::new("denied", brokers, s3);
    // the server now refuses the daemon's key
    stop_s3(data.path());
    start_s3(data.path(), s3_port, "a-rotated-secret-the-daemon-lacks");
    let mut daemon = f.daemon(0);
    let t = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let port = f.wait_ops_port(0);
        // held: some jobs met the refusal, readiness is false, nothing is finished
        let held = Instant::now();
        while !f.log(0).contains("systemic fault") {
            assert!(held.elapsed() < Duration::from_secs(60), "never held");
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_secs(10));
        let (status, body) = http_get(port, "/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("jobs=false"), "{body}");
        // poison needs no store and is dead-lettered as usual; no job is
        let jobs_dead: Vec<_> = f
            .read(&f.dlq_topic)
            .into_iter()
            .filter(|r| !r["job_id"].is_null())
            .collect();
        assert!(
            jobs_dead.is_empty(),
            "jobs dead-lettered during the refusal: {jobs_dead:?}"
        );
        assert!(f.read(&f.results_topic).is_empty(), "results during the refusal");
        // the key is put back: the work resumes
        stop_s3(data.path());
        start_s3(data.path(), s3_port, &right);
        f.wait_complete(Duration::from_secs(600));
        assert!(
            wait_ready(port, 200, Duration::from_secs(30)),
            "not ready after the fix"
        );
    }));
    if let Err(e) = outcome {
        let _ = daemon.kill();
        dump_logs(&f, 1);
        std::panic::resume_unwind(e);
    }
    assert!(stop(&mut daemon).success());
    eprintln!(
        "refused credentials test done in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    // exactly the expected dead letters (the bad messages'), one output per valid job
    f.check(false);
}
