-- Schema 6: replication (src/replication.rs). The registry's replication configuration as
-- one JSON document (ECR's shape), and each image's status per destination.
CREATE TABLE replication_configuration (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    document   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE replication_status (
    repo         TEXT COLLATE "C" NOT NULL,
    digest       TEXT COLLATE "C" NOT NULL,
    region       TEXT COLLATE "C" NOT NULL,
    registry_id  TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL,
    failure_code TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (repo, digest, region, registry_id)
);
