-- Schema 14: an event records whether its change came from another registry's replication push,
-- so it is not replicated again (ECR replicates an image once per push, never onward).
-- 0 or 1: a BIGINT, which both backends bind and read as i64 alike.
ALTER TABLE events ADD COLUMN by_replication BIGINT NOT NULL DEFAULT 0 CHECK (by_replication IN (0, 1));
