-- Schema 10: an access key can be deactivated (IAM's Active / Inactive) without removing its
-- user; an inactive key fails every sign-in, and so do its user's tokens and console sessions.
ALTER TABLE users ADD COLUMN key_status TEXT NOT NULL DEFAULT 'Active' CHECK (key_status IN ('Active', 'Inactive'));
