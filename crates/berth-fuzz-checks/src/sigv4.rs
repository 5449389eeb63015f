//! SigV4 verification of ECR requests: the `Authorization` parser and the canonical request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use berth_ecr::sigv4::{self, RequestHead, SigningKey};
use berth_iam::{CredentialKind, Identity};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};

use crate::Draw;

const AKID: &str = "AKIAFUZZFUZZFUZZFUZZ";
const SECRET: &str = "fuzz/secret+0123456789abcdefghijklmnopqr";
/// The server clock of every check; seeds sign at this instant.
const NOW_SECS: u64 = 1_767_225_600;
const AMZ_DATE: &str = "20260101T000000Z";
const HOST: &str = "127.0.0.1:5000";

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~";
const REGION: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
/// Visible ASCII and space: what a header value may hold without obs-text or tabs.
const HEADER_TEXT: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const EXTRA_HEADERS: [&str; 5] = ["content-type", "x-amz-target", "x-amz-security-token", "user-agent", "x-fuzz"];

/// An even first byte: the rest is a raw request (`METHOD URI` line, `name: value` lines, an
/// empty line, the body) that must not make the verifier panic, and that it accepts only when
/// signed by the one key it knows. An odd first byte: a request drawn from the bytes is signed
/// here, independently of the verifier, following AWS's SigV4 description; the verifier must
/// accept it (unless its `x-amz-content-sha256` is not the body's), and refuse it once its body
/// or signature changes.
pub fn sigv4(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if !mode.is_multiple_of(2) => signed_round_trip(rest),
        Some((_, rest)) => raw_request(rest),
        None => {}
    }
}

fn signer() -> Identity {
    Identity::User { name: "fuzz".into(), access_key_id: AKID.into(), via: CredentialKind::SigV4 }
}

fn lookup(id: &str) -> Option<SigningKey> {
    (id == AKID).then(|| SigningKey { secret: SECRET.to_owned(), identity: signer() })
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// Both steps, as the router runs them: the headers, then the body.
fn verify(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Identity, String> {
    let head = RequestHead { method, uri, headers };
    let pending =
        futures::executor::block_on(sigv4::authenticate(head, now(), &lookup)).map_err(|e| format!("{e:?}"))?;
    pending.verify(body).map_err(|e| format!("{e:?}"))
}

fn raw_request(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(2, |&b| b == b' ');
    let method = Method::from_bytes(parts.next().unwrap_or_default()).unwrap_or(Method::POST);
    let uri = parts.next().and_then(|u| Uri::try_from(u).ok()).unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    if let Ok(identity) = verify(&method, &uri, &headers, body) {
        assert_eq!(identity, signer());
    }
}

/// What a drawn request says in `x-amz-content-sha256` (signed like every header).
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeclaredHash {
    /// No such header, as ECR clients send.
    Absent,
    /// The body's SHA-256, in upper case (the verifier compares case-insensitively).
    Body,
    /// The SHA-256 of something else: the signature is right, yet the request must be refused.
    Other,
}

/// A request drawn from the bytes, as (method, path, query pairs, extra headers, region, body).
struct Drawn {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(&'static str, String)>,
    region: String,
    declared: DeclaredHash,
    body: Vec<u8>,
}

fn draw(data: &[u8]) -> Drawn {
    let mut d = Draw::new(data);
    let method = [Method::POST, Method::GET, Method::PUT][d.below(3)].clone();
    let segments = d.below(4);
    let mut path: String = (0..segments).map(|_| format!("/{}", d.text(UNRESERVED, 1, 8))).collect();
    if path.is_empty() || d.byte().is_multiple_of(2) {
        path.push('/');
    }
    let query = (0..d.below(4)).map(|_| (d.text(UNRESERVED, 1, 6), d.text(UNRESERVED, 0, 6))).collect();
    let mut headers = vec![("x-amz-target", d.text(HEADER_TEXT, 0, 40))];
    for _ in 0..d.below(4) {
        headers.push((EXTRA_HEADERS[d.below(EXTRA_HEADERS.len())], d.text(HEADER_TEXT, 0, 24)));
    }
    let region = d.text(REGION, 1, 14);
    let declared = [DeclaredHash::Absent, DeclaredHash::Body, DeclaredHash::Other][d.below(3)];
    let body = d.rest().to_vec();
    match declared {
        DeclaredHash::Absent => {}
        DeclaredHash::Body => headers.push(("x-amz-content-sha256", hex::encode_upper(Sha256::digest(&body)))),
        DeclaredHash::Other => {
            let other: Vec<u8> = body.iter().copied().chain([0]).collect();
            headers.push(("x-amz-content-sha256", hex::encode(Sha256::digest(&other))));
        }
    }
    Drawn { method, path, query, headers, region, declared, body }
}

fn signed_round_trip(data: &[u8]) {
    let drawn = draw(data);
    let query: Vec<String> = drawn.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let target = if query.is_empty() { drawn.path.clone() } else { format!("{}?{}", drawn.path, query.join("&")) };
    let uri: Uri = target.parse().expect("paths and queries of unreserved characters are URIs");

    let mut all = vec![("host", HOST.to_owned()), ("x-amz-date", AMZ_DATE.to_owned())];
    all.extend(drawn.headers.iter().map(|(name, value)| (*name, value.clone())));
    let authorization = sign(&drawn, &all);
    let mut headers = HeaderMap::new();
    for (name, value) in &all {
        headers.append(*name, HeaderValue::from_str(value).expect("visible ASCII"));
    }
    headers.insert("authorization", HeaderValue::from_str(&authorization).expect("ASCII"));

    match verify(&drawn.method, &uri, &headers, &drawn.body) {
        Ok(_) if drawn.declared == DeclaredHash::Other => panic!("a wrong x-amz-content-sha256 was accepted"),
        Ok(identity) => assert_eq!(identity, signer()),
        Err(_) if drawn.declared == DeclaredHash::Other => {}
        Err(e) => panic!(
            "a correctly signed request was refused: {e}\ncanonical request:\n{}",
            canonical_request(&drawn, &all)
        ),
    }
    if let Some(first) = drawn.body.first() {
        let mut tampered = drawn.body.clone();
        tampered[0] = first ^ 1;
        assert!(verify(&drawn.method, &uri, &headers, &tampered).is_err(), "a changed body was accepted");
    }
    let mut wrong = authorization.clone();
    let last = wrong.pop().expect("a signature");
    wrong.push(if last == '0' { '1' } else { '0' });
    headers.insert("authorization", HeaderValue::from_str(&wrong).expect("ASCII"));
    assert!(verify(&drawn.method, &uri, &headers, &drawn.body).is_err(), "a wrong signature was accepted");
}

/// AWS's canonical request for the drawn request: every header signed, names sorted, values
/// trimmed with space runs collapsed and repeated headers joined by commas; the query sorted by
/// key, then value. Paths and queries are unreserved characters, so encoding leaves them as is.
fn canonical_request(drawn: &Drawn, headers: &[(&str, String)]) -> String {
    let mut names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    let canonical_headers: String = names
        .iter()
        .map(|name| {
            let values: Vec<String> = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    let mut query = drawn.query.clone();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        drawn.method,
        drawn.path,
        query.join("&"),
        names.join(";"),
        hex::encode(Sha256::digest(&drawn.body))
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sign(drawn: &Drawn, headers: &[(&str, String)]) -> String {
    let date = &AMZ_DATE[..8];
    let scope = format!("{date}/{}/ecr/aws4_request", drawn.region);
    let canonical = canonical_request(drawn, headers);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{AMZ_DATE}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let key = [drawn.region.as_str(), "ecr", "aws4_request"]
        .iter()
        .fold(hmac(format!("AWS4{SECRET}").as_bytes(), date), |key, part| hmac(&key, part));
    let mut names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={}, Signature={}",
        names.join(";"),
        hex::encode(hmac(&key, &string_to_sign))
    )
}
