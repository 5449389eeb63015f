//! A lean distribution-API client: one HTTP/1.1 keep-alive connection, requests sent in order.
//!
//! Built on hyper's connection API rather than a pooled client so that a worker's cost per
//! request is just the request, and the load generator stays far below the servers' cost.

use anyhow::{Context as _, bail, ensure};
use base64::prelude::{BASE64_STANDARD, Engine as _};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::payload::{Body, MANIFEST_ACCEPT, MANIFEST_TYPE};

pub const DIGEST_HEADER: &str = "docker-content-digest";

/// How a blob's bytes travel after `POST /blobs/uploads/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UploadMode {
    /// One streaming PATCH, then `PUT ?digest=` with no body (what docker and containerd do).
    Patch,
    /// The bytes in the closing `PUT ?digest=` itself.
    Put,
}

pub struct Client {
    authority: String,
    /// `Basic …` for the access key every request signs in with, as `docker login` makes clients do.
    authorization: Option<String>,
    sender: Option<SendRequest<Body>>,
}

impl Client {
    /// `authority` is `host:port`; nothing connects until the first request.
    pub fn new(authority: &str, credentials: Option<(&str, &str)>) -> Self {
        let authorization =
            credentials.map(|(id, secret)| format!("Basic {}", BASE64_STANDARD.encode(format!("{id}:{secret}"))));
        Self { authority: authority.to_owned(), authorization, sender: None }
    }

    /// Drops the connection, e.g. after abandoning a request whose answer may still arrive on it.
    pub fn disconnect(&mut self) {
        self.sender = None;
    }

    /// Reuses the open connection, reconnecting if the server closed it.
    async fn ready_sender(&mut self) -> anyhow::Result<&mut SendRequest<Body>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("connecting to {}", self.authority))?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            // Connection errors surface through the request that was in flight.
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        Ok(sender)
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut request = Request::builder().method(method.clone()).uri(path).header(header::HOST, &self.authority);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request = request.body(body)?;
        let sender = self.ready_sender().await?;
        let response = sender.send_request(request).await;
        if response.is_err() {
            self.sender = None;
        }
        response.with_context(|| format!("{method} {path}"))
    }

    /// Sends a request and reads the whole response body.
    pub async fn fetch(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> anyhow::Result<(Response<()>, Bytes)> {
        let response = self.send(method.clone(), path, headers, body).await?;
        let (parts, body) = response.into_parts();
        let bytes =
            body.collect().await.with_context(|| format!("reading the response to {method} {path}"))?.to_bytes();
        Ok((Response::from_parts(parts, ()), bytes))
    }

    /// Like `fetch`, but anything other than `expected` becomes an error quoting the server.
    pub async fn expect(
        &mut self,
        expected: StatusCode,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> anyhow::Result<(Response<()>, Bytes)> {
        let (response, bytes) = self.fetch(method.clone(), path, headers, body).await?;
        if response.status() != expected {
            bail!(
                "{method} {path}: expected {expected}, got {}: {}",
                response.status(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        Ok((response, bytes))
    }

    /// Uploads a blob in two or three requests and checks the digest the registry reports.
    pub async fn upload_blob(&mut self, repo: &str, digest: &str, body: Body, mode: UploadMode) -> anyhow::Result<()> {
        let start = format!("/v2/{repo}/blobs/uploads/");
        let (response, _) = self.expect(StatusCode::ACCEPTED, Method::POST, &start, &[], Body::Empty).await?;
        let mut location = upload_location(&response)?;
        let final_body = match mode {
            UploadMode::Put => body,
            UploadMode::Patch => {
                let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
                let (response, _) = self.expect(StatusCode::ACCEPTED, Method::PATCH, &location, &octets, body).await?;
                location = upload_location(&response)?;
                Body::Empty
            }
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let finish = format!("{location}{separator}digest={digest}");
        let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
        let (response, _) = self.expect(StatusCode::CREATED, Method::PUT, &finish, &octets, final_body).await?;
        check_digest_header(&response, digest)
    }

    pub async fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        manifest: Bytes,
        digest: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let content_type = [(header::CONTENT_TYPE, MANIFEST_TYPE)];
        let (response, _) =
            self.expect(StatusCode::CREATED, Method::PUT, &path, &content_type, Body::Full(Some(manifest))).await?;
        check_digest_header(&response, digest)
    }

    /// Fetches a manifest and checks it is byte for byte the one pushed.
    pub async fn get_manifest(&mut self, repo: &str, reference: &str, expected: &[u8]) -> anyhow::Result<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = [(header::ACCEPT, MANIFEST_ACCEPT)];
        let (_, body) = self.expect(StatusCode::OK, Method::GET, &path, &accept, Body::Empty).await?;
        ensure!(body == expected, "GET {path} returned a different manifest than was pushed");
        Ok(())
    }
}

/// The upload URL as a path: registries answer with an absolute URL or an absolute path.
fn upload_location(response: &Response<()>) -> anyhow::Result<String> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .context("upload response without a Location header")?
        .to_str()
        .context("Location header is not text")?;
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    };
    ensure!(path.starts_with('/'), "unsupported relative upload Location {location:?}");
    Ok(path.to_owned())
}

/// A registry that reports a digest must report the one the client computed.
fn check_digest_header(response: &Response<()>, digest: &str) -> anyhow::Result<()> {
    match response.headers().get(DIGEST_HEADER).map(HeaderValue::to_str) {
        None => Ok(()),
        Some(Ok(reported)) if reported == digest => Ok(()),
        Some(reported) => bail!("registry reported digest {reported:?}, expected {digest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_location(location: &str) -> Response<()> {
        Response::builder().header(header::LOCATION, location).body(()).unwrap()
    }

    #[test]
    fn upload_location_keeps_path_and_query_of_absolute_urls() {
        let response = with_location("http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=x");
        assert_eq!(upload_location(&response).unwrap(), "/v2/a/blobs/uploads/u1?_state=x");
        let response = with_location("/v2/a/blobs/uploads/u2");
        assert_eq!(upload_location(&response).unwrap(), "/v2/a/blobs/uploads/u2");
        assert!(upload_location(&with_location("uploads/u3")).is_err());
    }

    #[test]
    fn digest_header_mismatch_is_an_error() {
        let ok = Response::builder().header(DIGEST_HEADER, "sha256:ab").body(()).unwrap();
        assert!(check_digest_header(&ok, "sha256:ab").is_ok());
        assert!(check_digest_header(&ok, "sha256:cd").is_err());
        assert!(check_digest_header(&Response::new(()), "sha256:cd").is_ok());
    }
}
