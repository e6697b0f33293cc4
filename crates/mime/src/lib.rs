//! Message parsing for the cache: envelope, body structure and search text,
//! computed once at delivery so that FETCH and header SEARCH never re-parse.
//!
//! # Design
//!
//! No I/O, no async. Input is the exact message bytes as stored. Nothing
//! here fails or panics on any input: broken MIME yields a best-effort
//! result, because a delivery must never be refused over a malformed header
//! and a FETCH must never take the server down.
//!
//! Every pass is linear in the message size (times the MIME nesting depth,
//! bounded by [`Limits::mime_depth_max`]). Hostile messages — 2 MB header
//! lines, 50,000 header fields, thousands of parts with missing boundaries —
//! cost a few scans, not a quadratic blow-up.
//!
//! # Who does what
//!
//! - `header`: where a header block ends, its fields as raw byte slices.
//! - `content`: the MIME fields of an entity, raw (case and RFC 2231 kept).
//! - `tree`: the part tree with byte ranges; IMAP part numbering.
//! - `address`, `envelope`, `structure`, `imap`: rendering ENVELOPE, BODY
//!   and BODYSTRUCTURE as IMAP strings.
//! - `section`: BODY[section] and BINARY[section] bytes.
//! - `decode`, `text`, `subject`, `summary`: decoded text for SEARCH, the
//!   preview, the RFC 5256 base subject.
//!
//! mail-parser does what it does well and what IMAP wants from it: RFC 2047
//! encoded words, dates, message ids, charsets and HTML-to-text. The part
//! tree, raw header fields and IMAP rendering are ours; each module says
//! why.

mod address;
mod content;
mod decode;
mod envelope;
mod header;
mod imap;
mod section;
mod structure;
mod subject;
mod summary;
mod text;
mod tree;

/// Bounds on what the cache holds (the message itself is always stored
/// whole).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Header fields copied into [`Summary::headers`].
    pub header_fields_max: usize,
    /// Sum of the decoded values copied into [`Summary::headers`], in bytes.
    pub header_bytes_max: usize,
    /// MIME nesting levels described; deeper entities are opaque leaves.
    /// Capped at 256 whatever the setting, to bound recursion.
    pub mime_depth_max: usize,
    /// MIME entities described; parts past it are left out.
    pub mime_parts_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_fields_max: 1000,
            header_bytes_max: 256 * 1024,
            mime_depth_max: 32,
            mime_parts_max: 1000,
        }
    }
}

/// Everything FETCH ENVELOPE/BODY/BODYSTRUCTURE and header SEARCH need,
/// computed once at delivery.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// IMAP ENVELOPE (RFC 9051 7.5.2) rendered as the parenthesised list.
    /// Strings are the raw header values (unfolded, encoded words not
    /// decoded), quoted when 7-bit without CR/LF/NUL and not too long, else
    /// literals `{n}\r\n...`; NIL for absent.
    pub envelope: String,
    /// `BODY` (non-extensible body structure), rendered.
    pub body: String,
    /// `BODYSTRUCTURE` (with extension data), rendered.
    pub body_structure: String,
    /// From the Date header; `None` if missing or unparseable.
    pub sent: Option<SentDate>,
    /// Message-ID, In-Reply-To and References message ids, each `<a@b>`.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Decoded Subject, and its RFC 5256 base subject.
    pub subject: String,
    pub base_subject: String,
    /// Decoded address headers as searchable text:
    /// "Display Name <addr@host>, ...".
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    /// Header fields in order (up to the limits): name as sent, value
    /// unfolded and decoded to UTF-8.
    pub headers: Vec<(String, String)>,
    /// Set when the limits cut `headers` (the session then searches the
    /// raw header).
    pub headers_truncated: bool,
    /// Octets of the top-level header including the blank line that ends it.
    pub header_bytes: u64,
    /// RFC 8970 preview, empty when there is no text part.
    pub preview: String,
}

/// When a message says it was sent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SentDate {
    /// The instant, in seconds since the Unix epoch.
    pub unix_seconds: i64,
    /// The calendar day in the header's own zone (SENTON/SENTBEFORE/
    /// SENTSINCE compare days, RFC 9051 6.4.4).
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// Computes the cache summary of a message. Never fails: broken input
/// gives a best-effort summary.
pub fn summarize(raw: &[u8], limits: &Limits) -> Summary {
    summary::summarize(raw, limits)
}

/// What part of a message a FETCH BODY[...] names.
#[derive(Debug, Clone, Copy)]
pub enum SectionKind<'a> {
    /// `BODY[]` or `BODY[1.2]`.
    Full,
    Header,
    HeaderFields {
        names: &'a [String],
        not: bool,
    },
    Text,
    Mime,
}

/// Bytes of `BODY[part.kind]` per RFC 9051 6.4.5.
///
/// `part` empty is the whole message; a non-multipart message has part 1 =
/// its body; HEADER, HEADER.FIELDS and TEXT of a part apply to
/// message/rfc822 parts (the encapsulated message); MIME is the part's own
/// header with its blank line; HEADER.FIELDS returns the matching fields
/// (case-insensitive names, raw folded lines) followed by CRLF.
///
/// Returns `None` when the part or the section does not exist (MIME of the
/// top level, HEADER of a part that is not a message).
pub fn section(raw: &[u8], part: &[u32], kind: SectionKind<'_>) -> Option<Vec<u8>> {
    section::section(raw, part, kind)
}

/// One message whose MIME structure is parsed at most once, however many
/// sections are taken from it: a FETCH of many `BODY[n]`/`BINARY[n]` items of
/// one hostile message (thousands of parts) costs one parse, not one per item.
pub struct Parsed<'a> {
    raw: &'a [u8],
    root: std::cell::OnceCell<tree::Part>,
}

impl<'a> Parsed<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Parsed {
            raw,
            root: std::cell::OnceCell::new(),
        }
    }

    /// The message's bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// [`section`] of this message.
    pub fn section(&self, part: &[u32], kind: SectionKind<'_>) -> Option<Vec<u8>> {
        section::section_of(self.raw, &self.root, part, kind)
    }

    /// [`binary`] of this message.
    ///
    /// # Errors
    /// As [`binary`].
    pub fn binary(&self, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
        section::binary_of(self.raw, &self.root, part)
    }
}

/// Why BINARY cannot answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    NoSuchPart,
    /// RFC 3516: the server answers `[UNKNOWN-CTE]`.
    UnknownTransferEncoding(String),
}

/// `BINARY[part]` (RFC 3516): the part's body with its
/// Content-Transfer-Encoding removed. Part `[]` is the whole message as is.
///
/// # Errors
///
/// [`BinaryError::NoSuchPart`] when the part does not exist;
/// [`BinaryError::UnknownTransferEncoding`] when the encoding is not one of
/// base64, quoted-printable, 7bit, 8bit, binary.
pub fn binary(raw: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    section::binary(raw, part)
}

/// Decoded text of the text/* parts (HTML reduced to its text), joined with
/// newlines, for SEARCH BODY/TEXT. At most `bytes_max` bytes.
///
/// Every part is read, including those past [`Limits::mime_parts_max`]
/// (which bounds what the cache describes, not what SEARCH finds), and an
/// encapsulated message past [`Limits::mime_depth_max`] or with a transfer
/// encoding is read as text.
pub fn body_text(raw: &[u8], bytes_max: usize) -> String {
    text::body_text(raw, &Limits::default(), bytes_max)
}

/// The header fields of a message as SEARCH sees them (unfolded, encoded
/// words decoded), within `limits`: the same list [`Summary::headers`] keeps.
pub fn header_fields(raw: &[u8], limits: &Limits) -> Vec<(String, String)> {
    summary::header_fields(raw, limits)
}
