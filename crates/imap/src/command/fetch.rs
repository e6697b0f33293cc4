//! FETCH and UID FETCH: every data item of RFC 9051, BINARY (RFC 3516),
//! CHANGEDSINCE / MODSEQ (RFC 7162), EMAILID / THREADID (RFC 8474),
//! SAVEDATE (RFC 8514), PREVIEW (RFC 8970).
//!
//! ENVELOPE and BODYSTRUCTURE come from the cache built at delivery; only
//! body sections read the blob, which the store verifies against its hash
//! before a single byte of it is written here (a literal cannot be taken back).

use crate::respond::Done;
use crate::sequence;
use crate::session::{End, Session};
use imap_proto::encode;
use imap_proto::{FetchAttr, FetchModifiers, Partial, Section, SectionText, Sequence};
use store::{FlagMode, Intent, MailboxRef, MessageMeta, Outcome};

/// Byte that stands for NUL in BODY[] literals, which may not carry NUL
/// (RFC 9051 4.3). 0x80 is what Dovecot substitutes too; BINARY returns NUL as is.
pub const NUL_SUBSTITUTE: u8 = 0x80;

fn needs_blob(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { .. }
            | FetchAttr::Binary { .. }
            | FetchAttr::BinarySize { .. }
    )
}

fn needs_summary(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Envelope
            | FetchAttr::Body
            | FetchAttr::BodyStructure
            | FetchAttr::Preview { .. }
    )
}

fn sets_seen(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
    )
}

pub(crate) async fn fetch(
    session: &mut Session,
    uid: bool,
    set: &Sequence,
    attrs: &[FetchAttr],
    modifiers: &FetchModifiers,
) -> Result<Done, End> {
    session.sync(uid).await?;
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    if !uid && sequence::out_of_range(set, selected.uids.len()) {
        return Ok(Done::bad("message sequence number out of range"));
    }
    if modifiers.vanished && !uid {
        return Ok(Done::bad("VANISHED needs UID FETCH"));
    }
    if modifiers.vanished && !session.qresync {
        return Ok(Done::bad("VANISHED needs ENABLE QRESYNC first"));
    }
    if modifiers.changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
        session.condstore = true;
    }
    let positions = sequence::resolve(set, uid, &selected.uids, session.saved.as_deref());
    let mailbox = selected.id.clone();
    let read_only = selected.read_only;
    let wanted: Vec<(u32, u32)> = positions
        .iter()
        .filter_map(|i| selected.uids.get(*i).map(|u| (*i as u32 + 1, *u)))
        .collect();
    let Ok(reader) = session.selected_reader() else {
        return Ok(Done::bad("not authenticated"));
    };
    // Few messages: looked up by UID; many: one scan of the mailbox.
    let metas: Vec<(u32, MessageMeta)> = if wanted.len() <= 64 {
        let uids: Vec<u32> = wanted.iter().map(|(_, u)| *u).collect();
        let found = match reader.messages_by_uid(&mailbox, &uids) {
            Ok(found) => found,
            Err(e) => return Ok(Done::from_store(&e)),
        };
        let by_uid: std::collections::HashMap<u32, MessageMeta> =
            found.into_iter().map(|m| (m.uid, m)).collect();
        wanted
            .iter()
            .filter_map(|(seq, u)| by_uid.get(u).map(|m| (*seq, m.clone())))
            .collect()
    } else {
        // Only the UID range asked for: a window of a large mailbox is a
        // range scan, not a scan of the mailbox.
        let first = wanted.iter().map(|(_, u)| *u).min().unwrap_or(0);
        let last = wanted.iter().map(|(_, u)| *u).max().unwrap_or(0);
        let all =
            match tokio::task::block_in_place(|| reader.messages_between(&mailbox, first, last)) {
                Ok(a) => a,
                Err(e) => return Ok(Done::from_store(&e)),
            };
        let mut by_uid = all.into_iter().peekable();
        let mut out = Vec::new();
        for (seq, u) in &wanted {
            while by_uid.peek().is_some_and(|m| m.uid < *u) {
                by_uid.next();
            }
            if let Some(m) = by_uid.peek().filter(|m| m.uid == *u) {
                out.push((*seq, m.clone()));
            }
        }
        out
    };
    let metas: Vec<(u32, MessageMeta)> = match modifiers.changed_since {
        Some(since) => metas
            .into_iter()
            .filter(|(_, m)| m.modseq > since)
            .collect(),
        None => metas,
    };
    // RFC 9394: only those positions of what the FETCH would return.
    let metas: Vec<(u32, MessageMeta)> = match modifiers.partial {
        Some(range) => {
            let picked = range.indexes(metas.len());
            metas
                .into_iter()
                .skip(picked.start)
                .take(picked.len())
                .collect()
        }
        None => metas,
    };
    // Taken before anything is answered or changed (\Seen), so a refused
    // FETCH has no effect.
    let blob_needed = attrs.iter().any(needs_blob);
    let heavy = blob_needed && reads_many_bodies(&metas);
    let _turn = if heavy {
        match session.heavy_turn().await {
            Ok(turn) => turn,
            Err(done) => return Ok(done),
        }
    } else {
        None
    };
    let Ok(reader) = session.selected_reader() else {
        return Ok(Done::bad("not authenticated"));
    };
    // UID FETCH ... (CHANGEDSINCE n VANISHED), RFC 7162 3.2.6: the UIDs of the
    // set expunged since n, before the FETCH responses.
    if let (true, Some(since)) = (modifiers.vanished, modifiers.changed_since) {
        let (expunged, uid_next) = match reader.changes(&mailbox, since) {
            Ok(changes) => (changes.expunged, changes.mailbox.map_or(0, |m| m.uid_next)),
            Err(e) => return Ok(Done::from_store(&e)),
        };
        // `*`: the highest UID the mailbox has given out, expunged or not.
        let star = highest_uid(session).max(uid_next.saturating_sub(1));
        let in_set: Vec<u32> = expunged
            .into_iter()
            .filter(|u| match set {
                Sequence::Set(ranges) => sequence::uid_in(ranges, *u, star),
                Sequence::Saved => session.saved.as_deref().is_some_and(|s| s.contains(u)),
            })
            .collect();
        if !in_set.is_empty() {
            session.out.extend_from_slice(
                format!("* VANISHED (EARLIER) {}\r\n", sequence::format_set(&in_set)).as_bytes(),
            );
        }
    }
    let mut metas = metas;
    // Implicit \Seen first, so the FLAGS we report are the flags after it.
    let mut seen_changed = Vec::new();
    let may_set_seen = session
        .selected
        .as_ref()
        .is_some_and(|s| s.rights.contains(store::Rights::SEEN));
    if !read_only && may_set_seen && attrs.iter().any(sets_seen) {
        let unseen: Vec<u32> = metas
            .iter()
            .filter(|(_, m)| !m.flags.iter().any(|f| f == "\\Seen"))
            .map(|(_, m)| m.uid)
            .collect();
        if !unseen.is_empty() {
            let intent = Intent::StoreFlags {
                user: session.selected_owner(),
                mailbox: MailboxRef::Id(mailbox.clone()),
                uids: unseen,
                mode: FlagMode::Add,
                flags: vec!["\\Seen".into()],
                unchanged_since: None,
            };
            let intent = session.acting_on_selected(intent);
            if let Ok(Outcome::Flags {
                messages, modseq, ..
            }) = session.ctx.store.submit_one(intent).await
            {
                // Reported in this FETCH; the next sync need not repeat it unless
                // another session changed the mailbox in between.
                if let (Some(new), Some(selected)) = (modseq, session.selected.as_mut())
                    && new == selected.modseq + 1
                {
                    selected.modseq = new;
                }
                for (u, flags, modseq) in messages {
                    if let Some((_, m)) = metas.iter_mut().find(|(_, m)| m.uid == u) {
                        m.flags = flags;
                        m.modseq = modseq;
                        seen_changed.push(u);
                    }
                }
            }
        }
    }
    let mut attrs = attrs.to_vec();
    if uid && !attrs.contains(&FetchAttr::Uid) {
        attrs.insert(0, FetchAttr::Uid);
    }
    if !seen_changed.is_empty() && !attrs.contains(&FetchAttr::Flags) {
        attrs.push(FetchAttr::Flags);
    }
    if modifiers.changed_since.is_some() && !attrs.contains(&FetchAttr::ModSeq) {
        attrs.push(FetchAttr::ModSeq);
    }
    let summary_needed = attrs.iter().any(needs_summary);
    let utf8 = session.utf8_quoted();
    // Reading and hashing bodies and decoding summaries is disk and CPU work:
    // beyond a few messages it runs off the async worker (block_in_place), in
    // chunks of one output flush, so other sessions' commands keep being served.
    let offload = heavy || ((blob_needed || summary_needed) && metas.len() > OFFLOAD_MESSAGES_MIN);
    let flush_bytes = session.ctx.config.output_flush_bytes;
    // UID, FLAGS and MODSEQ are all a damaged row may still answer: its
    // checksum covers the rest (size, dates, blob, ids).
    let row_fields_needed = attrs
        .iter()
        .any(|a| !matches!(a, FetchAttr::Uid | FetchAttr::Flags | FetchAttr::ModSeq));
    let wanted = Wanted {
        attrs: &attrs,
        row_fields: row_fields_needed,
        blob: blob_needed,
        summary: summary_needed,
        utf8,
    };
    let mut failures = 0usize;
    let mut next = 0usize;
    // Summaries of the next messages, read a block at a time (one index
    // scan, not one lookup per message); front: metas[next].
    let mut prefetched: std::collections::VecDeque<store::Result<mime::Summary>> =
        std::collections::VecDeque::new();
    while next < metas.len() {
        // A block, so nothing borrowed from the reader (not Sync) is held
        // across the flush's await.
        {
            let shared = session.selected.as_ref().is_some_and(|s| s.owner.is_some());
            let reader = if shared {
                session.shared_reader.as_ref()
            } else {
                session.reader.as_ref()
            };
            let Some(reader) = reader else {
                break;
            };
            let out = &mut session.out;
            let mut render_chunk = || {
                // At least one message per chunk, so the loop always advances.
                while let Some((seq, meta)) = metas.get(next) {
                    if wanted.summary && prefetched.is_empty() {
                        let block: Vec<&MessageMeta> = metas[next..]
                            .iter()
                            .take(SUMMARY_BLOCK)
                            .map(|(_, m)| m)
                            .collect();
                        prefetched = reader.summaries(&mailbox, &block).into();
                    }
                    next += 1;
                    let summary = prefetched.pop_front();
                    if !render(reader, &mailbox, *seq, meta, &wanted, summary, out) {
                        failures += 1;
                    }
                    if out.len() >= flush_bytes {
                        break;
                    }
                }
            };
            if offload {
                tokio::task::block_in_place(render_chunk);
            } else {
                render_chunk();
            }
        }
        session.maybe_flush().await?;
    }
    if failures > 0 {
        return Ok(Done::no_code(
            "UNAVAILABLE",
            format!("{failures} message(s) could not be read and were not served; the rest were"),
        ));
    }
    Ok(Done::ok("FETCH completed"))
}

/// A FETCH that reads the bodies of more messages than this is heavy (see
/// [`crate::user_limits`]).
const HEAVY_FETCH_MESSAGES_MIN: usize = 16;
/// ... and so is one that reads more bytes of bodies than this.
const HEAVY_FETCH_BYTES_MIN: u64 = 16 * 1024 * 1024;
/// Summaries read from the index in one scan while rendering.
const SUMMARY_BLOCK: usize = 256;
/// A FETCH that reads bodies or summaries of more messages than this renders
/// them off the async worker.
const OFFLOAD_MESSAGES_MIN: usize = 8;

/// Whether reading the bodies of `metas` makes a FETCH heavy.
fn reads_many_bodies(metas: &[(u32, MessageMeta)]) -> bool {
    let bytes: u64 = metas.iter().map(|(_, m)| m.size).sum();
    metas.len() > HEAVY_FETCH_MESSAGES_MIN || bytes > HEAVY_FETCH_BYTES_MIN
}

/// What one FETCH asks of every message.
struct Wanted<'a> {
    attrs: &'a [FetchAttr],
    /// Items other than UID, FLAGS and MODSEQ, which a damaged row cannot answer.
    row_fields: bool,
    blob: bool,
    summary: bool,
    utf8: bool,
}

/// Writes one message's FETCH response to `out`. False when its index row
/// failed its checksum and more than UID, FLAGS and MODSEQ was asked, or its
/// blob or summary could not be read: the failure is logged and nothing is
/// written for it (a literal cannot be taken back, so nothing is started).
fn render(
    reader: &store::UserReader,
    mailbox: &str,
    seq: u32,
    meta: &MessageMeta,
    wanted: &Wanted<'_>,
    summary: Option<store::Result<mime::Summary>>,
    out: &mut Vec<u8>,
) -> bool {
    if meta.damaged && wanted.row_fields {
        tracing::error!(event = "row_unavailable", user = %reader.user(), mailbox = %mailbox, uid = meta.uid, "index row failed its checksum; not served");
        return false;
    }
    let raw = if wanted.blob {
        match reader.message_bytes(mailbox, meta) {
            Ok(r) => Some(r),
            // Logged with user, mailbox and UID by the reader.
            Err(_) => return false,
        }
    } else {
        None
    };
    let summary = if wanted.summary {
        match summary.unwrap_or_else(|| reader.summary(mailbox, meta)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(event = "summary_unavailable", mailbox = %mailbox, uid = meta.uid, error = %e);
                return false;
            }
        }
    } else {
        None
    };
    // Parsed once for all the items of this message.
    let parsed = raw.as_deref().map(mime::Parsed::new);
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    for (i, attr) in wanted.attrs.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        write_item(
            &mut line,
            attr,
            meta,
            summary.as_ref(),
            parsed.as_ref(),
            wanted.utf8,
        );
    }
    line.extend_from_slice(b")\r\n");
    out.extend_from_slice(&line);
    true
}

fn write_item(
    out: &mut Vec<u8>,
    attr: &FetchAttr,
    meta: &MessageMeta,
    summary: Option<&mime::Summary>,
    parsed: Option<&mime::Parsed<'_>>,
    utf8: bool,
) {
    match attr {
        FetchAttr::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
        FetchAttr::Flags => {
            out.extend_from_slice(format!("FLAGS ({})", meta.flags.join(" ")).as_bytes())
        }
        FetchAttr::InternalDate => {
            out.extend_from_slice(b"INTERNALDATE ");
            encode::date_time(out, meta.internal_date, meta.internal_zone);
        }
        FetchAttr::Rfc822Size => {
            out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
        }
        FetchAttr::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
        FetchAttr::EmailId => {
            out.extend_from_slice(format!("EMAILID ({})", meta.email_id).as_bytes())
        }
        FetchAttr::ThreadId => {
            out.extend_from_slice(format!("THREADID ({})", meta.thread_id).as_bytes())
        }
        FetchAttr::SaveDate => {
            out.extend_from_slice(b"SAVEDATE ");
            encode::date_time(out, meta.save_date, 0);
        }
        FetchAttr::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            out.extend_from_slice(
                summary
                    .map(|s| s.envelope.as_str())
                    .unwrap_or("NIL")
                    .as_bytes(),
            );
        }
        FetchAttr::Body => {
            out.extend_from_slice(b"BODY ");
            out.extend_from_slice(summary.map(|s| s.body.as_str()).unwrap_or("NIL").as_bytes());
        }
        FetchAttr::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            out.extend_from_slice(
                summary
                    .map(|s| s.body_structure.as_str())
                    .unwrap_or("NIL")
                    .as_bytes(),
            );
        }
        FetchAttr::Preview { .. } => {
            out.extend_from_slice(b"PREVIEW ");
            // 8-bit text goes out as a literal unless quoted strings may hold
            // UTF-8 (REVIEW C3: strict IMAP4rev1 parsers reject the line).
            let preview = summary.map(|s| s.preview.as_bytes()).unwrap_or(b"");
            encode::nstring(out, Some(preview), utf8);
        }
        FetchAttr::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            write_body(out, parsed.map_or(b"", |p| p.raw()));
        }
        FetchAttr::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let header = parsed
                .and_then(|p| p.section(&[], mime::SectionKind::Header))
                .unwrap_or_default();
            write_body(out, &header);
        }
        FetchAttr::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let text = parsed
                .and_then(|p| p.section(&[], mime::SectionKind::Text))
                .unwrap_or_default();
            write_body(out, &text);
        }
        FetchAttr::BodySection {
            section, partial, ..
        } => {
            out.extend_from_slice(b"BODY[");
            write_section_spec(out, section);
            out.push(b']');
            let data = parsed.and_then(|p| section_bytes(p, section));
            write_partial_origin(out, partial);
            out.push(b' ');
            match data {
                Some(data) => write_body(out, slice(&data, partial)),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAttr::Binary { part, partial, .. } => {
            out.extend_from_slice(b"BINARY[");
            out.extend_from_slice(part_text(part).as_bytes());
            out.push(b']');
            write_partial_origin(out, partial);
            out.push(b' ');
            match parsed.map(|p| p.binary(part)) {
                Some(Ok(data)) => {
                    let data = slice(&data, partial);
                    if data.contains(&0) {
                        encode::literal8(out, data);
                    } else {
                        encode::literal(out, data);
                    }
                }
                // Unknown transfer encodings answer NIL here; RFC 3516 prefers a NO
                // [UNKNOWN-CTE] for the command, which would hide the other items.
                _ => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAttr::BinarySize { part } => {
            out.extend_from_slice(b"BINARY.SIZE[");
            out.extend_from_slice(part_text(part).as_bytes());
            out.extend_from_slice(b"] ");
            match parsed.map(|p| p.binary(part)) {
                Some(Ok(data)) => out.extend_from_slice(data.len().to_string().as_bytes()),
                _ => out.extend_from_slice(b"NIL"),
            }
        }
    }
}

fn part_text(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn write_section_spec(out: &mut Vec<u8>, section: &Section) {
    let part = part_text(&section.part);
    out.extend_from_slice(part.as_bytes());
    if let Some(text) = &section.text {
        if !part.is_empty() {
            out.push(b'.');
        }
        match text {
            SectionText::Header => out.extend_from_slice(b"HEADER"),
            SectionText::Text => out.extend_from_slice(b"TEXT"),
            SectionText::Mime => out.extend_from_slice(b"MIME"),
            SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
                out.extend_from_slice(if matches!(text, SectionText::HeaderFields(_)) {
                    b"HEADER.FIELDS (".as_slice()
                } else {
                    b"HEADER.FIELDS.NOT (".as_slice()
                });
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    encode::astring(out, name.to_ascii_uppercase().as_bytes(), false);
                }
                out.push(b')');
            }
        }
    }
}

pub(crate) fn section_bytes(parsed: &mime::Parsed<'_>, section: &Section) -> Option<Vec<u8>> {
    let kind = match &section.text {
        None => mime::SectionKind::Full,
        Some(SectionText::Header) => mime::SectionKind::Header,
        Some(SectionText::Text) => mime::SectionKind::Text,
        Some(SectionText::Mime) => mime::SectionKind::Mime,
        Some(SectionText::HeaderFields(names)) => {
            mime::SectionKind::HeaderFields { names, not: false }
        }
        Some(SectionText::HeaderFieldsNot(names)) => {
            mime::SectionKind::HeaderFields { names, not: true }
        }
    };
    parsed.section(&section.part, kind)
}

fn write_partial_origin(out: &mut Vec<u8>, partial: &Option<Partial>) {
    if let Some(p) = partial {
        out.extend_from_slice(format!("<{}>", p.origin).as_bytes());
    }
}

fn slice<'a>(data: &'a [u8], partial: &Option<Partial>) -> &'a [u8] {
    match partial {
        None => data,
        Some(p) => {
            let start = (p.origin as usize).min(data.len());
            let end = start.saturating_add(p.count as usize).min(data.len());
            &data[start..end]
        }
    }
}

/// A body literal; NUL bytes, which a literal may not carry, become [`NUL_SUBSTITUTE`].
fn write_body(out: &mut Vec<u8>, data: &[u8]) {
    if data.contains(&0) {
        let cleaned: Vec<u8> = data
            .iter()
            .map(|&b| if b == 0 { NUL_SUBSTITUTE } else { b })
            .collect();
        encode::literal(out, &cleaned);
    } else {
        encode::literal(out, data);
    }
}

/// The highest UID the selected mailbox has given out, for `*` in a UID set.
fn highest_uid(session: &Session) -> u32 {
    session
        .selected
        .as_ref()
        .and_then(|s| s.uids.last().copied())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_with_preview(preview: &str) -> mime::Summary {
        let mut summary = mime::summarize(b"Subject: x\r\n\r\nbody\r\n", &mime::Limits::default());
        summary.preview = preview.to_string();
        summary
    }

    /// Writes one FETCH item for a message whose preview is `preview`.
    fn check_preview(preview: &str, utf8: bool, expect: &str) {
        let meta = MessageMeta {
            uid: 1,
            modseq: 1,
            flags: Vec::new(),
            internal_date: 0,
            internal_zone: 0,
            save_date: 0,
            size: 0,
            blob: store::BlobHash([0; 32]),
            email_id: String::new(),
            thread_id: String::new(),
            damaged: false,
        };
        let summary = summary_with_preview(preview);
        let mut out = Vec::new();
        write_item(
            &mut out,
            &FetchAttr::Preview { lazy: false },
            &meta,
            Some(&summary),
            None,
            utf8,
        );
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    /// REVIEW C3: PREVIEW went out quoted with 8-bit text to IMAP4rev1 clients.
    #[test]
    fn preview_is_quoted_only_when_the_client_takes_utf8() {
        check_preview("Grüße", false, "PREVIEW {7}\r\nGrüße");
        check_preview("Grüße", true, "PREVIEW \"Grüße\"");
        check_preview("plain", false, "PREVIEW \"plain\"");
        check_preview("", false, "PREVIEW \"\"");
    }
}
