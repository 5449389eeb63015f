-- Schema 3: versioned repository settings (compare-and-set) and the event log.
ALTER TABLE repositories ADD COLUMN settings_version INTEGER NOT NULL DEFAULT 0;

-- Every change, written in the transaction that makes it (src/events.rs). AUTOINCREMENT: ids
-- are never reused, even after pruning.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    kind            TEXT NOT NULL,
    repo            TEXT NOT NULL,
    digest          TEXT,
    tag             TEXT,
    previous_digest TEXT,
    media_type      TEXT,
    artifact_type   TEXT,
    detail          TEXT,
    actor           TEXT NOT NULL,
    access_key_id   TEXT,
    request_id      TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (occurred_at);

CREATE TABLE event_consumers (
    name          TEXT PRIMARY KEY,
    registered_at INTEGER NOT NULL
);

-- One row per consumer and undelivered event; acknowledging deletes it.
CREATE TABLE event_deliveries (
    consumer     TEXT NOT NULL REFERENCES event_consumers (name) ON DELETE CASCADE,
    event_id     INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    repo         TEXT NOT NULL,
    available_at INTEGER NOT NULL DEFAULT 0,
    lease_token  TEXT,
    leased_until INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX event_deliveries_by_repo ON event_deliveries (consumer, repo, event_id);
CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id);

-- The fan-out runs inside the inserting transaction: an event and its deliveries commit together.
CREATE TRIGGER events_fan_out AFTER INSERT ON events BEGIN
    INSERT INTO event_deliveries (consumer, event_id, repo) SELECT name, NEW.id, NEW.repo FROM event_consumers;
END;
