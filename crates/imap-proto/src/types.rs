//! The validated shape of IMAP client commands, as the parser produces them.
//!
//! These types are the contract between the grammar (this crate) and the session
//! state machine (`postern-imap`). Anything that needs interpretation that depends
//! on session state (mailbox name encoding, `*` resolution, search charset) is left
//! to the session; everything purely syntactic is resolved here.

use crate::secret::Secret;

/// A tagged command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// One end of a sequence range: a number or `*` (the largest in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    Star,
}

/// `a:b`, or a single number when `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNumber,
    pub end: SeqNumber,
}

/// A sequence set (message sequence numbers or UIDs, depending on the command),
/// or `$`, the saved search result of SEARCHRES (RFC 5182).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequence {
    Set(Vec<SeqRange>),
    Saved,
}

/// A calendar date as IMAP writes it (`1-Feb-1994`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
}

/// `date-time` of APPEND (`"17-Jul-1996 02:44:25 -0700"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in minutes, e.g. -420 for -0700.
    pub zone_minutes: i16,
}

/// `STATUS` data items (RFC 9051, RFC 7162 HIGHESTMODSEQ, RFC 8474 MAILBOXID, RFC 7889 APPENDLIMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
    MailboxId,
}

/// LIST selection options (RFC 5258, RFC 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSelect {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// LIST return options (RFC 5258, RFC 6154, RFC 5819).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    /// `RETURN (STATUS (...))`
    pub status: Option<Vec<StatusItem>>,
}

/// One message of an APPEND (several with MULTIAPPEND, RFC 3502).
#[derive(Debug, Clone, PartialEq)]
pub struct AppendMessage {
    pub flags: Vec<String>,
    pub date: Option<DateTime>,
    /// The message as one literal; empty with `catenate`.
    pub data: Vec<u8>,
    /// Sent as `~{n}` (literal8, RFC 3516): may contain NUL.
    pub binary: bool,
    /// `CATENATE (...)` (RFC 4469): the message is made of these parts, in
    /// order, instead of `data`.
    pub catenate: Option<Vec<CatenatePart>>,
}

/// One `cat-part` of `APPEND ... CATENATE (...)` (RFC 4469).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatenatePart {
    /// `TEXT literal` (or `TEXT literal8` with BINARY: `binary`).
    Text { data: Vec<u8>, binary: bool },
    /// `URL astring`: an IMAP URL (RFC 5092) as sent, not yet resolved.
    Url(String),
}

/// Part of a BODY[...] section specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as sent (the session compares them case-insensitively).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only valid after a part number.
    Mime,
}

/// `BODY[1.2.HEADER]` → `part = [1, 2], text = Some(Header)`; `BODY[]` → empty part, no text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// `<origin.count>` of a partial fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub origin: u32,
    pub count: u32,
}

/// A FETCH data item. The macros ALL, FAST and FULL are expanded by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    /// `RFC822`: like `BODY[]` but the response item is named `RFC822`.
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// `BODY` without a section: the non-extensible body structure.
    Body,
    BodyStructure,
    Uid,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[1.2]<0.100>` (RFC 3516).
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// RFC 7162
    ModSeq,
    /// RFC 8474
    EmailId,
    ThreadId,
    /// RFC 8514
    SaveDate,
    /// RFC 8970; `lazy` is the LAZY modifier.
    Preview {
        lazy: bool,
    },
}

/// FETCH modifiers (RFC 7162, RFC 9394 PARTIAL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchModifiers {
    pub changed_since: Option<u64>,
    pub vanished: bool,
    /// Only the messages at these positions of what the FETCH would return.
    pub partial: Option<PartialRange>,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// SEARCH return options (RFC 4731, RFC 5182 SAVE, RFC 5267 contexts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// RFC 5267 4.3: keep the result live and report ADDTO / REMOVEFROM.
    Update,
    /// RFC 5267 4.2: a hint that more requests on this result will follow.
    Context,
    /// RFC 5267 4.4: the messages at these positions of the result.
    Partial(PartialRange),
}

/// Which mailboxes a NOTIFY event group covers (RFC 5465 6). Names are as
/// sent (modified UTF-7 unless UTF-8 is enabled); the session decodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// An event a NOTIFY group asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// With the FETCH items to send for each new message (selected mailbox only).
    MessageNew(Vec<FetchAttr>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// An `event-ext` this parser does not know (upper-cased).
    Other(String),
}

/// `(filter events)`; no events is `NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
}

/// PARTIAL's positions in a result, 1-based and inclusive: `first:last`
/// from the start, or (RFC 9394) `-first:-last` counted from the end
/// (`-1` is the last message). Always `first <= last`, whatever order the
/// client wrote them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRange {
    pub first: u32,
    pub last: u32,
    pub from_end: bool,
}

impl PartialRange {
    /// The 0-based index range this selects in a result of `len` messages
    /// (empty when it lies wholly outside).
    pub fn indexes(&self, len: usize) -> std::ops::Range<usize> {
        let (first, last) = (self.first as usize, self.last as usize);
        if self.from_end {
            // -first:-last from the end: -1 is index len-1.
            let start = len.saturating_sub(last);
            let end = len.saturating_sub(first - 1);
            start..end.max(start)
        } else {
            let start = (first - 1).min(len);
            let end = last.min(len);
            start..end.max(start)
        }
    }
}

impl std::fmt::Display for PartialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from_end {
            write!(f, "-{}:-{}", self.first, self.last)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// A search key. A parenthesised list and the top-level list of keys are `And`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    /// Field name, value to find (an empty value matches any message that has the field).
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(Sequence),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// A bare sequence set (message sequence numbers).
    SequenceSet(Sequence),
    And(Vec<SearchKey>),
    /// RFC 7162 `MODSEQ n` (the optional entry name and type are parsed and dropped).
    ModSeq(u64),
    /// RFC 5032 WITHIN, in seconds.
    Older(u64),
    Younger(u64),
    /// RFC 8514
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    SaveDateSupported,
    /// RFC 8474
    EmailId(String),
    ThreadId(String),
}

/// SELECT / EXAMINE parameters (RFC 7162).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QresyncParams>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// One SORT key, possibly reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    /// RFC 5957: the display name of the first From address, else its address.
    DisplayFrom,
    DisplayTo,
}

/// `QRESYNC (uidvalidity modseq [known-uids [(seq-match-data)]])`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub mod_seq: u64,
    pub known_uids: Option<Vec<SeqRange>>,
    pub seq_match: Option<(Vec<SeqRange>, Vec<SeqRange>)>,
}

/// GETMETADATA's DEPTH option (RFC 5464 4.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetadataDepth {
    /// The entry alone.
    #[default]
    Zero,
    /// The entry and its children.
    One,
    /// The entry and everything below it.
    Infinity,
}

/// GETMETADATA options (RFC 5464 4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `MAXSIZE n`: values longer than `n` bytes are left out.
    pub max_size: Option<u64>,
    pub depth: MetadataDepth,
}

/// Every command the server understands. Mailbox names are the decoded astring
/// (still in modified UTF-7 when the client sent it so; the session decodes).
#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `initial_response` is the still-base64 SASL-IR argument (`=` for empty).
    Authenticate {
        mechanism: String,
        initial_response: Option<Secret<String>>,
    },
    Login {
        username: String,
        password: Secret<String>,
    },
    Enable {
        capabilities: Vec<String>,
    },
    Select {
        mailbox: String,
        params: SelectParams,
    },
    Examine {
        mailbox: String,
        params: SelectParams,
    },
    Create {
        mailbox: String,
        /// `(USE (\Drafts ...))` of CREATE-SPECIAL-USE (RFC 6154).
        special_use: Vec<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    /// LIST, or LSUB when `lsub` is set (then selection and return are empty).
    List {
        lsub: bool,
        reference: String,
        /// One or more patterns (several only with LIST-EXTENDED's `(p1 p2)`).
        patterns: Vec<String>,
        select: ListSelect,
        returns: ListReturn,
    },
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    /// `EXPUNGE`, or `UID EXPUNGE set` (UIDPLUS).
    Expunge {
        uids: Option<Sequence>,
    },
    /// COMPRESS (RFC 4978); the algorithm as sent.
    Compress {
        algorithm: String,
    },
    /// QUOTA (RFC 9208).
    GetQuota {
        root: String,
    },
    GetQuotaRoot {
        mailbox: String,
    },
    /// ACL (RFC 4314): identifier and rights as sent; the session checks them.
    SetAcl {
        mailbox: String,
        identifier: String,
        rights: String,
    },
    DeleteAcl {
        mailbox: String,
        identifier: String,
    },
    GetAcl {
        mailbox: String,
    },
    ListRights {
        mailbox: String,
        identifier: String,
    },
    MyRights {
        mailbox: String,
    },
    /// Parsed so it is refused cleanly; quotas are the administrator's.
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    /// THREAD / UID THREAD (RFC 5256).
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        search: SearchKey,
    },
    /// SORT / UID SORT (RFC 5256, with SORT=DISPLAY of RFC 5957).
    Sort {
        uid: bool,
        /// ESORT (RFC 5267): `RETURN (...)`, answered as ESEARCH.
        returns: Option<Vec<SearchReturn>>,
        criteria: Vec<SortCriterion>,
        charset: String,
        search: SearchKey,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        /// `None`: plain SEARCH. `Some(vec![])`: `RETURN ()`, which means ALL in ESEARCH form.
        returns: Option<Vec<SearchReturn>>,
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        sequence: Sequence,
        attrs: Vec<FetchAttr>,
        modifiers: FetchModifiers,
    },
    Store {
        uid: bool,
        sequence: Sequence,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        sequence: Sequence,
        mailbox: String,
    },
    Move {
        uid: bool,
        sequence: Sequence,
        mailbox: String,
    },
    /// RFC 2971; `None` is `ID NIL`.
    Id {
        parameters: Option<Vec<(String, Option<String>)>>,
    },
    /// RFC 8437
    Unauthenticate,
    /// NOTIFY (RFC 5465): `groups` is `None` for `NOTIFY NONE`; `status`
    /// asks for a STATUS of each mailbox the groups name, at once.
    Notify {
        status: bool,
        groups: Option<Vec<NotifyGroup>>,
    },
    /// CANCELUPDATE (RFC 5267 4.3): the tags of the update contexts to end.
    CancelUpdate {
        tags: Vec<String>,
    },
    /// METADATA (RFC 5464): entries as sent (the session checks and
    /// lower-cases them); `mailbox` `""` is the server.
    GetMetadata {
        options: MetadataOptions,
        mailbox: String,
        entries: Vec<String>,
    },
    /// Values: `None` is NIL (remove); a `literal8` may carry NUL.
    SetMetadata {
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
}
