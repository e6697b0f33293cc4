//! Message content, content-addressed (SHA-256), in append-only pack files.
//!
//! Why packs rather than a file per message: a file per blob costs an fsync of
//! the file and of its directory per delivery, which would defeat group commit.
//! Appending many blobs to one pack costs one fsync per batch.
//!
//! Pack `blobs/pack-<n, 10 digits>` is a sequence of entries
//! `magic "PBLB" | u64 length (LE) | 32-byte SHA-256 | data`. Where each blob lives
//! is recorded in the journal ([`Record::BlobStored`](crate::record::Record)) and
//! indexed in `blobs.sqlite` (derived). Identical content is stored once, across
//! users: the index is consulted before a blob is written. Reference counts in the
//! index make unreferenced blobs visible to garbage collection.

use crate::error::{Result, StoreError};
use crate::journal::sync_dir;
use crate::types::BlobHash;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ENTRY_MAGIC: &[u8; 4] = b"PBLB";
/// A commit block: the journal frames of a batch that wrote blobs, so that one
/// fsync of the pack makes blobs and records durable together.
pub const COMMIT_MAGIC: &[u8; 4] = b"PREC";
pub const ENTRY_HEADER_BYTES: u64 = 4 + 8 + 32;

/// Where a blob's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: u32,
    /// Offset of the data (after the entry header).
    pub offset: u64,
    pub length: u64,
}

pub fn pack_path(dir: &Path, pack: u32) -> PathBuf {
    dir.join(format!("pack-{pack:010}"))
}

/// Numbers and sizes of the pack files in `dir`, ascending.
pub fn list_packs(dir: &Path) -> Result<Vec<(u32, u64)>> {
    let mut packs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let number = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("pack-"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(number) = number {
            packs.push((number, entry.metadata()?.len()));
        }
    }
    packs.sort_unstable();
    Ok(packs)
}

/// Reads a blob and checks it against its hash: a blob that does not match is
/// never returned as data.
pub fn read_blob(dir: &Path, hash: &BlobHash, location: BlobLocation) -> Result<Vec<u8>> {
    let path = pack_path(dir, location.pack);
    let file =
        File::open(&path).map_err(|e| StoreError::io(&format!("open {}", path.display()), e))?;
    let length =
        usize::try_from(location.length).map_err(|_| StoreError::corrupt("blob length"))?;
    let mut data = vec![0u8; length];
    file.read_exact_at(&mut data, location.offset)
        .map_err(|e| StoreError::corrupt(format!("blob {} unreadable: {e}", hash.to_hex())))?;
    if BlobHash::of(&data) != *hash {
        return Err(StoreError::corrupt(format!(
            "blob {} does not match its hash",
            hash.to_hex()
        )));
    }
    Ok(data)
}

/// The append side, owned by the writer thread.
pub struct PackWriter {
    dir: PathBuf,
    pack: u32,
    file: File,
    bytes: u64,
    pack_bytes_max: u64,
    /// Written since the last sync.
    dirty: bool,
    dir_dirty: bool,
}

impl PackWriter {
    pub fn open(dir: &Path, pack_bytes_max: u64) -> Result<Self> {
        let last = list_packs(dir)?.last().map_or(0, |(n, _)| *n);
        let pack = last.max(1);
        let path = pack_path(dir, pack);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&format!("open {}", path.display()), e))?;
        let bytes = file.seek(SeekFrom::End(0))?;
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            pack,
            file,
            bytes,
            pack_bytes_max,
            dirty: false,
            dir_dirty: last == 0,
        })
    }

    pub fn position(&self) -> (u32, u64) {
        (self.pack, self.bytes)
    }

    /// Appends one blob; durable after [`sync`](Self::sync).
    pub fn append(&mut self, hash: &BlobHash, data: &[u8]) -> Result<BlobLocation> {
        if self.bytes > 0 && self.bytes + data.len() as u64 > self.pack_bytes_max {
            self.sync()?;
            self.pack += 1;
            let path = pack_path(&self.dir, self.pack);
            self.file = OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(&format!("create {}", path.display()), e))?;
            self.bytes = 0;
            self.dir_dirty = true;
        }
        let start = self.bytes;
        self.write_entry(ENTRY_MAGIC, &hash.0, data)?;
        Ok(BlobLocation {
            pack: self.pack,
            offset: start + ENTRY_HEADER_BYTES,
            length: data.len() as u64,
        })
    }

    /// Whether blobs were appended since the last sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Appends a commit block holding journal frames `first_lsn..first_lsn+count`.
    /// Durable after [`sync`](Self::sync); recovery copies it into the journal
    /// if the journal lost it (the journal itself is fsynced lazily after such batches).
    pub fn append_commit(&mut self, first_lsn: u64, count: u64, frames: &[u8]) -> Result<()> {
        let mut field = [0u8; 32];
        field[..8].copy_from_slice(&first_lsn.to_le_bytes());
        field[8..16].copy_from_slice(&count.to_le_bytes());
        self.write_entry(COMMIT_MAGIC, &field, frames)
    }

    /// Writes one entry (`magic | u64 length | 32-byte field | data`) at the end
    /// of the current pack; on failure the pack is cut back to where it was.
    fn write_entry(&mut self, magic: &[u8; 4], field: &[u8; 32], data: &[u8]) -> Result<()> {
        let mut header = Vec::with_capacity(ENTRY_HEADER_BYTES as usize);
        header.extend_from_slice(magic);
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(field);
        let start = self.bytes;
        let result = self
            .file
            .write_all(&header)
            .and_then(|()| self.file.write_all(data));
        if let Err(e) = result {
            let _ = self.file.set_len(start);
            let _ = self.file.seek(SeekFrom::Start(start));
            return Err(StoreError::io("pack write", e));
        }
        self.bytes += ENTRY_HEADER_BYTES + data.len() as u64;
        self.dirty = true;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| StoreError::io("pack fsync", e))?;
            self.dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }
}

/// A commit block found in a pack.
pub struct CommitBlock {
    pub first_lsn: u64,
    pub count: u64,
    pub frames: Vec<u8>,
}

/// What [`scan_commits`] found.
pub struct CommitScan {
    /// Commit blocks holding LSNs at or after the requested one, in pack order.
    pub blocks: Vec<CommitBlock>,
    /// The last pack ends with an entry cut short (an append interrupted by a
    /// crash, never acknowledged): its pack number and the length to cut it to.
    pub torn: Option<(u32, u64)>,
}

/// Reads the commit blocks of packs numbered `from_pack` and later that hold
/// LSNs at or after `from_lsn`. Blob entries are skipped by their headers.
pub fn scan_commits(dir: &Path, from_pack: u32, from_lsn: u64) -> Result<CommitScan> {
    let packs: Vec<u32> = list_packs(dir)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| *n >= from_pack)
        .collect();
    let mut blocks = Vec::new();
    let mut torn = None;
    for (i, &pack) in packs.iter().enumerate() {
        let path = pack_path(dir, pack);
        let file = File::open(&path)
            .map_err(|e| StoreError::io(&format!("open {}", path.display()), e))?;
        let length = file.metadata()?.len();
        let mut position = 0u64;
        while position < length {
            let mut header = [0u8; ENTRY_HEADER_BYTES as usize];
            let complete_header = position + ENTRY_HEADER_BYTES <= length
                && file.read_exact_at(&mut header, position).is_ok();
            let data_bytes = u64::from_le_bytes(header[4..12].try_into().unwrap_or([0; 8]));
            let end = position
                .saturating_add(ENTRY_HEADER_BYTES)
                .saturating_add(data_bytes);
            if !complete_header || end > length {
                if i + 1 == packs.len() {
                    torn = Some((pack, position));
                }
                break;
            }
            if &header[..4] == COMMIT_MAGIC {
                let first_lsn = u64::from_le_bytes(header[12..20].try_into().unwrap_or([0; 8]));
                let count = u64::from_le_bytes(header[20..28].try_into().unwrap_or([0; 8]));
                if first_lsn + count > from_lsn {
                    let mut frames = vec![0u8; data_bytes as usize];
                    file.read_exact_at(&mut frames, position + ENTRY_HEADER_BYTES)?;
                    blocks.push(CommitBlock {
                        first_lsn,
                        count,
                        frames,
                    });
                }
            } else if &header[..4] != ENTRY_MAGIC {
                // Not an entry boundary: damage. Stop reading this pack; never cut it.
                tracing::error!(
                    event = "pack_damaged",
                    pack,
                    position,
                    "unreadable entry header; commit blocks after it are not recovered from this pack"
                );
                break;
            }
            position = end;
        }
    }
    Ok(CommitScan { blocks, torn })
}
