-- Schema 9: the pull-through cache's counters per rule, added to by every server (increments,
-- never overwrites), and the last upstream failure any of them saw.
CREATE TABLE pull_through_cache_stats (
    prefix              TEXT PRIMARY KEY,
    hits                INTEGER NOT NULL DEFAULT 0,
    misses              INTEGER NOT NULL DEFAULT 0,
    bytes_from_cache    INTEGER NOT NULL DEFAULT 0,
    bytes_from_upstream INTEGER NOT NULL DEFAULT 0,
    last_error_at       INTEGER,
    last_error          TEXT
);
