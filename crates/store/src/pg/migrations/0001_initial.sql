-- description: accounts, mailboxes, messages, blobs, the change log, the directory
-- breaks_before: 1
--
-- The schema of docs/design/postgres-cluster.md, section 4.2: every shard
-- has all of it; the directory tables hold rows on the first shard only.
-- Integers that are u32/u64 in Rust are bigint; times are seconds since the
-- epoch; flags are one text column as in the embedded index.

CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

-- ===== per shard: accounts and mail =====
CREATE TABLE users (
    id bigint PRIMARY KEY,
    name text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    state text NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'moving_in', 'moved_out', 'deleting')),
    quota_bytes bigint,
    quota_messages bigint,
    sms_alert text,
    uid_validity_last bigint NOT NULL DEFAULT 0,
    usage_bytes bigint NOT NULL DEFAULT 0,
    usage_messages bigint NOT NULL DEFAULT 0,
    -- The last change-log seq of this user: what IDLE on other nodes polls
    -- and what a move catches up to.
    last_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE mailboxes (
    user_id bigint NOT NULL REFERENCES users (id),
    id text NOT NULL,
    name text NOT NULL,
    uid_validity bigint NOT NULL,
    uid_next bigint NOT NULL CHECK (uid_next >= 1),
    highest_modseq bigint NOT NULL,
    special_use text,
    PRIMARY KEY (user_id, id),
    UNIQUE (user_id, name)
);

-- Contents, by SHA-256, stored once however many messages name them.
CREATE TABLE blobs (
    hash bytea PRIMARY KEY CHECK (length(hash) = 32),
    size bigint NOT NULL,
    data bytea NOT NULL,
    stored_at bigint NOT NULL
);

-- Narrow rows: what SELECT, SEARCH and SORT start from.
CREATE TABLE messages (
    user_id bigint NOT NULL,
    mailbox text NOT NULL,
    uid bigint NOT NULL,
    modseq bigint NOT NULL,
    flags text NOT NULL,
    internal_date bigint NOT NULL,
    internal_zone smallint NOT NULL,
    save_date bigint NOT NULL,
    size bigint NOT NULL,
    -- The foreign key keeps garbage collection from removing a content a
    -- message is being stored with.
    blob bytea NOT NULL REFERENCES blobs (hash),
    email_id text NOT NULL,
    thread_id text NOT NULL,
    row_crc bigint NOT NULL,
    PRIMARY KEY (user_id, mailbox, uid),
    FOREIGN KEY (user_id, mailbox) REFERENCES mailboxes (user_id, id)
);
CREATE INDEX messages_by_modseq ON messages (user_id, mailbox, modseq);
CREATE INDEX messages_by_blob ON messages (blob);

-- Wide rows: the parsed summary and the sort keys, each bound to its
-- message's content by a checksum.
CREATE TABLE message_cache (
    user_id bigint NOT NULL,
    mailbox text NOT NULL,
    uid bigint NOT NULL,
    summary bytea NOT NULL,
    summary_crc bigint NOT NULL,
    sort_keys bytea NOT NULL,
    keys_crc bigint NOT NULL,
    PRIMARY KEY (user_id, mailbox, uid),
    FOREIGN KEY (user_id, mailbox, uid) REFERENCES messages ON DELETE CASCADE
);

-- Tombstones, kept for good (QRESYNC's VANISHED (EARLIER) is always exact).
CREATE TABLE expunged (
    user_id bigint NOT NULL,
    mailbox text NOT NULL,
    uid bigint NOT NULL,
    modseq bigint NOT NULL,
    PRIMARY KEY (user_id, mailbox, uid)
);
CREATE INDEX expunged_by_modseq ON expunged (user_id, mailbox, modseq);

CREATE TABLE subscriptions (
    user_id bigint NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE threads (
    user_id bigint NOT NULL,
    message_id text NOT NULL,
    thread_id text NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE TABLE metadata (
    user_id bigint NOT NULL,
    mailbox text NOT NULL,
    entry text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (user_id, mailbox, entry)
);
CREATE TABLE acl (
    user_id bigint NOT NULL,
    mailbox text NOT NULL,
    identifier text NOT NULL,
    rights text NOT NULL,
    PRIMARY KEY (user_id, mailbox, identifier)
);
-- Reverse of acl for the owners on this shard: where LIST looks for the
-- mailboxes others share with a user.
CREATE TABLE acl_grants (
    grantee text NOT NULL,
    owner text NOT NULL,
    mailbox text NOT NULL,
    rights text NOT NULL,
    PRIMARY KEY (grantee, owner, mailbox)
);

-- The change log: one row per record, numbered per user in commit order
-- (seq is taken under the user's advisory lock, from users.last_seq).
CREATE TABLE changes (
    user_id bigint NOT NULL,
    seq bigint NOT NULL,
    at bigint NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (user_id, seq)
);

-- ===== first shard only (present and empty elsewhere) =====
CREATE SEQUENCE user_ids;
CREATE SEQUENCE object_ids;
CREATE TABLE directory_users (
    name text PRIMARY KEY,
    id bigint NOT NULL UNIQUE,
    shard text NOT NULL,
    state text NOT NULL CHECK (state IN ('creating', 'active', 'moving', 'deleting')),
    move_to text
);
CREATE INDEX directory_users_by_shard ON directory_users (shard);
CREATE TABLE aliases (address text PRIMARY KEY, users text[] NOT NULL);
-- Server-wide records (aliases, status page, outboxes, blocks), numbered
-- under one counter row that mail never touches.
CREATE TABLE server_stream (
    one int PRIMARY KEY CHECK (one = 1),
    last_seq bigint NOT NULL
);
INSERT INTO server_stream (one, last_seq) VALUES (1, 0);
CREATE TABLE server_changes (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    record text NOT NULL
);
CREATE TABLE server_metadata (entry text PRIMARY KEY, value bytea NOT NULL);
