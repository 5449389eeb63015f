//! Parsing `/v2/...` paths into typed endpoints.
//!
//! The raw (still percent-encoded) path is used: an encoded `/` or `.` in a name is not
//! decoded into something the grammar would then accept.

/// A `/v2/` endpoint, before method dispatch. Names and references are unvalidated text here;
/// handlers validate them with `berth_spec` so errors carry the right code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: String, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
}

impl Endpoint {
    /// `None` when the path is not a registry endpoint at all.
    pub fn parse(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Endpoint::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Endpoint::Tags { name: name.to_owned() });
        }
        if let Some(name) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
            return Some(Endpoint::UploadStart { name: name.to_owned() });
        }
        // `<name>/<marker>/<last>`: the last path segment is the reference, the marker the
        // segment before it (a name may itself contain "blobs" or "manifests" components).
        let (head, last) = rest.rsplit_once('/')?;
        let (name, marker) = head.rsplit_once('/')?;
        let (name, last) = (name.to_owned(), last.to_owned());
        match marker {
            "manifests" => Some(Endpoint::Manifest { name, reference: last }),
            "blobs" => Some(Endpoint::Blob { name, digest: last }),
            "referrers" => Some(Endpoint::Referrers { name, digest: last }),
            "uploads" => {
                let name = name.strip_suffix("/blobs")?.to_owned();
                Some(Endpoint::Upload { name, id: last })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint::{self, *};

    fn p(s: &str) -> Option<Endpoint> {
        Endpoint::parse(s)
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(p("/v2/"), Some(Base));
        assert_eq!(p("/v2"), Some(Base));
        assert_eq!(p("/v2/_catalog"), Some(Catalog));
        assert_eq!(p("/v2/a/b/tags/list"), Some(Tags { name: "a/b".into() }));
        assert_eq!(p("/v2/a/manifests/latest"), Some(Manifest { name: "a".into(), reference: "latest".into() }));
        assert_eq!(p("/v2/a/blobs/sha256:x"), Some(Blob { name: "a".into(), digest: "sha256:x".into() }));
        assert_eq!(p("/v2/a/blobs/uploads/"), Some(UploadStart { name: "a".into() }));
        assert_eq!(p("/v2/a/b/blobs/uploads/123"), Some(Upload { name: "a/b".into(), id: "123".into() }));
        assert_eq!(p("/v2/a/referrers/sha256:x"), Some(Referrers { name: "a".into(), digest: "sha256:x".into() }));
    }

    #[test]
    fn names_may_contain_marker_words() {
        assert_eq!(p("/v2/x/blobs/manifests/v1"), Some(Manifest { name: "x/blobs".into(), reference: "v1".into() }));
        assert_eq!(p("/v2/manifests/blobs/d"), Some(Blob { name: "manifests".into(), digest: "d".into() }));
    }

    #[test]
    fn rejects_non_endpoints() {
        assert_eq!(p("/v3/"), None);
        assert_eq!(p("/v2/a"), None);
        assert_eq!(p("/v2/a/other/x"), None);
        assert_eq!(p("/v2/a/uploads/x"), None);
        assert_eq!(p("/v2x/"), None);
    }
}
