//! Resident memory of a server: the sum of its processes' proportional set
//! size (`Pss` of `/proc/PID/smaps_rollup`) over its process tree (the
//! given processes and every descendant), read from `/proc`. Dovecot and
//! Cyrus run a process per connection or per service, Postern one: the sum
//! over the tree is what each costs the machine. `VmRSS` would count every
//! page shared by N processes (libraries, Cyrus's mapped databases) N
//! times; PSS counts each 1/N in each, so the sum is the memory the tree
//! holds. For one process PSS is its RSS less its share of pages other
//! processes map too. The sum of `VmRSS` is kept beside it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Which processes are the server: these pids, and every process whose
/// command line contains one of the patterns; with all their descendants.
#[derive(Debug, Clone, Default)]
pub struct ProcessSelector {
    pub pids: Vec<u32>,
    pub patterns: Vec<String>,
}

/// One reading: the processes found and the sum of their `VmRSS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssReading {
    pub processes: usize,
    /// Sum of PSS (of `VmRSS` for a process whose `smaps_rollup` could
    /// not be read).
    pub rss_kib: u64,
    /// Sum of `VmRSS`: shared pages counted once per process.
    pub vm_rss_kib: u64,
}

/// `Pss` in KiB from the text of `/proc/PID/smaps_rollup`.
pub fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    let line = smaps_rollup.lines().find(|line| line.starts_with("Pss:"))?;
    let mut words = line["Pss:".len()..].split_ascii_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some(unit) if unit.eq_ignore_ascii_case("kB") => Some(value),
        _ => None,
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, 100 on
/// every Linux architecture this runs on.
pub const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// What a server's processes have cost so far: CPU time (user and system,
/// their own and that of the children they have reaped: Dovecot's and
/// Cyrus's per-connection processes end and are reaped by their master)
/// and bytes they caused to be written to disk (`write_bytes` of
/// `/proc/PID/io`, which also takes in reaped children's). The difference
/// of two readings is what happened between them, as long as the processes
/// that ended meanwhile were reaped by one in the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostReading {
    pub processes: usize,
    pub cpu_ticks: u64,
    pub write_bytes: u64,
}

/// `utime + stime + cutime + cstime` (clock ticks) from the text of
/// `/proc/PID/stat` (fields 14 to 17).
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags,
    // minflt, cminflt, majflt, cmajflt, then the four times.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let mut ticks = 0u64;
    for _ in 0..4 {
        let value: i64 = fields.next()?.parse().ok()?;
        ticks += u64::try_from(value).ok()?;
    }
    Some(ticks)
}

/// `write_bytes` from the text of `/proc/PID/io`.
pub fn parse_io_write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`; `None` when the
/// line is missing (a kernel thread, or a process exiting).
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some(unit) if unit.eq_ignore_ascii_case("kB") => Some(value),
        _ => None,
    }
}

/// The parent pid from the text of `/proc/PID/stat`. The command name in
/// parentheses may hold spaces and parentheses itself, so the fields are
/// read after its last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// The roots and all their descendants, given each process's parent.
pub fn process_tree(roots: &BTreeSet<u32>, parents: &HashMap<u32, u32>) -> BTreeSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &parent) in parents {
        children.entry(parent).or_default().push(pid);
    }
    let mut tree = BTreeSet::new();
    let mut pending: Vec<u32> = roots.iter().copied().collect();
    while let Some(pid) = pending.pop() {
        if tree.insert(pid)
            && let Some(kids) = children.get(&pid)
        {
            pending.extend(kids);
        }
    }
    tree
}

impl ProcessSelector {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.patterns.is_empty()
    }

    /// Reads `/proc` now.
    ///
    /// # Errors
    /// `/proc` cannot be listed, or no process matches.
    pub fn read(&self) -> Result<RssReading, String> {
        self.read_from(Path::new("/proc"))
    }

    /// [`ProcessSelector::read`] over another `/proc`-shaped tree (tests).
    ///
    /// # Errors
    /// The directory cannot be listed, or no process matches.
    pub fn read_from(&self, proc_dir: &Path) -> Result<RssReading, String> {
        let tree = self.tree_from(proc_dir)?;
        let mut reading = RssReading {
            processes: 0,
            rss_kib: 0,
            vm_rss_kib: 0,
        };
        for pid in tree {
            let dir = proc_dir.join(pid.to_string());
            if let Some(kib) = std::fs::read_to_string(dir.join("status"))
                .ok()
                .as_deref()
                .and_then(parse_vm_rss_kib)
            {
                let pss = std::fs::read_to_string(dir.join("smaps_rollup"))
                    .ok()
                    .as_deref()
                    .and_then(parse_pss_kib);
                reading.processes += 1;
                reading.vm_rss_kib += kib;
                reading.rss_kib += pss.unwrap_or(kib);
            }
        }
        Ok(reading)
    }

    /// CPU time and bytes written by the server's processes so far, read
    /// from `/proc` now (see [`CostReading`]).
    ///
    /// # Errors
    /// `/proc` cannot be listed, or no process matches.
    pub fn read_cost(&self) -> Result<CostReading, String> {
        self.read_cost_from(Path::new("/proc"))
    }

    /// [`ProcessSelector::read_cost`] over another `/proc`-shaped tree.
    ///
    /// # Errors
    /// The directory cannot be listed, or no process matches.
    pub fn read_cost_from(&self, proc_dir: &Path) -> Result<CostReading, String> {
        let tree = self.tree_from(proc_dir)?;
        let mut reading = CostReading::default();
        for pid in tree {
            let dir = proc_dir.join(pid.to_string());
            let Some(ticks) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat_cpu_ticks)
            else {
                continue;
            };
            reading.processes += 1;
            reading.cpu_ticks += ticks;
            reading.write_bytes += std::fs::read_to_string(dir.join("io"))
                .ok()
                .as_deref()
                .and_then(parse_io_write_bytes)
                .unwrap_or(0);
        }
        Ok(reading)
    }

    /// The selected processes and all their descendants.
    fn tree_from(&self, proc_dir: &Path) -> Result<BTreeSet<u32>, String> {
        let entries = std::fs::read_dir(proc_dir)
            .map_err(|error| format!("listing {}: {error}", proc_dir.display()))?;
        let own_pid = std::process::id();
        let mut parents = HashMap::new();
        let mut roots: BTreeSet<u32> = self.pids.iter().copied().collect();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes come and go while we read: skip what vanished.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(parent) = parse_stat_ppid(&stat) else {
                continue;
            };
            parents.insert(pid, parent);
            if !self.patterns.is_empty() && pid != own_pid {
                let command_line = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let command_line = String::from_utf8_lossy(&command_line).replace('\0', " ");
                if self
                    .patterns
                    .iter()
                    .any(|pattern| command_line.contains(pattern.as_str()))
                {
                    roots.insert(pid);
                }
            }
        }
        roots.retain(|pid| parents.contains_key(pid));
        if roots.is_empty() {
            return Err(format!(
                "no process matches pids {:?} or patterns {:?}",
                self.pids, self.patterns
            ));
        }
        Ok(process_tree(&roots, &parents))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_lines() {
        let status =
            "Name:\tdovecot\nVmPeak:\t  9000 kB\nVmRSS:\t    4312 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(4312));
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn stat_parent_after_a_name_with_parentheses() {
        assert_eq!(parse_stat_ppid("42 (imap) S 17 42 42 0 -1"), Some(17));
        assert_eq!(parse_stat_ppid("43 (a) b (c)) R 1 43 43 0"), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn cpu_ticks_and_write_bytes() {
        let stat = "42 (imap (x)) S 17 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(310));
        assert_eq!(parse_stat_cpu_ticks("42 (x) S 1 2"), None);
        let io =
            "rchar: 10\nwchar: 20\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_write_bytes(io), Some(8192));
        assert_eq!(parse_io_write_bytes("rchar: 1\n"), None);
    }

    #[test]
    fn trees_take_every_descendant_and_nothing_else() {
        let parents: HashMap<u32, u32> = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 10),
            (13, 12),
            (20, 1),
            (21, 20),
        ]
        .into_iter()
        .collect();
        let tree = process_tree(&BTreeSet::from([10]), &parents);
        assert_eq!(tree, BTreeSet::from([10, 11, 12, 13]));
        let tree = process_tree(&BTreeSet::from([13, 21]), &parents);
        assert_eq!(tree, BTreeSet::from([13, 21]));
    }

    #[test]
    fn readings_sum_a_fake_proc() {
        let dir = std::env::temp_dir().join(format!("postern-bench-rss-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let process = |pid: u32, parent: u32, name: &str, rss: Option<u64>| {
            let path = dir.join(pid.to_string());
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("stat"), format!("{pid} ({name}) S {parent} 0 0")).unwrap();
            std::fs::write(
                path.join("cmdline"),
                format!("{name}\0-c\0/tmp/x/{name}.conf\0"),
            )
            .unwrap();
            let status = rss.map_or(String::new(), |kib| format!("VmRSS:\t{kib} kB\n"));
            std::fs::write(path.join("status"), status).unwrap();
        };
        process(100, 1, "dovecot", Some(3000));
        process(101, 100, "imap-login", Some(2000));
        process(102, 101, "imap", Some(500));
        process(200, 1, "other", Some(9999));
        process(201, 100, "zombie", None);
        std::fs::create_dir_all(dir.join("self")).unwrap();
        let by_pattern = ProcessSelector {
            pids: Vec::new(),
            patterns: vec!["/tmp/x/dovecot".into()],
        };
        std::fs::write(
            dir.join("101").join("smaps_rollup"),
            "Rss: 2000 kB\nPss: 700 kB\n",
        )
        .unwrap();
        assert_eq!(
            by_pattern.read_from(&dir).unwrap(),
            RssReading {
                processes: 3,
                rss_kib: 4200,
                vm_rss_kib: 5500
            }
        );
        let by_pid = ProcessSelector {
            pids: vec![101, 200],
            patterns: Vec::new(),
        };
        assert_eq!(by_pid.read_from(&dir).unwrap().rss_kib, 11_199);
        let nothing = ProcessSelector {
            pids: vec![999],
            patterns: Vec::new(),
        };
        assert!(nothing.read_from(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
