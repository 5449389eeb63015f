//! The bad-input corpus: several hundred malformed or hostile requests on both planes, from the
//! families a hostile client tries (names, references, digests, manifests, uploads, ranges,
//! pagination, routes; ECR bodies, types, bounds, names, policies). Each must get its documented
//! 4xx and error code — never a 5xx — and afterwards the registry must hold exactly what it held
//! before: the same repositories, images, tags, policies and settings over both APIs, and the same
//! blob and upload files on disk.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ROOT_KEY_ID: &str = "AKIABADINPUTROOT0001";
const ROOT_SECRET: &str = "bad-input-root-secret-0123456789abcdefghij";

/// What a case must be answered with: the status, and one of the error codes (OCI `errors[].code`
/// or ECR `__type`); no codes for answers without a body (HEAD).
struct Expect {
    status: u16,
    codes: &'static [&'static str],
}

const fn expect(status: u16, codes: &'static [&'static str]) -> Expect {
    Expect { status, codes }
}

enum Request {
    Oci { method: Method, path: String, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    Ecr { operation: String, body: Vec<u8> },
}

struct Case {
    family: &'static str,
    what: String,
    request: Request,
    expect: Expect,
}

#[derive(Default)]
struct Corpus(Vec<Case>);

impl Corpus {
    fn oci(&mut self, family: &'static str, method: Method, path: impl Into<String>, expect: Expect) {
        self.oci_with(family, method, path, &[], Vec::new(), expect);
    }

    fn oci_with(
        &mut self,
        family: &'static str,
        method: Method,
        path: impl Into<String>,
        headers: &[(&'static str, &str)],
        body: Vec<u8>,
        expect: Expect,
    ) {
        let path = path.into();
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let what = format!("{method} {}", truncated(&path));
        self.0.push(Case { family, what, request: Request::Oci { method, path, headers, body }, expect });
    }

    fn manifest(&mut self, family: &'static str, what: &str, content_type: &str, body: Vec<u8>, expect: Expect) {
        let headers = [("content-type", content_type)];
        self.oci_with(family, Method::PUT, "/v2/bad/app/manifests/new", &headers, body, expect);
        self.0.last_mut().unwrap().what = format!("PUT manifest: {what}");
    }

    fn ecr(&mut self, family: &'static str, operation: &str, body: impl Into<Vec<u8>>, expect: Expect) {
        let body = body.into();
        let what = format!("{operation} {}", truncated(&String::from_utf8_lossy(&body)));
        self.0.push(Case { family, what, request: Request::Ecr { operation: operation.into(), body }, expect });
    }
}

fn truncated(text: &str) -> String {
    if text.len() <= 100 {
        text.to_string()
    } else {
        format!("{}… ({} bytes)", text.chars().take(90).collect::<String>(), text.len())
    }
}

const MANIFEST_INVALID: Expect = expect(400, &["MANIFEST_INVALID"]);
const DIGEST_INVALID: Expect = expect(400, &["DIGEST_INVALID"]);
const INVALID_PARAMETER: Expect = expect(400, &["InvalidParameterException"]);
const SERIALIZATION: Expect = expect(400, &["SerializationException"]);

/// Repository names the distribution grammar and ECR refuse.
fn bad_names() -> Vec<String> {
    let mut names: Vec<String> = [
        // Dot segments are left out: HTTP clients resolve them before sending (oci_errors.rs
        // sends them raw).
        "UPPER",
        "Mixed/case",
        "a..b",
        "a.-b",
        "a___b",
        "trailing/",
        "/leading",
        "-leading",
        "trailing-",
        "a//b",
        "a b",
        "a%20b",
        "a\tb",
        "é",
        "a:b",
        "a@b",
        "a*",
        "a+b",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    names.push("a".repeat(257));
    names.push(format!("{}/x", "abcdefghij/".repeat(24).trim_end_matches('/')));
    names
}

fn corpus(image: &Image, blob: &str, upload: &str) -> Corpus {
    let mut c = Corpus::default();
    let digest = &image.digest;
    let missing = sha256_digest(b"never pushed");

    // Names, on every endpoint shape. A name that cannot exist may also be simply unknown.
    for name in bad_names() {
        let encoded = name.replace(' ', "%20").replace('\t', "%09").replace('é', "%C3%A9");
        for (method, path) in [
            (Method::GET, format!("/v2/{encoded}/tags/list")),
            (Method::GET, format!("/v2/{encoded}/manifests/v1")),
            (Method::PUT, format!("/v2/{encoded}/manifests/v1")),
            (Method::GET, format!("/v2/{encoded}/blobs/{blob}")),
            (Method::POST, format!("/v2/{encoded}/blobs/uploads/")),
            (Method::DELETE, format!("/v2/{encoded}/manifests/{digest}")),
        ] {
            c.oci("name", method, path, expect(400, &["NAME_INVALID", "NAME_UNKNOWN"]));
        }
        c.ecr("name", "CreateRepository", json!({"repositoryName": name}).to_string(), INVALID_PARAMETER);
        c.ecr("name", "DescribeImages", json!({"repositoryName": name}).to_string(), INVALID_PARAMETER);
        c.ecr(
            "name",
            "PutImage",
            json!({"repositoryName": name, "imageManifest": "{}"}).to_string(),
            INVALID_PARAMETER,
        );
    }

    // References: bad tags and digests.
    let bad_tags = ["-lead", ".dot", "a".repeat(129).leak() as &str, "t%20t", "%00"];
    for tag in bad_tags {
        c.oci("reference", Method::GET, format!("/v2/bad/app/manifests/{tag}"), expect(404, &["MANIFEST_UNKNOWN"]));
        let headers = [("content-type", OCI_MANIFEST)];
        let path = format!("/v2/bad/app/manifests/{tag}");
        c.oci_with(
            "reference",
            Method::PUT,
            path,
            &headers,
            image.manifest.clone(),
            expect(400, &["TAG_INVALID", "MANIFEST_INVALID"]),
        );
        c.ecr(
            "reference",
            "PutImage",
            json!({"repositoryName": "bad/app", "imageManifest": String::from_utf8_lossy(&image.manifest), "imageTag": tag}).to_string(),
            INVALID_PARAMETER,
        );
    }
    let bad_digests = [
        "t:t".to_string(),
        "sha256:xyz".to_string(),
        "sha256:".to_string(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256:{}", "A".repeat(64)),
        format!("md5:{}", "a".repeat(32)),
        format!("sha512:{}", "a".repeat(64)),
        format!("SHA256:{}", "a".repeat(64)),
    ];
    for d in &bad_digests {
        c.oci(
            "digest",
            Method::GET,
            format!("/v2/bad/app/blobs/{d}"),
            expect(400, &["DIGEST_INVALID", "BLOB_UNKNOWN"]),
        );
        c.oci(
            "digest",
            Method::DELETE,
            format!("/v2/bad/app/manifests/{d}"),
            expect(400, &["DIGEST_INVALID", "MANIFEST_UNKNOWN"]),
        );
        c.oci("digest", Method::POST, format!("/v2/bad/app/blobs/uploads/?digest={d}"), DIGEST_INVALID);
        c.oci("digest", Method::POST, format!("/v2/bad/app/blobs/uploads/?mount={d}&from=bad/app"), DIGEST_INVALID);
        c.oci(
            "digest",
            Method::GET,
            format!("/v2/bad/app/referrers/{d}"),
            expect(400, &["DIGEST_INVALID", "MANIFEST_UNKNOWN"]),
        );
        c.oci("digest", Method::GET, format!("/v2/bad/app/manifests/{d}"), DIGEST_INVALID);
        let ids = json!({"repositoryName": "bad/app", "imageIds": [{"imageDigest": d}]}).to_string();
        c.ecr("digest", "BatchDeleteImage", ids.clone(), expect(200, &[]));
        c.ecr("digest", "BatchGetImage", ids, expect(200, &[]));
        c.ecr(
            "digest",
            "GetDownloadUrlForLayer",
            json!({"repositoryName": "bad/app", "layerDigest": d}).to_string(),
            expect(400, &["InvalidParameterException", "LayersNotFoundException"]),
        );
    }
    c.oci("digest", Method::DELETE, format!("/v2/bad/app/manifests/{missing}"), expect(404, &["MANIFEST_UNKNOWN"]));
    c.oci("digest", Method::GET, format!("/v2/bad/app/blobs/{missing}"), expect(404, &["BLOB_UNKNOWN"]));

    // Manifests that must not be stored.
    let layer = descriptor(OCI_LAYER, &image.layers[0]);
    let with = |patch: &dyn Fn(&mut Value)| {
        let mut m: Value = serde_json::from_slice(&image.manifest).unwrap();
        patch(&mut m);
        serde_json::to_vec(&m).unwrap()
    };
    let invalid_manifests: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty body", Vec::new(), MANIFEST_INVALID),
        ("not JSON", b"not json".to_vec(), MANIFEST_INVALID),
        ("JSON array", b"[]".to_vec(), MANIFEST_INVALID),
        ("JSON null", b"null".to_vec(), MANIFEST_INVALID),
        ("JSON string", b"\"manifest\"".to_vec(), MANIFEST_INVALID),
        ("truncated", image.manifest[..image.manifest.len() / 2].to_vec(), MANIFEST_INVALID),
        ("trailing garbage", [image.manifest.as_slice(), b"}"].concat(), MANIFEST_INVALID),
        ("invalid UTF-8", [&image.manifest[..10], &[0xff, 0xfe], &image.manifest[10..]].concat(), MANIFEST_INVALID),
        ("schemaVersion 1", with(&|m| m["schemaVersion"] = json!(1)), MANIFEST_INVALID),
        ("schemaVersion 3", with(&|m| m["schemaVersion"] = json!(3)), MANIFEST_INVALID),
        ("schemaVersion \"2\"", with(&|m| m["schemaVersion"] = json!("2")), MANIFEST_INVALID),
        ("no schemaVersion", with(&|m| _ = m.as_object_mut().unwrap().remove("schemaVersion")), MANIFEST_INVALID),
        ("no config", with(&|m| _ = m.as_object_mut().unwrap().remove("config")), MANIFEST_INVALID),
        ("config null", with(&|m| m["config"] = Value::Null), MANIFEST_INVALID),
        ("no layers", with(&|m| _ = m.as_object_mut().unwrap().remove("layers")), MANIFEST_INVALID),
        ("layers an object", with(&|m| m["layers"] = json!({})), MANIFEST_INVALID),
        ("config digest invalid", with(&|m| m["config"]["digest"] = json!("sha256:zz")), MANIFEST_INVALID),
        ("config digest a number", with(&|m| m["config"]["digest"] = json!(7)), MANIFEST_INVALID),
        (
            "layer digest md5",
            with(&|m| m["layers"][0]["digest"] = json!(format!("md5:{}", "a".repeat(32)))),
            MANIFEST_INVALID,
        ),
        ("layer size -1", with(&|m| m["layers"][0]["size"] = json!(-1)), MANIFEST_INVALID),
        ("layer size 2^63", with(&|m| m["layers"][0]["size"] = json!(1u64 << 63)), MANIFEST_INVALID),
        ("layer size u64::MAX", with(&|m| m["layers"][0]["size"] = json!(u64::MAX)), MANIFEST_INVALID),
        ("layer size 1e30", with(&|m| m["layers"][0]["size"] = json!(1e30)), MANIFEST_INVALID),
        ("layer size 1.5", with(&|m| m["layers"][0]["size"] = json!(1.5)), MANIFEST_INVALID),
        ("layer size \"3\"", with(&|m| m["layers"][0]["size"] = json!("3")), MANIFEST_INVALID),
        ("layer size 0 for a stored blob", with(&|m| m["layers"][0]["size"] = json!(0)), MANIFEST_INVALID),
        (
            "layer size one byte off",
            with(&|m| m["layers"][0]["size"] = json!(layer["size"].as_u64().unwrap() + 1)),
            MANIFEST_INVALID,
        ),
        (
            "sizes whose sum overflows",
            with(&|m| {
                let mut big = layer.clone();
                big["size"] = json!(u64::MAX / 2 + 1);
                m["layers"] = json!([big.clone(), big]);
            }),
            MANIFEST_INVALID,
        ),
        (
            "layer never pushed",
            with(&|m| m["layers"][0]["digest"] = json!(missing)),
            expect(400, &["MANIFEST_BLOB_UNKNOWN"]),
        ),
        (
            "config never pushed",
            with(&|m| m["config"]["digest"] = json!(missing)),
            expect(400, &["MANIFEST_BLOB_UNKNOWN"]),
        ),
        ("mediaType differs from Content-Type", with(&|m| m["mediaType"] = json!(DOCKER_MANIFEST)), MANIFEST_INVALID),
        ("mediaType a number", with(&|m| m["mediaType"] = json!(5)), MANIFEST_INVALID),
        ("annotations not strings", with(&|m| m["annotations"] = json!({"a": 1})), MANIFEST_INVALID),
        (
            "duplicate key",
            {
                let text = String::from_utf8(image.manifest.clone()).unwrap();
                text.replacen('{', "{\"schemaVersion\":2,", 1).into_bytes()
            },
            MANIFEST_INVALID,
        ),
        (
            "nesting 100k deep",
            format!("{{\"schemaVersion\":2,\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            MANIFEST_INVALID,
        ),
        (
            "index with a missing child",
            index_json(OCI_INDEX, &[json!({"mediaType": OCI_MANIFEST, "digest": missing, "size": 10})]),
            expect(400, &["MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNKNOWN"]),
        ),
        (
            "index whose child size lies",
            index_json(
                OCI_INDEX,
                &[{
                    let mut d = image.descriptor();
                    d["size"] = json!(1);
                    d
                }],
            ),
            MANIFEST_INVALID,
        ),
        (
            "index whose manifests is not a list",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}}"#.to_vec(),
            MANIFEST_INVALID,
        ),
        ("index with a config", with(&|m| m["mediaType"] = json!(OCI_INDEX)), MANIFEST_INVALID),
        (
            // An index to clients, an image to a lenient registry (CVE-2021-41190).
            "untyped image that also lists manifests",
            with(&|m| {
                m.as_object_mut().unwrap().remove("mediaType");
                m["manifests"] = json!([]);
            }),
            MANIFEST_INVALID,
        ),
        (
            "docker image without its mediaType",
            with(&|m| drop(m.as_object_mut().unwrap().remove("mediaType"))),
            MANIFEST_INVALID,
        ),
    ];
    for (what, body, expectation) in invalid_manifests {
        let content_type = match what {
            _ if what.starts_with("index") => OCI_INDEX,
            _ if what.starts_with("docker") => DOCKER_MANIFEST,
            _ => OCI_MANIFEST,
        };
        c.manifest("manifest", what, content_type, body.clone(), expectation);
        // ECR's PutImage refuses the same documents (as InvalidParameter or its specific errors).
        let text = String::from_utf8_lossy(&body).into_owned();
        if !text.is_empty() && text.len() < 1 << 20 {
            c.ecr(
                "manifest",
                "PutImage",
                json!({"repositoryName": "bad/app", "imageManifest": text, "imageTag": "new", "imageManifestMediaType": content_type}).to_string(),
                expect(400, &["InvalidParameterException", "LayersNotFoundException", "ReferencedImagesNotFoundException"]),
            );
        }
    }
    for content_type in ["text/plain", "application/json; charset=utf-8; x", "application/vnd.oci.image.config.v1+json"]
    {
        c.manifest(
            "manifest",
            &format!("Content-Type {content_type:?}"),
            content_type,
            image.manifest.clone(),
            MANIFEST_INVALID,
        );
    }
    c.oci_with(
        "manifest",
        Method::PUT,
        format!("/v2/bad/app/manifests/{missing}"),
        &[("content-type", OCI_MANIFEST)],
        image.manifest.clone(),
        DIGEST_INVALID,
    );
    c.oci_with(
        "manifest",
        Method::PUT,
        "/v2/bad/app/manifests/huge",
        &[("content-type", OCI_MANIFEST)],
        vec![b' '; 5 << 20],
        expect(413, &["SIZE_INVALID", "MANIFEST_INVALID"]),
    );

    // Uploads: unknown sessions, wrong digests, bad ranges.
    let unknown = "/v2/bad/app/blobs/uploads/00000000-0000-4000-8000-000000000000";
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        c.oci("upload", method, unknown, expect(404, &["BLOB_UPLOAD_UNKNOWN"]));
    }
    c.oci("upload", Method::PUT, format!("{unknown}?digest={blob}"), expect(404, &["BLOB_UPLOAD_UNKNOWN"]));
    for session in ["not-a-uuid", "%00", &"a".repeat(300)] {
        c.oci(
            "upload",
            Method::PATCH,
            format!("/v2/bad/app/blobs/uploads/{session}"),
            expect(404, &["BLOB_UPLOAD_UNKNOWN"]),
        );
    }
    // Decoded, as paths are routed, this is no upload endpoint at all.
    c.oci("upload", Method::PATCH, "/v2/bad/app/blobs/uploads/..%2F..%2Fetc", expect(404, &["NAME_UNKNOWN"]));
    c.oci_with(
        "upload",
        Method::POST,
        format!("/v2/bad/app/blobs/uploads/?digest={missing}"),
        &[],
        b"other bytes".to_vec(),
        DIGEST_INVALID,
    );
    c.oci("upload", Method::POST, "/v2/bad/app/blobs/uploads/?digest=", DIGEST_INVALID);
    // An open session at offset 0: chunks whose Content-Range is malformed or not where the
    // session is are refused and append nothing.
    for range in ["0-4/3", "0 - 4", "5-9", "1-5", "4-0", "0-18446744073709551615", "abc", "-1-3", "0-"] {
        let headers = [("content-range", range), ("content-type", OCTET_STREAM)];
        c.oci_with(
            "upload",
            Method::PATCH,
            upload,
            &headers,
            b"12345".to_vec(),
            expect(416, &["BLOB_UPLOAD_INVALID", "RANGE_INVALID"]),
        );
    }

    // Ranges on a stored blob: unsatisfiable ones are 416; the rest never 5xx.
    for range in ["bytes=99999999-", "bytes=5-3", "bytes=-0", "bytes=18446744073709551616-"] {
        c.oci_with(
            "range",
            Method::GET,
            format!("/v2/bad/app/blobs/{blob}"),
            &[("range", range)],
            Vec::new(),
            expect(416, &["RANGE_INVALID"]),
        );
    }
    // A Range that is not byte ranges at all is ignored, as RFC 9110 lets a server do.
    for range in ["bytes=0-18446744073709551615x", "items=0-1", "garbage", "bytes=0-4/3", "bytes=0 - 4"] {
        c.oci_with(
            "range",
            Method::GET,
            format!("/v2/bad/app/blobs/{blob}"),
            &[("range", range)],
            Vec::new(),
            expect(200, &[]),
        );
    }

    // Pagination and query strings.
    for query in ["n=-1", "n=abc", "n=1&n=2", "n=99999999999999999999", "last=a&last=b", "n=1.5"] {
        c.oci(
            "pagination",
            Method::GET,
            format!("/v2/bad/app/tags/list?{query}"),
            expect(400, &["PAGINATION_NUMBER_INVALID"]),
        );
        c.oci("pagination", Method::GET, format!("/v2/_catalog?{query}"), expect(400, &["PAGINATION_NUMBER_INVALID"]));
    }

    // Routes and methods that do not exist.
    c.oci("route", Method::GET, "/v2/bad/app/nothing", expect(404, &["NAME_UNKNOWN", "UNSUPPORTED"]));
    c.oci("route", Method::PATCH, "/v2/bad/app/manifests/v1", expect(405, &["UNSUPPORTED"]));
    c.oci("route", Method::POST, "/v2/bad/app/manifests/v1", expect(405, &["UNSUPPORTED"]));
    c.oci("route", Method::PUT, "/v2/_catalog", expect(405, &["UNSUPPORTED"]));

    // ECR: bodies that are not the operation's input.
    let operations = [
        "CreateRepository",
        "DeleteRepository",
        "DescribeRepositories",
        "DescribeImages",
        "ListImages",
        "BatchGetImage",
        "BatchDeleteImage",
        "PutImage",
        "PutLifecyclePolicy",
        "SetRepositoryPolicy",
        "TagResource",
        "PutImageTagMutability",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "BatchCheckLayerAvailability",
        "CreatePullThroughCacheRule",
        "PutRegistryPolicy",
        "PutReplicationConfiguration",
    ];
    for operation in operations {
        c.ecr("ecr body", operation, "not json", SERIALIZATION);
        c.ecr("ecr body", operation, "[]", SERIALIZATION);
        c.ecr("ecr body", operation, "\"text\"", SERIALIZATION);
        if ![
            "DescribeRepositories",
            "TagResource",
            "CreatePullThroughCacheRule",
            "PutRegistryPolicy",
            "PutReplicationConfiguration",
        ]
        .contains(&operation)
        {
            c.ecr("ecr body", operation, "{\"repositoryName\": 5}", SERIALIZATION);
            c.ecr("ecr body", operation, "{\"repositoryName\": [\"bad/app\"]}", SERIALIZATION);
        }
        c.ecr(
            "ecr body",
            operation,
            "{\"registryId\": \"12\"}",
            expect(400, &["InvalidParameterException", "ValidationException"]),
        );
    }
    c.ecr("ecr body", "DescribeImages", "{}", expect(400, &["InvalidParameterException", "ValidationException"]));
    c.ecr(
        "ecr body",
        "PutImage",
        "{\"repositoryName\": \"bad/app\"}",
        expect(400, &["InvalidParameterException", "ValidationException"]),
    );
    c.ecr("ecr body", "NoSuchOperation", "{}", expect(400, &["UnknownOperationException"]));
    c.ecr("ecr body", "DescribeRepositories", "{\"repositoryNames\": \"bad/app\"}", SERIALIZATION);
    c.ecr("ecr body", "DescribeRepositories", "{\"repositoryNames\": [5]}", SERIALIZATION);
    c.ecr("ecr body", "TagResource", "{\"resourceArn\": 5, \"tags\": []}", SERIALIZATION);
    c.ecr("ecr body", "PutRegistryPolicy", "{\"policyText\": {\"Version\": \"2012-10-17\"}}", SERIALIZATION);
    // A structure is a JSON object at any depth (serde would take a struct's array form; this
    // one deleted the image tagged v1).
    for (operation, body) in [
        ("BatchDeleteImage", json!({"repositoryName": "bad/app", "imageIds": [[null, "v1"]]})),
        ("BatchGetImage", json!({"repositoryName": "bad/app", "imageIds": [[null, "v1"]]})),
        ("CreateRepository", json!({"repositoryName": "bad/new", "imageScanningConfiguration": [true]})),
        (
            "TagResource",
            json!({"resourceArn": "arn:aws:ecr:us-east-1:000000000000:repository/bad/app", "tags": [["k", "v"]]}),
        ),
        ("DescribeImageScanFindings", json!({"repositoryName": "bad/app", "imageId": [null, "v1"]})),
        (
            "CreateRepositoryCreationTemplate",
            json!({"prefix": "bad-tpl", "appliedFor": ["CREATE_ON_PUSH"], "resourceTags": [["k", "v"]]}),
        ),
        ("UpdateRepositoryCreationTemplate", json!({"prefix": "bad-tpl", "encryptionConfiguration": ["AES256"]})),
    ] {
        c.ecr("ecr body", operation, body.to_string(), SERIALIZATION);
    }

    // ECR: bounds.
    for max in [0, -1, 1001, 1_000_000] {
        for operation in ["DescribeRepositories", "ListImages", "DescribeImages"] {
            let body = json!({"repositoryName": "bad/app", "maxResults": max}).to_string();
            c.ecr("ecr bounds", operation, body, expect(400, &["InvalidParameterException", "ValidationException"]));
        }
    }
    for token in ["garbage", "", "eyJub3QiOiJ5b3VycyJ9"] {
        let body = json!({"repositoryName": "bad/app", "nextToken": token}).to_string();
        c.ecr("ecr bounds", "ListImages", body, expect(400, &["InvalidParameterException", "ValidationException"]));
    }
    let too_many: Vec<Value> = (0..101).map(|i| json!({"imageTag": format!("t{i}")})).collect();
    for operation in ["BatchGetImage", "BatchDeleteImage"] {
        c.ecr(
            "ecr bounds",
            operation,
            json!({"repositoryName": "bad/app", "imageIds": too_many}).to_string(),
            expect(400, &["InvalidParameterException", "ValidationException"]),
        );
        c.ecr(
            "ecr bounds",
            operation,
            json!({"repositoryName": "bad/app", "imageIds": []}).to_string(),
            expect(400, &["InvalidParameterException", "ValidationException"]),
        );
    }
    let tags: Vec<Value> = (0..51).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect();
    let arn = "arn:aws:ecr:us-east-1:000000000000:repository/bad/app";
    c.ecr(
        "ecr bounds",
        "TagResource",
        json!({"resourceArn": arn, "tags": tags}).to_string(),
        expect(400, &["TooManyTagsException", "InvalidParameterException"]),
    );
    for (key, value) in [("", "v"), ("aws:reserved", "v"), (&*"k".repeat(129), "v"), ("k", &*"v".repeat(257))] {
        let body = json!({"resourceArn": arn, "tags": [{"Key": key, "Value": value}]}).to_string();
        c.ecr(
            "ecr bounds",
            "TagResource",
            body,
            expect(400, &["InvalidTagParameterException", "InvalidParameterException"]),
        );
    }
    for bad_arn in ["arn:aws:ecr:us-east-1:000000000000:repository/", "not-an-arn", "arn:aws:s3:::bucket"] {
        c.ecr(
            "ecr bounds",
            "TagResource",
            json!({"resourceArn": bad_arn, "tags": [{"Key": "k", "Value": "v"}]}).to_string(),
            expect(400, &["InvalidParameterException"]),
        );
    }
    c.ecr(
        "ecr bounds",
        "PutImageTagMutability",
        json!({"repositoryName": "bad/app", "imageTagMutability": "SOMETIMES"}).to_string(),
        expect(400, &["InvalidParameterException", "ValidationException"]),
    );
    c.ecr("ecr bounds", "UploadLayerPart", json!({"repositoryName": "bad/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "AA=="}).to_string(), expect(400, &["UploadNotFoundException", "InvalidParameterException"]));
    c.ecr("ecr bounds", "UploadLayerPart", json!({"repositoryName": "bad/app", "uploadId": "x", "partFirstByte": 5, "partLastByte": 1, "layerPartBlob": "not base64!"}).to_string(), expect(400, &["InvalidParameterException", "SerializationException", "UploadNotFoundException"]));
    c.ecr("ecr bounds", "CompleteLayerUpload", json!({"repositoryName": "bad/app", "uploadId": "00000000-0000-4000-8000-000000000000", "layerDigests": [missing]}).to_string(), expect(400, &["UploadNotFoundException"]));

    // ECR: documents inside documents.
    for text in [
        "",
        "not json",
        "{}",
        "{\"rules\": []}",
        "{\"rules\": [{\"rulePriority\": 0}]}",
        "{\"rules\": [{\"rulePriority\": 1, \"selection\": {\"tagStatus\": \"any\", \"countType\": \"imageCountMoreThan\", \"countNumber\": -1}, \"action\": {\"type\": \"expire\"}}]}",
        "{\"rules\": [{\"rulePriority\": 1, \"selection\": {\"tagStatus\": \"tagged\", \"countType\": \"imageCountMoreThan\", \"countNumber\": 1}, \"action\": {\"type\": \"expire\"}}]}",
        "{\"rules\": [{\"rulePriority\": 1, \"selection\": {\"tagStatus\": \"any\", \"countType\": \"sinceImagePushed\", \"countNumber\": 1}, \"action\": {\"type\": \"expire\"}}]}",
    ] {
        c.ecr(
            "ecr documents",
            "PutLifecyclePolicy",
            json!({"repositoryName": "bad/app", "lifecyclePolicyText": text}).to_string(),
            expect(400, &["InvalidParameterException"]),
        );
    }
    for text in [
        "",
        "not json",
        "{}",
        "{\"Statement\": []}",
        "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Maybe\", \"Principal\": \"*\", \"Action\": \"ecr:*\"}]}",
        "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"ecr:*\"}]}",
        "{\"Version\": \"1999-01-01\", \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"ecr:*\"}]}",
    ] {
        c.ecr(
            "ecr documents",
            "SetRepositoryPolicy",
            json!({"repositoryName": "bad/app", "policyText": text}).to_string(),
            expect(400, &["InvalidParameterException"]),
        );
        c.ecr(
            "ecr documents",
            "PutRegistryPolicy",
            json!({"policyText": text}).to_string(),
            expect(400, &["InvalidParameterException"]),
        );
    }
    c.ecr("ecr documents", "PutImage", json!({"repositoryName": "bad/app", "imageManifest": String::from_utf8_lossy(&image.manifest), "imageDigest": missing}).to_string(), expect(400, &["ImageDigestDoesNotMatchException"]));
    c.ecr("ecr documents", "PutImage", json!({"repositoryName": "bad/app", "imageManifest": String::from_utf8_lossy(&image.manifest), "imageManifestMediaType": "text/plain"}).to_string(), expect(400, &["InvalidParameterException", "UnsupportedImageTypeException"]));
    for prefix in ["", "UPPER", "a", "-lead", "a//b", &*"p".repeat(31)] {
        c.ecr(
            "ecr documents",
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": "registry-1.docker.io"}).to_string(),
            expect(400, &["InvalidParameterException", "ValidationException"]),
        );
    }
    c
}

/// Everything the registry holds that a refused request must not have changed.
async fn dump(srv: &Server, data_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let call = |operation: &'static str, body: Value| async move {
        let r = ecr_call(srv, ROOT_KEY_ID, ROOT_SECRET, operation, &body.to_string()).await;
        format!("{} {}", r.status(), r.text())
    };
    let repositories = ecr_call(srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRepositories", "{}").await.json();
    out.insert("DescribeRepositories".into(), repositories.to_string());
    for repository in repositories["repositories"].as_array().unwrap() {
        let name = repository["repositoryName"].as_str().unwrap().to_string();
        let arn = repository["repositoryArn"].as_str().unwrap().to_string();
        for operation in ["DescribeImages", "ListImages", "GetLifecyclePolicy", "GetRepositoryPolicy"] {
            let mut answer = call(operation, json!({"repositoryName": name})).await;
            if operation == "DescribeImages" {
                // Reads record pull times; a refused request must not, but successful reads may.
                let (status, body) = answer.split_once(' ').unwrap();
                let mut v: Value = serde_json::from_str(body).unwrap();
                for image in v["imageDetails"].as_array_mut().into_iter().flatten() {
                    image.as_object_mut().unwrap().remove("lastRecordedPullTime");
                }
                answer = format!("{status} {v}");
            }
            out.insert(format!("{operation} {name}"), answer);
        }
        out.insert(
            format!("ListTagsForResource {name}"),
            call("ListTagsForResource", json!({"resourceArn": arn})).await,
        );
        out.insert(format!("tags/list {name}"), send(srv.get(&format!("/v2/{name}/tags/list"))).await.text());
    }
    for operation in ["GetRegistryPolicy", "DescribeRegistry", "DescribePullThroughCacheRules"] {
        out.insert(operation.into(), call(operation, json!({})).await);
    }
    out.insert("_catalog".into(), send(srv.get("/v2/_catalog")).await.text());
    let mut files = Vec::new();
    list_files(data_dir, data_dir, &mut files);
    out.insert("files".into(), files.join("\n"));
    out
}

/// Blob, upload and other content files with their sizes; not the metadata database (whose
/// pages change with reads) nor logs.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name.contains("sqlite") || name.ends_with(".log") {
            continue;
        }
        if path.is_dir() {
            list_files(root, &path, out);
        } else {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(format!("{} {size}", path.strip_prefix(root).unwrap().display()));
        }
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_4xx_and_changes_nothing() {
    let mut srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).start();
    srv.client = http_client(Some(&basic(ROOT_KEY_ID, ROOT_SECRET)));
    let image = push_image(&srv, "bad/app", Some("v1")).await;
    let blob = sha256_digest(&image.layers[0]);
    let upload = start_upload(&srv, "bad/app").await;
    let upload_path = match upload.query() {
        Some(query) => format!("{}?{query}", upload.path()),
        None => upload.path().to_string(),
    };
    let corpus = corpus(&image, &blob, &upload_path);
    let data_dir = srv.data_dir().to_path_buf();
    let before = dump(&srv, &data_dir).await;

    let mut wrong = Vec::new();
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &corpus.0 {
        *families.entry(case.family).or_default() += 1;
        let r = match &case.request {
            Request::Oci { method, path, headers, body } => {
                // A refused large body is answered before it is read, and the connection closed:
                // on a connection of its own, so the pooled one stays usable.
                let client = if body.len() > 1 << 20 {
                    http_client(Some(&basic(ROOT_KEY_ID, ROOT_SECRET)))
                } else {
                    srv.client.clone()
                };
                let mut rb = client.request(method.clone(), srv.url(path)).body(body.clone());
                for (name, value) in headers {
                    rb = rb.header(*name, value.as_str());
                }
                try_send(rb).await
            }
            Request::Ecr { operation, body } => {
                let rb = ecr_request(&srv, ROOT_KEY_ID, ROOT_SECRET, operation, &String::from_utf8_lossy(body), true);
                try_send(rb).await
            }
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                wrong.push(format!("[{}] {}: transport error {e}", case.family, case.what));
                continue;
            }
        };
        let code = match &case.request {
            Request::Oci { .. } => r.error_codes().into_iter().next(),
            Request::Ecr { .. } => {
                serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["__type"].as_str().map(str::to_owned))
            }
        };
        let code_ok = case.expect.codes.is_empty()
            || r.status == reqwest::StatusCode::OK
            || code.as_deref().is_some_and(|c| case.expect.codes.contains(&c));
        if r.status() != case.expect.status || !code_ok {
            wrong.push(format!(
                "[{}] {}: got {} {:?}, want {} {:?}: {}",
                case.family,
                case.what,
                r.status(),
                code,
                case.expect.status,
                case.expect.codes,
                truncated(&r.text())
            ));
        }
    }
    let after = dump(&srv, &data_dir).await;
    let changed: Vec<_> = before
        .iter()
        .filter(|(key, value)| after.get(*key) != Some(value))
        .map(|(key, value)| {
            format!("{key}:\n  before {}\n  after  {}", truncated(value), truncated(after.get(key).map_or("-", |v| v)))
        })
        .chain(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("{k}: appeared")))
        .collect();
    eprintln!("bad-input corpus: {} cases by family {families:?}", corpus.0.len());
    assert!(corpus.0.len() >= 400, "the corpus shrank to {} cases", corpus.0.len());
    assert!(wrong.is_empty(), "{} of {} cases answered otherwise:\n{}", wrong.len(), corpus.0.len(), wrong.join("\n"));
    assert!(changed.is_empty(), "refused requests changed the registry:\n{}", changed.join("\n"));
    // The image is whole and still served.
    expect_manifest(&srv, "bad/app", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
}
