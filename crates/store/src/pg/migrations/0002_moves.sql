-- description: user moves: when an account left a shard, how often a user moved
-- breaks_before: 1
--
-- Additive: a binary of version 1 ignores the column. `user move` sets it
-- with state = 'moved_out' at its switch-over; the rows left behind are
-- deleted once [store] move_grace_secs have passed since.

ALTER TABLE users ADD COLUMN moved_at bigint;
-- Counts a user's moves (directory, first shard): a session that began
-- before a move back to a shard it had left sees the count differ, so it
-- never reads with the account id the user had there before.
ALTER TABLE directory_users ADD COLUMN moves bigint NOT NULL DEFAULT 0;
