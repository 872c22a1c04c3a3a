//! This process's resource use, read from `/proc`, in the Prometheus client convention.
//!
//! Every Prometheus client library exports `process_cpu_seconds_total`,
//! `process_resident_memory_bytes` and friends by default; operators' dashboards and alerts
//! expect them. Both daemons (`iov-gateway`, `iov-ledger`) append [`render_self`] to their
//! `/metrics`, so the gateway's CPU-share and memory targets (docs/BENCHMARKS.md) can be watched
//! on a running edge box, not only in the benchmark. The benchmarks and load tests read other
//! processes with [`ProcessSample::of_pid`], so there is one `/proc` reader, not one per tool.
//!
//! Parsing is the `procfs` crate's; this crate only chooses the fields, converts units (clock
//! ticks to seconds, pages and KiB to bytes) and renders the text.

use std::fmt::Write as _;

use procfs::process::{LimitValue, Process};

/// `/proc/PID` could not be read (the process is gone, or `/proc` is not mounted).
#[derive(Debug, thiserror::Error)]
#[error("reading /proc/{who}: {source}")]
pub struct ReadError {
    who: String,
    #[source]
    source: procfs::ProcError,
}

/// One reading of a process's resource use.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    /// The state letter of `stat(5)`: `R` running, `S` sleeping, `Z` exited but not yet reaped.
    pub state: char,
    /// User plus system CPU time of all threads, in seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    /// The resident set's high-water mark (`VmHWM`); `None` once the process has no memory
    /// (a zombie) or for a kernel thread.
    pub peak_resident_bytes: Option<u64>,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Seconds since the Unix epoch; `None` if the boot time could not be read.
    pub start_time_seconds: Option<f64>,
    /// `None` when the descriptor table cannot be listed (another user's process, a zombie).
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`; `None` when unlimited or unreadable.
    pub max_fds: Option<u64>,
}

impl ProcessSample {
    /// Reads the calling process.
    pub fn of_self() -> Result<Self, ReadError> {
        let process =
            Process::myself().map_err(|source| ReadError { who: "self".into(), source })?;
        Self::read(&process, "self")
    }

    /// Reads process `pid`.
    pub fn of_pid(pid: u32) -> Result<Self, ReadError> {
        let who = pid.to_string();
        let process = i32::try_from(pid)
            .map_err(|_| procfs::ProcError::NotFound(None))
            .and_then(Process::new)
            .map_err(|source| ReadError { who: who.clone(), source })?;
        Self::read(&process, &who)
    }

    fn read(process: &Process, who: &str) -> Result<Self, ReadError> {
        let stat = process.stat().map_err(|source| ReadError { who: who.into(), source })?;
        let ticks = procfs::ticks_per_second() as f64;
        let start_time_seconds =
            boot_time_secs().map(|boot| boot as f64 + stat.starttime as f64 / ticks);
        let peak_resident_bytes =
            process.status().ok().and_then(|s| s.vmhwm).map(|kib| kib.saturating_mul(1024));
        let max_fds = process.limits().ok().and_then(|l| match l.max_open_files.soft_limit {
            LimitValue::Value(n) => Some(n),
            LimitValue::Unlimited => None,
        });
        Ok(ProcessSample {
            state: stat.state,
            cpu_seconds: stat.utime.saturating_add(stat.stime) as f64 / ticks,
            resident_bytes: stat.rss.saturating_mul(procfs::page_size()),
            peak_resident_bytes,
            virtual_bytes: stat.vsize,
            threads: u64::try_from(stat.num_threads).unwrap_or(0),
            start_time_seconds,
            open_fds: process.fd_count().ok().map(|n| n as u64),
            max_fds,
        })
    }

    /// Exited and not yet reaped: its CPU times are final.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// Appends the `process_*` metrics (Prometheus text format 0.0.4); a field that could not
    /// be read is left out rather than reported as 0.
    pub fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                let _ = writeln!(out, "{name} {value}");
            }
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            Some(self.cpu_seconds.to_string()),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            Some(self.resident_bytes.to_string()),
        );
        metric(
            "iov_process_resident_memory_peak_bytes",
            "gauge",
            "Peak resident memory size in bytes since the process started (VmHWM).",
            self.peak_resident_bytes.map(|v| v.to_string()),
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            Some(self.virtual_bytes.to_string()),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.map(|v| v.to_string()),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.map(|v| v.to_string()),
        );
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            self.max_fds.map(|v| v.to_string()),
        );
        metric(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            Some(self.threads.to_string()),
        );
    }
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix` (tokio
/// runtimes name their workers and blocking threads). A thread that has exited is no longer
/// listed, and its time is no longer counted: keep the threads of interest alive while measuring.
pub fn threads_cpu_seconds(prefix: &str) -> Result<f64, ReadError> {
    let read_error = |source| ReadError { who: "self/task".into(), source };
    let tasks = Process::myself().and_then(|p| p.tasks()).map_err(read_error)?;
    let ticks = procfs::ticks_per_second() as f64;
    let mut total = 0.0;
    // A thread may exit between the listing and the read: it is skipped, as if not listed.
    for stat in tasks.flatten().filter_map(|task| task.stat().ok()) {
        if stat.comm.starts_with(prefix) {
            total += stat.utime.saturating_add(stat.stime) as f64 / ticks;
        }
    }
    Ok(total)
}

/// The boot time from `/proc/stat`, read once: it does not change while we run, and `/proc/stat`
/// is the largest file a sample would otherwise read (a line per CPU and interrupt counts).
fn boot_time_secs() -> Option<u64> {
    static BOOT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| procfs::boot_time_secs().ok())
}

/// Appends this process's metrics to a `/metrics` body. If `/proc` cannot be read, a comment
/// says why (a scraper ignores it) and the other metrics are still served.
pub fn render_self(out: &mut String) {
    match ProcessSample::of_self() {
        Ok(sample) => sample.render(out),
        Err(e) => {
            let _ = writeln!(out, "# process metrics unavailable: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProcessSample {
        ProcessSample {
            state: 'S',
            cpu_seconds: 1.25,
            resident_bytes: 28_311_552,
            peak_resident_bytes: Some(32_505_856),
            virtual_bytes: 1_073_741_824,
            threads: 9,
            start_time_seconds: Some(1_795_500_000.5),
            open_fds: Some(41),
            max_fds: Some(1024),
        }
    }

    #[test]
    fn renders_the_prometheus_client_convention() {
        let mut out = String::new();
        sample().render(&mut out);
        let expected = "\
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.25
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 28311552
# HELP iov_process_resident_memory_peak_bytes Peak resident memory size in bytes since the process started (VmHWM).
# TYPE iov_process_resident_memory_peak_bytes gauge
iov_process_resident_memory_peak_bytes 32505856
# HELP process_virtual_memory_bytes Virtual memory size in bytes.
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 1073741824
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1795500000.5
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 41
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024
# HELP process_threads Number of OS threads in the process.
# TYPE process_threads gauge
process_threads 9
";
        assert_eq!(out, expected);
    }

    #[test]
    fn unreadable_fields_are_left_out_not_zero() {
        let mut s = sample();
        s.peak_resident_bytes = None;
        s.max_fds = None;
        s.start_time_seconds = None;
        let mut out = String::new();
        s.render(&mut out);
        for absent in
            ["iov_process_resident_memory_peak_bytes", "process_max_fds", "process_start_time"]
        {
            assert!(!out.contains(absent), "{absent} in {out}");
        }
        assert!(out.contains("process_open_fds 41\n"));
    }

    #[test]
    fn reads_this_process() -> Result<(), ReadError> {
        let before = ProcessSample::of_self()?;
        // Burn a little CPU and hold a file open, so both must show.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let _file = std::fs::File::open("/proc/self/stat").map_err(|e| ReadError {
            who: "self".into(),
            source: procfs::ProcError::Io(e, None),
        })?;
        let after = ProcessSample::of_self()?;
        assert!(after.cpu_seconds >= before.cpu_seconds, "{before:?} -> {after:?}");
        assert!(after.cpu_seconds > 0.0);
        assert!(after.resident_bytes > 1 << 20, "{after:?}");
        assert!(after.peak_resident_bytes >= Some(after.resident_bytes), "{after:?}");
        assert!(after.virtual_bytes >= after.resident_bytes);
        assert!(after.threads >= 1);
        assert!(matches!(after.state, 'R' | 'S'), "{after:?}");
        let open = after.open_fds.unwrap_or(0);
        assert!(open >= 4, "stdin, stdout, stderr and the file: {after:?}");
        assert!(after.max_fds.is_none_or(|m| m >= open));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let started = after.start_time_seconds.unwrap_or(0.0);
        assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");
        Ok(())
    }

    #[test]
    fn counts_the_cpu_time_of_named_threads_only() -> Result<(), Box<dyn std::error::Error>> {
        let spin = || {
            let mut x = 0u64;
            for i in 0..100_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (spun_tx, spun_rx) = std::sync::mpsc::channel::<()>();
        // The thread stays alive (blocked on `done`) until it has been measured.
        let worker =
            std::thread::Builder::new().name("pm-test-spinner".into()).spawn(move || {
                spin();
                let _ = spun_tx.send(());
                let _ = done_rx.recv();
            })?;
        spun_rx.recv()?;
        let named = threads_cpu_seconds("pm-test-spin")?;
        let none = threads_cpu_seconds("pm-test-no-such-thread")?;
        let _ = done_tx.send(());
        worker.join().map_err(|_| "the spinner panicked")?;
        assert!(named > 0.0, "the spinner's time: {named}");
        assert_eq!(none, 0.0);
        Ok(())
    }

    #[test]
    fn reads_a_child_through_to_its_exit() -> Result<(), Box<dyn std::error::Error>> {
        let mut child = std::process::Command::new("sleep").arg("30").spawn()?;
        let pid = child.id();
        let running = ProcessSample::of_pid(pid)?;
        assert!(!running.is_zombie(), "{running:?}");
        child.kill()?;
        // Killed, not reaped: the entry stays until `wait`; poll for the state change (bounded).
        let mut exited = None;
        for _ in 0..500 {
            let s = ProcessSample::of_pid(pid)?;
            if s.is_zombie() {
                exited = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let exited = exited.ok_or("the child never became a zombie")?;
        assert_eq!(exited.peak_resident_bytes, None, "a zombie has no memory: {exited:?}");
        child.wait()?;
        assert!(ProcessSample::of_pid(pid).is_err(), "a reaped process cannot be read");
        Ok(())
    }
}
