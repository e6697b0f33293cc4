//! Parses one complete command (as delimited by [`crate::framer`]) into a
//! [`Command`].
//!
//! The parser is a hand-written recursive descent over the RFC 9051 ABNF plus
//! the extensions listed in [`CommandBody`]. It owns nothing but a cursor and
//! allocates only what ends up in the result. Every error is a [`ParseError`]
//! carrying the tag once it has been read, so the session can answer
//! `tag BAD message`; no input makes it panic, and recursion (search keys) is
//! bounded by [`lexer::NESTING_MAX`].
//!
//! Seams: [`lexer`] has the terminals, [`fetch`] FETCH items, [`search`]
//! search keys, [`list`] LIST/LSUB/STATUS, [`mailbox`] SELECT/CREATE/APPEND
//! and GETMETADATA/SETMETADATA.

mod fetch;
mod lexer;
mod list;
mod mailbox;
mod notify;
mod search;

use crate::secret::Secret;
use crate::types::{Command, CommandBody, StoreMode};
#[cfg(test)]
pub(crate) use lexer::days_in_month;
pub(crate) use lexer::is_astring_char;
use lexer::{Cursor, PResult};

/// Why a command could not be parsed. The session answers `tag BAD message`,
/// or `* BAD message` when `tag` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{tag} BAD {}", self.message),
            None => write!(f, "* BAD {}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// `tag` characters: ASTRING-CHAR except `+` (so a tag can never be mistaken
/// for a continuation response).
pub fn is_tag_char(b: u8) -> bool {
    lexer::is_astring_char(b) && b != b'+'
}

/// A `section-spec` on its own, as in an IMAP URL's `;SECTION=` (RFC 5092):
/// `1.2`, `HEADER`, `1.MIME`, `HEADER.FIELDS (SUBJECT)`. `None` unless the
/// whole input is one.
pub fn parse_section_spec(spec: &[u8]) -> Option<crate::types::Section> {
    let mut input = Vec::with_capacity(spec.len() + 2);
    input.push(b'[');
    input.extend_from_slice(spec);
    input.push(b']');
    let mut c = Cursor::new(&input);
    let section = fetch::section(&mut c).ok()?;
    c.peek().is_none().then_some(section)
}

/// Parse one complete command: its lines and inline literals
/// (`{n}\r\n<n bytes>`), with or without the final CRLF.
///
/// # Errors
/// A [`ParseError`] for anything that does not match the grammar, including
/// unknown commands ("Unknown command"), numbers out of range and strings that
/// are not UTF-8 where text is expected.
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let mut cursor = Cursor::new(input);
    let tag = cursor.tag()?;
    if cursor.at_end() {
        return Err(cursor.error("Missing command"));
    }
    if cursor.peek() != Some(b' ') {
        // The tag ran into a character no tag may hold: it was not a tag,
        // so do not echo it back.
        return Err(ParseError {
            tag: None,
            message: "Invalid tag".into(),
        });
    }
    cursor.sp()?;
    let name = cursor
        .atom()
        .map_err(|_| cursor.error("Missing command"))?
        .to_ascii_uppercase();
    let body = command_body(&mut cursor, &name)?;
    cursor.end()?;
    Ok(Command { tag, body })
}

fn command_body(c: &mut Cursor<'_>, name: &[u8]) -> PResult<CommandBody> {
    let body = match name {
        b"CAPABILITY" => CommandBody::Capability,
        b"NOOP" => CommandBody::Noop,
        b"LOGOUT" => CommandBody::Logout,
        b"STARTTLS" => CommandBody::StartTls,
        b"COMPRESS" => {
            c.sp()?;
            CommandBody::Compress {
                algorithm: c.keyword()?,
            }
        }
        b"IDLE" => CommandBody::Idle,
        b"CHECK" => CommandBody::Check,
        b"CLOSE" => CommandBody::Close,
        b"UNSELECT" => CommandBody::Unselect,
        b"NAMESPACE" => CommandBody::Namespace,
        b"UNAUTHENTICATE" => CommandBody::Unauthenticate,
        b"EXPUNGE" => CommandBody::Expunge { uids: None },
        b"AUTHENTICATE" => authenticate(c)?,
        b"LOGIN" => login(c)?,
        b"ENABLE" => enable(c)?,
        b"ID" => id(c)?,
        b"SELECT" => {
            let (mailbox, params) = mailbox::select(c)?;
            CommandBody::Select { mailbox, params }
        }
        b"EXAMINE" => {
            let (mailbox, params) = mailbox::select(c)?;
            CommandBody::Examine { mailbox, params }
        }
        b"CREATE" => mailbox::create(c)?,
        b"DELETE" => CommandBody::Delete {
            mailbox: one_mailbox(c)?,
        },
        b"SUBSCRIBE" => CommandBody::Subscribe {
            mailbox: one_mailbox(c)?,
        },
        b"UNSUBSCRIBE" => CommandBody::Unsubscribe {
            mailbox: one_mailbox(c)?,
        },
        b"RENAME" => {
            c.sp()?;
            let from = c.mailbox()?;
            c.sp()?;
            let to = c.mailbox()?;
            CommandBody::Rename { from, to }
        }
        b"LIST" => list::list(c)?,
        b"LSUB" => list::lsub(c)?,
        b"STATUS" => list::status(c)?,
        b"GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota {
                root: c.astring_utf8()?,
            }
        }
        b"GETQUOTAROOT" => {
            c.sp()?;
            CommandBody::GetQuotaRoot {
                mailbox: c.mailbox()?,
            }
        }
        b"SETQUOTA" => {
            c.sp()?;
            let root = c.astring_utf8()?;
            c.sp()?;
            let limits = c.paren_list(true, |c| {
                let resource = c.keyword()?;
                c.sp()?;
                Ok((resource, c.number64()?))
            })?;
            CommandBody::SetQuota { root, limits }
        }
        b"SETACL" => {
            let mailbox = one_mailbox(c)?;
            c.sp()?;
            let identifier = c.astring_utf8()?;
            c.sp()?;
            let rights = c.astring_utf8()?;
            CommandBody::SetAcl {
                mailbox,
                identifier,
                rights,
            }
        }
        b"DELETEACL" => {
            let mailbox = one_mailbox(c)?;
            c.sp()?;
            let identifier = c.astring_utf8()?;
            CommandBody::DeleteAcl {
                mailbox,
                identifier,
            }
        }
        b"GETACL" => CommandBody::GetAcl {
            mailbox: one_mailbox(c)?,
        },
        b"LISTRIGHTS" => {
            let mailbox = one_mailbox(c)?;
            c.sp()?;
            let identifier = c.astring_utf8()?;
            CommandBody::ListRights {
                mailbox,
                identifier,
            }
        }
        b"MYRIGHTS" => CommandBody::MyRights {
            mailbox: one_mailbox(c)?,
        },
        b"APPEND" => mailbox::append(c)?,
        b"GETMETADATA" => mailbox::get_metadata(c)?,
        b"SETMETADATA" => mailbox::set_metadata(c)?,
        b"SEARCH" => search::search(c, false)?,
        b"SORT" => search::sort(c, false)?,
        b"THREAD" => search::thread(c, false)?,
        b"CANCELUPDATE" => search::cancel_update(c)?,
        b"NOTIFY" => notify::notify(c)?,
        b"FETCH" => fetch::fetch(c, false)?,
        b"STORE" => store(c, false)?,
        b"COPY" => copy_or_move(c, false, false)?,
        b"MOVE" => copy_or_move(c, false, true)?,
        b"UID" => uid(c)?,
        _ => return Err(c.error("Unknown command")),
    };
    Ok(body)
}

fn uid(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let name = c.keyword()?;
    match name.as_str() {
        "FETCH" => fetch::fetch(c, true),
        "STORE" => store(c, true),
        "COPY" => copy_or_move(c, true, false),
        "MOVE" => copy_or_move(c, true, true),
        "SEARCH" => search::search(c, true),
        "SORT" => search::sort(c, true),
        "THREAD" => search::thread(c, true),
        "EXPUNGE" => {
            c.sp()?;
            Ok(CommandBody::Expunge {
                uids: Some(c.sequence()?),
            })
        }
        _ => Err(c.error("Unknown UID command")),
    }
}

fn one_mailbox(c: &mut Cursor<'_>) -> PResult<String> {
    c.sp()?;
    c.mailbox()
}

/// `AUTHENTICATE mechanism [SP (base64 / "=")]` (SASL-IR, RFC 4959).
fn authenticate(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mechanism = String::from_utf8_lossy(c.atom()?).to_ascii_uppercase();
    let initial_response = if c.eat(b' ') {
        let response = c.atom()?;
        let base64 = response == b"="
            || response
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !base64 {
            return Err(c.error("Initial response is not base64"));
        }
        Some(Secret::new(String::from_utf8_lossy(response).into_owned()))
    } else {
        None
    };
    Ok(CommandBody::Authenticate {
        mechanism,
        initial_response,
    })
}

fn login(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let username = c.astring_utf8()?;
    c.sp()?;
    let password = Secret::new(c.astring_utf8()?);
    Ok(CommandBody::Login { username, password })
}

/// `ENABLE 1*(SP capability)` (RFC 5161); names kept as sent.
fn enable(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    let mut capabilities = Vec::new();
    while c.eat(b' ') {
        capabilities.push(String::from_utf8_lossy(c.atom()?).into_owned());
    }
    if capabilities.is_empty() {
        return Err(c.error("Missing arguments"));
    }
    Ok(CommandBody::Enable { capabilities })
}

/// `ID SP ("(" [string SP nstring *(SP string SP nstring)] ")" / NIL)`
/// (RFC 2971). RFC 2971 bounds the list at 30 pairs; we enforce it so a
/// client cannot make us keep an unbounded list.
fn id(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    const ID_PAIRS_MAX: usize = 30;
    c.sp()?;
    if c.peek_keyword("NIL") {
        c.keyword()?;
        return Ok(CommandBody::Id { parameters: None });
    }
    let parameters = c.paren_list(true, |c| {
        let key = c.string_utf8()?;
        c.sp()?;
        let value = c.nstring_utf8()?;
        Ok((key, value))
    })?;
    if parameters.len() > ID_PAIRS_MAX {
        return Err(c.error("Too many ID parameters"));
    }
    Ok(CommandBody::Id {
        parameters: Some(parameters),
    })
}

/// `STORE seq [SP "(" UNCHANGEDSINCE n ")"] SP ["+"/"-"] FLAGS[.SILENT] SP flags`
fn store(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let sequence = c.sequence()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.peek() == Some(b'(') {
        let modifiers = c.paren_list(false, |c| {
            let name = c.keyword()?;
            if name != "UNCHANGEDSINCE" {
                return Err(c.error("Unknown STORE modifier"));
            }
            c.sp()?;
            c.number64()
        })?;
        if modifiers.len() > 1 {
            return Err(c.error("UNCHANGEDSINCE given twice"));
        }
        unchanged_since = modifiers.first().copied();
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = match c.item_name()?.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err(c.error("Expected FLAGS or FLAGS.SILENT")),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut flags = vec![c.flag()?];
        while c.eat(b' ') {
            flags.push(c.flag()?);
        }
        flags
    };
    Ok(CommandBody::Store {
        uid,
        sequence,
        mode,
        silent,
        flags,
        unchanged_since,
    })
}

fn copy_or_move(c: &mut Cursor<'_>, uid: bool, is_move: bool) -> PResult<CommandBody> {
    c.sp()?;
    let sequence = c.sequence()?;
    c.sp()?;
    let mailbox = c.mailbox()?;
    Ok(if is_move {
        CommandBody::Move {
            uid,
            sequence,
            mailbox,
        }
    } else {
        CommandBody::Copy {
            uid,
            sequence,
            mailbox,
        }
    })
}

#[cfg(test)]
mod tests;
