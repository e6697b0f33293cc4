//! End-to-end tests: the Python scripts under `tests/e2e/` start the real
//! `postern` binary on ephemeral loopback ports and drive it with the Python
//! standard library's IMAP and LMTP clients.
//!
//! Each `tests/e2e/test_*.py` file is one `#[test]` here, so cargo runs the
//! files in parallel and a failure names the command family. The files are
//! independent: each starts its own servers in its own temporary directories.
//! A missing `python3` is a failure, never a skip.
//!
//! The files that test mail rather than the embedded store's files run a
//! second time on the PostgreSQL backend (`postgres::*`): the harness then
//! gives each server a database of its own on one throwaway cluster. Files
//! that only make sense on the embedded store are listed in
//! `EMBEDDED_ONLY`, each with why.

#[path = "../../store/tests/support/cluster.rs"]
mod cluster;

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest one Python file may run before it is killed and reported as hung.
const PYTHON_FILE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the runner checks whether Python has finished.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn e2e_dir() -> PathBuf {
    manifest_dir().join("../../tests/e2e")
}

/// Runs `python3 -m unittest -v MODULE` in tests/e2e against the binary cargo
/// just built, and panics with Python's whole output unless every test passed.
fn run_python(file: &str) {
    run_python_with(file, &[]);
}

/// [`run_python`] with the servers' mail in PostgreSQL.
fn run_python_on_postgres(file: &str) {
    run_python_with(
        file,
        &[
            ("POSTERN_E2E_BACKEND", "postgres"),
            ("POSTERN_E2E_PG", cluster::dsn()),
        ],
    );
}

fn run_python_with(file: &str, env: &[(&str, &str)]) {
    let module = file
        .strip_suffix(".py")
        .unwrap_or_else(|| panic!("{file} is not a .py file"));
    let dir = e2e_dir();
    // Python's output goes to a file rather than a pipe, so a chatty test can
    // never block on a full pipe while this thread waits for it to exit.
    let backend = if env.is_empty() { "" } else { "-pg" };
    let log_path = std::env::temp_dir().join(format!(
        "postern-e2e-{module}{backend}-{}.log",
        std::process::id()
    ));
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let log_for_stderr = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot clone {}: {e}", log_path.display()));
    let spawned = Command::new("python3")
        .args(["-m", "unittest", "-v", module])
        .current_dir(&dir)
        .env("POSTERN_BIN", env!("CARGO_BIN_EXE_postern"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "python3 was not found on PATH; the end-to-end tests in {} need Python 3.11 or later",
            dir.display()
        ),
        Err(e) => panic!("cannot start python3 for {file}: {e}"),
    };
    let deadline = Instant::now() + PYTHON_FILE_TIMEOUT;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(e) => panic!("waiting for python3 ({file}) failed: {e}"),
        }
    };
    let output =
        String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    let _ = std::fs::remove_file(&log_path);
    match status {
        // Shown with `cargo test -- --nocapture`; a failure shows it in the panic.
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!("tests/e2e/{file} failed ({status}):\n{output}"),
        None => panic!(
            "tests/e2e/{file} did not finish within {} s and was killed:\n{output}",
            PYTHON_FILE_TIMEOUT.as_secs()
        ),
    }
}

/// One `#[test]` per Python file, and the list that `every_file_is_listed`
/// checks against the directory.
macro_rules! python_test_files {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_python($file);
            }
        )*
        const PYTHON_TEST_FILES: &[&str] = &[$($file),*];
    };
}

python_test_files! {
    auth => "test_auth.py",
    mailbox => "test_mailbox.py",
    fetch => "test_fetch.py",
    store_search => "test_store_search.py",
    append_copy_move => "test_append_copy_move.py",
    idle_and_sessions => "test_idle_and_sessions.py",
    isolation => "test_isolation.py",
    durability => "test_durability.py",
    crash => "test_crash.py",
    lmtp => "test_lmtp.py",
    smtp => "test_smtp.py",
    bad_input => "test_bad_input.py",
    cli => "test_cli.py",
    sms => "test_sms.py",
    status_subscribers => "test_status_subscribers.py",
    quota => "test_quota.py",
    mbsync => "test_mbsync.py",
    offlineimap => "test_offlineimap.py",
    neomutt => "test_neomutt.py",
    imapclient => "test_imapclient.py",
    metadata => "test_metadata.py",
    notify_context => "test_notify_context.py",
    acl => "test_acl.py",
    catenate => "test_catenate.py",
    reconstruct => "test_reconstruct.py",
    replication => "test_replication.py",
    proxy => "test_proxy.py",
    export => "test_export.py",
    pg_migrate => "test_pg_migrate.py",
    pg_cli => "test_pg_cli.py",
    pg_nodes => "test_pg_nodes.py",
    pg_failover => "test_pg_failover.py",
    pg_tls => "test_pg_tls.py",
    pg_shards => "test_pg_shards.py",
    pg_frozen => "test_pg_frozen.py",
    overload => "test_overload.py",
    hostile => "test_hostile.py",
    status => "test_status.py",
    smtp_auth => "test_smtp_auth.py",
    spam => "test_spam.py",
}

/// The same files again, on the PostgreSQL backend.
macro_rules! pg_python_test_files {
    ($($name:ident => $file:literal,)*) => {
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::run_python_on_postgres($file);
                }
            )*
        }
        const PG_PYTHON_TEST_FILES: &[&str] = &[$($file),*];
    };
}

pg_python_test_files! {
    auth => "test_auth.py",
    mailbox => "test_mailbox.py",
    fetch => "test_fetch.py",
    store_search => "test_store_search.py",
    append_copy_move => "test_append_copy_move.py",
    idle_and_sessions => "test_idle_and_sessions.py",
    isolation => "test_isolation.py",
    durability => "test_durability.py",
    lmtp => "test_lmtp.py",
    smtp => "test_smtp.py",
    bad_input => "test_bad_input.py",
    cli => "test_cli.py",
    sms => "test_sms.py",
    status_subscribers => "test_status_subscribers.py",
    quota => "test_quota.py",
    mbsync => "test_mbsync.py",
    offlineimap => "test_offlineimap.py",
    neomutt => "test_neomutt.py",
    imapclient => "test_imapclient.py",
    metadata => "test_metadata.py",
    notify_context => "test_notify_context.py",
    acl => "test_acl.py",
    catenate => "test_catenate.py",
    proxy => "test_proxy.py",
    export => "test_export.py",
    overload => "test_overload.py",
    hostile => "test_hostile.py",
    status => "test_status.py",
    smtp_auth => "test_smtp_auth.py",
    spam => "test_spam.py",
}

/// Files that run on the embedded store only, and why.
const EMBEDDED_ONLY: &[(&str, &str)] = &[
    ("test_crash.py", "journal and pack damage"),
    (
        "test_reconstruct.py",
        "index damage and reconstruct; not built on PostgreSQL yet",
    ),
    (
        "test_replication.py",
        "PostgreSQL's streaming standby replaces it",
    ),
    (
        "test_pg_migrate.py",
        "starts PostgreSQL clusters of its own",
    ),
    ("test_pg_cli.py", "starts PostgreSQL clusters of its own"),
    ("test_pg_nodes.py", "starts PostgreSQL clusters of its own"),
    (
        "test_pg_failover.py",
        "starts PostgreSQL clusters of its own",
    ),
    ("test_pg_tls.py", "starts PostgreSQL clusters of its own"),
    ("test_pg_shards.py", "starts PostgreSQL clusters of its own"),
    ("test_pg_frozen.py", "starts PostgreSQL clusters of its own"),
];

/// Every file runs on PostgreSQL too, or says why not.
#[test]
fn every_file_runs_on_postgres_or_says_why_not() {
    for file in PYTHON_TEST_FILES {
        let on_pg = PG_PYTHON_TEST_FILES.contains(file);
        let embedded = EMBEDDED_ONLY.iter().any(|(f, _)| f == file);
        assert!(
            on_pg != embedded,
            "{file}: list it in pg_python_test_files! or in EMBEDDED_ONLY (with why), and not in both"
        );
    }
}

/// A new test_*.py that nobody added above would never run; this makes that a failure.
#[test]
fn every_file_is_listed() {
    let dir = e2e_dir();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("test_") && name.ends_with(".py"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = PYTHON_TEST_FILES.iter().map(|s| (*s).to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/e2e/test_*.py and the list in crates/postern/tests/e2e.rs differ"
    );
}

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
