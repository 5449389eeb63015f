-- Schema 7: the children a sparse index lists but its repository does not hold (yet). A child
-- pushed later moves to manifest_children, where it is protected like any other child.
CREATE TABLE manifest_absent_children (
    repo   TEXT NOT NULL,
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (repo, parent, child),
    FOREIGN KEY (repo, parent) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_absent_children_by_child ON manifest_absent_children (repo, child);
