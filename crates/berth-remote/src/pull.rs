//! Reading from a remote registry: manifests (verified against their digest), blobs as streams
//! (verified as they pass), tags.

use std::pin::Pin;
use std::task::{Context, Poll};

use berth_spec::manifest::MAX_MANIFEST_BYTES;
use berth_spec::media::{self, MANIFEST_TYPES};
use berth_spec::{Digest, Digester, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures::Stream;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, RANGE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::remote::{Call, Remote};
use crate::transport::IdleStream;

/// What `HEAD /v2/<name>/manifests/<reference>` tells: enough to see whether a tag moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A manifest's exact bytes, its media type and its digest (checked against the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// Bytes `start..=end` of a blob (`end` open: to the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// The part of the blob a 206 answer holds (`Content-Range: bytes start-end/total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

const TAG_PAGE_LIMIT: usize = 16 * 1024 * 1024;
/// A registry paginating in circles must not keep us forever.
const MAX_TAG_PAGES: usize = 10_000;

fn manifest_accept() -> HeaderValue {
    HeaderValue::from_str(&MANIFEST_TYPES.join(", ")).unwrap_or(HeaderValue::from_static("*/*"))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header(headers, CONTENT_LENGTH.as_str())?.parse().ok()
}

/// `Content-Type` of a manifest answer if it names a manifest type (`application/vnd.…`); a
/// generic one (`application/json`, none) leaves it to the manifest's own `mediaType`, see
/// [`media_type_of`].
fn specific_content_type(headers: &HeaderMap) -> Option<String> {
    let essence = media::essence(header(headers, CONTENT_TYPE.as_str())?);
    essence.starts_with("application/vnd.").then(|| essence.to_owned())
}

fn media_type_of(headers: &HeaderMap, bytes: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    struct MediaTypeField {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    if let Some(content_type) = specific_content_type(headers) {
        return Ok(content_type);
    }
    serde_json::from_slice::<MediaTypeField>(bytes)
        .ok()
        .and_then(|m| m.media_type)
        .ok_or_else(|| Error::InvalidResponse("not a manifest: no manifest Content-Type, no mediaType".into()))
}

/// `Docker-Content-Digest`, if present and well-formed.
fn announced_digest(headers: &HeaderMap) -> Option<Digest> {
    header(headers, "docker-content-digest")?.parse().ok()
}

impl Remote {
    fn manifest_url(&self, name: &RepositoryName, reference: &Reference) -> (Url, String) {
        let name = self.endpoint().remote_name(name);
        (self.endpoint().v2_url(&format!("{name}/manifests/{reference}")), name.to_string())
    }

    /// The digest, media type and size of a manifest without its bytes (a cheap check whether a
    /// tag moved). Registries that leave a header out are asked with `GET` instead.
    pub async fn head_manifest(&self, name: &RepositoryName, reference: &Reference) -> Result<ManifestHead> {
        let (url, remote_name) = self.manifest_url(name, reference);
        let mut call = Call::new(Method::HEAD, url, Scope::pull(&remote_name));
        call.headers.insert(ACCEPT, manifest_accept());
        let response = self.send(call).await?;
        let response = self.expect(response, &[StatusCode::OK]).await?;
        let headers = response.headers();
        let digest = match reference {
            Reference::Digest(digest) => Some(digest.clone()),
            Reference::Tag(_) => announced_digest(headers),
        };
        match (digest, specific_content_type(headers), content_length(headers)) {
            (Some(digest), Some(media_type), Some(size)) => Ok(ManifestHead { digest, media_type, size }),
            _ => {
                let manifest = self.get_manifest(name, reference).await?;
                let size = manifest.bytes.len() as u64;
                Ok(ManifestHead { digest: manifest.digest, media_type: manifest.media_type, size })
            }
        }
    }

    /// A manifest's exact bytes. By digest, the bytes must hash to it; by tag, to the
    /// `Docker-Content-Digest` the registry announced (the digest returned; sha256 of the bytes
    /// when none was). Otherwise [`Error::DigestMismatch`].
    pub async fn get_manifest(&self, name: &RepositoryName, reference: &Reference) -> Result<FetchedManifest> {
        let (url, remote_name) = self.manifest_url(name, reference);
        let mut call = Call::new(Method::GET, url, Scope::pull(&remote_name));
        call.headers.insert(ACCEPT, manifest_accept());
        let response = self.send(call).await?;
        let response = self.expect(response, &[StatusCode::OK]).await?;
        let headers = response.headers().clone();
        let bytes = self.transport().read_body(response, MAX_MANIFEST_BYTES).await?;
        let expected = match reference {
            Reference::Digest(digest) => Some(digest.clone()),
            Reference::Tag(_) => announced_digest(&headers),
        };
        let digest = match expected {
            Some(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(Error::DigestMismatch { expected, actual });
                }
                expected
            }
            None => Digest::sha256_of(&bytes),
        };
        let media_type = media_type_of(&headers, &bytes)?;
        Ok(FetchedManifest { digest, media_type, bytes })
    }

    /// The blob's size if the repository has it, `None` if not.
    pub async fn head_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let name = self.endpoint().remote_name(name);
        let url = self.endpoint().v2_url(&format!("{name}/blobs/{digest}"));
        let mut call = Call::new(Method::HEAD, url, Scope::pull(name.as_str()));
        call.follow_redirects = true;
        let response = self.send(call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect(response, &[StatusCode::OK]).await?;
        let size = content_length(response.headers())
            .ok_or_else(|| Error::InvalidResponse("a blob HEAD without Content-Length".into()))?;
        Ok(Some(size))
    }

    /// A blob as a stream, never held in memory whole. Redirects (to S3, a CDN) are followed
    /// without the registry's credentials.
    ///
    /// Without `range` (or when the registry ignores it and answers the whole blob), the stream
    /// hashes what passes and, if the blob does not match `digest`, ends with
    /// [`Error::DigestMismatch`] instead of a clean end: the content is valid only once the stream
    /// ended without error. A 206 part cannot be verified on its own.
    pub async fn get_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobStream> {
        let name = self.endpoint().remote_name(name);
        let url = self.endpoint().v2_url(&format!("{name}/blobs/{digest}"));
        let mut call = Call::new(Method::GET, url, Scope::pull(name.as_str()));
        call.follow_redirects = true;
        if let Some(range) = range {
            let value = match range.end {
                Some(end) => format!("bytes={}-{end}", range.start),
                None => format!("bytes={}-", range.start),
            };
            call.headers.insert(RANGE, HeaderValue::from_str(&value).map_err(|_| Error::InvalidInput("range".into()))?);
        }
        let response = self.send(call).await?;
        let response = self.expect(response, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT]).await?;
        let content_range = if response.status() == StatusCode::PARTIAL_CONTENT {
            let value = header(response.headers(), CONTENT_RANGE.as_str()).unwrap_or("");
            Some(
                parse_content_range(value)
                    .ok_or_else(|| Error::InvalidResponse(format!("a 206 answer with Content-Range {value:?}")))?,
            )
        } else {
            None
        };
        let content_length = content_length(response.headers());
        let verify = content_range.is_none().then(|| (Digester::new(digest.algorithm()), digest.clone()));
        Ok(BlobStream {
            body: self.transport().body_stream(response),
            content_length,
            content_range,
            verify,
            received: 0,
            finished: false,
        })
    }

    /// Every tag of the repository, following `Link` pagination (`page_size` asks for pages of
    /// that many). Tags Berth's grammar refuses are skipped with a warning.
    pub async fn list_tags(&self, name: &RepositoryName, page_size: Option<u32>) -> Result<Vec<Tag>> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let name = self.endpoint().remote_name(name);
        let mut url = self.endpoint().v2_url(&format!("{name}/tags/list"));
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let response = self.send(Call::new(Method::GET, url.clone(), Scope::pull(name.as_str()))).await?;
            let response = self.expect(response, &[StatusCode::OK]).await?;
            let next = next_link(response.headers())
                .map(|link| {
                    response
                        .url()
                        .join(&link)
                        .map_err(|_| Error::InvalidResponse(format!("a Link {link:?} that is not a URL")))
                })
                .transpose()?;
            let body = self.transport().read_body(response, TAG_PAGE_LIMIT).await?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| Error::InvalidResponse(format!("a tag list that is not {{\"tags\": [...]}}: {e}")))?;
            for tag in page.tags.unwrap_or_default() {
                match tag.parse() {
                    Ok(tag) => tags.push(tag),
                    Err(_) => {
                        tracing::warn!(registry = %self.endpoint(), repository = %name, ?tag, "skipping a tag Berth cannot hold")
                    }
                }
            }
            match next {
                Some(next) if next != url => {
                    if !self.endpoint().is_same_origin(&next) {
                        return Err(Error::InvalidResponse("a tag list Link to another host".into()));
                    }
                    url = next;
                }
                Some(_) => return Err(Error::InvalidResponse("a tag list Link to the same page".into())),
                None => return Ok(tags),
            }
        }
        Err(Error::InvalidResponse(format!("a tag list longer than {MAX_TAG_PAGES} pages")))
    }
}

/// The `<target>` of the `Link` header entry with `rel="next"`.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(key, value)| key.trim().eq_ignore_ascii_case("rel") && value.trim().trim_matches('"') == "next")
            .then(|| target.to_owned())
    })
}

/// `bytes start-end/total` (total may be `*`).
fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    (start <= end).then_some(ContentRange { start, end, total })
}

/// A blob being downloaded. Yields its bytes as they arrive; see [`Remote::get_blob`] for when
/// the content may be trusted.
pub struct BlobStream {
    body: IdleStream,
    content_length: Option<u64>,
    content_range: Option<ContentRange>,
    verify: Option<(Digester, Digest)>,
    received: u64,
    finished: bool,
}

impl BlobStream {
    /// The size of what this stream yields, from `Content-Length` (absent with chunked transfer).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// For a 206 answer to a range request: which part this is. `None`: the whole blob.
    pub fn content_range(&self) -> Option<ContentRange> {
        self.content_range
    }

    fn check_end(&mut self) -> Result<()> {
        if let Some(expected) = self.content_length
            && self.received != expected
        {
            return Err(Error::Transport(format!("the blob ended after {} of {expected} bytes", self.received)));
        }
        if let Some((digester, expected)) = self.verify.take() {
            let actual = digester.finish();
            if actual != expected {
                return Err(Error::DigestMismatch { expected, actual });
            }
        }
        Ok(())
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => {
                self.received += piece.len() as u64;
                if let Some((digester, _)) = self.verify.as_mut() {
                    digester.update(&piece);
                }
                Poll::Ready(Some(Ok(piece)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.finished = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(self.check_end().err().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("content_length", &self.content_length)
            .field("content_range", &self.content_range)
            .field("received", &self.received)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn link_next_relative_or_absolute() {
        let h = headers(&[("link", r#"</v2/a/tags/list?n=2&last=b>; rel="next""#)]);
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
        let h = headers(&[(
            "link",
            r#"<https://r.example/v2/a/tags/list?last=b>; rel="prev", <https://r.example/v2/a/tags/list?last=c>;rel=next"#,
        )]);
        assert_eq!(next_link(&h).as_deref(), Some("https://r.example/v2/a/tags/list?last=c"));
        assert_eq!(next_link(&headers(&[("link", "<x>; rel=\"last\"")])), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some(ContentRange { start: 0, end: 9, total: Some(100) }));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some(ContentRange { start: 5, end: 5, total: None }));
        for bad in ["0-9/100", "bytes 9-0/100", "bytes a-b/1", "bytes 0-9", ""] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn manifest_media_type_from_header_or_body() {
        let oci = headers(&[("content-type", "application/vnd.oci.image.index.v1+json; charset=utf-8")]);
        assert_eq!(media_type_of(&oci, b"{}").unwrap(), "application/vnd.oci.image.index.v1+json");
        let generic = headers(&[("content-type", "application/json")]);
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(media_type_of(&generic, body).unwrap(), "application/vnd.docker.distribution.manifest.v2+json");
        assert!(matches!(media_type_of(&HeaderMap::new(), b"{\"schemaVersion\":2}"), Err(Error::InvalidResponse(_))));
    }

    #[test]
    fn the_accept_header_names_every_stored_manifest_type() {
        let accept = manifest_accept();
        for media_type in MANIFEST_TYPES {
            assert!(accept.to_str().unwrap().contains(media_type));
        }
    }
}
