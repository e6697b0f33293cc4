//! The throwaway PostgreSQL cluster of a test program: started once, by
//! `tests/pg/cluster.py --until-stdin-closes`, and stopped when the program
//! ends (its exit closes the helper's stdin). Shared by the store's tests
//! and the end-to-end runner (`crates/postern/tests/e2e.rs`), which include
//! this file. Standard library only.

#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

struct Cluster {
    dsn: String,
    _helper: Mutex<Child>,
}

/// The cluster's DSN (`postgres://postgres@127.0.0.1:PORT/postgres`),
/// starting it on first use. Panics, saying so, when PostgreSQL is not
/// installed: a test that needs it never passes without it.
pub fn dsn() -> &'static str {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    &CLUSTER
        .get_or_init(|| {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/pg/cluster.py");
            let mut helper = Command::new("python3")
                .arg(&script)
                .arg("--until-stdin-closes")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {} (python3): {e}", script.display()));
            let mut line = String::new();
            if let Some(stdout) = helper.stdout.take() {
                let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            }
            assert!(
                line.starts_with("postgres://"),
                "tests/pg/cluster.py did not start PostgreSQL (is it installed? .ci/run installs it); it said {line:?}"
            );
            Cluster {
                dsn: line.trim().to_string(),
                _helper: Mutex::new(helper),
            }
        })
        .dsn
}
