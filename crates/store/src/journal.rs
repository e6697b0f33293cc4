//! The journal: segmented, append-only, checksummed files holding [`Entry`]s.
//!
//! Frame: `u32 length (LE) | u32 CRC-32 of payload (LE) | payload (JSON Entry)`.
//! Segment files are `journal/<first LSN, 20 digits>.log`, each starting with the
//! 8-byte magic [`SEGMENT_MAGIC`]. Only the writer thread appends; `sync` is the
//! commit point of every change in the store.
//!
//! A frame that is cut short or fails its checksum at the very end of the last
//! segment is a torn write of a batch that was never acknowledged: recovery cuts
//! it off. Damage anywhere else is reported with its position, never skipped.

use crate::error::{ErrorKind, Result, StoreError};
use crate::record::{Entry, Lsn};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: &[u8; 8] = b"PJNL\x00\x00\x00\x01";
/// A frame larger than this is damage, not data (records are small; blobs live in packs).
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// fsync a directory, so that a file created or renamed in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(&format!("fsync {}", dir.display()), e))
}

fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}.log"))
}

/// First LSNs of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<Lsn>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io("read journal dir", e))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(lsn) = stem.parse::<Lsn>()
        {
            out.push(lsn);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn encode_frame(entry: &Entry, out: &mut Vec<u8>) -> Result<()> {
    let payload = serde_json::to_vec(entry)
        .map_err(|e| StoreError::new(ErrorKind::Invalid, format!("encode record: {e}")))?;
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= FRAME_BYTES_MAX)
        .ok_or_else(|| StoreError::invalid("record too large"))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The result of reading one segment.
pub struct SegmentScan {
    pub entries: Vec<Entry>,
    /// Byte offset just past the last good frame.
    pub good_bytes: u64,
    /// Set when bytes after `good_bytes` did not form a valid frame.
    pub damage: Option<String>,
    /// The bad bytes reach the end of the file the way an interrupted append
    /// leaves them (a frame cut short, or the last frame failing its checksum,
    /// or only zeros): a torn tail, not damage in the middle.
    pub torn_tail: bool,
}

/// Reads every good frame of a segment, stopping at the first bad one.
pub fn scan_segment(path: &Path) -> Result<SegmentScan> {
    let data =
        fs::read(path).map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
    if data.len() < SEGMENT_MAGIC.len() || &data[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        // A header shorter than the magic is a segment whose creation was cut short.
        let torn = data.len() < SEGMENT_MAGIC.len() && SEGMENT_MAGIC.starts_with(&data);
        return Ok(SegmentScan {
            entries: Vec::new(),
            good_bytes: 0,
            damage: Some(format!("{}: bad segment header", path.display())),
            torn_tail: torn,
        });
    }
    let mut position = SEGMENT_MAGIC.len();
    let mut entries = Vec::new();
    let mut damage = None;
    let mut torn_tail = false;
    while position < data.len() {
        let rest = &data[position..];
        if rest.iter().all(|b| *b == 0) {
            damage = Some(format!("{}: zeros from byte {position}", path.display()));
            torn_tail = true;
            break;
        }
        let Some(header) = data.get(position..position + 8) else {
            damage = Some(format!(
                "{}: truncated frame header at byte {position}",
                path.display()
            ));
            torn_tail = true;
            break;
        };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = position + 8;
        let end = start.saturating_add(length as usize);
        if length > FRAME_BYTES_MAX {
            damage = Some(format!(
                "{}: impossible frame length at byte {position}",
                path.display()
            ));
            break;
        }
        let Some(payload) = data.get(start..end) else {
            damage = Some(format!(
                "{}: truncated frame at byte {position}",
                path.display()
            ));
            torn_tail = true;
            break;
        };
        if crc32fast::hash(payload) != crc {
            damage = Some(format!(
                "{}: checksum mismatch at byte {position}",
                path.display()
            ));
            torn_tail = end == data.len();
            break;
        }
        match serde_json::from_slice::<Entry>(payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                damage = Some(format!(
                    "{}: undecodable record at byte {position}: {e}",
                    path.display()
                ));
                break;
            }
        }
        position = end;
    }
    Ok(SegmentScan {
        entries,
        good_bytes: position as u64,
        damage,
        torn_tail,
    })
}

/// The append side of the journal, owned by the writer thread.
pub struct JournalWriter {
    dir: PathBuf,
    file: File,
    /// Bytes in the current segment (the offset the next frame goes to).
    segment_bytes: u64,
    segment_bytes_max: u64,
    /// LSN the next appended entry gets.
    next_lsn: Lsn,
    /// A new segment file was created since the last sync: the directory needs an fsync too.
    dir_dirty: bool,
}

impl JournalWriter {
    /// Opens the journal for appending after recovery found `next_lsn` and the
    /// good length of the last segment (which it has already truncated to).
    pub fn open(dir: &Path, next_lsn: Lsn, segment_bytes_max: u64) -> Result<Self> {
        let segments = list_segments(dir)?;
        let (file, segment_bytes, dir_dirty) = match segments.last() {
            Some(&first) => {
                let path = segment_path(dir, first);
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| StoreError::io(&format!("open {}", path.display()), e))?;
                let end = file.seek(SeekFrom::End(0))?;
                (file, end, false)
            }
            None => {
                let file = Self::create_segment(dir, next_lsn)?;
                (file, SEGMENT_MAGIC.len() as u64, true)
            }
        };
        Ok(JournalWriter {
            dir: dir.to_path_buf(),
            file,
            segment_bytes,
            segment_bytes_max,
            next_lsn,
            dir_dirty,
        })
    }

    pub(crate) fn create_segment(dir: &Path, first_lsn: Lsn) -> Result<File> {
        let path = segment_path(dir, first_lsn);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&format!("create {}", path.display()), e))?;
        file.write_all(SEGMENT_MAGIC)?;
        Ok(file)
    }

    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Appends a batch of already-encoded frames holding entries
    /// `first_lsn..first_lsn+count`. Not durable until [`sync`](Self::sync).
    /// On error the segment is cut back to where the batch began.
    pub fn append(&mut self, frames: &[u8], count: u64) -> Result<()> {
        if self.segment_bytes >= self.segment_bytes_max {
            self.file
                .sync_data()
                .map_err(|e| StoreError::io("journal fsync before rotation", e))?;
            self.file = Self::create_segment(&self.dir, self.next_lsn)?;
            self.segment_bytes = SEGMENT_MAGIC.len() as u64;
            self.dir_dirty = true;
        }
        if let Err(e) = self.file.write_all(frames) {
            // Best effort: leave no partial batch behind for the next one to follow.
            let _ = self.file.set_len(self.segment_bytes);
            let _ = self.file.seek(SeekFrom::Start(self.segment_bytes));
            return Err(StoreError::io("journal write", e));
        }
        self.segment_bytes += frames.len() as u64;
        self.next_lsn += count;
        Ok(())
    }

    /// Makes everything appended so far durable. This is the commit point.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("journal fsync", e))?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }
}

/// Reads the whole journal in order, for recovery and rebuilds. Cuts a torn tail
/// off the last segment (logging it); damage elsewhere is an error.
pub fn read_all(
    dir: &Path,
    from_lsn: Lsn,
    mut visit: impl FnMut(Entry) -> Result<()>,
) -> Result<Lsn> {
    let segments = list_segments(dir)?;
    let mut next_lsn: Lsn = 1;
    for (i, &first) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        // Skip segments that end before `from_lsn` (the next one starts at or before it).
        if let Some(&next_first) = segments.get(i + 1)
            && next_first <= from_lsn
        {
            next_lsn = next_first;
            continue;
        }
        let path = segment_path(dir, first);
        let scan = scan_segment(&path)?;
        if let Some(damage) = scan.damage {
            if is_last && scan.torn_tail {
                tracing::warn!(event = "journal_torn_tail", %damage, cut_at = scan.good_bytes, "cutting unacknowledged torn tail off the journal");
                let file = OpenOptions::new().write(true).open(&path)?;
                let keep = scan.good_bytes.max(SEGMENT_MAGIC.len() as u64);
                if scan.good_bytes == 0 {
                    // The header itself was torn: rewrite it.
                    file.set_len(0)?;
                    let mut f = file;
                    f.write_all(SEGMENT_MAGIC)?;
                    f.sync_all()?;
                } else {
                    file.set_len(keep)?;
                    file.sync_all()?;
                }
            } else {
                return Err(StoreError::corrupt(format!("journal damaged: {damage}")));
            }
        }
        for entry in scan.entries {
            if entry.lsn != next_lsn && !(next_lsn == 1 && entry.lsn == first) {
                return Err(StoreError::corrupt(format!(
                    "journal out of order in {}: expected LSN {next_lsn}, found {}",
                    path.display(),
                    entry.lsn
                )));
            }
            next_lsn = entry.lsn + 1;
            if entry.lsn >= from_lsn {
                visit(entry)?;
            }
        }
        if next_lsn < first {
            next_lsn = first;
        }
    }
    Ok(next_lsn)
}

/// Decodes a run of frames (a commit block's payload).
pub fn decode_frames(bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut position = 0usize;
    let mut entries = Vec::new();
    while position < bytes.len() {
        let header = bytes
            .get(position..position + 8)
            .ok_or_else(|| StoreError::corrupt("commit block: truncated frame header"))?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let payload = bytes
            .get(position + 8..position + 8 + length)
            .ok_or_else(|| StoreError::corrupt("commit block: truncated frame"))?;
        if crc32fast::hash(payload) != crc {
            return Err(StoreError::corrupt("commit block: checksum mismatch"));
        }
        entries.push(
            serde_json::from_slice(payload).map_err(|e| {
                StoreError::corrupt(format!("commit block: undecodable record: {e}"))
            })?,
        );
        position += 8 + length;
    }
    Ok(entries)
}

/// Brings the journal's tail up to date from the commit blocks in the packs.
///
/// A batch that wrote blobs is made durable by one fsync of the pack, which
/// holds the blobs and a copy of the batch's records; its journal append is
/// fsynced lazily. After a crash the journal may therefore miss (or hold torn
/// or partly written copies of) the records of the last such batches: they are
/// cut and re-appended from the packs here. Damage in the journal that no
/// commit block covers is real damage and stops the start.
pub fn restore_from_packs(dir: &Path, blobs_dir: &Path) -> Result<u64> {
    let segments = list_segments(dir)?;
    let Some(&last_first) = segments.last() else {
        // No journal yet (or its first segment was never made durable).
        let scan = crate::blobs::scan_commits(blobs_dir, 1, 1)?;
        if scan.blocks.is_empty() {
            cut_torn_pack(blobs_dir, scan.torn)?;
            return Ok(0);
        }
        let file = JournalWriter::create_segment(dir, 1)?;
        file.sync_all()?;
        sync_dir(dir)?;
        return restore_from_packs(dir, blobs_dir);
    };
    let path = segment_path(dir, last_first);
    let scan = scan_segment(&path)?;
    let next_lsn = scan.entries.last().map_or(last_first, |e| e.lsn + 1);
    let last_pack = scan
        .entries
        .iter()
        .filter_map(|e| match e.record {
            crate::record::Record::BlobStored { pack, .. } => Some(pack),
            _ => None,
        })
        .max();
    let highest_pack = crate::blobs::list_packs(blobs_dir)?
        .last()
        .map_or(1, |(n, _)| *n);
    // The unsynced tail lies in the pack of the last blob the journal knows, or in
    // one written after it (the journal is fsynced at least every few hundred ms).
    let from_pack = last_pack
        .unwrap_or(highest_pack)
        .min(highest_pack.saturating_sub(1))
        .max(1);
    let packs = crate::blobs::scan_commits(blobs_dir, from_pack, next_lsn)?;
    let mut missing: Vec<Entry> = Vec::new();
    let mut expected = next_lsn;
    for block in &packs.blocks {
        for entry in decode_frames(&block.frames)? {
            if entry.lsn == expected {
                expected += 1;
                missing.push(entry);
            } else if entry.lsn > expected {
                return Err(StoreError::corrupt(format!(
                    "journal ends before LSN {expected} but the packs resume at LSN {}",
                    entry.lsn
                )));
            }
        }
    }
    if let Some(damage) = &scan.damage {
        // Cutting is safe only if every record that may lie beyond the damage is
        // one the packs hold a copy of.
        let covered_up_to = expected;
        let beyond = highest_lsn_after(&std::fs::read(&path)?, scan.good_bytes as usize);
        let safe = match beyond {
            Some(lsn) => lsn < covered_up_to,
            None => scan.torn_tail || !missing.is_empty(),
        };
        if !safe {
            return Err(StoreError::corrupt(format!("journal damaged: {damage}")));
        }
        tracing::warn!(event = "journal_tail_cut", %damage, cut_at = scan.good_bytes, "cutting the unsynced journal tail; the packs hold its records");
        let mut file = OpenOptions::new().write(true).open(&path)?;
        if scan.good_bytes == 0 {
            file.set_len(0)?;
            file.write_all(SEGMENT_MAGIC)?;
        } else {
            file.set_len(scan.good_bytes)?;
        }
        file.sync_all()?;
    }
    if !missing.is_empty() {
        let mut frames = Vec::new();
        for entry in &missing {
            encode_frame(entry, &mut frames)?;
        }
        let mut file = OpenOptions::new().append(true).open(&path)?;
        file.write_all(&frames)?;
        file.sync_all()?;
        tracing::info!(
            event = "journal_restored_from_packs",
            records = missing.len(),
            from_lsn = next_lsn
        );
    }
    cut_torn_pack(blobs_dir, packs.torn)?;
    Ok(missing.len() as u64)
}

/// Cuts an entry that a crash left half written off the end of the last pack.
fn cut_torn_pack(blobs_dir: &Path, torn: Option<(u32, u64)>) -> Result<()> {
    if let Some((pack, length)) = torn {
        let path = crate::blobs::pack_path(blobs_dir, pack);
        tracing::warn!(
            event = "pack_torn_tail",
            pack,
            cut_at = length,
            "cutting an unacknowledged partial entry off the pack"
        );
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(length)?;
        file.sync_all()?;
    }
    Ok(())
}

/// The highest LSN of any valid frame found anywhere after `from` (searching
/// byte by byte, since the frame boundaries after damage are unknown).
fn highest_lsn_after(data: &[u8], from: usize) -> Option<Lsn> {
    let mut highest = None;
    let mut position = from.saturating_add(1);
    while position + 8 <= data.len() {
        let length = u32::from_le_bytes([
            data[position],
            data[position + 1],
            data[position + 2],
            data[position + 3],
        ]) as usize;
        let crc = u32::from_le_bytes([
            data[position + 4],
            data[position + 5],
            data[position + 6],
            data[position + 7],
        ]);
        if length > 0 && position + 8 + length <= data.len() {
            let payload = &data[position + 8..position + 8 + length];
            if crc32fast::hash(payload) == crc
                && let Ok(entry) = serde_json::from_slice::<Entry>(payload)
            {
                highest = Some(highest.map_or(entry.lsn, |h: Lsn| h.max(entry.lsn)));
                position += 8 + length;
                continue;
            }
        }
        position += 1;
    }
    highest
}

/// What [`scan_tolerant`] found in one segment.
pub struct TolerantScan {
    pub entries: Vec<Entry>,
    /// Each damaged stretch, with its byte position.
    pub damage: Vec<String>,
}

/// The frame at `position`, if a whole good one starts there: its entry and end.
fn frame_at(data: &[u8], position: usize) -> Option<(Entry, usize)> {
    let header = data.get(position..position.checked_add(8)?)?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length == 0 || length > FRAME_BYTES_MAX {
        return None;
    }
    let end = position + 8 + length as usize;
    let payload = data.get(position + 8..end)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    serde_json::from_slice::<Entry>(payload)
        .ok()
        .map(|entry| (entry, end))
}

/// Reads a segment without changing it, for reconstruct: damage is reported
/// with its byte position and the reader resyncs on the next good frame, so one
/// bad frame hides only itself. In the segment being written (`is_last`), bad
/// bytes with no good frame after them are the append in progress (or a torn
/// tail recovery will cut), not damage.
pub fn scan_tolerant(data: &[u8], is_last: bool) -> TolerantScan {
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let mut position = SEGMENT_MAGIC.len();
    let header_ok =
        data.len() >= SEGMENT_MAGIC.len() && &data[..SEGMENT_MAGIC.len()] == SEGMENT_MAGIC;
    // A header still being written (the segment just created) is not damage.
    let header_in_progress = is_last && data.len() < SEGMENT_MAGIC.len();
    if !(header_ok || header_in_progress) {
        damage.push("bad segment header".to_string());
    }
    while position < data.len() {
        if let Some((entry, end)) = frame_at(data, position) {
            entries.push(entry);
            position = end;
            continue;
        }
        let resync = (position + 1..data.len()).find(|p| frame_at(data, *p).is_some());
        match resync {
            Some(next) => {
                damage.push(format!("bytes {position} to {next} are not a good frame"));
                position = next;
            }
            None => {
                if !is_last {
                    damage.push(format!(
                        "bytes {position} to {} (the end) are not a good frame",
                        data.len()
                    ));
                }
                break;
            }
        }
    }
    TolerantScan { entries, damage }
}

/// Rewrites a finished (not the last) segment whose frames are damaged from
/// its good frames and the copies in the packs' commit blocks: written beside
/// it, fsynced, renamed over it, directory fsynced. Fails, changing nothing,
/// when some record of its LSN range has no copy. Returns the records written.
pub fn restore_segment(dir: &Path, blobs_dir: &Path, path: &Path) -> Result<usize> {
    let data =
        fs::read(path).map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
    let scan = scan_tolerant(&data, false);
    let mut all: std::collections::BTreeMap<Lsn, Entry> =
        scan.entries.into_iter().map(|e| (e.lsn, e)).collect();
    let first = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<Lsn>().ok())
        .ok_or_else(|| StoreError::corrupt(format!("{}: not a segment name", path.display())))?;
    // The segment ends where the next one starts.
    let next = list_segments(dir)?.into_iter().find(|l| *l > first);
    let Some(next) = next else {
        return Err(StoreError::corrupt(format!(
            "{}: the segment being written is not rewritten",
            path.display()
        )));
    };
    let blocks = crate::blobs::scan_commits(blobs_dir, 1, first)?;
    for block in &blocks.blocks {
        if let Ok(entries) = decode_frames(&block.frames) {
            for entry in entries {
                if (first..next).contains(&entry.lsn) {
                    all.entry(entry.lsn).or_insert(entry);
                }
            }
        }
    }
    let missing: Vec<Lsn> = (first..next)
        .filter(|l| !all.contains_key(l))
        .take(10)
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::corrupt(format!(
            "journal damaged: {}: {}; no copy of LSN {missing:?}{}",
            path.display(),
            scan.damage.join(", "),
            if missing.len() == 10 { " ..." } else { "" }
        )));
    }
    let mut bytes = SEGMENT_MAGIC.to_vec();
    for entry in all.values() {
        encode_frame(entry, &mut bytes)?;
    }
    let tmp = path.with_extension("log.rewrite");
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("create segment copy", e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("write segment copy", e))?;
    fs::rename(&tmp, path).map_err(|e| StoreError::io("rename segment copy", e))?;
    sync_dir(dir)?;
    tracing::warn!(event = "journal_segment_restored", path = %path.display(), damage = %scan.damage.join(", "), records = all.len(), "damaged journal segment rewritten from the packs' copies");
    Ok(all.len())
}

/// Restores every damaged finished segment it can (see [`restore_segment`]);
/// the first that cannot be is the error, with its file and positions.
pub fn restore_damaged_segments(dir: &Path, blobs_dir: &Path) -> Result<usize> {
    let segments = list_segments(dir)?;
    let mut restored = 0;
    for &first in segments.iter().take(segments.len().saturating_sub(1)) {
        let path = segment_path(dir, first);
        let data =
            fs::read(&path).map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
        if !scan_tolerant(&data, false).damage.is_empty() {
            restore_segment(dir, blobs_dir, &path)?;
            restored += 1;
        }
    }
    Ok(restored)
}

/// Visits the records with LSN in `from..=to`, read-only and tolerant (see
/// [`scan_tolerant`]); damage here was reported by the caller's first read.
pub fn read_range_tolerant(
    dir: &Path,
    from: Lsn,
    to: Lsn,
    mut visit: impl FnMut(Entry),
) -> Result<()> {
    let segments = list_segments(dir)?;
    for (i, &first) in segments.iter().enumerate() {
        if first > to {
            break;
        }
        if segments.get(i + 1).is_some_and(|next| *next <= from) {
            continue;
        }
        let path = segment_path(dir, first);
        let data =
            fs::read(&path).map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
        for entry in scan_tolerant(&data, i + 1 == segments.len()).entries {
            if (from..=to).contains(&entry.lsn) {
                visit(entry);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn segment(count: u64) -> (Vec<u8>, Vec<usize>) {
        let mut data = SEGMENT_MAGIC.to_vec();
        let mut starts = Vec::new();
        for lsn in 1..=count {
            starts.push(data.len());
            let entry = Entry {
                lsn,
                time: 0,
                record: Record::Subscribed {
                    user: "a".into(),
                    name: format!("box{lsn}"),
                    subscribed: true,
                },
            };
            encode_frame(&entry, &mut data).expect("encode");
        }
        (data, starts)
    }

    fn lsns(scan: &TolerantScan) -> Vec<Lsn> {
        scan.entries.iter().map(|e| e.lsn).collect()
    }

    #[test]
    fn one_bad_frame_hides_only_itself() {
        let (mut data, starts) = segment(3);
        data[starts[1] + 12] ^= 0x55;
        let scan = scan_tolerant(&data, false);
        assert_eq!(lsns(&scan), vec![1, 3]);
        assert_eq!(scan.damage.len(), 1);
        assert!(scan.damage[0].contains(&format!("bytes {}", starts[1])));
    }

    #[test]
    fn a_damaged_length_is_resynced_past() {
        let (mut data, starts) = segment(4);
        data[starts[1]..starts[1] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let scan = scan_tolerant(&data, true);
        assert_eq!(lsns(&scan), vec![1, 3, 4]);
        assert_eq!(
            scan.damage.len(),
            1,
            "good frames follow: damage, even in the last segment"
        );
    }

    #[test]
    fn an_append_in_progress_is_not_damage() {
        let (data, starts) = segment(3);
        let cut = &data[..starts[2] + 5];
        let last = scan_tolerant(cut, true);
        assert_eq!(lsns(&last), vec![1, 2]);
        assert!(last.damage.is_empty());
        let finished = scan_tolerant(cut, false);
        assert_eq!(
            finished.damage.len(),
            1,
            "a finished segment cut short is damage"
        );
        assert!(scan_tolerant(b"PJN", true).damage.is_empty());
        assert_eq!(scan_tolerant(b"XXXXXXXX", false).damage.len(), 1);
    }
}
