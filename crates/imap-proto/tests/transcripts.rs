//! Replays the client side of RFC example transcripts (`tests/transcripts/*.imap`)
//! through the framer and the parser, and compares each parsed command with
//! the expectation written under it. The format is described at the top of
//! `tests/transcripts/rfc9051.imap`.
//!
//! `UPDATE_TRANSCRIPTS=1 cargo test --test transcripts` rewrites the
//! expectations from the current parser; review the diff before keeping it.

use postern_imap_proto::framer::{Frame, Framer, Limits};
use postern_imap_proto::parse::parse_command;
use postern_imap_proto::{CatenatePart, Command, CommandBody};
use std::path::{Path, PathBuf};

/// One transcript file, turned into the bytes a client would send.
struct Transcript {
    /// Lines of the file with expectation lines removed.
    lines: Vec<String>,
    /// For each entry of `lines`, the stream offset just after it (None for comments).
    line_ends: Vec<Option<usize>>,
    stream: Vec<u8>,
    /// Expected results in order, as written in the file.
    expected: Vec<String>,
    /// Number of `{?}` (synchronizing) literal announcements.
    synchronizing_literals: usize,
}

fn load(path: &Path) -> Transcript {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut transcript = Transcript {
        lines: Vec::new(),
        line_ends: Vec::new(),
        stream: Vec::new(),
        expected: Vec::new(),
        synchronizing_literals: 0,
    };
    let all: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < all.len() {
        let line = all[i];
        i += 1;
        if line.starts_with("= ") || line.starts_with("! ") {
            transcript.expected.push(line.to_owned());
            continue;
        }
        let Some(command) = line.strip_prefix("C: ") else {
            transcript.lines.push(line.to_owned());
            transcript.line_ends.push(None);
            continue;
        };
        // Gather the literal that follows, to fill in `{?}` / `{?+}`.
        let mut literal = Vec::new();
        let mut literal_lines = Vec::new();
        while let Some(&l) = all.get(i) {
            if let Some(text) = l.strip_prefix("L: ") {
                literal.extend_from_slice(text.as_bytes());
                literal.extend_from_slice(b"\r\n");
            } else if let Some(text) = l.strip_prefix("L- ") {
                literal.extend_from_slice(text.as_bytes());
            } else {
                break;
            }
            literal_lines.push(l.to_owned());
            i += 1;
        }
        let mut bytes = command.to_owned();
        if bytes.ends_with("{?}") {
            transcript.synchronizing_literals += 1;
        }
        for placeholder in ["{?}", "{?+}"] {
            if bytes.ends_with(placeholder) {
                let size = format!("{{{}{}", literal.len(), &placeholder[2..]);
                bytes.truncate(bytes.len() - placeholder.len());
                bytes.push_str(&size);
            }
        }
        transcript.stream.extend_from_slice(bytes.as_bytes());
        transcript.stream.extend_from_slice(b"\r\n");
        transcript.lines.push(line.to_owned());
        transcript.line_ends.push(Some(transcript.stream.len()));
        transcript.stream.extend_from_slice(&literal);
        for l in literal_lines {
            transcript.lines.push(l);
            transcript.line_ends.push(None);
        }
    }
    transcript
}

/// The expectation line for one parse result. Passwords are hidden by
/// `Secret`'s Debug, so LOGIN shows its password explicitly to be checked.
fn describe(result: &Result<Command, postern_imap_proto::parse::ParseError>) -> String {
    match result {
        Ok(command) => match &command.body {
            CommandBody::Login { password, .. } => {
                format!("= {:?} password={:?}", command.body, password.expose())
            }
            CommandBody::Authenticate {
                initial_response: Some(response),
                ..
            } => format!("= {:?} response={:?}", command.body, response.expose()),
            CommandBody::Append { mailbox, messages } => {
                // Message data as text, not a list of numbers.
                let mut out = format!("= Append {mailbox:?}");
                for m in messages {
                    if let Some(parts) = &m.catenate {
                        out.push_str(&format!(
                            " [flags={:?} date={:?} catenate=(",
                            m.flags, m.date
                        ));
                        for (i, part) in parts.iter().enumerate() {
                            if i > 0 {
                                out.push(' ');
                            }
                            match part {
                                CatenatePart::Text { data, binary } => out.push_str(&format!(
                                    "TEXT binary={binary} {:?}",
                                    String::from_utf8_lossy(data)
                                )),
                                CatenatePart::Url(url) => out.push_str(&format!("URL {url:?}")),
                            }
                        }
                        out.push_str(")]");
                        continue;
                    }
                    out.push_str(&format!(
                        " [flags={:?} date={:?} binary={} data={:?}]",
                        m.flags,
                        m.date,
                        m.binary,
                        String::from_utf8_lossy(&m.data)
                    ));
                }
                out
            }
            body => format!("= {body:?}"),
        },
        Err(error) => format!("! {:?} {}", error.tag, error.message),
    }
}

/// Frame `stream` fed in chunks of `chunk` bytes; returns each complete
/// command's end offset and how many continuations were requested.
fn frame_all(stream: &[u8], chunk: usize) -> (Vec<usize>, usize) {
    let mut framer = Framer::new(Limits::default());
    let mut ends = Vec::new();
    let mut continuations = 0;
    let mut start = 0;
    let mut available = 0;
    // Bounded: each round either consumes a command or makes more bytes available.
    for _ in 0..stream.len() * 4 + 16 {
        match framer.next(&stream[start..available]) {
            Frame::Complete { len } => {
                start += len;
                ends.push(start);
            }
            Frame::NeedContinuation { .. } => continuations += 1,
            Frame::Incomplete if available == stream.len() => break,
            Frame::Incomplete => available = (available + chunk).min(stream.len()),
            reject @ Frame::Reject { .. } => panic!("unexpected {reject:?} at {start}"),
        }
    }
    assert_eq!(start, stream.len(), "stream not fully framed");
    (ends, continuations)
}

fn check(path: &Path) {
    let transcript = load(path);
    let (ends, continuations) = frame_all(&transcript.stream, usize::MAX / 2);
    for chunk in [1, 7, 64] {
        assert_eq!(
            frame_all(&transcript.stream, chunk),
            (ends.clone(), continuations)
        );
    }
    assert_eq!(continuations, transcript.synchronizing_literals, "{path:?}");
    let mut start = 0;
    let actual: Vec<String> = ends
        .iter()
        .map(|&end| {
            let result = parse_command(&transcript.stream[start..end]);
            start = end;
            describe(&result)
        })
        .collect();
    if std::env::var_os("UPDATE_TRANSCRIPTS").is_some() {
        let mut out = String::new();
        let mut results = actual.iter();
        for (line, end) in transcript.lines.iter().zip(&transcript.line_ends) {
            out.push_str(line);
            out.push('\n');
            if end.is_some_and(|e| ends.contains(&e))
                && let Some(result) = results.next()
            {
                out.push_str(result);
                out.push('\n');
            }
        }
        std::fs::write(path, out).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        return;
    }
    assert_eq!(
        actual.len(),
        transcript.expected.len(),
        "{path:?}: command count"
    );
    for (index, (actual, expected)) in actual.iter().zip(&transcript.expected).enumerate() {
        assert_eq!(actual, expected, "{path:?}: command {index}");
    }
}

fn transcript_dir() -> PathBuf {
    manifest_dir().join("tests/transcripts")
}

#[test]
fn rfc9051() {
    check(&transcript_dir().join("rfc9051.imap"));
}

#[test]
fn extensions() {
    check(&transcript_dir().join("extensions.imap"));
}

#[test]
fn errors() {
    check(&transcript_dir().join("errors.imap"));
}

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
