-- Schema 9: the pull-through cache's counters per rule, added to by every server (increments,
-- never overwrites), and the last upstream failure any of them saw.
CREATE TABLE pull_through_cache_stats (
    prefix              TEXT COLLATE "C" PRIMARY KEY,
    hits                BIGINT NOT NULL DEFAULT 0,
    misses              BIGINT NOT NULL DEFAULT 0,
    bytes_from_cache    BIGINT NOT NULL DEFAULT 0,
    bytes_from_upstream BIGINT NOT NULL DEFAULT 0,
    last_error_at       BIGINT,
    last_error          TEXT
);
