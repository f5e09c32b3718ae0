//! CPU of everything a run counts as "the server": the `--pid` processes (summed, and each on
//! its own), plus the extras a cluster needs, `--extra-pid NAME=PID` and `--extra-procs
//! NAME=COMM[:SUBSTRING]` (Redis, PostgreSQL's backends), read at both ends of the window.
//!
//! Extras found by name are looked up afresh at each end: a process there at the end but not at
//! the start was born in the window and counts whole; one there at the start but gone at the end
//! took its CPU with it (counted in `vanished`, its share is lost).

use std::collections::{BTreeMap, BTreeSet};

use crate::procstat;
use crate::{Cli, ExtraProcs};

/// One reading of every watched process.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// CPU seconds of each `--pid`, in order (None: unreadable).
    servers: Vec<Option<f64>>,
    /// Extra name → pid → CPU seconds (processes that could not be read are left out).
    extras: BTreeMap<String, BTreeMap<u32, f64>>,
    /// Extra names given by a fixed `--extra-pid` whose process could not be read.
    missing: BTreeSet<String>,
}

impl Snapshot {
    pub fn take(cli: &Cli) -> Snapshot {
        let servers = cli
            .pids
            .iter()
            .map(|&pid| match procstat::cpu_seconds(pid) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("warning: cannot read server CPU of pid {pid}: {e:#}");
                    None
                }
            })
            .collect();
        let mut extras: BTreeMap<String, BTreeMap<u32, f64>> = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for (name, pid) in &cli.extra_pid {
            let entry = extras.entry(name.clone()).or_default();
            match procstat::cpu_seconds(*pid) {
                Ok(s) => {
                    entry.insert(*pid, s);
                }
                Err(e) => {
                    eprintln!("warning: cannot read CPU of {name} (pid {pid}): {e:#}");
                    missing.insert(name.clone());
                }
            }
        }
        let me = std::process::id();
        for ExtraProcs {
            name,
            comm,
            substring,
        } in &cli.extra_procs
        {
            let entry = extras.entry(name.clone()).or_default();
            for pid in procstat::pids_matching(comm, substring.as_deref()) {
                // Never the bench or a server itself (their command lines may name the same
                // database).
                if pid == me || cli.pids.contains(&pid) {
                    continue;
                }
                if let Ok(s) = procstat::cpu_seconds(pid) {
                    entry.insert(pid, s);
                }
            }
        }
        Snapshot {
            servers,
            extras,
            missing,
        }
    }
}

/// CPU of one extra name over the window.
#[derive(Debug, Clone)]
pub struct ExtraUsage {
    pub name: String,
    /// None when a fixed `--extra-pid` could not be read at either end.
    pub cpu_s: Option<f64>,
    /// Processes counted (there at the end).
    pub processes: usize,
    /// Processes there at the start and gone at the end (their CPU is not counted).
    pub vanished: usize,
}

/// CPU over the window, from two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Each `--pid` and its CPU seconds over the window.
    pub per_pid: Vec<(u32, Option<f64>)>,
    /// The sum over `--pid`s; None when one of them could not be read (or none was given).
    pub server_cpu_s: Option<f64>,
    pub extras: Vec<ExtraUsage>,
    /// The extras together, each process once; None when there are no extras or one is
    /// missing.
    pub extra_cpu_s: Option<f64>,
}

impl Usage {
    pub fn between(cli: &Cli, a: &Snapshot, b: &Snapshot) -> Usage {
        let per_pid: Vec<(u32, Option<f64>)> = cli
            .pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let d = match (
                    a.servers.get(i).copied().flatten(),
                    b.servers.get(i).copied().flatten(),
                ) {
                    (Some(x), Some(y)) => Some((y - x).max(0.0)),
                    _ => None,
                };
                (pid, d)
            })
            .collect();
        let server_cpu_s = if per_pid.is_empty() {
            None
        } else {
            per_pid.iter().map(|(_, d)| *d).sum::<Option<f64>>()
        };

        let mut extras = Vec::new();
        let mut union: BTreeMap<u32, f64> = BTreeMap::new();
        let mut any_missing = false;
        for (name, end) in &b.extras {
            let empty = BTreeMap::new();
            let start = a.extras.get(name).unwrap_or(&empty);
            let mut sum = 0.0;
            for (&pid, &e) in end {
                let d = match start.get(&pid) {
                    Some(&s) if e >= s => e - s,
                    // Not there at the start (born in the window), or a reused pid.
                    _ => e,
                };
                sum += d;
                union.insert(pid, d);
            }
            let vanished = start.keys().filter(|p| !end.contains_key(p)).count();
            let missing = a.missing.contains(name) || b.missing.contains(name);
            any_missing |= missing;
            extras.push(ExtraUsage {
                name: name.clone(),
                cpu_s: (!missing).then_some(sum),
                processes: end.len(),
                vanished,
            });
        }
        let extra_cpu_s = (!extras.is_empty() && !any_missing).then(|| union.values().sum());
        Usage {
            per_pid,
            server_cpu_s,
            extras,
            extra_cpu_s,
        }
    }

    /// Server and extras together (None unless both are known; the server alone when there
    /// are no extras).
    pub fn total_cpu_s(&self) -> Option<f64> {
        match (self.server_cpu_s, self.extras.is_empty(), self.extra_cpu_s) {
            (Some(s), true, _) => Some(s),
            (Some(s), false, Some(x)) => Some(s + x),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn snap(servers: &[Option<f64>], extras: &[(&str, &[(u32, f64)])]) -> Snapshot {
        Snapshot {
            servers: servers.to_vec(),
            extras: extras
                .iter()
                .map(|(n, ps)| (n.to_string(), ps.iter().copied().collect()))
                .collect(),
            missing: BTreeSet::new(),
        }
    }

    #[test]
    fn sums_servers_and_extras() {
        let cli = Cli::try_parse_from([
            "natter-bench",
            "--pid",
            "1,2",
            "--extra-pid",
            "redis=7",
            "--extra-procs",
            "pg=postgres:db",
        ])
        .unwrap();
        let a = snap(
            &[Some(1.0), Some(2.0)],
            &[
                ("redis", &[(7, 0.5)]),
                ("pg", &[(20, 1.0), (21, 1.0), (22, 3.0)]),
            ],
        );
        let b = snap(
            &[Some(1.5), Some(3.0)],
            // 21 vanished, 23 was born, 20 ran 0.25 s.
            &[
                ("redis", &[(7, 0.75)]),
                ("pg", &[(20, 1.25), (22, 3.0), (23, 0.5)]),
            ],
        );
        let u = Usage::between(&cli, &a, &b);
        assert_eq!(u.per_pid, vec![(1, Some(0.5)), (2, Some(1.0))]);
        assert_eq!(u.server_cpu_s, Some(1.5));
        let pg = u.extras.iter().find(|e| e.name == "pg").unwrap();
        assert_eq!(pg.cpu_s, Some(0.75));
        assert_eq!((pg.processes, pg.vanished), (3, 1));
        assert_eq!(u.extra_cpu_s, Some(1.0));
        assert_eq!(u.total_cpu_s(), Some(2.5));
    }

    #[test]
    fn one_unreadable_server_spoils_the_sum() {
        let cli = Cli::try_parse_from(["natter-bench", "--pid", "1", "--pid", "2"]).unwrap();
        let a = snap(&[Some(1.0), None], &[]);
        let b = snap(&[Some(2.0), Some(1.0)], &[]);
        let u = Usage::between(&cli, &a, &b);
        assert_eq!(u.server_cpu_s, None);
        assert_eq!(u.per_pid[0].1, Some(1.0));
        assert_eq!(u.extra_cpu_s, None);
        assert_eq!(u.total_cpu_s(), None);
    }
}
