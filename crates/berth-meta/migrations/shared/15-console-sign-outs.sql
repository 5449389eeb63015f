-- Schema 15: console sessions signed out before they expired. A session is a signed cookie that
-- any server accepts; its id stays here until its expiry, so a copy of the cookie stops with it.
CREATE TABLE console_sign_outs (
    session_id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sign_outs_by_expiry ON console_sign_outs (expires_at);
