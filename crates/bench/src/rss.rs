//! Resident memory of a server: the sum of `VmRSS` over its process tree
//! (the given processes and every descendant), read from `/proc`. Dovecot
//! and Cyrus run a process per connection or per service, Postern one: the
//! sum over the tree is what each costs the machine.

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
    pub rss_kib: u64,
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
        let tree = process_tree(&roots, &parents);
        let mut reading = RssReading {
            processes: 0,
            rss_kib: 0,
        };
        for pid in tree {
            let path = proc_dir.join(pid.to_string()).join("status");
            if let Some(kib) = std::fs::read_to_string(path)
                .ok()
                .as_deref()
                .and_then(parse_vm_rss_kib)
            {
                reading.processes += 1;
                reading.rss_kib += kib;
            }
        }
        Ok(reading)
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
        assert_eq!(
            by_pattern.read_from(&dir).unwrap(),
            RssReading {
                processes: 3,
                rss_kib: 5500
            }
        );
        let by_pid = ProcessSelector {
            pids: vec![101, 200],
            patterns: Vec::new(),
        };
        assert_eq!(by_pid.read_from(&dir).unwrap().rss_kib, 12_499);
        let nothing = ProcessSelector {
            pids: vec![999],
            patterns: Vec::new(),
        };
        assert!(nothing.read_from(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
