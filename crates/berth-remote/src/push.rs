//! Writing to a remote registry: cross-repository mounts, blob uploads streamed from the
//! caller (one `PUT`, or `PATCH` chunks), manifests.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use berth_spec::{Digest, Reference, RepositoryName};
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE};
use reqwest::{Method, StatusCode, Url};

use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::remote::{Body, Call, Remote};
use crate::transport::UploadProgress;

/// An upload session the registry opened (its `Location`), to be given to [`Remote::push_blob`].
pub struct UploadSession {
    url: Url,
}

impl std::fmt::Debug for UploadSession {
    /// The path only: a Location's query may hold the registry's signed upload state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadSession({})", self.url.path())
    }
}

/// What a cross-repository mount did.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry did not mount (source unknown to it, or mounts unsupported) and opened an
    /// upload instead: push the blob into this session.
    Upload(UploadSession),
}

const OCTET_STREAM: &str = "application/octet-stream";

impl Remote {
    /// Links a blob the registry has in `from` into `name` without sending it.
    pub async fn mount_blob(&self, name: &RepositoryName, digest: &Digest, from: &RepositoryName) -> Result<Mount> {
        let (name, from) = (self.endpoint().remote_name(name), self.endpoint().remote_name(from));
        let mut url = self.endpoint().v2_url(&format!("{name}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from.as_str());
        let response = self.send(Call::new(Method::POST, url, Scope::mount(name.as_str(), from.as_str()))).await?;
        let response = self.expect(response, &[StatusCode::CREATED, StatusCode::ACCEPTED]).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Upload(UploadSession { url: self.location(&response)? }))
    }

    async fn start_upload(&self, name: &str) -> Result<UploadSession> {
        let url = self.endpoint().v2_url(&format!("{name}/blobs/uploads/"));
        let response = self.send(Call::new(Method::POST, url, Scope::push(name))).await?;
        let response = self.expect(response, &[StatusCode::ACCEPTED]).await?;
        Ok(UploadSession { url: self.location(&response)? })
    }

    /// Uploads the `size` bytes of `body` as the blob `digest` (into `session` when a mount
    /// opened one, else a new upload). Up to the configured chunk size it is one `PUT`; beyond,
    /// `PATCH`es of that size, each streamed, then the closing `PUT`. Memory stays bounded by
    /// what the stream yields at a time. Exactly `size` bytes are read; a shorter stream fails
    /// with [`Error::InvalidInput`], a failing one with [`Error::Source`]. The registry checks
    /// the digest.
    pub async fn push_blob<S, E>(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: S,
        session: Option<UploadSession>,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let name = self.endpoint().remote_name(name);
        let scope = Scope::push(name.as_str());
        let mut location = match session {
            Some(session) => session.url,
            None => self.start_upload(name.as_str()).await?.url,
        };
        let source = Arc::new(Mutex::new(Source {
            stream: Box::pin(futures::StreamExt::map(body, |item| item.map_err(|e| e.to_string()))),
            leftover: None,
        }));
        let chunk_size = self.transport().config.upload_chunk_size.max(1);
        if size <= chunk_size {
            let mut call = Call::new(Method::PUT, with_digest(&location, digest), scope);
            call.body = chunk_body(&source, size, 0, size);
            call.headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
            call.headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
            return self.finish_upload(call, digest).await;
        }
        let mut offset = 0;
        while offset < size {
            let length = chunk_size.min(size - offset);
            let end = offset + length - 1;
            let mut call = Call::new(Method::PATCH, location.clone(), scope.clone());
            call.body = chunk_body(&source, length, offset, size);
            call.headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
            call.headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            call.headers.insert(CONTENT_RANGE, header_value(&format!("{offset}-{end}"))?);
            let response = self.send(call).await?;
            let response = self.expect(response, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT]).await?;
            // The spec's `Range: 0-<end>` confirms what the registry holds; a registry that
            // leaves it out is trusted by its 202.
            if let Some(range) = response.headers().get(RANGE).and_then(|v| v.to_str().ok())
                && range_end(range) != Some(end)
            {
                return Err(Error::InvalidResponse(format!("after bytes {offset}-{end} the registry holds {range:?}")));
            }
            location = self.location(&response)?;
            offset += length;
        }
        let mut call = Call::new(Method::PUT, with_digest(&location, digest), scope);
        call.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        self.finish_upload(call, digest).await
    }

    async fn finish_upload(&self, call: Call, digest: &Digest) -> Result<()> {
        let response = self.send(call).await?;
        let response = self.expect(response, &[StatusCode::CREATED, StatusCode::NO_CONTENT]).await?;
        check_announced(&response, digest)
    }

    /// Pushes a manifest under `reference` (a tag, or the digest of `bytes`) with its media type.
    /// Returns its digest (by tag: sha256 of the bytes), checked against what the registry says.
    pub async fn put_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(digest) => {
                let actual = Digest::of(digest.algorithm(), &bytes);
                if &actual != digest {
                    return Err(Error::InvalidInput(format!("the manifest's bytes are {actual}, not {digest}")));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        let name = self.endpoint().remote_name(name);
        let url = self.endpoint().v2_url(&format!("{name}/manifests/{reference}"));
        let mut call = Call::new(Method::PUT, url, Scope::push(name.as_str()));
        call.headers.insert(CONTENT_TYPE, header_value(media_type)?);
        call.body = Body::Bytes(bytes);
        let response = self.send(call).await?;
        let response = self.expect(response, &[StatusCode::CREATED, StatusCode::OK, StatusCode::NO_CONTENT]).await?;
        check_announced(&response, &digest)?;
        Ok(digest)
    }
}

fn header_value(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| Error::InvalidInput(format!("{value:?} cannot be a header value")))
}

/// The upload URL with `digest=` added to whatever state the registry keeps in its query.
fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// A `Docker-Content-Digest` that contradicts the digest pushed means the registry stored
/// something else.
fn check_announced(response: &reqwest::Response, expected: &Digest) -> Result<()> {
    let announced = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
    match announced.map(str::parse::<Digest>) {
        Some(Ok(actual)) if &actual != expected => Err(Error::DigestMismatch { expected: expected.clone(), actual }),
        _ => Ok(()),
    }
}

/// `0-<end>` (or `bytes=0-<end>`): the last byte the registry holds.
fn range_end(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    range.split_once('-')?.1.trim().parse().ok()
}

/// The caller's stream, shared by the chunks cut from it in turn.
struct Source {
    stream: BoxStream<'static, std::result::Result<Bytes, String>>,
    /// What the last chunk took beyond its end, for the next one.
    leftover: Option<Bytes>,
}

/// A request body of the next `length` bytes of `source` (bytes `offset..` of `total`).
fn chunk_body(source: &Arc<Mutex<Source>>, length: u64, offset: u64, total: u64) -> Body {
    let progress = UploadProgress::new();
    let chunk = Chunk { source: source.clone(), remaining: length, sent: offset, total, progress: progress.clone() };
    Body::Upload(reqwest::Body::wrap_stream(chunk), progress)
}

struct Chunk {
    source: Arc<Mutex<Source>>,
    remaining: u64,
    /// Bytes of the blob taken from the source so far (for the error message).
    sent: u64,
    total: u64,
    progress: Arc<UploadProgress>,
}

impl Chunk {
    fn fail(&mut self, error: Error) -> Poll<Option<std::result::Result<Bytes, Error>>> {
        self.remaining = 0;
        self.progress.source_failed(error.clone());
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Chunk {
    type Item = std::result::Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            self.progress.body_finished();
            return Poll::Ready(None);
        }
        let source = self.source.clone();
        let mut source = source.lock().unwrap_or_else(|p| p.into_inner());
        let mut piece = match source.leftover.take() {
            Some(piece) => piece,
            None => match source.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(piece))) => piece,
                Poll::Ready(Some(Err(message))) => return self.fail(Error::Source(message)),
                Poll::Ready(None) => {
                    let message = format!("the blob's stream ended after {} of {} bytes", self.sent, self.total);
                    return self.fail(Error::InvalidInput(message));
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        if piece.len() as u64 > self.remaining {
            source.leftover = Some(piece.split_off(self.remaining as usize));
        }
        self.remaining -= piece.len() as u64;
        self.sent += piece.len() as u64;
        self.progress.piece_sent();
        Poll::Ready(Some(Ok(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn source_of(pieces: &[&'static [u8]]) -> Arc<Mutex<Source>> {
        let pieces: Vec<std::result::Result<Bytes, String>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Arc::new(Mutex::new(Source { stream: futures::stream::iter(pieces).boxed(), leftover: None }))
    }

    async fn collect(chunk: Chunk) -> std::result::Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut chunk = Box::pin(chunk);
        while let Some(piece) = chunk.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    fn chunk(source: &Arc<Mutex<Source>>, length: u64, offset: u64, total: u64) -> Chunk {
        Chunk { source: source.clone(), remaining: length, sent: offset, total, progress: UploadProgress::new() }
    }

    #[tokio::test]
    async fn chunks_cut_the_stream_at_their_boundaries() {
        let source = source_of(&[b"abc", b"defgh", b"ij"]);
        assert_eq!(collect(chunk(&source, 4, 0, 10)).await.unwrap(), b"abcd");
        assert_eq!(collect(chunk(&source, 4, 4, 10)).await.unwrap(), b"efgh");
        assert_eq!(collect(chunk(&source, 2, 8, 10)).await.unwrap(), b"ij");
    }

    #[tokio::test]
    async fn a_short_or_failing_source_is_reported() {
        let source = source_of(&[b"abc"]);
        let error = collect(chunk(&source, 5, 0, 5)).await.unwrap_err();
        assert_eq!(error, Error::InvalidInput("the blob's stream ended after 3 of 5 bytes".into()));
        let failing: Vec<std::result::Result<Bytes, String>> =
            vec![Ok(Bytes::from_static(b"a")), Err("disk gone".into())];
        let source = Arc::new(Mutex::new(Source { stream: futures::stream::iter(failing).boxed(), leftover: None }));
        let progress = UploadProgress::new();
        let failing_chunk = Chunk { source, remaining: 5, sent: 0, total: 5, progress: progress.clone() };
        assert_eq!(collect(failing_chunk).await.unwrap_err(), Error::Source("disk gone".into()));
        assert_eq!(progress.source_error(), Some(Error::Source("disk gone".into())));
    }

    #[test]
    fn upload_ranges_and_digest_query() {
        assert_eq!(range_end("0-1023"), Some(1023));
        assert_eq!(range_end("bytes=0-9"), Some(9));
        assert_eq!(range_end("garbage"), None);
        let location = Url::parse("http://r.example/v2/a/blobs/uploads/u?_state=xyz").unwrap();
        let digest = Digest::sha256_of(b"");
        assert_eq!(
            with_digest(&location, &digest).as_str(),
            format!("http://r.example/v2/a/blobs/uploads/u?_state=xyz&digest=sha256%3A{}", digest.hex())
        );
    }
}
