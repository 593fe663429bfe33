//! What the machine is: cores, kernel, CPU model, and the file system the files go to.

use crate::report::Machine;
use std::path::Path;

const UNKNOWN: &str = "unknown";

/// The machine the benchmark runs on, from `/proc` (`"unknown"` where it cannot be read).
pub(crate) fn describe() -> Machine {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| UNKNOWN.to_string(), |text| text.trim().to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text))
        .unwrap_or_else(|| UNKNOWN.to_string());
    Machine { cores, kernel, cpu }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// The type of the file system `path` is on (`ext4`, `tmpfs`, ...), from `/proc/mounts`.
pub(crate) fn file_system_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return UNKNOWN.to_string();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return UNKNOWN.to_string();
    };
    mount_of(&mounts, &path).unwrap_or_else(|| UNKNOWN.to_string())
}

/// The file-system type of the longest mount point that contains `path`.
fn mount_of(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), fs_type.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs_type)| fs_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(
            mount_of(mounts, Path::new("/tmp/x")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            mount_of(mounts, Path::new("/work/x")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            mount_of(mounts, Path::new("/tmpfoo")).as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn the_cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nprocessor\t: 1\nmodel name\t: Other\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(cpu_model("nothing"), None);
    }
}

/// Clock ticks per second of `/proc/stat` and `/proc/self/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time counters of the whole machine and of this process, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CpuTimes {
    /// Busy time of all CPUs (everything but idle and iowait).
    pub(crate) busy_s: f64,
    /// Busy plus idle time of all CPUs.
    pub(crate) total_s: f64,
    /// Time this process ran.
    pub(crate) own_s: f64,
}

impl CpuTimes {
    /// Reads the counters now (zeros where `/proc` cannot be read: the share is then unknown).
    pub(crate) fn now() -> CpuTimes {
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| machine_ticks(&t));
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| own_ticks(&t));
        match (machine, own) {
            (Some((busy, total)), Some(own)) => CpuTimes {
                busy_s: busy as f64 / USER_HZ,
                total_s: total as f64 / USER_HZ,
                own_s: own as f64 / USER_HZ,
            },
            _ => CpuTimes::default(),
        }
    }

    /// CPU time other processes used between `earlier` and `self`, and all CPU time available.
    pub(crate) fn others_since(&self, earlier: &CpuTimes) -> (f64, f64) {
        let others = (self.busy_s - earlier.busy_s) - (self.own_s - earlier.own_s);
        (others.max(0.0), (self.total_s - earlier.total_s).max(0.0))
    }
}

/// Busy and total ticks from the `cpu` line of `/proc/stat`.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15, after the parenthesised name).
fn own_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so utime (14) is index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn proc_stat_lines_parse() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(machine_ticks(stat), Some((170, 990)));
        let own = "1234 (cairn (bench)) S 1 2 3 4 5 6 7 8 9 10 42 8 0 0 20 0";
        assert_eq!(own_ticks(own), Some(50));
    }
}
