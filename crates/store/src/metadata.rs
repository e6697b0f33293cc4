//! Annotations (IMAP METADATA, RFC 5464): entry names, values, and the
//! `metadata` table that both kinds of index hold.
//!
//! - A user index holds the user's annotations: those on a mailbox (keyed by
//!   the mailbox's stable id, so RENAME keeps them and DELETE drops them with
//!   the mailbox) and the user's private server annotations (mailbox `""`).
//!   Record: `MetadataSet`.
//! - `server.sqlite` holds the server's shared annotations (mailbox `""`),
//!   which every logged-in user reads and only an administrator sets.
//!   Record: `ServerMetadataSet`.
//!
//! Entry names are case-insensitive (RFC 5464 3.2): they are kept and
//! answered in lower case.

use crate::error::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The table, in the user index and in `server.sqlite` alike.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metadata (
    mailbox TEXT NOT NULL,
    entry TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (mailbox, entry)
) WITHOUT ROWID;
";

/// Longest entry name, in bytes.
pub const ENTRY_BYTES_MAX: usize = 1024;

/// An annotation's value: any bytes (a `literal8` may carry NUL). In the
/// journal it is a JSON string when it is UTF-8, else `{"hex": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataValue(pub Vec<u8>);

impl Serialize for MetadataValue {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex::encode(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for MetadataValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Hex { hex: String },
        }
        match Form::deserialize(d)? {
            Form::Text(text) => Ok(MetadataValue(text.into_bytes())),
            Form::Hex { hex } => hex::decode(hex)
                .map(MetadataValue)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// One entry of a SETMETADATA: its name and new value (`None` removes it).
pub type MetadataEntry = (String, Option<MetadataValue>);

/// Checks an entry name by RFC 5464 3.2 and returns it in lower case:
/// `/private` or `/shared`, or a name below one of them; printable ASCII
/// without `*` and `%`, no empty component (`//`), no trailing `/`, at most
/// [`ENTRY_BYTES_MAX`] bytes. `to_set`: the name must be below the prefix
/// (`/shared` itself holds no value).
pub fn validate_entry(name: &str, to_set: bool) -> Result<String> {
    let invalid = |why: &str| {
        let shown: String = name.chars().take(64).collect();
        Err(StoreError::invalid(format!(
            "invalid entry name {shown:?}: {why}"
        )))
    };
    if name.len() > ENTRY_BYTES_MAX {
        return invalid(&format!("longer than {ENTRY_BYTES_MAX} bytes"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return invalid("only printable ASCII without spaces is allowed");
    }
    if name.contains(['*', '%']) {
        return invalid("'*' and '%' are not allowed");
    }
    if name.contains("//") {
        return invalid("consecutive '/' are not allowed");
    }
    let lower = name.to_ascii_lowercase();
    let below = lower
        .strip_prefix("/private")
        .or_else(|| lower.strip_prefix("/shared"));
    match below {
        Some("") if !to_set => Ok(lower),
        Some("") => invalid("a value is set on a name below /private or /shared"),
        Some(rest) if rest.starts_with('/') && !rest.ends_with('/') => Ok(lower),
        Some(rest) if rest.ends_with('/') => invalid("a trailing '/' is not allowed"),
        _ => invalid("it must start with /private/ or /shared/"),
    }
}

/// Whether a (validated) entry name is private (`/private...`).
pub fn is_private(entry: &str) -> bool {
    entry == "/private" || entry.starts_with("/private/")
}

/// Sets or removes entries of one mailbox (`""`: the server) in a `metadata` table.
pub(crate) fn set(conn: &Connection, mailbox: &str, entries: &[MetadataEntry]) -> Result<()> {
    for (entry, value) in entries {
        match value {
            Some(value) => {
                conn.prepare_cached(
                    "INSERT INTO metadata (mailbox, entry, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (mailbox, entry) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![mailbox, entry, value.0])?;
            }
            None => {
                conn.prepare_cached("DELETE FROM metadata WHERE mailbox = ?1 AND entry = ?2")?
                    .execute(params![mailbox, entry])?;
            }
        }
    }
    Ok(())
}

/// Removes every entry of a mailbox (it was deleted).
pub(crate) fn remove_mailbox(conn: &Connection, mailbox: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM metadata WHERE mailbox = ?1")?
        .execute([mailbox])?;
    Ok(())
}

/// The value of one entry.
pub fn get(conn: &Connection, mailbox: &str, entry: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM metadata WHERE mailbox = ?1 AND entry = ?2")?
        .query_row(params![mailbox, entry], |r| r.get(0))
        .optional()?)
}

/// Every entry below `entry` (not `entry` itself), in name order; with
/// `children_only`, only those one level below.
pub fn below(
    conn: &Connection,
    mailbox: &str,
    entry: &str,
    children_only: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    // Names below "/a" are those in ["/a/", "/a0"): '0' follows '/' in ASCII.
    let low = format!("{entry}/");
    let high = format!("{entry}0");
    let mut stmt = conn.prepare_cached(
        "SELECT entry, value FROM metadata WHERE mailbox = ?1 AND entry >= ?2 AND entry < ?3
         ORDER BY entry",
    )?;
    let rows = stmt.query_map(params![mailbox, low, high], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, value) = row?;
        if children_only && name[low.len()..].contains('/') {
            continue;
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Entries in the table (all mailboxes).
pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM metadata")?
        .query_row([], |r| r.get::<_, i64>(0))?
        .max(0) as u64)
}

/// Every entry: (mailbox, entry) → value, for reconstruct's comparison.
pub fn all(conn: &Connection) -> Result<std::collections::BTreeMap<(String, String), Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT mailbox, entry, value FROM metadata")?;
    let rows = stmt.query_map([], |r| {
        Ok(((r.get(0)?, r.get(1)?), r.get::<_, Vec<u8>>(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_follow_rfc_5464() {
        assert_eq!(
            validate_entry("/Shared/Comment", true).unwrap(),
            "/shared/comment"
        );
        assert_eq!(
            validate_entry("/private/vendor/x-foo/bar", true).unwrap(),
            "/private/vendor/x-foo/bar"
        );
        // The roots themselves: readable with DEPTH, never set.
        assert_eq!(validate_entry("/private", false).unwrap(), "/private");
        assert!(validate_entry("/private", true).is_err());
        for bad in [
            "",
            "/",
            "comment",
            "/comment",
            "/privatex/a",
            "/shared/",
            "/shared/a/",
            "/shared//a",
            "/shared/a*",
            "/shared/%",
            "/shared/a b",
            "/shared/\u{e9}",
            "/shared/a\u{1}",
        ] {
            assert!(validate_entry(bad, false).is_err(), "{bad:?} accepted");
        }
        let long = format!("/shared/{}", "a".repeat(ENTRY_BYTES_MAX));
        assert!(validate_entry(&long, true).is_err());
        assert!(is_private("/private/a") && is_private("/private"));
        assert!(!is_private("/shared/a"));
    }

    #[test]
    fn values_round_trip_through_json_text_or_hex() {
        let text = MetadataValue(b"hello \"world\"".to_vec());
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(json, r#""hello \"world\"""#);
        assert_eq!(serde_json::from_str::<MetadataValue>(&json).unwrap(), text);
        let binary = MetadataValue(vec![0, 0xff, b'a']);
        let json = serde_json::to_string(&binary).unwrap();
        assert_eq!(json, r#"{"hex":"00ff61"}"#);
        assert_eq!(
            serde_json::from_str::<MetadataValue>(&json).unwrap(),
            binary
        );
    }

    #[test]
    fn below_finds_descendants_or_children() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let v = |s: &str| Some(MetadataValue(s.as_bytes().to_vec()));
        set(
            &conn,
            "m",
            &[
                ("/shared/a".into(), v("1")),
                ("/shared/a/b".into(), v("2")),
                ("/shared/a/b/c".into(), v("3")),
                ("/shared/ab".into(), v("4")),
                ("/private/a/b".into(), v("5")),
            ],
        )
        .unwrap();
        let names = |rows: Vec<(String, Vec<u8>)>| -> Vec<String> {
            rows.into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(
            names(below(&conn, "m", "/shared/a", false).unwrap()),
            ["/shared/a/b", "/shared/a/b/c"]
        );
        assert_eq!(
            names(below(&conn, "m", "/shared/a", true).unwrap()),
            ["/shared/a/b"]
        );
        assert_eq!(
            names(below(&conn, "m", "/shared", true).unwrap()),
            ["/shared/a", "/shared/ab"]
        );
        assert!(below(&conn, "other", "/shared", false).unwrap().is_empty());
        assert_eq!(get(&conn, "m", "/shared/ab").unwrap(), Some(b"4".to_vec()));
        set(&conn, "m", &[("/shared/ab".into(), None)]).unwrap();
        assert_eq!(get(&conn, "m", "/shared/ab").unwrap(), None);
        assert_eq!(count(&conn).unwrap(), 4);
        remove_mailbox(&conn, "m").unwrap();
        assert_eq!(count(&conn).unwrap(), 0);
    }
}
