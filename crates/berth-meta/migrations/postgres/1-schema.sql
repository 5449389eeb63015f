-- Schema 1: the same tables as SQLite's, with the same cascades. Text keys are COLLATE "C", so
-- comparisons and ORDER BY are byte-wise (the order the distribution spec asks for) whatever
-- the database's locale.
INSERT INTO store_meta (key, value) VALUES ('credentials_generation', 0)
    ON CONFLICT (key) DO NOTHING;

CREATE TABLE repositories (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL,
    settings   TEXT NOT NULL
);

CREATE TABLE blob_links (
    repo       TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blob_links_by_digest ON blob_links (digest);

CREATE TABLE manifests (
    repo           TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    content        BYTEA NOT NULL,
    artifact_type  TEXT,
    subject        TEXT COLLATE "C",
    annotations    TEXT,
    image_size     BIGINT NOT NULL,
    pushed_at      BIGINT NOT NULL,
    last_pulled_at BIGINT,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject);

CREATE TABLE tags (
    repo       TEXT COLLATE "C" NOT NULL,
    tag        TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE manifest_children (
    repo   TEXT COLLATE "C" NOT NULL,
    parent TEXT COLLATE "C" NOT NULL,
    child  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, parent, child),
    FOREIGN KEY (repo, parent) REFERENCES manifests (repo, digest) ON DELETE CASCADE,
    -- Checked at commit: deleting a repository cascades to manifests and to these edges in
    -- no set order, and an edge only goes once its parent manifest does.
    FOREIGN KEY (repo, child) REFERENCES manifests (repo, digest) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX manifest_children_by_child ON manifest_children (repo, child);

CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_updated_at ON uploads (updated_at);

CREATE TABLE users (
    name              TEXT COLLATE "C" PRIMARY KEY,
    access_key_id     TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_ciphertext BYTEA NOT NULL,
    created_at        BIGINT NOT NULL
);
