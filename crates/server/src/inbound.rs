//! Inbound SMTP's [`DeliveryTarget`]: what an MX decides about a message
//! before it is stored (issue 5, items 3 to 5).
//!
//! At MAIL FROM ([`Inbound::admit_sender`]): blocks by client address,
//! network, sender and sender domain (550 5.7.1), then token buckets per
//! client address, per /24 (/64), per sender and per sender domain (451
//! 4.7.1). At RCPT TO: a recipient bucket per client address.
//!
//! After DATA ([`Inbound::deliver`]), in a turn from a [`FairQueue`] keyed by
//! the client's network, so a flood waits behind itself:
//!
//! 1. Incoming `Authentication-Results` headers that claim our authserv-id,
//!    and every `X-Postern-Spam` header, are removed (RFC 8601 section 5).
//! 2. SPF, DKIM, ARC and DMARC (mail-auth) through the cached resolver of
//!    [`crate::dns`]; a lookup neither the resolvers nor a stale answer can
//!    give is a temporary failure (451 4.4.3), never a verdict. DMARC failing
//!    under `p=reject` is refused (550 5.7.1) when `dmarc_reject` is on.
//! 3. The body's SimHash goes to the run detector; members of a detected run
//!    are tempfailed (451 4.7.1) or scored into junk, members of a blocked
//!    run refused.
//! 4. A score from the checks, the run and the configured rules decides
//!    INBOX, junk or 550; `Authentication-Results` and `X-Postern-Spam` are
//!    prepended and the message stored.
//!
//! Nothing here logs message content; the one line per decision carries the
//! client, the sender, the verdict and the rules.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use delivery::{Admission, DeliverError, DeliveryTarget, Envelope, ResolveError, UserName};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use spam::blocks::{BlockKey, Blocklist};
use spam::fingerprint::Fingerprint;
use spam::limits::{Net, Rate, RateLimiter};
use spam::runs::{RunConfig, RunDetector, RunInfo};
use spam::score::{self, Action, Contribution, Rule, Thresholds};

use crate::config::{RunAction, SmtpSection, SpamSection};
use crate::dns::DnsCacheStore;
use crate::fair::FairQueue;
use crate::lmtp_target::StoreTarget;

/// Most bytes of text taken from a message for the fingerprint and the
/// rules; the checks of mail-auth read the whole message.
const TEXT_BYTES_MAX: usize = 1024 * 1024;

/// Score parts of the sender checks.
const SPF_FAIL: f64 = 3.0;
const SPF_SOFTFAIL: f64 = 1.0;
const DKIM_FAIL: f64 = 2.0;
const DMARC_FAIL: f64 = 4.0;
const DMARC_QUARANTINE: f64 = 5.0;
const DMARC_PASS: f64 = -1.0;
const NO_MESSAGE_ID: f64 = 0.5;
const NO_DATE: f64 = 0.5;

/// The limits and memories shared by all SMTP sessions.
struct Limits {
    ip: RateLimiter<IpAddr>,
    net: RateLimiter<Net>,
    sender: RateLimiter<String>,
    domain: RateLimiter<String>,
    recipients: RateLimiter<IpAddr>,
}

/// Inbound SMTP's policy, shared by every SMTP session.
pub struct Inbound {
    store_target: Arc<StoreTarget>,
    spam: SpamSection,
    check_auth: bool,
    dmarc_reject: bool,
    authserv_id: String,
    /// Our own name, the SPF "r" macro.
    hostname: String,
    authenticator: Option<MessageAuthenticator>,
    dns: DnsCacheStore,
    limits: Mutex<Limits>,
    runs: Mutex<RunDetector>,
    blocks: Mutex<Blocklist>,
    rules: Vec<Rule>,
    turns: FairQueue<Net>,
}

/// One run as the CLI and the admin API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunView {
    pub id: u64,
    pub messages: u64,
    pub sources: usize,
    pub top_sources: Vec<SourceView>,
    pub sender_domains: Vec<DomainView>,
    pub first_seen: String,
    pub last_seen: String,
    pub detected: String,
    pub active: bool,
    pub fingerprint: String,
    pub blocked: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceView {
    pub ip: String,
    pub messages: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainView {
    pub domain: String,
    pub messages: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339_ms(ms: u64) -> String {
    status::rfc3339((ms / 1000) as i64)
}

/// A token bucket per key: `per_second` (0: no limit) up to `burst`.
fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_second: f64,
    burst: f64,
    tracked: usize,
) -> RateLimiter<K> {
    RateLimiter::new(Rate { per_second, burst }, tracked)
}

/// The domain of an address, lower case, without a trailing dot.
fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// What the sender checks found.
struct AuthOutcome {
    header: String,
    contributions: Vec<Contribution>,
    /// 550 5.7.1 for this text (DMARC p=reject).
    reject: Option<String>,
}

impl Inbound {
    /// The policy for `[smtp]` and `[spam]`, with the blocks stored so far.
    pub fn new(
        store_target: Arc<StoreTarget>,
        smtp: &SmtpSection,
        spam: &SpamSection,
        dns: &crate::config::DnsSection,
        hostname: &str,
    ) -> Result<Self, String> {
        let authenticator = if smtp.check_auth {
            Some(crate::dns::authenticator(dns)?)
        } else {
            None
        };
        let tracked = spam.tracked_max;
        let limits = Limits {
            ip: limiter(spam.ip_messages_per_sec, spam.ip_messages_burst, tracked),
            net: limiter(spam.net_messages_per_sec, spam.net_messages_burst, tracked),
            sender: limiter(
                spam.sender_messages_per_sec,
                spam.sender_messages_burst,
                tracked,
            ),
            domain: limiter(
                spam.domain_messages_per_sec,
                spam.domain_messages_burst,
                tracked,
            ),
            recipients: limiter(
                spam.ip_recipients_per_sec,
                spam.ip_recipients_burst,
                tracked,
            ),
        };
        let runs = RunDetector::new(RunConfig {
            window_ms: spam.run_window_secs.saturating_mul(1000),
            min_messages: spam.run_min_messages,
            min_sources: spam.run_min_sources,
            max_distance: spam.run_max_distance,
            max_clusters: spam.run_clusters_max,
            ..RunConfig::default()
        });
        let rules = spam
            .rules
            .iter()
            .map(|rule| Rule {
                name: rule.name.clone(),
                header: rule.header.clone(),
                contains: rule.contains.clone(),
                score: rule.score,
            })
            .collect();
        let inbound = Inbound {
            store_target,
            spam: spam.clone(),
            check_auth: smtp.check_auth,
            dmarc_reject: smtp.dmarc_reject,
            authserv_id: smtp
                .authserv_id
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            hostname: hostname.to_string(),
            authenticator,
            dns: DnsCacheStore::new(dns),
            limits: Mutex::new(limits),
            runs: Mutex::new(runs),
            blocks: Mutex::new(Blocklist::default()),
            rules,
            turns: FairQueue::new(smtp.delivery_workers),
        };
        inbound
            .reload_blocks()
            .map_err(|e| format!("spam blocks: {e}"))?;
        Ok(inbound)
    }

    /// Reads the blocks from the store again (after a change by an admin).
    /// A stored key this version cannot parse is logged and skipped.
    pub fn reload_blocks(&self) -> Result<(), String> {
        let stored = self
            .store_target
            .store
            .spam_blocks()
            .map_err(|e| e.to_string())?;
        let mut blocks = Blocklist::default();
        for block in stored {
            match block.key.parse::<BlockKey>() {
                Ok(key) => {
                    blocks.insert(key);
                }
                Err(error) => {
                    tracing::warn!(event = "spam.block_unreadable", key = %block.key, %error);
                }
            }
        }
        *self.blocks.lock().unwrap_or_else(|p| p.into_inner()) = blocks;
        Ok(())
    }

    /// Runs detected recently, newest first.
    pub fn runs(&self) -> Vec<RunView> {
        let now = now_ms();
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .runs(now);
        let blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter().map(|run| self.run_view(run, &blocks)).collect()
    }

    /// The fingerprint of run `id`, for a block by run.
    pub fn run_fingerprint(&self, id: u64) -> Option<Fingerprint> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.run(id, now_ms()).map(|run| run.fingerprint)
    }

    fn run_view(&self, run: &RunInfo, blocks: &Blocklist) -> RunView {
        RunView {
            id: run.id,
            messages: run.messages,
            sources: run.sources,
            top_sources: run
                .top_sources
                .iter()
                .map(|(ip, messages)| SourceView {
                    ip: ip.to_string(),
                    messages: *messages,
                })
                .collect(),
            sender_domains: run
                .sender_domains
                .iter()
                .map(|(domain, messages)| DomainView {
                    domain: domain.clone(),
                    messages: *messages,
                })
                .collect(),
            first_seen: rfc3339_ms(run.first_seen_ms),
            last_seen: rfc3339_ms(run.last_seen_ms),
            detected: rfc3339_ms(run.detected_ms),
            active: run.active,
            fingerprint: run.fingerprint.to_hex(),
            blocked: blocks
                .fingerprint(run.fingerprint, self.spam.run_max_distance)
                .is_some(),
        }
    }

    /// Messages waiting for a turn (metrics).
    pub fn waiting(&self) -> usize {
        self.turns.waiting()
    }

    /// DNS cache figures (metrics).
    pub fn dns_stats(&self) -> crate::dns::CacheStats {
        self.dns.stats()
    }

    /// The sender checks, fresh answers first, stale ones when the resolvers
    /// fail. `Err` when even stale answers cannot decide.
    async fn authenticate(
        &self,
        authenticator: &MessageAuthenticator,
        message: &[u8],
        envelope: &Envelope,
    ) -> Result<AuthOutcome, ()> {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            // Not a message mail-auth can read: no verdict to write, and
            // nothing that passes.
            return Ok(AuthOutcome {
                header: AuthenticationResults::new(&self.authserv_id).to_header(),
                contributions: Vec::new(),
                reject: None,
            });
        };
        let mut stale = self.dns.resolver_down();
        loop {
            let outcome = self
                .check_once(authenticator, &parsed, envelope, stale)
                .await;
            match outcome {
                Some(outcome) => return Ok(outcome),
                None if !stale => {
                    self.dns.mark_down();
                    stale = true;
                }
                None => {
                    self.dns.mark_down();
                    return Err(());
                }
            }
        }
    }

    /// One round of checks through a fresh or stale view of the cache; None
    /// when a lookup failed (a "temperror" anywhere).
    async fn check_once(
        &self,
        authenticator: &MessageAuthenticator,
        message: &AuthenticatedMessage<'_>,
        envelope: &Envelope,
        stale: bool,
    ) -> Option<AuthOutcome> {
        let view = self.dns.view(stale);
        let helo = if envelope.helo.is_empty() {
            "unknown"
        } else {
            envelope.helo.as_str()
        };
        let spf_params = || {
            SpfParameters::verify_mail_from(
                envelope.peer_ip,
                helo,
                &self.hostname,
                &envelope.sender,
            )
        };
        let spf: SpfOutput = authenticator.verify_spf(view.params(spf_params())).await;
        let dkim: Vec<DkimOutput> = authenticator.verify_dkim(view.params(message)).await;
        let arc: ArcOutput = authenticator.verify_arc(view.params(message)).await;
        let mail_from_domain = domain_of(&envelope.sender).unwrap_or_else(|| helo.to_string());
        let dmarc: DmarcOutput = authenticator
            .verify_dmarc(view.params(mail_auth::dmarc::verify::DmarcParameters::new(
                message,
                &dkim,
                &mail_from_domain,
                &spf,
            )))
            .await;
        let temporary = spf.result() == SpfResult::TempError
            || dkim
                .iter()
                .any(|d| matches!(d.result(), DkimResult::TempError(_)))
            || matches!(arc.result(), DkimResult::TempError(_))
            || matches!(dmarc.dkim_result(), DmarcResult::TempError(_))
            || matches!(dmarc.spf_result(), DmarcResult::TempError(_));
        if temporary {
            return None;
        }
        self.dns.learn_negatives(&view);
        let header =
            authentication_results(&self.authserv_id, &spf, envelope, helo, &dkim, &arc, &dmarc);
        let mut contributions = Vec::new();
        let mut add = |name: &str, score: f64| {
            contributions.push(Contribution {
                name: name.to_string(),
                score,
            });
        };
        match spf.result() {
            SpfResult::Fail => add("spf_fail", SPF_FAIL),
            SpfResult::SoftFail => add("spf_softfail", SPF_SOFTFAIL),
            _ => {}
        }
        if dkim.iter().any(|d| dkim_word(d.result()).0 == "fail")
            && !dkim.iter().any(|d| d.result() == &DkimResult::Pass)
        {
            add("dkim_fail", DKIM_FAIL);
        }
        let dmarc_failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let dmarc_passed = dmarc.result() == DmarcResult::Pass;
        let mut reject = None;
        if dmarc_failed {
            match dmarc.policy() {
                Policy::Reject if self.dmarc_reject => {
                    reject = Some(format!(
                        "DMARC policy of {} rejects this message",
                        dmarc.domain()
                    ));
                    add("dmarc_fail", DMARC_FAIL);
                }
                Policy::Quarantine | Policy::Reject => add("dmarc_quarantine", DMARC_QUARANTINE),
                _ => add("dmarc_fail", DMARC_FAIL),
            }
        } else if dmarc_passed {
            add("dmarc_pass", DMARC_PASS);
        }
        if !message.has_message_id_header() {
            add("no_message_id", NO_MESSAGE_ID);
        }
        if !message.has_date_header() {
            add("no_date", NO_DATE);
        }
        Some(AuthOutcome {
            header,
            contributions,
            reject,
        })
    }

    fn refused(
        permanent: bool,
        status: &'static str,
        text: String,
        count: usize,
    ) -> Vec<Result<(), DeliverError>> {
        vec![
            Err(DeliverError::Refused {
                permanent,
                status,
                text,
            });
            count
        ]
    }

    async fn deliver_checked(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        envelope: Envelope,
    ) -> Vec<Result<(), DeliverError>> {
        let count = users.len();
        let stripped = spam::headers::strip_claimed(&message, &self.authserv_id).into_owned();
        drop(message);

        let (auth_header, mut contributions) = match &self.authenticator {
            Some(authenticator) if self.check_auth => {
                match self.authenticate(authenticator, &stripped, &envelope).await {
                    Ok(AuthOutcome {
                        reject: Some(text), ..
                    }) => {
                        tracing::info!(
                            event = "smtp.refused",
                            peer = %envelope.peer_ip,
                            reason = "dmarc",
                        );
                        return Self::refused(true, "5.7.1", text, count);
                    }
                    Ok(outcome) => (Some(outcome.header), outcome.contributions),
                    Err(()) => {
                        tracing::info!(
                            event = "smtp.deferred",
                            peer = %envelope.peer_ip,
                            reason = "dns",
                        );
                        return Self::refused(
                            false,
                            "4.4.3",
                            "cannot check the sender's authentication now (DNS failure)".into(),
                            count,
                        );
                    }
                }
            }
            _ => (None, Vec::new()),
        };

        let mut action = Action::Inbox;
        let mut spam_header = None;
        if self.spam.enabled {
            let (text, headers) = message_text(&stripped, self.store_target.store.summary_limits());
            let fingerprint = Fingerprint::of_text(&text);
            if let Some(fp) = fingerprint {
                let blocked = self
                    .blocks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fingerprint(fp, self.spam.run_max_distance)
                    .cloned();
                if let Some(key) = blocked {
                    tracing::info!(event = "smtp.refused", peer = %envelope.peer_ip, block = %key);
                    return Self::refused(true, "5.7.1", "message blocked as spam".into(), count);
                }
                let domain = domain_of(&envelope.sender).unwrap_or_default();
                let observation = self.runs.lock().unwrap_or_else(|p| p.into_inner()).observe(
                    fp,
                    envelope.peer_ip,
                    &domain,
                    now_ms(),
                );
                if observation.newly_detected {
                    tracing::warn!(
                        event = "spam.run_detected",
                        run = observation.cluster,
                        messages = observation.cluster_size,
                        fingerprint = %fp.to_hex(),
                    );
                }
                if let Some(run) = observation.run {
                    match self.spam.run_action {
                        RunAction::Tempfail => {
                            tracing::info!(event = "smtp.deferred", peer = %envelope.peer_ip, run);
                            return Self::refused(
                                false,
                                "4.7.1",
                                format!("message looks like part of a bulk mail run (run {run})"),
                                count,
                            );
                        }
                        RunAction::Junk => contributions.push(Contribution {
                            name: "run".into(),
                            score: self.spam.run_score,
                        }),
                    }
                }
            }
            contributions.extend(score::apply_rules(&self.rules, &headers, &text));
            let verdict = score::verdict(
                contributions,
                Thresholds {
                    junk: self.spam.junk_score,
                    reject: self.spam.reject_score,
                },
            );
            action = verdict.action;
            tracing::info!(
                event = "spam.verdict",
                peer = %envelope.peer_ip,
                score = verdict.score,
                action = ?verdict.action,
                rules = %score::header_value(&verdict),
            );
            if action == Action::Reject {
                return Self::refused(true, "5.7.1", "message refused as spam".into(), count);
            }
            spam_header = Some(spam::headers::field(
                "X-Postern-Spam",
                &score::header_value(&verdict),
            ));
        }

        let mut message = Vec::with_capacity(stripped.len() + 512);
        if let Some(header) = &auth_header {
            message.extend_from_slice(header.as_bytes());
        }
        if let Some(header) = &spam_header {
            message.extend_from_slice(header.as_bytes());
        }
        message.extend_from_slice(&stripped);
        drop(stripped);
        match action {
            Action::Junk => {
                self.store_target
                    .deliver_to(message, users, &self.spam.junk_mailbox, Some("\\Junk"))
                    .await
            }
            _ => {
                self.store_target
                    .deliver_to(message, users, "INBOX", None)
                    .await
            }
        }
    }
}

/// A DKIM or ARC result as RFC 8601 names it, with a comment. mail-auth
/// calls a body hash mismatch "neutral"; RFC 6376 section 6.1.3 makes it a
/// verification failure, so it is "fail" here.
fn dkim_word(result: &DkimResult) -> (&'static str, Option<String>) {
    let comment = |e: &mail_auth::Error| Some(comment_safe(&e.to_string()));
    match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) if is_body_hash_mismatch(e) => {
            ("fail", Some("body hash did not verify".into()))
        }
        DkimResult::Neutral(e) => ("neutral", comment(e)),
        DkimResult::Fail(e) => ("fail", comment(e)),
        DkimResult::PermError(e) => ("permerror", comment(e)),
        DkimResult::TempError(e) => ("temperror", comment(e)),
        DkimResult::None => ("none", None),
    }
}

fn is_body_hash_mismatch(error: &mail_auth::Error) -> bool {
    matches!(
        error,
        mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)
            | mail_auth::Error::Arc(mail_auth::arc::ArcError::FailedBodyHashMatch)
    )
}

/// Text safe inside an RFC 8601 comment: no parentheses, backslashes or
/// line breaks, at most 100 characters.
fn comment_safe(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '(' | ')' | '\\') && !c.is_control())
        .take(100)
        .collect()
}

/// A property value as a token: what a sender put in its signature, kept to
/// characters that need no quoting.
fn pvalue(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+' | '='))
        .take(255)
        .collect()
}

/// Our `Authentication-Results` field (RFC 8601). SPF and DMARC are written
/// by mail-auth; DKIM and ARC here, for the body-hash wording above and for
/// `header.d`, which mail-auth leaves out when the signature has an `i=`.
fn authentication_results(
    authserv_id: &str,
    spf: &SpfOutput,
    envelope: &Envelope,
    helo: &str,
    dkim: &[DkimOutput],
    arc: &ArcOutput,
    dmarc: &DmarcOutput,
) -> String {
    let mut out = String::from("Authentication-Results: ");
    out.push_str(
        &AuthenticationResults::new(authserv_id)
            .with_spf_mailfrom_result(spf, envelope.peer_ip, &envelope.sender, helo)
            .to_string(),
    );
    if dkim.is_empty() {
        out.push_str(";\r\n\tdkim=none");
    }
    for output in dkim {
        let (word, comment) = dkim_word(output.result());
        out.push_str(";\r\n\tdkim=");
        out.push_str(word);
        if let Some(comment) = comment {
            out.push_str(&format!(" ({comment})"));
        }
        if let Some(signature) = output.signature() {
            out.push_str(&format!(" header.d={}", pvalue(&signature.d)));
            if !signature.i.is_empty() {
                out.push_str(&format!(" header.i={}", pvalue(&signature.i)));
            }
            out.push_str(&format!(" header.s={}", pvalue(&signature.s)));
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD
                .encode(signature.b.get(..6).unwrap_or(&signature.b));
            out.push_str(&format!(" header.b={}", pvalue(&b)));
        }
    }
    let (word, comment) = dkim_word(arc.result());
    out.push_str(";\r\n\tarc=");
    out.push_str(word);
    if let Some(comment) = comment {
        out.push_str(&format!(" ({comment})"));
    }
    match envelope.peer_ip {
        // An IPv6 address has colons, which a token cannot hold.
        IpAddr::V6(ip) => out.push_str(&format!(" smtp.remote-ip=\"{ip}\"")),
        IpAddr::V4(ip) => out.push_str(&format!(" smtp.remote-ip={ip}")),
    }
    // mail-auth's DMARC entry, without its own authserv-id.
    out.push_str(
        &AuthenticationResults::new("")
            .with_dmarc_result(dmarc)
            .to_string(),
    );
    out.push_str("\r\n");
    out
}

/// The text of a message (its text parts, HTML as text) and its header
/// fields, unfolded and decoded: what SEARCH sees, from the same code, for
/// the fingerprint and the rules.
fn message_text(message: &[u8], limits: &mime::Limits) -> (String, Vec<(String, String)>) {
    (
        mime::body_text(message, TEXT_BYTES_MAX),
        mime::header_fields(message, limits),
    )
}

impl DeliveryTarget for Inbound {
    async fn admit_sender(&self, envelope: &Envelope) -> Admission {
        {
            let blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(key) = blocks
                .client(envelope.peer_ip)
                .or_else(|| blocks.sender(&envelope.sender))
            {
                tracing::info!(event = "smtp.blocked", peer = %envelope.peer_ip, block = %key);
                return Admission::Refuse(format!("mail from you is blocked here ({key})"));
            }
        }
        let now = now_ms();
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let net = Net::of(envelope.peer_ip);
        let mut over: Vec<(String, u64)> = Vec::new();
        if let Err(wait) = limits.ip.take(&envelope.peer_ip, 1.0, now) {
            over.push((envelope.peer_ip.to_string(), wait));
        }
        if let Err(wait) = limits.net.take(&net, 1.0, now) {
            over.push((net.to_string(), wait));
        }
        let sender = envelope.sender.to_ascii_lowercase();
        if !sender.is_empty() {
            if let Err(wait) = limits.sender.take(&sender, 1.0, now) {
                over.push((format!("<{sender}>"), wait));
            }
            if let Some(domain) = domain_of(&sender)
                && let Err(wait) = limits.domain.take(&domain, 1.0, now)
            {
                over.push((domain, wait));
            }
        }
        match over.first() {
            None => Admission::Accept,
            Some((what, wait)) => {
                tracing::info!(event = "smtp.rate_limited", peer = %envelope.peer_ip, over = %what);
                let secs = Duration::from_millis(*wait).as_secs().max(1);
                Admission::Defer(format!(
                    "too many messages from {what}; try again in {secs} s"
                ))
            }
        }
    }

    async fn admit_recipient(&self, envelope: &Envelope, _address: &str) -> Admission {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        match limits.recipients.take(&envelope.peer_ip, 1.0, now_ms()) {
            Ok(()) => Admission::Accept,
            Err(wait) => {
                let secs = Duration::from_millis(wait).as_secs().max(1);
                Admission::Defer(format!(
                    "too many recipients from {}; try again in {secs} s",
                    envelope.peer_ip
                ))
            }
        }
    }

    async fn resolve(&self, address: &str) -> Result<Vec<UserName>, ResolveError> {
        self.store_target.resolve(address).await
    }

    async fn deliver(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        envelope: Envelope,
    ) -> Vec<Result<(), DeliverError>> {
        let _turn = self.turns.acquire(Net::of(envelope.peer_ip)).await;
        self.deliver_checked(message, users, envelope).await
    }
}
