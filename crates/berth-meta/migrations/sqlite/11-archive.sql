-- Schema 11: ECR's archive storage class per manifest. STANDARD manifests pull; ARCHIVE ones are
-- listed and described but refused on pull until restored. A restore completes at once, so no
-- ACTIVATING state is stored.
ALTER TABLE manifests ADD COLUMN storage_class TEXT NOT NULL DEFAULT 'STANDARD'
    CHECK (storage_class IN ('STANDARD', 'ARCHIVE'));
ALTER TABLE manifests ADD COLUMN last_archived_at INTEGER;
ALTER TABLE manifests ADD COLUMN last_activated_at INTEGER;
