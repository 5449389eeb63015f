-- Schema 1: repositories, blob links, manifests, tags, index edges, uploads, users.
-- Tags and child edges hang off manifests, and everything off repositories, with ON DELETE
-- CASCADE: deleting a manifest drops its tags and its own child edges, deleting a repository
-- drops all it holds. The child side of an edge has no cascade, so the database itself refuses
-- to orphan an index's child.
INSERT INTO store_meta (key, value) VALUES ('credentials_generation', 0)
    ON CONFLICT (key) DO NOTHING;

CREATE TABLE repositories (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    settings   TEXT NOT NULL
);

CREATE TABLE blob_links (
    repo       TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blob_links_by_digest ON blob_links (digest);

CREATE TABLE manifests (
    repo           TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    content        BLOB NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    image_size     INTEGER NOT NULL,
    pushed_at      INTEGER NOT NULL,
    last_pulled_at INTEGER,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject);

CREATE TABLE tags (
    repo       TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE manifest_children (
    repo   TEXT NOT NULL,
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (repo, parent, child),
    FOREIGN KEY (repo, parent) REFERENCES manifests (repo, digest) ON DELETE CASCADE,
    FOREIGN KEY (repo, child) REFERENCES manifests (repo, digest)
);
CREATE INDEX manifest_children_by_child ON manifest_children (repo, child);

CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_updated_at ON uploads (updated_at);

CREATE TABLE users (
    name              TEXT PRIMARY KEY,
    access_key_id     TEXT NOT NULL UNIQUE,
    secret_ciphertext BLOB NOT NULL,
    created_at        INTEGER NOT NULL
);
