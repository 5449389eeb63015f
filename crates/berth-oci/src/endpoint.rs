//! Parsing `/v2/...` paths into typed endpoints, and what each served operation needs to be
//! allowed.
//!
//! The router hands it the percent-decoded path, as distribution routes (`sha256%3A…` is a
//! digest, `mine%2Fx` the name `mine/x`); names, references and upload ids are validated after
//! decoding, and authorization sees the same decoded name that is served.
//!
//! Every [`Operation`] declares the ECR actions it performs and the resource it touches
//! ([`Operation::access`]), as AWS documents for ECR's Docker Registry API; the router checks that
//! declaration once, before dispatch, so no operation can run without its check.

use axum::http::Method;
use berth_iam::Served;
use berth_iam::actions::*;
use berth_registry::Resource;

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

    /// The methods the endpoint serves, as a 405's `Allow` header lists them (RFC 9110 15.5.6).
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Tags { .. } | Endpoint::Referrers { .. } => "GET, HEAD",
            Endpoint::Manifest { .. } => "GET, HEAD, PUT, DELETE",
            Endpoint::Blob { .. } => "GET, HEAD, DELETE",
            Endpoint::UploadStart { .. } => "POST",
            Endpoint::Upload { .. } => "GET, PATCH, PUT, DELETE",
        }
    }
}

/// A request the `/v2/` plane serves: an endpoint and a method. Names and references are
/// still unvalidated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `GET|HEAD /v2/`, the version check clients start with.
    Ping,
    Catalog,
    ListTags {
        name: String,
    },
    /// `GET` (`body`) or `HEAD` of a manifest.
    GetManifest {
        name: String,
        reference: String,
        body: bool,
    },
    PutManifest {
        name: String,
        reference: String,
    },
    DeleteManifest {
        name: String,
        reference: String,
    },
    HeadBlob {
        name: String,
        digest: String,
    },
    GetBlob {
        name: String,
        digest: String,
    },
    DeleteBlob {
        name: String,
        digest: String,
    },
    /// `POST /blobs/uploads/`: a session, a monolithic upload (`?digest=`) or a mount (`?mount=`).
    StartUpload {
        name: String,
    },
    UploadStatus {
        name: String,
        id: String,
    },
    PatchUpload {
        name: String,
        id: String,
    },
    FinishUpload {
        name: String,
        id: String,
    },
    CancelUpload {
        name: String,
        id: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
}

/// How a `POST /blobs/uploads/` starts (from its query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Session,
    /// `?digest=`: the whole blob in this request.
    Monolithic,
    /// `?mount=`: link a blob from another repository (or upload it if that cannot be done).
    Mount,
}

/// What an operation needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Any caller who logged in (the version check: `docker login` sends its credentials only
    /// after this answered with a challenge).
    LoggedIn,
    /// Every one of these ECR actions on this resource.
    Actions(&'static [&'static str], Resource<'a>),
}

impl Operation {
    /// `None` for a method the endpoint does not serve.
    pub fn new(endpoint: Endpoint, method: &Method) -> Option<Operation> {
        use Endpoint as E;
        let read = *method == Method::GET || *method == Method::HEAD;
        Some(match (endpoint, method.clone()) {
            (E::Base, _) if read => Operation::Ping,
            (E::Catalog, _) if read => Operation::Catalog,
            (E::Tags { name }, _) if read => Operation::ListTags { name },
            (E::Manifest { name, reference }, m) if read => {
                Operation::GetManifest { name, reference, body: m == Method::GET }
            }
            (E::Manifest { name, reference }, Method::PUT) => Operation::PutManifest { name, reference },
            (E::Manifest { name, reference }, Method::DELETE) => Operation::DeleteManifest { name, reference },
            (E::Blob { name, digest }, Method::HEAD) => Operation::HeadBlob { name, digest },
            (E::Blob { name, digest }, Method::GET) => Operation::GetBlob { name, digest },
            (E::Blob { name, digest }, Method::DELETE) => Operation::DeleteBlob { name, digest },
            (E::UploadStart { name }, Method::POST) => Operation::StartUpload { name },
            (E::Upload { name, id }, Method::GET) => Operation::UploadStatus { name, id },
            (E::Upload { name, id }, Method::PATCH) => Operation::PatchUpload { name, id },
            (E::Upload { name, id }, Method::PUT) => Operation::FinishUpload { name, id },
            (E::Upload { name, id }, Method::DELETE) => Operation::CancelUpload { name, id },
            (E::Referrers { name, digest }, _) if read => Operation::Referrers { name, digest },
            _ => return None,
        })
    }

    /// The ECR actions and resource the operation needs: AWS's mapping for ECR's Docker API.
    /// `start` says how an upload starts; `finish_has_chunk` whether a finishing PUT carries data.
    pub fn access(&self, start: UploadKind, finish_has_chunk: bool) -> Access<'_> {
        fn on<'a>(name: &'a str, actions: &'static [&'static str]) -> Access<'a> {
            Access::Actions(actions, Resource::Repository(name))
        }
        match self {
            Operation::Ping => Access::LoggedIn,
            Operation::Catalog => Access::Actions(&[DESCRIBE_REPOSITORIES], Resource::AllRepositories),
            Operation::ListTags { name } => on(name, &[LIST_IMAGES]),
            Operation::GetManifest { name, .. } | Operation::Referrers { name, .. } => on(name, &[BATCH_GET_IMAGE]),
            Operation::PutManifest { name, .. } => on(name, &[PUT_IMAGE]),
            Operation::DeleteManifest { name, .. } | Operation::DeleteBlob { name, .. } => {
                on(name, &[BATCH_DELETE_IMAGE])
            }
            // A client checks whether a blob exists before pushing it; pulls GET.
            Operation::HeadBlob { name, .. } => on(name, &[BATCH_CHECK_LAYER_AVAILABILITY]),
            Operation::GetBlob { name, .. } => on(name, &[GET_DOWNLOAD_URL_FOR_LAYER]),
            Operation::StartUpload { name } => match start {
                UploadKind::Session => on(name, &[INITIATE_LAYER_UPLOAD]),
                UploadKind::Monolithic => on(name, &[INITIATE_LAYER_UPLOAD, UPLOAD_LAYER_PART, COMPLETE_LAYER_UPLOAD]),
                UploadKind::Mount => on(name, &[INITIATE_LAYER_UPLOAD, COMPLETE_LAYER_UPLOAD]),
            },
            Operation::FinishUpload { name, .. } if finish_has_chunk => {
                on(name, &[UPLOAD_LAYER_PART, COMPLETE_LAYER_UPLOAD])
            }
            Operation::FinishUpload { name, .. } => on(name, &[COMPLETE_LAYER_UPLOAD]),
            // A session's chunks, its status and its cancellation are all part of uploading.
            Operation::PatchUpload { name, .. }
            | Operation::UploadStatus { name, .. }
            | Operation::CancelUpload { name, .. } => on(name, &[UPLOAD_LAYER_PART]),
        }
    }
}

impl Operation {
    /// What metrics and the audit trail call this operation (see [`Served`]), with the names
    /// and references it was given.
    pub fn served(&self) -> Served {
        use Operation as O;
        let (operation, event_name, mutating) = match self {
            O::Ping => ("Ping", "Ping", false),
            O::Catalog => ("Catalog", "DescribeRepositories", false),
            O::ListTags { .. } => ("ListTags", "ListImages", false),
            O::GetManifest { body: true, .. } => ("GetManifest", "BatchGetImage", false),
            O::GetManifest { body: false, .. } => ("HeadManifest", "BatchGetImage", false),
            O::PutManifest { .. } => ("PutManifest", "PutImage", true),
            O::DeleteManifest { .. } => ("DeleteManifest", "BatchDeleteImage", true),
            O::HeadBlob { .. } => ("HeadBlob", "BatchCheckLayerAvailability", false),
            O::GetBlob { .. } => ("GetBlob", "GetDownloadUrlForLayer", false),
            O::DeleteBlob { .. } => ("DeleteBlob", "BatchDeleteImage", true),
            O::StartUpload { .. } => ("StartUpload", "InitiateLayerUpload", true),
            O::UploadStatus { .. } => ("UploadStatus", "UploadLayerPart", false),
            O::PatchUpload { .. } => ("PatchUpload", "UploadLayerPart", true),
            O::FinishUpload { .. } => ("FinishUpload", "CompleteLayerUpload", true),
            O::CancelUpload { .. } => ("CancelUpload", "UploadLayerPart", true),
            O::Referrers { .. } => ("Referrers", "ListImageReferrers", false),
        };
        let mut served = Served::new(operation, event_name, mutating);
        let mut set = |key: &str, value: &str| {
            served.parameters.insert(key.to_owned(), value.into());
        };
        match self {
            O::Ping | O::Catalog => {}
            O::ListTags { name } => set("repositoryName", name),
            O::GetManifest { name, reference, .. }
            | O::PutManifest { name, reference }
            | O::DeleteManifest { name, reference } => {
                set("repositoryName", name);
                set(if reference.contains(':') { "imageDigest" } else { "imageTag" }, reference);
            }
            O::HeadBlob { name, digest } | O::GetBlob { name, digest } | O::DeleteBlob { name, digest } => {
                set("repositoryName", name);
                set("layerDigest", digest);
            }
            O::StartUpload { name } => set("repositoryName", name),
            O::UploadStatus { name, id }
            | O::PatchUpload { name, id }
            | O::FinishUpload { name, id }
            | O::CancelUpload { name, id } => {
                set("repositoryName", name);
                set("uploadId", id);
            }
            O::Referrers { name, digest } => {
                set("repositoryName", name);
                set("imageDigest", digest);
            }
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint::{self, *};
    use super::*;

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

    /// A 405's `Allow` lists exactly the methods that make an operation of the endpoint.
    #[test]
    fn allowed_methods_are_the_served_ones() {
        let methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
        for path in [
            "/v2/",
            "/v2/_catalog",
            "/v2/a/tags/list",
            "/v2/a/manifests/v1",
            "/v2/a/blobs/d",
            "/v2/a/blobs/uploads/",
            "/v2/a/blobs/uploads/1",
            "/v2/a/referrers/d",
        ] {
            let endpoint = p(path).unwrap();
            let served: Vec<&str> = methods
                .into_iter()
                .filter(|m| Operation::new(endpoint.clone(), &Method::from_bytes(m.as_bytes()).unwrap()).is_some())
                .collect();
            let mut allowed: Vec<&str> = endpoint.allowed_methods().split(", ").collect();
            allowed.sort_by_key(|m| methods.iter().position(|x| x == m));
            assert_eq!(allowed, served, "{path}");
        }
    }

    #[test]
    fn names_may_contain_marker_words() {
        assert_eq!(p("/v2/x/blobs/manifests/v1"), Some(Manifest { name: "x/blobs".into(), reference: "v1".into() }));
        assert_eq!(p("/v2/manifests/blobs/d"), Some(Blob { name: "manifests".into(), digest: "d".into() }));
    }

    /// Every endpoint × method is either an operation that declares an action on its repository
    /// (or the catalog, or the version check), or not served at all.
    #[test]
    fn every_served_operation_declares_its_access() {
        let endpoints = [
            Base,
            Catalog,
            Tags { name: "r".into() },
            Manifest { name: "r".into(), reference: "t".into() },
            Blob { name: "r".into(), digest: "d".into() },
            UploadStart { name: "r".into() },
            Upload { name: "r".into(), id: "u".into() },
            Referrers { name: "r".into(), digest: "d".into() },
        ];
        let methods =
            [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS];
        let mut served = 0;
        for endpoint in endpoints {
            for method in &methods {
                let Some(operation) = Operation::new(endpoint.clone(), method) else { continue };
                served += 1;
                for start in [UploadKind::Session, UploadKind::Monolithic, UploadKind::Mount] {
                    for chunk in [false, true] {
                        match (operation.access(start, chunk), &endpoint) {
                            (Access::LoggedIn, Base) | (Access::Actions(_, Resource::AllRepositories), Catalog) => {}
                            (Access::Actions(actions, Resource::Repository("r")), _) => {
                                assert!(!actions.is_empty(), "{operation:?}");
                                assert!(actions.iter().all(|a| a.starts_with("ecr:")), "{operation:?}");
                            }
                            (access, _) => panic!("{operation:?} declares {access:?}"),
                        }
                    }
                }
            }
        }
        // GET and HEAD of the version check, catalog, tags, manifests, blobs and referrers; manifest
        // PUT and DELETE; blob DELETE; upload POST; upload GET, PATCH, PUT and DELETE.
        assert_eq!(served, 20);
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
