//! The audit trail: one JSON line per mutating operation (both planes) and per refused
//! authentication or denied request, shaped like a CloudTrail record so SIEMs that read
//! CloudTrail read it. Records are built from what the plane reported ([`Served`]): names and
//! references, never bodies, secrets, tokens or `Authorization` values.
//!
//! Lines go through a channel to a writer thread, so a slow disk never holds a request; the file
//! rotates by size (`PATH` → `PATH.1` → … → `PATH.<KEEP>`), and is reopened at its path on
//! SIGHUP, so an outside rotator (logrotate) that moves it away loses no line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

use axum::http::StatusCode;
use berth_auth::key_id_shaped;
use berth_iam::{Identity, RequestContext, Served};
use serde_json::{Value, json};

/// Rotated files kept besides the current one.
const KEEP: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File { path: PathBuf, max_bytes: u64 },
}

/// What the writer thread is sent.
enum Message {
    Line(String),
    Reopen,
}

#[derive(Clone)]
pub struct AuditLog {
    lines: mpsc::Sender<Message>,
    account: String,
    region: String,
}

impl AuditLog {
    /// Opens the target (a file is created, appended to) and starts its writer thread.
    pub fn open(target: AuditTarget, account: String, region: String) -> anyhow::Result<AuditLog> {
        let (lines, received) = mpsc::channel::<Message>();
        let mut sink = Sink::open(target)?;
        // Scraped as 0 from the start: an alert can tell "none lost" from "not reported".
        metrics::counter!("berth_audit_records_dropped_total").increment(0);
        std::thread::Builder::new().name("berth-audit".into()).spawn(move || {
            for message in received {
                match message {
                    Message::Line(line) => {
                        if let Err(e) = sink.write(&line) {
                            metrics::counter!("berth_audit_records_dropped_total").increment(1);
                            tracing::error!(error = %e, "writing the audit log failed; the record is lost");
                        }
                    }
                    // The old file stays open on failure: lines keep going somewhere rather than nowhere.
                    Message::Reopen => {
                        if let Err(e) = sink.reopen() {
                            tracing::error!(error = %e, "reopening the audit log failed; still writing the old file");
                        }
                    }
                }
            }
        })?;
        Ok(AuditLog { lines, account, region })
    }

    /// Records the request if it changed something or was refused for its credentials or by a
    /// policy.
    /// `presented_key`: the access key id the request's `Authorization` header named, which a
    /// refused caller's record carries.
    pub fn record(&self, ctx: &RequestContext, served: &Served, status: StatusCode, presented_key: Option<String>) {
        if !served.mutating && served.auth_failure.is_none() {
            return;
        }
        let mut record = self.record_of(ctx, served, status, SystemTime::now());
        if ctx.identity == Identity::Anonymous
            && let Some(key) = served.presented_access_key_id.clone().or(presented_key).filter(|k| key_id_shaped(k))
        {
            // CloudTrail's record of a call whose key did not check out: who, unknown; which key.
            record["userIdentity"] = json!({"type": "Unknown", "accessKeyId": key});
        }
        // The writer thread lives as long as the process.
        let _ = self.lines.send(Message::Line(record.to_string()));
    }

    /// Has the file opened again at its path after the lines already sent (on SIGHUP).
    pub fn reopen(&self) {
        let _ = self.lines.send(Message::Reopen);
    }

    fn record_of(&self, ctx: &RequestContext, served: &Served, status: StatusCode, now: SystemTime) -> Value {
        let time_format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let event_time = time::OffsetDateTime::from(now).format(&time_format).unwrap_or_default();
        let mut record = json!({
            "eventVersion": "1.08",
            "userIdentity": self.user_identity(&ctx.identity),
            "eventTime": event_time,
            "eventSource": served.event_source,
            "eventName": served.event_name,
            "awsRegion": self.region,
            "sourceIPAddress": ctx.source_ip.map(|ip| ip.to_string()),
            "userAgent": ctx.user_agent,
            "requestParameters": if served.parameters.is_empty() { Value::Null } else { Value::Object(served.parameters.clone()) },
            "responseElements": Value::Null,
            "requestID": ctx.request_id,
            "eventID": uuid::Uuid::new_v4().to_string(),
            "readOnly": !served.mutating,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": self.account,
            "additionalEventData": {"operation": served.operation, "httpStatus": status.as_u16()},
        });
        if let Some((code, message)) = &served.error {
            record["errorCode"] = json!(code);
            record["errorMessage"] = json!(message);
        }
        record
    }

    fn user_identity(&self, identity: &Identity) -> Value {
        let account = &self.account;
        match identity {
            Identity::Anonymous => json!({"type": "Anonymous"}),
            Identity::Root { access_key_id, .. } => json!({
                "type": "Root", "principalId": account, "arn": identity.arn(account),
                "accountId": account, "accessKeyId": access_key_id, "userName": identity.user_name(),
            }),
            Identity::User { name, access_key_id, .. } => json!({
                "type": "IAMUser", "arn": identity.arn(account),
                "accountId": account, "accessKeyId": access_key_id, "userName": name,
            }),
            Identity::Server { task } => json!({"type": "AWSService", "invokedBy": format!("berth.{task}")}),
        }
    }
}

/// Where lines are written; a file rotates when a line would take it past `max_bytes`.
enum Sink {
    Stdout,
    /// `rotating`: false after a rotation failed, until the file is reopened (SIGHUP): retried on
    /// every record, a rotation that fails after shifting the numbered files would shift them
    /// again each time, overwriting the oldest.
    File {
        path: PathBuf,
        max_bytes: u64,
        file: File,
        size: u64,
        rotating: bool,
    },
}

impl Sink {
    fn open(target: AuditTarget) -> anyhow::Result<Sink> {
        Ok(match target {
            AuditTarget::Stdout => Sink::Stdout,
            AuditTarget::File { path, max_bytes } => {
                let file = open_append(&path)?;
                let size = file.metadata()?.len();
                Sink::File { path, max_bytes, file, size, rotating: true }
            }
        })
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Sink::File { path, file, size, rotating, .. } = self {
            *file = open_append(path)?;
            *size = file.metadata()?.len();
            *rotating = true;
            tracing::info!(path = %path.display(), "reopened the audit log");
        }
        Ok(())
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()
            }
            Sink::File { path, max_bytes, file, size, rotating } => {
                let len = line.len() as u64 + 1;
                if *rotating && *size > 0 && *size + len > *max_bytes {
                    match rotate(path).and_then(|()| open_append(path)) {
                        Ok(rotated) => {
                            *file = rotated;
                            *size = 0;
                        }
                        // Records go on into the file already open, past the size limit, rather
                        // than nowhere (its directory moved away, say), until a SIGHUP reopens it.
                        Err(e) => {
                            *rotating = false;
                            tracing::error!(path = %path.display(), error = %e,
                                "rotating the audit log failed; writing on past its size limit until SIGHUP reopens it");
                        }
                    }
                }
                if let Err(e) = file.write_all(format!("{line}\n").as_bytes()) {
                    // A record cut short (the disk filled up) would run into the next one and
                    // spoil both lines: take its part back. Only ever shrinking: a file cut
                    // from outside (`copytruncate`) is shorter than `size` and stays as it is.
                    if file.metadata().is_ok_and(|m| m.len() > *size) {
                        let _ = file.set_len(*size);
                    }
                    return Err(e);
                }
                *size += len;
                Ok(())
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Who did what from where is for the operator only, like the keys beside it.
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// `PATH.<KEEP-1>` → `PATH.<KEEP>`, …, `PATH` → `PATH.1` (the oldest is overwritten). When
/// `PATH` is gone (an outside rotator moved it and its SIGHUP is still on the way) nothing is
/// shifted: the caller just opens `PATH` afresh.
fn rotate(path: &Path) -> std::io::Result<()> {
    if !path.try_exists()? {
        return Ok(());
    }
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    // The file moves aside first: if it cannot (an append-only attribute, a read-only
    // directory), the numbered files stay as they are rather than shift once per attempt.
    let mut aside = path.as_os_str().to_owned();
    aside.push(".rotating");
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for n in (1..KEEP).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // Back where it was, so the next attempt starts from the same state.
                let _ = std::fs::rename(&aside, path);
                return Err(e);
            }
            _ => {}
        }
    }
    std::fs::rename(&aside, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut sink = Sink::open(AuditTarget::File { path: path.clone(), max_bytes: 100 }).unwrap();
        let line = "x".repeat(39); // 40 bytes with its newline: two lines per file
        for _ in 0..7 {
            sink.write(&line).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path).lines().count(), 1);
        for n in 1..=3 {
            let rotated = read(&dir.path().join(format!("audit.log.{n}")));
            assert_eq!(rotated.lines().count(), 2, "audit.log.{n}");
            assert!(rotated.lines().all(|l| l == line));
        }
        assert!(!dir.path().join("audit.log.4").exists());
    }

    #[test]
    fn a_rotation_that_fails_keeps_the_record_in_the_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let mut sink = Sink::open(AuditTarget::File { path: logs.join("audit.log"), max_bytes: 4096 }).unwrap();
        // The directory moved away (its reopen on SIGHUP failed): rotation cannot open a new file.
        let moved = dir.path().join("moved");
        std::fs::rename(&logs, &moved).unwrap();
        if let Sink::File { size, .. } = &mut sink {
            *size = 4096;
        }
        sink.write("kept").unwrap();
        sink.write("and the next").unwrap();
        assert_eq!(std::fs::read_to_string(moved.join("audit.log")).unwrap(), "kept\nand the next\n");
        assert!(!moved.join("audit.log.1").exists(), "no rotation is tried again before a reopen");
    }

    #[test]
    fn a_rotation_that_keeps_failing_leaves_the_numbered_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(dir.path().join("audit.log.1"), "one\n").unwrap();
        std::fs::write(dir.path().join("audit.log.2"), "two\n").unwrap();
        // Nothing can be moved onto a directory that holds a file: the rotation fails at its start.
        std::fs::create_dir(dir.path().join("audit.log.rotating")).unwrap();
        std::fs::write(dir.path().join("audit.log.rotating/x"), "").unwrap();
        let mut sink = Sink::open(AuditTarget::File { path: path.clone(), max_bytes: 4096 }).unwrap();
        for attempt in ["first", "second"] {
            if let Sink::File { size, .. } = &mut sink {
                *size = 4096;
            }
            sink.write(attempt).unwrap();
            sink.reopen().unwrap(); // as SIGHUP does: the next record tries to rotate again
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n", "records kept");
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.2")).unwrap(), "two\n");
        assert!(!dir.path().join("audit.log.3").exists(), "nothing shifted");
    }

    #[test]
    fn a_moved_file_is_not_renumbered_before_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(dir.path().join("audit.log.1"), "older\n").unwrap();
        // An outside rotator moved PATH away; the size limit is reached before its SIGHUP.
        let mut sink = Sink::open(AuditTarget::File { path: path.clone(), max_bytes: 4096 }).unwrap();
        std::fs::rename(&path, dir.path().join("audit.log-20261207")).unwrap();
        if let Sink::File { size, .. } = &mut sink {
            *size = 4096;
        }
        sink.write("after").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(), "older\n");
        assert!(!dir.path().join("audit.log.2").exists());
    }

    #[test]
    fn records_are_cloudtrail_shaped_and_skip_reads() {
        let (lines, received) = mpsc::channel();
        let log = AuditLog { lines, account: "123456789012".into(), region: "eu-west-1".into() };
        let mut ctx = RequestContext::server("test", "req-1".into());
        ctx.identity = Identity::User {
            name: "ci".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            via: berth_iam::CredentialKind::AccessKey,
        };
        ctx.source_ip = Some("192.0.2.1".parse().unwrap());
        log.record(&ctx, &Served::new("GetManifest", "BatchGetImage", false), StatusCode::OK, None);
        let mut put = Served::new("PutManifest", "PutImage", true);
        put.parameters.insert("repositoryName".into(), "app".into());
        put.error = Some(("TAG_INVALID", "tag v1 is immutable".into()));
        log.record(&ctx, &put, StatusCode::BAD_REQUEST, None);
        let Message::Line(line) = received.try_recv().unwrap() else { panic!("a record was expected") };
        assert!(received.try_recv().is_err(), "a successful read is not audited");
        let record: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(record["eventName"], "PutImage");
        assert_eq!(record["eventSource"], "ecr.amazonaws.com");
        assert_eq!(record["userIdentity"]["userName"], "ci");
        assert_eq!(record["userIdentity"]["accessKeyId"], "AKIAEXAMPLE");
        assert_eq!(record["userIdentity"]["type"], "IAMUser");
        assert_eq!(record["sourceIPAddress"], "192.0.2.1");
        assert_eq!(record["requestParameters"]["repositoryName"], "app");
        assert_eq!(record["errorCode"], "TAG_INVALID");
        assert_eq!(record["requestID"], "req-1");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert!(record["eventTime"].as_str().unwrap().ends_with('Z'));
    }
}
