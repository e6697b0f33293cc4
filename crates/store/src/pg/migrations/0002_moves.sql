-- description: when a user's account left this shard (user move)
-- breaks_before: 1
--
-- Additive: a binary of version 1 ignores the column. `user move` sets it
-- with state = 'moved_out' at its switch-over; the rows left behind are
-- deleted once [store] move_grace_secs have passed since.

ALTER TABLE users ADD COLUMN moved_at bigint;
