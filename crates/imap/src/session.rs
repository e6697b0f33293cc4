//! One IMAP connection: reading framed commands, state, dispatch, writing.

use crate::command;
use crate::conn::Conn;
use crate::limits::LoginThrottle;
use crate::respond::Done;
use crate::selected::Selected;
use crate::skip::SkippedLine;
use crate::user_limits::{HeavyBusy, HeavyPermit, UserLimits, UserSlot};
use imap_proto::framer::{Frame, Framer, Limits, RejectKind};
use imap_proto::{Command, CommandBody};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

/// Most literal bytes one command may carry before login. LOGIN and
/// AUTHENTICATE need a few hundred (a password is at most 1024 bytes); the
/// configured limit, which bounds APPEND, applies once a user is logged in, so
/// an unauthenticated client cannot make the server buffer megabytes.
pub const UNAUTHENTICATED_LITERAL_BYTES_MAX: u64 = 8 * 1024;

/// When plaintext passwords (LOGIN, AUTHENTICATE PLAIN) are accepted without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextAuth {
    Never,
    /// Only from loopback addresses (the default: local tools and tests).
    Loopback,
    Always,
}

/// Settings of the IMAP service (`[imap]` in the config file).
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub hostname: String,
    /// Bounds on the commands of a logged-in session; before login the literal
    /// bound is at most [`UNAUTHENTICATED_LITERAL_BYTES_MAX`].
    pub limits: Limits,
    /// Autologout timer of an idle authenticated session (RFC 9051: at least 30 minutes).
    pub autologout: Duration,
    /// Time a connection gets, in all, to log in (and again after UNAUTHENTICATE):
    /// a deadline, not an idle timer, so trickling bytes does not hold a slot.
    pub login_timeout: Duration,
    pub plaintext_auth: PlaintextAuth,
    /// Most bytes a FETCH response is buffered before it is flushed to the client.
    pub output_flush_bytes: usize,
    /// Largest message SEARCH BODY/TEXT decodes, in bytes of text.
    pub search_text_bytes_max: usize,
    /// Largest METADATA value (SETMETADATA over it: `NO [METADATA MAXSIZE n]`).
    pub metadata_value_bytes_max: u64,
    /// Most METADATA entries per user (and on the server): `NO [METADATA TOOMANY]`.
    pub metadata_entries_max: u64,
    /// Most live SEARCH / SORT update contexts (RFC 5267) per session; one
    /// more is refused with `NO [NOUPDATE "tag"]`.
    pub context_updates_max: usize,
    /// Most NOTIFY responses (RFC 5465) one round may send; over it the
    /// session sends `* OK [NOTIFICATIONOVERFLOW]` instead and NOTIFY is off.
    pub notify_responses_max: usize,
    /// Most entries in one mailbox's ACL (SETACL over it: `NO [LIMIT]`).
    pub acl_entries_max: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            limits: Limits::default(),
            autologout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            plaintext_auth: PlaintextAuth::Loopback,
            output_flush_bytes: 256 * 1024,
            search_text_bytes_max: 4 * 1024 * 1024,
            metadata_value_bytes_max: store::MetadataLimits::default().value_bytes_max,
            metadata_entries_max: store::MetadataLimits::default().entries_max,
            context_updates_max: 10,
            notify_responses_max: 1000,
            acl_entries_max: 100,
        }
    }
}

/// What every session of a listener shares.
pub struct ImapContext {
    pub config: ImapConfig,
    pub store: Store,
    /// For STARTTLS (and absent when no certificate is configured).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub throttle: Arc<LoginThrottle>,
    /// Sessions per user and heavy-command turns, over every IMAP listener.
    pub users: Arc<UserLimits>,
    /// Logins and commands, for `/metrics` and the status page.
    pub metrics: Arc<crate::ImapMetrics>,
}

/// Why a session ends.
pub(crate) enum End {
    Logout,
    Io(std::io::Error),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

pub(crate) struct Session {
    pub ctx: Arc<ImapContext>,
    pub peer: SocketAddr,
    pub conn: Conn,
    /// Bytes read and not yet consumed as a command.
    pub input: Vec<u8>,
    /// Responses not yet written.
    pub out: Vec<u8>,
    pub framer: Framer,
    /// The authenticated user.
    pub user: Option<String>,
    /// The user's session slot (see [`crate::user_limits`]); held while
    /// logged in, given back on UNAUTHENTICATE or when the session ends.
    pub user_slot: Option<UserSlot>,
    pub reader: Option<store::UserReader>,
    pub selected: Option<Selected>,
    /// The owner's reader while another owner's mailbox is selected (see
    /// [`crate::shared`]); read only through [`Session::selected_reader`].
    pub shared_reader: Option<store::UserReader>,
    /// ENABLE IMAP4rev2 was given: rev2 response forms (ESEARCH, no RECENT, UTF-8 names).
    pub rev2: bool,
    /// ENABLE UTF8=ACCEPT: UTF-8 in quoted strings and mailbox names.
    pub utf8: bool,
    /// CONDSTORE enabled (by ENABLE or a CONDSTORE-using command): MODSEQ in FETCH.
    pub condstore: bool,
    /// QRESYNC enabled (RFC 7162): expunges are reported as VANISHED, SELECT
    /// takes QRESYNC parameters, UID FETCH takes VANISHED.
    pub qresync: bool,
    /// SEARCHRES saved result (UIDs).
    pub saved: Option<Vec<u32>>,
    pub shutdown: watch::Receiver<bool>,
    /// Changes to the user's mail (for IDLE).
    pub changes: Option<watch::Receiver<u64>>,
    /// An over-long command line was refused before its end arrived: input is
    /// dropped up to and including the next LF, without buffering it, watching
    /// how the line ends (see [`crate::skip`]).
    pub skipping: Option<SkippedLine>,
    /// When an unauthenticated session is closed, logged in or not by then.
    pub login_deadline: tokio::time::Instant,
    /// COMPRESS=DEFLATE is on (RFC 4978).
    pub deflate: Option<crate::deflate::Deflate>,
    /// NOTIFY SET is in force (RFC 5465): what to tell the client unasked.
    pub notify: Option<crate::notify::Notify>,
}

/// Runs one IMAP session until logout, EOF, timeout or shutdown.
pub async fn serve(
    conn: Conn,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("imap", %peer, tls = conn.is_tls());
    async move {
        let limits = ctx.config.limits;
        let ctx_login_timeout = ctx.config.login_timeout;
        let mut session = Session {
            ctx,
            peer,
            conn,
            input: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            framer: Framer::new(unauthenticated_limits(limits)),
            user: None,
            user_slot: None,
            reader: None,
            selected: None,
            shared_reader: None,
            rev2: false,
            utf8: false,
            condstore: false,
            qresync: false,
            saved: None,
            shutdown,
            changes: None,
            skipping: None,
            login_deadline: tokio::time::Instant::now() + ctx_login_timeout,
            deflate: None,
            notify: None,
        };
        tracing::info!(event = "imap_connect", "connection opened");
        match session.run().await {
            Ok(()) | Err(End::Logout) => {}
            Err(End::Io(e)) => tracing::info!(event = "imap_io_error", error = %e),
        }
        let _ = session.conn.shutdown().await;
        tracing::info!(
            event = "imap_disconnect",
            user = session.user.as_deref().unwrap_or(""),
            "connection closed"
        );
    }
    .instrument(span)
    .await
}

impl Session {
    async fn run(&mut self) -> Result<(), End> {
        let capabilities = command::auth::capabilities(self);
        self.out.extend_from_slice(
            format!("* OK [CAPABILITY {capabilities}] Postern IMAP ready\r\n").as_bytes(),
        );
        self.flush().await?;
        loop {
            if let Some(mut skipped) = self.skipping.take() {
                let Some(end) = self.input.iter().position(|b| *b == b'\n') else {
                    skipped.feed(&self.input);
                    self.input.clear();
                    self.skipping = Some(skipped);
                    self.read_more().await?;
                    continue;
                };
                skipped.feed(&self.input[..end]);
                self.input.drain(..=end);
                if skipped.announces_non_synchronizing_literal() {
                    // Its bytes are already on their way and would be read as
                    // commands; there is no telling where they end.
                    tracing::info!(
                        event = "imap_rejected",
                        kind = "LiteralAfterLongLine",
                        "over-long line announced a non-synchronizing literal"
                    );
                    return self.bye("input cannot be resynchronised").await;
                }
            }
            match self.framer.next(&self.input) {
                Frame::Complete { len } => {
                    // The command keeps the buffer it arrived in; only what
                    // follows it is copied.
                    let rest = self.input.split_off(len);
                    let bytes = std::mem::replace(&mut self.input, rest);
                    self.handle(&bytes).await?;
                    drop(bytes);
                    // Login raises the literal bound, UNAUTHENTICATE lowers it.
                    let limits = self.limits();
                    self.framer.set_limits(limits);
                    self.flush().await?;
                }
                Frame::NeedContinuation { .. } => {
                    self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                    self.flush().await?;
                }
                Frame::Incomplete => {
                    if *self.shutdown.borrow() {
                        return self.bye("server shutting down").await;
                    }
                    self.read_more().await?;
                }
                Frame::Reject {
                    tag,
                    kind,
                    discard,
                    close,
                } => {
                    if kind == RejectKind::LineTooLong && close && !self.input.contains(&b'\n') {
                        // The end of the line is still on its way: answer now, then drop
                        // bytes as they come until it arrives. The session goes on.
                        Done::bad("command line too long")
                            .write(tag.as_deref().unwrap_or("*"), &mut self.out);
                        // Everything buffered is the start of that one line.
                        let mut skipped = SkippedLine::default();
                        skipped.feed(&self.input);
                        self.input.clear();
                        self.skipping = Some(skipped);
                        self.flush().await?;
                        continue;
                    }
                    let discard = discard.min(self.input.len());
                    self.input.drain(..discard);
                    let text = match kind {
                        RejectKind::LineTooLong => Done::bad("command line too long"),
                        RejectKind::LiteralTooBig => {
                            Done::no_code("TOOBIG", "literal larger than the server accepts")
                        }
                    };
                    tracing::info!(event = "imap_rejected", kind = ?kind, "command refused before reading it");
                    text.write(tag.as_deref().unwrap_or("*"), &mut self.out);
                    if close {
                        return self.bye("input cannot be resynchronised").await;
                    }
                    self.flush().await?;
                }
            }
        }
    }

    /// The bounds for the next command: the configured ones once logged in,
    /// smaller literals before.
    pub(crate) fn limits(&self) -> Limits {
        if self.user.is_some() {
            self.ctx.config.limits
        } else {
            unauthenticated_limits(self.ctx.config.limits)
        }
    }

    /// May quoted strings carry UTF-8? Only once the client enabled
    /// UTF8=ACCEPT or IMAP4rev2; IMAP4rev1 quoted strings are 7-bit, and
    /// 8-bit text must go out as a literal.
    pub(crate) fn utf8_quoted(&self) -> bool {
        self.utf8 || self.rev2
    }

    /// Gives the index connections back to the store's pool while the
    /// session waits for its client: an idle session holds none.
    pub(crate) fn release_index(&self) {
        for reader in [&self.reader, &self.shared_reader].into_iter().flatten() {
            reader.release();
        }
    }

    /// Reads more input, ending the session on EOF, timeout or shutdown.
    async fn read_more(&mut self) -> Result<(), End> {
        let (timeout, why) = if self.user.is_some() {
            (self.ctx.config.autologout, "autologout: idle for too long")
        } else {
            let left = self
                .login_deadline
                .saturating_duration_since(tokio::time::Instant::now());
            (left, "login timeout")
        };
        // Compressed input already here is inflated (a bounded step) before
        // the socket is read again.
        match self.inflate_pending() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(_) => return self.bye("corrupt COMPRESS stream").await,
        }
        self.release_index();
        let mut shutdown = self.shutdown.clone();
        let mut chunk = [0u8; 16 * 1024];
        // Under NOTIFY, a change is told as it happens, not at the next command.
        let notifying = self.notify.is_some() && self.changes.is_some();
        let changes = &mut self.changes;
        tokio::select! {
            changed = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            }, if notifying => {
                if !changed {
                    self.changes = None;
                }
                // Between commands only when no command has begun to arrive.
                let between_commands = self.input.is_empty();
                self.notify_push(between_commands, false, between_commands).await?;
                self.flush().await?;
                Ok(())
            }
            read = self.conn.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Err(End::Logout);
                }
                if self.take_input(&chunk[..n]).is_err() {
                    return self.bye("corrupt COMPRESS stream").await;
                }
                Ok(())
            }
            _ = shutdown.changed() => self.bye("server shutting down").await,
            _ = tokio::time::sleep(timeout) => {
                tracing::info!(event = "imap_timeout", reason = why);
                self.bye(why).await
            }
        }
    }

    pub(crate) async fn bye(&mut self, text: &str) -> Result<(), End> {
        self.out
            .extend_from_slice(format!("* BYE {text}\r\n").as_bytes());
        self.flush().await?;
        Err(End::Logout)
    }

    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        self.write_out().await?;
        self.conn.flush().await?;
        Ok(())
    }

    /// Flushes when the output buffer is large (long FETCH responses).
    pub(crate) async fn maybe_flush(&mut self) -> Result<(), End> {
        if self.out.len() >= self.ctx.config.output_flush_bytes {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Writes what is buffered for the client, through the compressor under
    /// COMPRESS. Every write to the client goes through here.
    async fn write_out(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        match self.deflate.as_mut() {
            Some(deflate) => {
                let compressed = deflate.deflate(&self.out);
                self.conn.write_all(&compressed).await?;
            }
            None => self.conn.write_all(&self.out).await?,
        }
        self.out.clear();
        Ok(())
    }

    /// Under COMPRESS, inflates input already received (one bounded step);
    /// true when the input grew. Err: the stream is corrupt.
    pub(crate) fn inflate_pending(&mut self) -> Result<bool, End> {
        let Some(deflate) = self.deflate.as_mut() else {
            return Ok(false);
        };
        if !deflate.has_pending() {
            return Ok(false);
        }
        let before = self.input.len();
        deflate.inflate(&mut self.input).map_err(|_| End::Logout)?;
        Ok(self.input.len() > before)
    }

    /// Adds bytes read from the client to the input, inflating them under
    /// COMPRESS. Every read from the client goes through here.
    pub(crate) fn take_input(&mut self, bytes: &[u8]) -> Result<(), End> {
        match self.deflate.as_mut() {
            Some(deflate) => {
                deflate.feed(bytes);
                deflate.inflate(&mut self.input).map_err(|_| End::Logout)
            }
            None => {
                self.input.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    async fn handle(&mut self, bytes: &[u8]) -> Result<(), End> {
        let command = match imap_proto::parse::parse_command(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(event = "imap_bad_command", reason = %e.message);
                Done::bad(e.message).write(e.tag.as_deref().unwrap_or("*"), &mut self.out);
                return Ok(());
            }
        };
        let Command { tag, body } = command;
        let name = command_name(&body);
        let span = tracing::debug_span!("command", %tag, name);
        let done = self.dispatch(&tag, body).instrument(span).await?;
        if self.user.is_none() {
            self.notify = None;
        }
        if self.notify.is_some() {
            // MessageNew's FETCH may bring EXPUNGE with it (FETCH syncs the
            // view), which RFC 9051 7.5.1 forbids during these; it waits.
            let fetch_ok = !matches!(name, "FETCH" | "STORE" | "SEARCH" | "SORT" | "THREAD");
            self.notify_push(false, false, fetch_ok).await?;
        }
        if done.status != crate::respond::Status::Ok {
            tracing::info!(event = "imap_command_failed", command = name, status = ?done.status, code = done.code.as_deref().unwrap_or(""), text = %done.text);
        }
        done.write(&tag, &mut self.out);
        if done.is_moved() {
            return self.bye(crate::respond::MOVED_BYE).await;
        }
        Ok(())
    }

    async fn dispatch(&mut self, tag: &str, body: CommandBody) -> Result<Done, End> {
        use CommandBody as C;
        self.ctx.metrics.command();
        // Commands valid in any state.
        match body {
            C::Capability => return Ok(command::auth::capability(self)),
            C::Noop | C::Check => {
                self.sync(true).await?;
                return Ok(Done::ok(format!(
                    "{} completed",
                    if matches!(body, C::Noop) {
                        "NOOP"
                    } else {
                        "CHECK"
                    }
                )));
            }
            C::Logout => {
                self.out.extend_from_slice(b"* BYE logging out\r\n");
                Done::ok("LOGOUT completed").write(tag, &mut self.out);
                self.flush().await?;
                return Err(End::Logout);
            }
            C::Id { parameters } => return Ok(command::auth::id(self, parameters)),
            _ => {}
        }
        if self.user.is_none() {
            return match body {
                C::StartTls => command::auth::starttls(self, tag).await,
                C::Login { username, password } => {
                    command::auth::login(self, &username, password.expose()).await
                }
                C::Authenticate {
                    mechanism,
                    initial_response,
                } => {
                    command::auth::authenticate(
                        self,
                        &mechanism,
                        initial_response.as_ref().map(|s| s.expose().as_str()),
                    )
                    .await
                }
                _ => Ok(Done::bad("command not valid before login")),
            };
        }
        match body {
            C::StartTls | C::Login { .. } | C::Authenticate { .. } => {
                Ok(Done::bad("already authenticated"))
            }
            C::Compress { algorithm } => command::auth::compress(self, tag, &algorithm).await,
            C::Enable { capabilities } => Ok(command::auth::enable(self, &capabilities)),
            C::Unauthenticate => command::auth::unauthenticate(self).await,
            C::Select { mailbox, params } => {
                command::select::select(self, &mailbox, false, params).await
            }
            C::Examine { mailbox, params } => {
                command::select::select(self, &mailbox, true, params).await
            }
            C::Create {
                mailbox,
                special_use,
            } => command::mailbox::create(self, &mailbox, special_use).await,
            C::Delete { mailbox } => command::mailbox::delete(self, &mailbox).await,
            C::Rename { from, to } => command::mailbox::rename(self, &from, &to).await,
            C::Subscribe { mailbox } => command::mailbox::subscribe(self, &mailbox, true).await,
            C::Unsubscribe { mailbox } => command::mailbox::subscribe(self, &mailbox, false).await,
            C::List {
                lsub,
                reference,
                patterns,
                select,
                returns,
            } => command::list::list(self, lsub, &reference, &patterns, &select, &returns).await,
            C::Namespace => Ok(command::list::namespace(self)),
            C::GetQuota { root } => command::quota::get_quota(self, &root).await,
            C::GetQuotaRoot { mailbox } => command::quota::get_quota_root(self, &mailbox).await,
            C::SetQuota { .. } => Ok(command::quota::set_quota()),
            C::SetAcl {
                mailbox,
                identifier,
                rights,
            } => command::acl::set_acl(self, &mailbox, &identifier, Some(&rights)).await,
            C::DeleteAcl {
                mailbox,
                identifier,
            } => command::acl::set_acl(self, &mailbox, &identifier, None).await,
            C::GetAcl { mailbox } => command::acl::get_acl(self, &mailbox).await,
            C::ListRights {
                mailbox,
                identifier,
            } => command::acl::list_rights(self, &mailbox, &identifier).await,
            C::MyRights { mailbox } => command::acl::my_rights(self, &mailbox).await,
            C::GetMetadata {
                options,
                mailbox,
                entries,
            } => command::metadata::get_metadata(self, options, &mailbox, &entries).await,
            C::SetMetadata { mailbox, entries } => {
                command::metadata::set_metadata(self, &mailbox, entries).await
            }
            C::Status { mailbox, items } => command::list::status(self, &mailbox, &items).await,
            C::Append { mailbox, messages } => {
                command::append::append(self, &mailbox, messages).await
            }
            C::Idle => command::idle::idle(self, tag).await,
            C::Notify { status, groups } => command::notify::notify(self, status, groups).await,
            other => {
                // Another owner's mailbox: no command runs on rights revoked
                // since the last one (SORT and THREAD do not sync first).
                if !self.recheck_shared() {
                    return Ok(Done::bad("no mailbox selected"));
                }
                match other {
                    C::Close => command::select::close(self, true).await,
                    C::Unselect => command::select::close(self, false).await,
                    C::Expunge { uids } => command::select::expunge(self, uids).await,
                    C::Search {
                        uid,
                        charset,
                        returns,
                        criteria,
                    } => {
                        command::search::search(
                            self,
                            tag,
                            uid,
                            charset.as_deref(),
                            returns,
                            &criteria,
                        )
                        .await
                    }
                    C::Sort {
                        uid,
                        returns,
                        criteria,
                        charset,
                        search,
                    } => {
                        command::sort::sort(self, tag, uid, returns, &criteria, &charset, &search)
                            .await
                    }
                    C::Thread {
                        uid,
                        algorithm,
                        charset,
                        search,
                    } => command::thread::thread(self, uid, algorithm, &charset, &search).await,
                    C::Fetch {
                        uid,
                        sequence,
                        attrs,
                        modifiers,
                    } => command::fetch::fetch(self, uid, &sequence, &attrs, &modifiers).await,
                    C::Store {
                        uid,
                        sequence,
                        mode,
                        silent,
                        flags,
                        unchanged_since,
                    } => {
                        command::store::store(
                            self,
                            uid,
                            &sequence,
                            mode,
                            silent,
                            &flags,
                            unchanged_since,
                        )
                        .await
                    }
                    C::Copy {
                        uid,
                        sequence,
                        mailbox,
                    } => command::copy::copy(self, uid, &sequence, &mailbox, false).await,
                    C::Move {
                        uid,
                        sequence,
                        mailbox,
                    } => command::copy::copy(self, uid, &sequence, &mailbox, true).await,
                    C::CancelUpdate { tags } => {
                        self.sync(false).await?;
                        Ok(self.cancel_update(&tags))
                    }
                    _ => Ok(Done::bad("command not valid in this state")),
                }
            }
        }
    }

    /// Waits for a turn to run a heavy command (SEARCH BODY/TEXT, SORT,
    /// THREAD, FETCH of many bodies; see [`crate::user_limits`]), which the
    /// caller holds until the command ends. `Err` is the answer when no turn
    /// came within the configured wait. (`&mut`: a `&Session` held across the
    /// wait would make the session's future not `Send`.)
    pub(crate) async fn heavy_turn(&mut self) -> Result<Option<HeavyPermit>, Done> {
        let Some(slot) = self.user_slot.as_ref() else {
            return Ok(None);
        };
        match slot.heavy().await {
            Ok(permit) => Ok(Some(permit)),
            Err(busy) => {
                let wait_ms = self.ctx.users.config().heavy_wait.as_millis();
                let text = match busy {
                    HeavyBusy::User { max } => format!(
                        "this user already runs {max} heavy commands (SEARCH BODY/TEXT, SORT, THREAD, \
                         FETCH of many message bodies) at once, the most allowed \
                         (heavy_commands_per_user={max}), and none ended within {wait_ms} ms; \
                         try again when one has finished"
                    ),
                    HeavyBusy::Server { max } => format!(
                        "the server already runs {max} heavy commands at once, the most it allows \
                         (heavy_commands_max={max}), and none ended within {wait_ms} ms; try again shortly"
                    ),
                };
                Err(Done::no_code("INUSE", text))
            }
        }
    }

    /// The reader of the logged-in user. Only called after login.
    pub(crate) fn reader(&self) -> Result<&store::UserReader, Done> {
        self.reader
            .as_ref()
            .ok_or_else(|| Done::bad("not authenticated"))
    }

    /// The reader of the selected mailbox: the owner's when it is another
    /// user's (opened by [`Session::open_mailbox`] at SELECT), else the
    /// logged-in user's.
    pub(crate) fn selected_reader(&self) -> Result<&store::UserReader, Done> {
        if self.selected.as_ref().is_some_and(|s| s.owner.is_some()) {
            self.shared_reader
                .as_ref()
                .ok_or_else(|| Done::bad("no mailbox selected"))
        } else {
            self.reader()
        }
    }

    /// The owner of the selected mailbox (the logged-in user for their own).
    pub(crate) fn selected_owner(&self) -> String {
        self.selected
            .as_ref()
            .and_then(|s| s.owner.clone())
            .unwrap_or_else(|| self.user_name())
    }

    /// `intent` (a change to the selected mailbox's owner's mail) as the
    /// logged-in user makes it (see [`crate::shared::acting`]).
    pub(crate) fn acting_on_selected(&self, intent: store::Intent) -> store::Intent {
        crate::shared::acting(&self.user_name(), &self.selected_owner(), intent)
    }

    pub(crate) fn user_name(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    /// Decodes a mailbox name as the client sent it: modified UTF-7 unless
    /// UTF-8 was enabled; `INBOX` in any case is INBOX.
    pub(crate) fn mailbox_name(&self, raw: &str) -> Result<String, Done> {
        let decoded = if self.utf8 || self.rev2 || raw.is_ascii() && !raw.contains('&') {
            raw.to_string()
        } else {
            imap_proto::utf7::decode(raw)
                .ok_or_else(|| Done::bad("mailbox name is not valid modified UTF-7"))?
        };
        Ok(canonical_inbox(&decoded))
    }

    /// Encodes a mailbox name for the client.
    pub(crate) fn write_mailbox(&mut self, name: &str) {
        let utf8 = self.utf8_quoted();
        imap_proto::encode::mailbox(&mut self.out, name, utf8);
    }
}

/// The configured bounds with the literal bound cut to
/// [`UNAUTHENTICATED_LITERAL_BYTES_MAX`].
pub(crate) fn unauthenticated_limits(configured: Limits) -> Limits {
    Limits {
        literal_bytes_max: configured
            .literal_bytes_max
            .min(UNAUTHENTICATED_LITERAL_BYTES_MAX),
        ..configured
    }
}

/// `inbox`, `Inbox/sub` → `INBOX`, `INBOX/sub`.
pub(crate) fn canonical_inbox(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    match name.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("INBOX/") => format!("INBOX/{}", &name[6..]),
        _ => name.to_string(),
    }
}

fn command_name(body: &CommandBody) -> &'static str {
    use CommandBody as C;
    match body {
        C::Capability => "CAPABILITY",
        C::Noop => "NOOP",
        C::Logout => "LOGOUT",
        C::StartTls => "STARTTLS",
        C::Compress { .. } => "COMPRESS",
        C::Authenticate { .. } => "AUTHENTICATE",
        C::Login { .. } => "LOGIN",
        C::Enable { .. } => "ENABLE",
        C::Select { .. } => "SELECT",
        C::Examine { .. } => "EXAMINE",
        C::Create { .. } => "CREATE",
        C::Delete { .. } => "DELETE",
        C::Rename { .. } => "RENAME",
        C::Subscribe { .. } => "SUBSCRIBE",
        C::Unsubscribe { .. } => "UNSUBSCRIBE",
        C::List { .. } => "LIST",
        C::Namespace => "NAMESPACE",
        C::GetQuota { .. } => "GETQUOTA",
        C::GetQuotaRoot { .. } => "GETQUOTAROOT",
        C::SetQuota { .. } => "SETQUOTA",
        C::SetAcl { .. } => "SETACL",
        C::DeleteAcl { .. } => "DELETEACL",
        C::GetAcl { .. } => "GETACL",
        C::ListRights { .. } => "LISTRIGHTS",
        C::MyRights { .. } => "MYRIGHTS",
        C::Status { .. } => "STATUS",
        C::Append { .. } => "APPEND",
        C::Idle => "IDLE",
        C::Check => "CHECK",
        C::Close => "CLOSE",
        C::Unselect => "UNSELECT",
        C::Expunge { .. } => "EXPUNGE",
        C::Search { .. } => "SEARCH",
        C::Sort { .. } => "SORT",
        C::Thread { .. } => "THREAD",
        C::Fetch { .. } => "FETCH",
        C::Store { .. } => "STORE",
        C::Copy { .. } => "COPY",
        C::Move { .. } => "MOVE",
        C::Id { .. } => "ID",
        C::Unauthenticate => "UNAUTHENTICATE",
        C::GetMetadata { .. } => "GETMETADATA",
        C::SetMetadata { .. } => "SETMETADATA",
        C::CancelUpdate { .. } => "CANCELUPDATE",
        C::Notify { .. } => "NOTIFY",
    }
}
