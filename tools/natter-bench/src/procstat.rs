//! Readings of another process from /proc (Linux): CPU time and resident memory.

use anyhow::{Context, Result, anyhow};

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds the process (all its threads) has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clk_tck())
}

/// CPU seconds of this process (the bench itself).
pub fn self_cpu_seconds() -> Result<f64> {
    cpu_seconds(std::process::id())
}

fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is parenthesised and may contain spaces; fields after the last
    // ')' start with field 3 (state). utime is field 14, stime field 15.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("malformed /proc stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("/proc stat too short"))?
            .parse()
            .context("parsing /proc stat field")
    };
    Ok(get(11)? + get(12)?)
}

/// The executable name of a process (`/proc/<pid>/comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// The command line of a process with its NUL separators as spaces (what `ps` shows; programs
/// such as PostgreSQL's backends rewrite it to say what they are doing).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw);
    Some(text.trim_end_matches('\0').replace('\0', " "))
}

/// Every process whose name (`comm`) is `comm` and, when `substring` is given, whose command
/// line contains it. Processes that vanish while being read are skipped.
pub fn pids_matching(comm_name: &str, substring: Option<&str>) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| comm(pid).is_some_and(|c| c == comm_name))
        .filter(|&pid| match substring {
            None => true,
            Some(sub) => cmdline(pid).is_some_and(|c| c.contains(sub)),
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Resident set size in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS line"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("malformed VmRSS line"))?
        .parse()
        .context("parsing VmRSS")?;
    Ok(kb * 1024)
}

/// Raises the soft open-file limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit");
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit with cur <= max.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit");
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        let s = "1234 (node (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0";
        assert_eq!(parse_cpu_ticks(s).unwrap(), 325);
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t   51200 kB\nThreads:\t11\n";
        assert_eq!(parse_vmrss(s).unwrap(), 51200 * 1024);
    }

    #[test]
    fn reads_self() {
        assert!(self_cpu_seconds().unwrap() >= 0.0);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn finds_self_by_name() {
        let me = std::process::id();
        let name = comm(me).unwrap();
        assert!(pids_matching(&name, None).contains(&me));
        let line = cmdline(me).unwrap();
        let first = line.split(' ').next().unwrap();
        assert!(pids_matching(&name, Some(first)).contains(&me));
        assert!(!pids_matching(&name, Some("no such argument \u{1}")).contains(&me));
    }
}
