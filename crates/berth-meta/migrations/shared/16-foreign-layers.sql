-- Non-distributable layers a manifest lists are recorded in manifest_blobs too (GC keeps them
-- when pushed); the backfill adds those of manifests stored before. No schema change.
SELECT 1;
