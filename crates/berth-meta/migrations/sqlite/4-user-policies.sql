-- Schema 4: identity policies per user, and the registry's own settings. A row is an AWS managed policy by name (`document` NULL)
-- or a policy document of the user's own, named by the operator. Users created before this
-- schema held every permission: they keep it through AmazonEC2ContainerRegistryFullAccess, so an
-- upgrade locks no one out. The root needs none (it is always allowed).
CREATE TABLE user_policies (
    user_name   TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    policy_name TEXT NOT NULL,
    document    TEXT,
    PRIMARY KEY (user_name, policy_name)
);

INSERT INTO user_policies (user_name, policy_name, document)
    SELECT name, 'AmazonEC2ContainerRegistryFullAccess', NULL FROM users WHERE name <> 'root';

-- Registry-wide settings by name: the registry policy (`registryPolicy`) and ECR's account
-- settings (`REGISTRY_POLICY_SCOPE`, `BLOB_MOUNTING`, `BASIC_SCAN_TYPE_VERSION`). Their own
-- generation tells servers sharing the database to re-read them.
CREATE TABLE registry_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO store_meta (key, value) VALUES ('registry_settings_generation', 0)
    ON CONFLICT (key) DO NOTHING;
