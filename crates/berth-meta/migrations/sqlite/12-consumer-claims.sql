-- Schema 12: when a server last claimed for each event-log consumer (recorded at most every few
-- seconds), so an operator can tell consumers no server uses any more and remove them.
ALTER TABLE event_consumers ADD COLUMN last_claimed_at INTEGER;
