//! The store's side of replication: what a primary ships and how two
//! servers compare what they hold. No networking (that is `server`'s
//! `replication` module).
//!
//! - [`JournalCursor`] reads the journal in LSN order from any position, up to
//!   the durable end, in bounded batches: the primary's shipper follows it.
//!   Records that are local to a server ([`Record::is_local`]: where blobs lie,
//!   what it replicated) are skipped by the shipper, never applied elsewhere.
//! - A replica applies shipped records with `Intent::Replicate`, journaled under
//!   its own LSNs with a `Replicated` record saying which primary LSN it holds.
//! - [`user_digest`] condenses one user's state (each mailbox's UIDs, flags,
//!   MODSEQs and blob hashes; the user's password hash, quota, subscriptions
//!   and annotations) into hashes two servers can compare cheaply, and
//!   [`mailbox_listing`] gives the per-message rows to find which differ.

use crate::error::{ErrorKind, Result, StoreError};
use crate::journal::{FRAME_BYTES_MAX, SEGMENT_MAGIC, list_segments};
use crate::record::{Entry, Lsn};
use crate::store::UserReader;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Name of the file that holds a data directory's identity.
pub const STORE_ID_FILE: &str = "store.id";

/// Reads `store.id`, creating it (random, fsynced with its directory) for a
/// new data directory. A replica names the primary it follows by it, so a
/// server that starts over on an empty directory is a different primary.
pub fn load_or_create_store_id(root: &Path) -> Result<String> {
    let path = root.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(id)
            } else {
                Err(StoreError::corrupt(format!(
                    "{} does not hold a store id (32 hex digits)",
                    path.display()
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = hex::encode(rand::random::<[u8; 16]>());
            let temp = root.join(format!("{STORE_ID_FILE}.new"));
            std::fs::write(&temp, format!("{id}\n"))
                .and_then(|()| File::open(&temp)?.sync_all())
                .and_then(|()| std::fs::rename(&temp, &path))
                .map_err(|e| StoreError::io("write store.id", e))?;
            crate::journal::sync_dir(root)?;
            Ok(id)
        }
        Err(e) => Err(StoreError::io("read store.id", e)),
    }
}

/// Reads journal entries in order from a position, across segments.
///
/// It reads the segment files directly (the writer appends frames before it
/// publishes a batch as durable, so every LSN up to `Store::durable_lsn` is in
/// a file) and stops at the first frame that is not complete yet.
pub struct JournalCursor {
    dir: PathBuf,
    /// First LSN of the open segment, and the file positioned at a frame.
    segment: Option<(Lsn, File)>,
    /// The LSN of the next entry to return.
    next: Lsn,
}

impl JournalCursor {
    /// A cursor whose first entry is `from_lsn` (at least 1). `NotFound` when
    /// the journal no longer reaches back that far.
    pub fn open(dir: &Path, from_lsn: Lsn) -> Result<Self> {
        let from_lsn = from_lsn.max(1);
        let segments = list_segments(dir)?;
        if let Some(first) = segments.first()
            && *first > from_lsn
        {
            return Err(StoreError::not_found(format!(
                "the journal starts at LSN {first}, after {from_lsn}"
            )));
        }
        let mut cursor = JournalCursor {
            dir: dir.to_path_buf(),
            segment: None,
            next: from_lsn,
        };
        if let Some(first) = segments.iter().rev().find(|f| **f <= from_lsn) {
            cursor.open_segment(*first)?;
            // Skip to `from_lsn` within the segment.
            while cursor.next_in_segment_lsn()?.is_some_and(|l| l < from_lsn) {}
        }
        Ok(cursor)
    }

    /// The LSN the next entry will have.
    pub fn position(&self) -> Lsn {
        self.next
    }

    fn open_segment(&mut self, first: Lsn) -> Result<()> {
        let path = self.dir.join(format!("{first:020}.log"));
        let mut file = File::open(&path)
            .map_err(|e| StoreError::io(&format!("open {}", path.display()), e))?;
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic)
            .map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
        if &magic != SEGMENT_MAGIC {
            return Err(StoreError::corrupt(format!(
                "{}: bad segment header",
                path.display()
            )));
        }
        self.segment = Some((first, file));
        Ok(())
    }

    /// Skips one entry during positioning; its LSN, or `None` at the end.
    fn next_in_segment_lsn(&mut self) -> Result<Option<Lsn>> {
        let Some((_, file)) = self.segment.as_mut() else {
            return Ok(None);
        };
        let start = file.stream_position()?;
        match read_frame(file)? {
            Some(entry) if entry.lsn < self.next => Ok(Some(entry.lsn)),
            Some(_) | None => {
                file.seek(SeekFrom::Start(start))?;
                Ok(None)
            }
        }
    }

    /// Up to `records_max` entries (and about `bytes_max` bytes of them), none
    /// past `upto`. Fewer (or none) when the journal has no more yet.
    pub fn read(&mut self, upto: Lsn, records_max: usize, bytes_max: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while self.next <= upto && out.len() < records_max && bytes < bytes_max {
            if self.segment.is_none() {
                match list_segments(&self.dir)?
                    .into_iter()
                    .rev()
                    .find(|f| *f <= self.next)
                {
                    Some(first) => self.open_segment(first)?,
                    None => break,
                }
            }
            let Some((first, file)) = self.segment.as_mut() else {
                break;
            };
            let first = *first;
            let start = file.stream_position()?;
            let before = start;
            match read_frame(file)? {
                Some(entry) => {
                    if entry.lsn != self.next {
                        return Err(StoreError::corrupt(format!(
                            "journal segment {first}: expected LSN {}, found {}",
                            self.next, entry.lsn
                        )));
                    }
                    bytes += (file.stream_position()? - before) as usize;
                    self.next += 1;
                    out.push(entry);
                }
                None => {
                    file.seek(SeekFrom::Start(start))?;
                    // The end of this segment: go on in the next one if the
                    // writer has started it, else wait for more.
                    let segments = list_segments(&self.dir)?;
                    if segments.contains(&self.next) {
                        self.open_segment(self.next)?;
                    } else {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One frame at the file's position; `None` when the frame is not all there
/// (the end, or an append in progress). A complete frame that fails its
/// checksum is damage: an error.
fn read_frame(file: &mut File) -> Result<Option<Entry>> {
    let mut header = [0u8; 8];
    if !read_full(file, &mut header)? {
        return Ok(None);
    }
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length == 0 && crc == 0 {
        return Ok(None);
    }
    if length > FRAME_BYTES_MAX {
        return Err(StoreError::corrupt("journal: impossible frame length"));
    }
    let mut payload = vec![0u8; length as usize];
    if !read_full(file, &mut payload)? {
        return Ok(None);
    }
    if crc32fast::hash(&payload) != crc {
        return Err(StoreError::corrupt("journal: frame checksum mismatch"));
    }
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(|e| StoreError::corrupt(format!("journal: undecodable record: {e}")))
}

/// Fills `buf`; `false` when the file ends first.
fn read_full(file: &mut File, buf: &mut [u8]) -> Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::io("read journal", e)),
        }
    }
    Ok(true)
}

/// One mailbox condensed: what must be equal on both servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxDigest {
    pub id: String,
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub messages: u64,
    /// SHA-256 over every message's UID, MODSEQ, flags and blob hash, in UID order.
    pub digest: String,
    /// Rows of this mailbox that fail their checksum here, or (when verified)
    /// whose content is missing or fails its hash: this side's copy does not
    /// verify, so a repair never copies it over the other's.
    pub damaged: u64,
}

/// A user condensed: the mailboxes, and one hash over the user's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDigest {
    pub user: String,
    /// SHA-256 over the password hash, quota, subscriptions, annotations and ACLs.
    pub settings: String,
    pub mailboxes: Vec<MailboxDigest>,
}

/// One message as the digest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
    pub blob: String,
    pub damaged: bool,
    /// The content is missing here or fails its hash (checked only when asked).
    #[serde(default)]
    pub lost: bool,
}

/// The per-message rows of a mailbox (by id), in UID order; with `verify`,
/// every content is read and checked against its hash.
pub fn mailbox_listing(
    reader: &UserReader,
    mailbox: &str,
    verify: bool,
) -> Result<Vec<MessageRow>> {
    let mut rows: Vec<MessageRow> = reader
        .messages(mailbox)?
        .into_iter()
        .map(|m| {
            let mut flags = m.flags;
            flags.sort();
            MessageRow {
                uid: m.uid,
                modseq: m.modseq,
                flags,
                blob: m.blob.to_hex(),
                damaged: m.damaged,
                lost: verify && !m.damaged && reader.blob(&m.blob).is_err(),
            }
        })
        .collect();
    rows.sort_by_key(|r| r.uid);
    Ok(rows)
}

/// Condenses a user's state; `password_hash` and `quota` come from the
/// server index (the caller has them).
pub fn user_digest(
    reader: &UserReader,
    password_hash: &str,
    quota: (Option<u64>, Option<u64>),
    verify: bool,
) -> Result<UserDigest> {
    let mut mailboxes = Vec::new();
    let mut settings = Sha256::new();
    settings.update(password_hash.as_bytes());
    settings.update(format!("\nquota {:?} {:?}\n", quota.0, quota.1).as_bytes());
    let mut subscriptions = reader.subscriptions()?;
    subscriptions.sort();
    for name in &subscriptions {
        settings.update(b"sub ");
        settings.update(name.as_bytes());
        settings.update(b"\n");
    }
    let mut infos = reader.mailboxes()?;
    infos.sort_by(|a, b| a.id.cmp(&b.id));
    for scope in std::iter::once(String::new()).chain(infos.iter().map(|m| m.id.clone())) {
        for (entry, value) in reader.metadata_below(&scope, "", false)? {
            settings.update(format!("meta {scope} {entry} {}\n", value.len()).as_bytes());
            settings.update(&value);
        }
    }
    for info in &infos {
        let mut entries = reader.acl(&info.id)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (identifier, rights) in entries {
            settings
                .update(format!("acl {} {identifier} {}\n", info.id, rights.to_imap()).as_bytes());
        }
    }
    for info in infos {
        let rows = mailbox_listing(reader, &info.id, verify)?;
        let mut hash = Sha256::new();
        let mut damaged = 0;
        for row in &rows {
            damaged += u64::from(row.damaged || row.lost);
            hash.update(
                format!(
                    "{} {} {} {}{}\n",
                    row.uid,
                    row.modseq,
                    row.blob,
                    row.flags.join(" "),
                    if row.damaged || row.lost {
                        " damaged"
                    } else {
                        ""
                    }
                )
                .as_bytes(),
            );
        }
        mailboxes.push(MailboxDigest {
            id: info.id,
            name: info.name,
            uid_validity: info.uid_validity,
            uid_next: info.uid_next,
            highest_modseq: info.highest_modseq,
            messages: rows.len() as u64,
            digest: hex::encode(hash.finalize()),
            damaged,
        });
    }
    Ok(UserDigest {
        user: reader.user().to_string(),
        settings: hex::encode(settings.finalize()),
        mailboxes,
    })
}

/// Whether an error means "this data is not here" rather than a failure.
pub fn is_missing(error: &StoreError) -> bool {
    error.kind == ErrorKind::NotFound
}
