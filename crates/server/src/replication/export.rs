//! `postern store export FILE` and `postern store import FILE`: a store's
//! whole change log, with every message content once, in one file, and back
//! into an empty store, with every user, mailbox, UIDVALIDITY, UID, MODSEQ,
//! flag and setting as it was, so clients do not resync.
//!
//! The file is what replication ships, written down: a line
//! `POSTERN-EXPORT 1`, then frames of `wire` (an `Offer` with up to 4,096
//! records, followed by one `Blob` frame per content it names that was not
//! in an earlier batch, in the order listed), then an `End` frame with the
//! counts and the SHA-256 of every byte before it. Import checks that hash
//! in a first pass over the file, before anything is applied; then it applies
//! the batches with `Intent::Replicate`, each content checked against its
//! hash, exactly as a replica does. An export is a consistent cut: the
//! journal up to the durable LSN when it started, also from a running server.
//!
//! `postern store copy --from OLD_CONFIG` is the same without the file: the
//! batches go from the old store (whose server is stopped: the copy takes its
//! data directory's lock) straight into this one. The store keeps how far it
//! got (`Record::Replicated`, with the server-wide state), so a copy that
//! stopped, or one run again after the old store took more mail, goes on from
//! there instead of starting over.

use super::wire::{self, Frame, Msg};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use store::{BlobHash, Intent, Store};

const MAGIC: &[u8] = b"POSTERN-EXPORT 1\n";
const RECORDS_PER_BATCH: usize = 4096;
const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most bytes of contents one batch carries (one larger message alone).
const CONTENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    /// The exporting store's id and the last of its LSNs in the file.
    pub source: String,
    pub upto: u64,
    pub records: u64,
    pub contents: u64,
    pub content_bytes: u64,
    /// Contents the exporting store could not read (missing or damaged):
    /// their messages are imported without them, as recovery would.
    pub lost: u64,
}

/// One batch of a store's change log, with the contents its records name
/// that no earlier batch carried (`None`: the store could not read it).
struct Batch {
    after: u64,
    upto: u64,
    id_floor: u64,
    durable: u64,
    first_time: i64,
    records: Vec<store::record::Record>,
    contents: Vec<(BlobHash, Option<Vec<u8>>)>,
}

/// Reads `store`'s change log after LSN `after`, up to its durable LSN now
/// (a consistent cut), in batches handed to `sink`. A batch holds at most
/// `RECORDS_PER_BATCH` records and, but for one large message alone,
/// `CONTENT_BYTES_MAX` bytes of contents: what is in memory at once stays
/// bounded whatever the store holds.
fn batches(
    store: &Store,
    after: u64,
    mut sink: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let upto = store.durable_lsn();
    let mut summary = Summary {
        source: store.store_id().to_string(),
        upto,
        records: 0,
        contents: 0,
        content_bytes: 0,
        lost: 0,
    };
    let mut written: HashSet<BlobHash> = HashSet::new();
    let mut cursor = store.journal_cursor(after + 1)?;
    let mut after = after;
    let mut flush = |run: Vec<store::record::Entry>,
                     after: &mut u64,
                     written: &mut HashSet<BlobHash>,
                     summary: &mut Summary|
     -> anyhow::Result<()> {
        let Some(last) = run.last() else {
            return Ok(());
        };
        let batch_upto = last.lsn;
        let (first_time, records) = super::shipped_records(run);
        let blobs = super::new_contents(&records, written);
        summary.records += records.len() as u64;
        let mut contents = Vec::with_capacity(blobs.len());
        for hash in blobs {
            match store.blob(&hash) {
                Ok(bytes) => {
                    summary.contents += 1;
                    summary.content_bytes += bytes.len() as u64;
                    contents.push((hash, Some(bytes)));
                }
                Err(e) => {
                    tracing::error!(event = "export_blob_unreadable", blob = %hash.to_hex(), error = %e);
                    summary.lost += 1;
                    contents.push((hash, None));
                }
            }
        }
        sink(Batch {
            after: *after,
            upto: batch_upto,
            id_floor: upto + 1,
            durable: upto,
            first_time,
            records,
            contents,
        })?;
        *after = batch_upto;
        Ok(())
    };
    loop {
        let entries = cursor.read(upto, RECORDS_PER_BATCH, BATCH_BYTES_MAX)?;
        if entries.is_empty() {
            break;
        }
        let mut run = Vec::new();
        let mut run_bytes = 0u64;
        for entry in entries {
            let adds = match &entry.record {
                store::record::Record::MessageAdded { blob, size, .. }
                    if !written.contains(blob) =>
                {
                    *size
                }
                _ => 0,
            };
            if !run.is_empty() && run_bytes + adds > CONTENT_BYTES_MAX {
                flush(
                    std::mem::take(&mut run),
                    &mut after,
                    &mut written,
                    &mut summary,
                )?;
                run_bytes = 0;
            }
            run_bytes += adds;
            run.push(entry);
        }
        flush(run, &mut after, &mut written, &mut summary)?;
    }
    Ok(summary)
}

/// Writes the export of `store` to `path` (a new file; refused if it exists).
pub fn export(store: &Store, path: &Path) -> anyhow::Result<Summary> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let mut out = HashingWriter {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
    };
    out.write_all(MAGIC)?;
    let summary = batches(store, 0, |batch| {
        out.write_all(&wire::encode(&Frame::new(Msg::Offer {
            after: batch.after,
            upto: batch.upto,
            id_floor: batch.id_floor,
            durable: batch.durable,
            first_time: batch.first_time,
            records: batch.records,
            blobs: batch.contents.iter().map(|(h, _)| h.to_hex()).collect(),
        }))?)?;
        for (_, bytes) in batch.contents {
            let frame = match bytes {
                Some(bytes) => Frame {
                    msg: Msg::Blob { lost: false },
                    payload: bytes,
                },
                None => Frame::new(Msg::Blob { lost: true }),
            };
            out.write_all(&wire::encode(&frame)?)?;
        }
        Ok(())
    })?;
    let digest = hex::encode(out.hash.clone().finalize());
    let end = wire::encode(&Frame::new(Msg::End {
        sha256: digest,
        summary: serde_json::to_value(&summary)?,
    }))?;
    out.inner.write_all(&end)?;
    let file = out
        .inner
        .into_inner()
        .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?
        .sync_all()?;
    }
    Ok(summary)
}

/// Imports `path` into `store`, which must be empty. Checks the whole file
/// first; nothing is applied from a file that does not check out.
pub fn import(store: &Store, path: &Path) -> anyhow::Result<Summary> {
    if !store.is_empty()? {
        anyhow::bail!(
            "the store in {} is not empty: import only into a new data directory (or, on PostgreSQL, a new database)",
            store.data_dir().display()
        );
    }
    if store.is_read_only() {
        anyhow::bail!(
            "this server takes no changes now (a replica, or a primary waiting for its replica): import into a server of its own"
        );
    }
    let summary = verify(path)?;
    let mut input = open(path)?;
    // Replicate is what applies another store's records; it needs the
    // read-only mode, which also keeps clients out until the import is whole.
    store.set_read_only(true);
    let applied = apply(store, &mut input, &summary.source);
    store.set_read_only(false);
    applied?;
    Ok(summary)
}

/// Copies `from` (another store, opened by the caller) into `store`: into
/// an empty store from the start, or, into one that took `from`'s records
/// before, from where that copy stopped. Returns what this run copied.
pub fn copy(store: &Store, from: &Store) -> anyhow::Result<Summary> {
    if store.is_read_only() {
        anyhow::bail!(
            "this server takes no changes now (a replica, or a primary waiting for its replica): copy into a server of its own"
        );
    }
    let source = from.store_id().to_string();
    let after = match store.replica_position()? {
        Some(position) if position.source == source => position.upto,
        Some(position) => anyhow::bail!(
            "this store holds a copy of store {}, not of {source}: copy only into a new store (or the one that copy began)",
            position.source
        ),
        None if store.is_empty()? => 0,
        None => anyhow::bail!(
            "the store in {} is not empty: copy only into a new data directory (or, on PostgreSQL, a new database)",
            store.data_dir().display()
        ),
    };
    // As for an import: Replicate needs the read-only mode, which also keeps
    // clients out until the copy is whole.
    store.set_read_only(true);
    let copied = batches(from, after, |batch| {
        let mut contents: HashMap<BlobHash, Arc<store::Prepared>> = HashMap::new();
        let mut lost = Vec::new();
        for (hash, bytes) in batch.contents {
            match bytes {
                Some(bytes) => {
                    let prepared = store.prepare(bytes);
                    anyhow::ensure!(prepared.hash == hash, "a content does not match its hash");
                    contents.insert(hash, prepared);
                }
                None => lost.push(hash),
            }
        }
        store
            .submit_one_blocking(Intent::Replicate {
                source: source.clone(),
                after: batch.after,
                upto: batch.upto,
                id_floor: batch.id_floor,
                records: Arc::new(batch.records),
                blobs: Arc::new(contents),
                lost: Arc::new(lost),
            })
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("copy of records {}..{}: {e}", batch.after, batch.upto))
    });
    store.set_read_only(false);
    copied
}

fn open(path: &Path) -> anyhow::Result<BufReader<std::fs::File>> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut input = BufReader::new(file);
    let mut magic = vec![0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| anyhow::anyhow!("{} is not a Postern export", path.display()))?;
    anyhow::ensure!(magic == MAGIC, "{} is not a Postern export", path.display());
    Ok(input)
}

/// First pass: the hash of everything before the end frame, and the end
/// frame. Any failure here means the file is damaged (or not whole).
fn verify(path: &Path) -> anyhow::Result<Summary> {
    verify_frames(path).map_err(|e| anyhow::anyhow!("{} is damaged: {e:#}", path.display()))
}

fn verify_frames(path: &Path) -> anyhow::Result<Summary> {
    let mut input = open(path)?;
    let mut hash = Sha256::new();
    hash.update(MAGIC);
    loop {
        // The end frame's own bytes are not in the hash it carries.
        let before = hash.clone();
        let Some(frame) = wire::read_frame_sync(&mut input, |bytes| hash.update(bytes))? else {
            anyhow::bail!("it ends before its end mark: cut short");
        };
        if let Msg::End { sha256, summary } = frame.msg {
            anyhow::ensure!(
                hex::encode(before.finalize()) == sha256,
                "it does not match its checksum"
            );
            let mut trailing = [0u8; 1];
            anyhow::ensure!(
                input.read(&mut trailing)? == 0,
                "it has bytes after its end mark"
            );
            return Ok(serde_json::from_value(summary)?);
        }
    }
}

fn apply(store: &Store, input: &mut impl Read, source: &str) -> anyhow::Result<()> {
    let Some(mut frame) = wire::read_frame_sync(input, |_| {})? else {
        return Ok(());
    };
    loop {
        let (after, upto, id_floor, records, blobs) = match frame.msg {
            Msg::End { .. } => return Ok(()),
            Msg::Offer {
                after,
                upto,
                id_floor,
                records,
                blobs,
                ..
            } => (after, upto, id_floor, records, blobs),
            other => anyhow::bail!("unexpected {other:?} in the export"),
        };
        let mut contents: HashMap<BlobHash, Arc<store::Prepared>> = HashMap::new();
        let mut lost = Vec::new();
        for hex in &blobs {
            let hash =
                BlobHash::from_hex(hex).ok_or_else(|| anyhow::anyhow!("bad content hash"))?;
            let Some(blob) = wire::read_frame_sync(input, |_| {})? else {
                anyhow::bail!("the export ends inside a batch");
            };
            match blob.msg {
                Msg::Blob { lost: true } => lost.push(hash),
                Msg::Blob { lost: false } => {
                    let prepared = store.prepare(blob.payload);
                    anyhow::ensure!(prepared.hash == hash, "a content does not match its hash");
                    contents.insert(hash, prepared);
                }
                other => anyhow::bail!("unexpected {other:?} in the export"),
            }
        }
        store
            .submit_one_blocking(Intent::Replicate {
                source: source.to_string(),
                after,
                upto,
                id_floor,
                records: Arc::new(records),
                blobs: Arc::new(contents),
                lost: Arc::new(lost),
            })
            .map_err(|e| anyhow::anyhow!("import of records {after}..{upto}: {e}"))?;
        frame = match wire::read_frame_sync(input, |_| {})? {
            Some(frame) => frame,
            None => anyhow::bail!("the export ends before its end mark"),
        };
    }
}

/// A writer that hashes what goes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
