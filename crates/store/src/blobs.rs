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
        let mut last = 0u32;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                last = last.max(n);
            }
        }
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

    /// Cuts a pack back to `length` bytes: recovery uses it to drop blobs written
    /// by a batch whose journal records never became durable.
    pub fn truncate_to(&mut self, pack: u32, length: u64) -> Result<()> {
        if pack == self.pack && length < self.bytes {
            self.file.set_len(length)?;
            self.file.seek(SeekFrom::Start(length))?;
            self.bytes = length;
            self.file.sync_data()?;
        }
        Ok(())
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
        let mut header = Vec::with_capacity(ENTRY_HEADER_BYTES as usize);
        header.extend_from_slice(ENTRY_MAGIC);
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(&hash.0);
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
        Ok(BlobLocation {
            pack: self.pack,
            offset: start + ENTRY_HEADER_BYTES,
            length: data.len() as u64,
        })
    }

    /// Starts an fsync of what was appended so far on another thread, so that it
    /// overlaps with the writer's other work. The caller joins it before the
    /// journal fsync: blobs are durable before the records that name them.
    pub fn start_sync(&mut self) -> Result<Option<std::thread::JoinHandle<std::io::Result<()>>>> {
        if !self.dirty {
            return Ok(None);
        }
        let file = self.file.try_clone()?;
        self.dirty = false;
        let handle = std::thread::Builder::new()
            .name("pack-fsync".into())
            .spawn(move || file.sync_data())
            .map_err(|e| StoreError::io("start pack fsync", e))?;
        Ok(Some(handle))
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
