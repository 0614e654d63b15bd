//! The machine and the process: CPU, cores, memory, peak RSS, file sizes.

use std::path::Path;

use anyhow::Context;

use crate::report::Machine;

/// The CPU's model name, cores and memory, from /proc.
pub fn machine() -> anyhow::Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("/proc/cpuinfo")?;
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|name| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: kib_of(&meminfo, "MemTotal:").context("/proc/meminfo: MemTotal")? / 1048576.0,
        os: std::env::consts::OS.to_owned(),
    })
}

/// The KiB figure of a `/proc` status line (`VmHWM:   123456 kB`).
fn kib_of(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's peak RSS so far (MB).
pub fn peak_rss_mb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    Ok(kib_of(&status, "VmHWM:").context("/proc/self/status: VmHWM")? / 1024.0)
}

/// A file's size (MB).
pub fn file_mb(path: &Path) -> anyhow::Result<f64> {
    let meta = std::fs::metadata(path).with_context(|| path.display().to_string())?;
    Ok(meta.len() as f64 / 1048576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\tx\nVmHWM:\t  204800 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(kib_of(status, "VmHWM:"), Some(204800.0));
        assert_eq!(kib_of(status, "MemTotal:"), None);
    }

    #[test]
    fn this_machine_and_process_are_readable() {
        let m = machine().expect("machine");
        assert!(m.cores > 0 && m.memory_gib > 0.0, "{m:?}");
        assert!(peak_rss_mb().expect("VmHWM") > 0.0);
    }
}
