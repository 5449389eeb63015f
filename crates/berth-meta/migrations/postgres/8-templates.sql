-- Schema 8: repository creation templates and pull-time update exclusions.

-- One template per repository prefix (`ROOT` for every repository no other template matches);
-- the template itself is a JSON document owned by the registry service, like repository settings.
CREATE TABLE repository_creation_templates (
    prefix     TEXT COLLATE "C" PRIMARY KEY,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- IAM principals whose pulls do not update an image's lastRecordedPullTime.
CREATE TABLE pull_time_update_exclusions (
    principal_arn TEXT COLLATE "C" PRIMARY KEY,
    created_at    BIGINT NOT NULL
);
