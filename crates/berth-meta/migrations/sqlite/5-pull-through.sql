-- Schema 5: the pull-through cache's rules and the upstream credentials they name.

-- `berth secret put`: credentials sealed by the auth layer under the master key (never plaintext).
CREATE TABLE upstream_secrets (
    name       TEXT PRIMARY KEY,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One rule per ECR repository prefix (`ROOT` for the whole registry); the rule itself is a JSON
-- document owned by the registry service, like repository settings.
CREATE TABLE pull_through_cache_rules (
    prefix     TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
