//! One module per IMAP verb family. Each function runs one command for a
//! [`Session`](crate::session::Session), writes untagged responses to its
//! output buffer and returns the tagged completion.

pub mod acl;
pub mod append;
pub mod auth;
pub mod catenate;
pub mod copy;
pub mod fetch;
pub mod idle;
pub mod list;
pub mod mailbox;
pub mod metadata;
pub mod notify;
pub mod quota;
pub mod search;
pub mod select;
pub mod sort;
pub mod store;
pub mod thread;
