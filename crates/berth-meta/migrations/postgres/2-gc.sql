-- Schema 2: the bookkeeping of online garbage collection (src/gc.rs). touched_at starts as
-- the link's creation time; manifest_blobs is filled from the stored manifests (backfill).
ALTER TABLE blob_links ADD COLUMN touched_at BIGINT;
UPDATE blob_links SET touched_at = created_at;
CREATE TABLE manifest_blobs (
    repo     TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    digest   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, manifest, digest),
    FOREIGN KEY (repo, manifest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_blobs_by_digest ON manifest_blobs (repo, digest);
CREATE TABLE blob_candidates (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    since       BIGINT NOT NULL,
    deleting_at BIGINT
);
