//! Shared by the load benchmarks: CPU time and memory from `/proc`, and their
//! environment overrides.
// Each benchmark uses the part it reports.
#![allow(dead_code)]

/// Linux's `USER_HZ` for `/proc/*/stat` times.
const TICKS_PER_S: f64 = 100.0;

/// utime + stime of a process (or thread) from its `stat` file, in seconds.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_S)
}

/// CPU seconds by thread name (`comm`), for this process's threads alive now.
pub fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    cpu_by_thread_of("self")
}

/// [`cpu_by_thread`] of another process (`pid`, or `self`).
pub fn cpu_by_thread_of(pid: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(s) = cpu_seconds(&path.join("stat").to_string_lossy()) {
            *by.entry(comm.trim().to_owned()).or_insert(0.0) += s;
        }
    }
    by
}

/// The CPU each thread name used since `before` (both from [`cpu_by_thread_of`]), busiest
/// first, leaving out those under 10 ms.
pub fn busiest_since(
    before: &std::collections::BTreeMap<String, f64>,
    now: std::collections::BTreeMap<String, f64>,
) -> Vec<(String, f64)> {
    let mut used: Vec<(String, f64)> = now
        .into_iter()
        .map(|(name, s)| {
            let d = s - before.get(&name).copied().unwrap_or(0.0);
            (name, d)
        })
        .filter(|(_, d)| *d >= 0.01)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used
}

pub fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so a phase's peak is its own.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `PW_BENCH_*` override, or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of every process named `comm` (a database server's backends), summed.
pub fn cpu_of_processes_named(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .filter_map(|e| cpu_seconds(&e.path().join("stat").to_string_lossy()))
        .sum()
}
