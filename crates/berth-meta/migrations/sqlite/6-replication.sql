-- Schema 6: replication (src/replication.rs). The registry's replication configuration as
-- one JSON document (ECR's shape), and each image's status per destination.
CREATE TABLE replication_configuration (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    document   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE replication_status (
    repo         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    region       TEXT NOT NULL,
    registry_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    failure_code TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (repo, digest, region, registry_id)
);
