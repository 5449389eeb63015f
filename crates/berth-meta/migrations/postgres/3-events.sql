-- Schema 3: versioned repository settings (compare-and-set) and the event log.
ALTER TABLE repositories ADD COLUMN settings_version BIGINT NOT NULL DEFAULT 0;

-- Every change, written in the transaction that makes it (src/events.rs). Identity values are
-- handed out in insertion order but commit in any order; consumers therefore track deliveries,
-- not an id cursor.
CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at     BIGINT NOT NULL DEFAULT (CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)),
    kind            TEXT COLLATE "C" NOT NULL,
    repo            TEXT COLLATE "C" NOT NULL,
    digest          TEXT COLLATE "C",
    tag             TEXT COLLATE "C",
    previous_digest TEXT COLLATE "C",
    media_type      TEXT,
    artifact_type   TEXT,
    detail          TEXT,
    actor           TEXT NOT NULL,
    access_key_id   TEXT,
    request_id      TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (occurred_at);

CREATE TABLE event_consumers (
    name          TEXT COLLATE "C" PRIMARY KEY,
    registered_at BIGINT NOT NULL
);

-- One row per consumer and undelivered event; acknowledging deletes it.
CREATE TABLE event_deliveries (
    consumer     TEXT COLLATE "C" NOT NULL REFERENCES event_consumers (name) ON DELETE CASCADE,
    event_id     BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    repo         TEXT COLLATE "C" NOT NULL,
    available_at BIGINT NOT NULL DEFAULT 0,
    lease_token  TEXT COLLATE "C",
    leased_until BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX event_deliveries_by_repo ON event_deliveries (consumer, repo, event_id);
CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id);

-- The fan-out runs inside the inserting transaction: an event and its deliveries commit together.
CREATE FUNCTION berth_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_deliveries (consumer, event_id, repo) SELECT name, NEW.id, NEW.repo FROM event_consumers;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION berth_events_fan_out();
