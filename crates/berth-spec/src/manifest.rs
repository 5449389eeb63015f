//! Manifest parsing. A manifest is stored and served as the exact bytes that were pushed; parsing
//! only validates it and extracts what the registry must track: the blobs it needs, the child
//! manifests of an index, its subject, and what the referrers API reports about it.
//!
//! Because the bytes are served verbatim to clients that each parse them their own way, the
//! JSON must mean one thing to all of them: no key appears twice in an object (Go keeps the
//! last, some parsers the first, some refuse), nesting stays shallow, and every size fits the
//! int64 the image spec and Go clients use.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::digest::Digest;
use crate::media;

/// The distribution spec lets a registry bound manifest size; 4 MiB is what distribution and ECR use.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting of JSON arrays and objects accepted. Real manifests nest at most 5 levels
/// (index → manifests → descriptor → platform → features); 64 leaves ample room for extension
/// fields while keeping the check's recursion shallow, and stays below serde_json's own limit
/// (128), so clients get this error rather than a parser's. Go's encoding/json stops at 10,000.
pub const MAX_JSON_DEPTH: usize = 64;

/// Descriptor sizes are int64 in the image spec (and in every Go client); the registry also
/// stores them, and an image's total, as signed 64-bit integers.
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("Docker schema 1 manifests are not supported; push schema 2 or OCI (any docker/buildx since 2017 does)")]
    Schema1,
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error(
        "the media type the manifest was pushed as, {header:?} (Content-Type, or PutImage's imageManifestMediaType), does not match its mediaType {body:?}"
    )]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("manifest has no mediaType and was not pushed as any media type (Content-Type, or imageManifestMediaType)")]
    MissingMediaType,
    #[error("{media_type} manifest lacks required field {field:?}")]
    MissingField { media_type: String, field: &'static str },
    #[error(
        "{media_type} manifest has the field {field:?}, which only {belongs_to} have; a manifest is one kind or the other"
    )]
    AmbiguousField { media_type: String, field: &'static str, belongs_to: &'static str },
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest JSON has the key {key:?} twice in the object at {at:?}; each key may appear once")]
    DuplicateKey { key: String, at: String },
    #[error("manifest JSON has the key {key:?} in the object at {at:?}; JSON libraries reserve it")]
    ReservedKey { key: String, at: String },
    #[error("manifest JSON nests arrays and objects deeper than {MAX_JSON_DEPTH} levels (at {at:?})")]
    TooDeep { at: String },
    #[error("descriptor {at} has size {size}, larger than the largest size a descriptor may have, 2^63-1")]
    SizeTooLarge { at: String, size: u64 },
    #[error("the descriptors of the manifest total more than 2^63-1 bytes")]
    TotalSizeTooLarge,
    #[error("{at} holds a control character; media and artifact types are printable text (RFC 6838)")]
    ControlCharacter { at: String },
    #[error("{at} is {value:?}, not a media type (type/subtype, RFC 6838)")]
    NotAMediaType { at: String, value: String },
}

/// What [`Manifest::check_type_names`] asks of media and artifact types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeNames {
    /// Printable text (what any stored manifest must be).
    Printable,
    /// Media types, as the image spec requires (what a push must name).
    MediaTypes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Docker v2 schema 2 manifest or OCI image manifest: a config and layers.
    Image,
    /// Docker manifest list or OCI image index: child manifests.
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default, rename = "os.version")]
    pub os_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "object_or_null")]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// True when the registry must hold this layer's blob: a foreign/non-distributable layer is
    /// fetched by clients from elsewhere (its `urls`, or known to them). A distributable layer
    /// must be here, `urls` or not, or its image is stored but cannot be pulled.
    pub fn requires_blob(&self) -> bool {
        !media::is_non_distributable(&self.media_type)
    }
}

/// Fields of any manifest shape; unknown fields are ignored here (they stay in the stored bytes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    #[serde(default, deserialize_with = "object_or_null")]
    config: Option<Descriptor>,
    #[serde(default, deserialize_with = "objects_or_null")]
    layers: Option<Vec<Descriptor>>,
    #[serde(default, deserialize_with = "objects_or_null")]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default, deserialize_with = "object_or_null")]
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A value that must be a JSON object: serde's derived structs also take an array of their
/// fields in order, which the image spec does not allow for a manifest, descriptor or platform
/// (and which other clients cannot read).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData)).map(Object)
    }
}

fn object_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|Object(value)| value))
}

fn objects_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Vec<T>>, D::Error> {
    let objects = Option::<Vec<Object<T>>>::deserialize(deserializer)?;
    Ok(objects.map(|objects| objects.into_iter().map(|Object(value)| value).collect()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The effective media type: the body's `mediaType`, else the Content-Type it was pushed with.
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses a manifest being pushed with Content-Type `content_type` (if any): as
    /// [`Manifest::parse`], and a document with the fields of both kinds (an image manifest
    /// listing `manifests`, an index with `config` or `layers`) is refused, since the same bytes
    /// would be an image in one repository and an index in another (CVE-2021-41190;
    /// distribution and containers/image refuse them too), as are a Docker image manifest
    /// without its `mediaType` and a type name that is not printable
    /// ([`Manifest::check_type_names`]).
    pub fn parse_pushed(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let manifest = Manifest::parse_as(bytes, content_type, true)?;
        manifest.check_type_names(TypeNames::MediaTypes)?;
        Ok(manifest)
    }

    /// Parses `bytes` stored (or pushed) with media type `content_type` (if any). Lenient about
    /// fields of the other kind, which manifests stored before that check may have.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        Manifest::parse_as(bytes, content_type, false)
    }

    fn parse_as(bytes: &[u8], content_type: Option<&str>, unambiguous: bool) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        // Media types are case-insensitive (RFC 9110 8.3.1); the registered ones are lower case.
        let header = content_type.map(media::essence).filter(|s| !s.is_empty()).map(str::to_ascii_lowercase);
        let header = header.as_deref();
        if header.is_some_and(is_schema1) {
            return Err(ManifestError::Schema1);
        }
        check_json(bytes)?;
        let Object(raw) =
            serde_json::from_slice::<Object<Raw>>(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.media_type.as_deref().is_some_and(is_schema1) || raw.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(header)) if !body.eq_ignore_ascii_case(header) => {
                return Err(ManifestError::MediaTypeMismatch { header: header.to_owned(), body: body.clone() });
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header.to_owned(),
            // Neither says: OCI allows omitting mediaType, so infer from the shape.
            (None, None) if raw.manifests.is_some() => media::OCI_INDEX.to_owned(),
            (None, None) if raw.config.is_some() => media::OCI_MANIFEST.to_owned(),
            (None, None) => return Err(ManifestError::MissingMediaType),
        };
        let kind = match media_type.as_str() {
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => ManifestKind::Image,
            media::OCI_INDEX | media::DOCKER_LIST => ManifestKind::Index,
            other => return Err(ManifestError::UnsupportedMediaType(other.to_owned())),
        };
        let missing = |field| ManifestError::MissingField { media_type: media_type.clone(), field };
        if unambiguous {
            // Docker's schema 2 parsers (docker, containers/image) refuse an image manifest that
            // does not name its type: stored, it could not be pulled.
            if raw.media_type.is_none() && media_type == media::DOCKER_MANIFEST {
                return Err(missing("mediaType"));
            }
            let foreign = match kind {
                ManifestKind::Image => raw.manifests.is_some().then_some(("manifests", "indexes")),
                ManifestKind::Index => [("config", raw.config.is_some()), ("layers", raw.layers.is_some())]
                    .into_iter()
                    .find_map(|(field, present)| present.then_some((field, "image manifests"))),
            };
            if let Some((field, belongs_to)) = foreign {
                return Err(ManifestError::AmbiguousField { media_type: media_type.clone(), field, belongs_to });
            }
        }
        // The image spec requires `layers` (an artifact may list none, `[]`, but must say so);
        // Docker's schema 2 has it in every manifest its clients write.
        let (config, layers, manifests) = match kind {
            ManifestKind::Image => (
                Some(raw.config.ok_or_else(|| missing("config"))?),
                raw.layers.ok_or_else(|| missing("layers"))?,
                vec![],
            ),
            ManifestKind::Index => (None, vec![], raw.manifests.ok_or_else(|| missing("manifests"))?),
        };
        check_sizes(config.as_ref(), &layers, &manifests, raw.subject.as_ref())?;
        Ok(Manifest {
            media_type,
            kind,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Media and artifact types are RFC 6838 names, printable text: one with a control character
    /// is refused before it is stored (a NUL is also what PostgreSQL's text columns cannot hold),
    /// and a push must name a media type in every descriptor (as the image spec requires: a
    /// runtime cannot unpack a layer of no type). Checked where manifests come in, not on every
    /// read of a stored one.
    pub fn check_type_names(&self, rule: TypeNames) -> Result<(), ManifestError> {
        let printable = |at: &dyn Fn() -> String, name: Option<&str>| match name {
            Some(name) if name.chars().any(char::is_control) => Err(ManifestError::ControlCharacter { at: at() }),
            Some(name) if rule == TypeNames::MediaTypes && !media::is_media_type(name) => {
                let value = name.chars().take(100).collect();
                Err(ManifestError::NotAMediaType { at: at(), value })
            }
            _ => Ok(()),
        };
        printable(&|| "artifactType".to_owned(), self.artifact_type.as_deref())?;
        let named = [("config", self.config.as_slice()), ("layers", &self.layers), ("manifests", &self.manifests)];
        let listed = named.into_iter().flat_map(|(field, list)| {
            list.iter().enumerate().map(move |(i, d)| (field, (field != "config").then_some(i), d))
        });
        let subject = self.subject.iter().map(|d| ("subject", None, d));
        for (field, index, descriptor) in listed.chain(subject) {
            let at = |member: &str| match index {
                Some(i) => format!("{field}[{i}].{member}"),
                None => format!("{field}.{member}"),
            };
            printable(&|| at("mediaType"), Some(&descriptor.media_type))?;
            printable(&|| at("artifactType"), descriptor.artifact_type.as_deref())?;
        }
        Ok(())
    }

    /// Blobs that must already be in the repository for this manifest to be accepted.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter().filter(|l| l.requires_blob()))
    }

    /// Non-distributable layers: not required, yet needed (kept from GC) when pushed.
    pub fn foreign_layers(&self) -> impl Iterator<Item = &Descriptor> {
        self.layers.iter().filter(|l| !l.requires_blob())
    }

    /// What the referrers API reports as this manifest's artifact type: `artifactType`,
    /// falling back to the config's media type for image manifests.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref().or(self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

fn is_schema1(media_type: &str) -> bool {
    media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED
}

/// Every descriptor's size fits int64, and so does the sum of what the manifest lists (the
/// registry records an image's size as that sum).
fn check_sizes(
    config: Option<&Descriptor>,
    layers: &[Descriptor],
    manifests: &[Descriptor],
    subject: Option<&Descriptor>,
) -> Result<(), ManifestError> {
    let fits = |at: &dyn Fn() -> String, d: &Descriptor| {
        if d.size > MAX_DESCRIPTOR_SIZE {
            Err(ManifestError::SizeTooLarge { at: at(), size: d.size })
        } else {
            Ok(d.size)
        }
    };
    if let Some(subject) = subject {
        fits(&|| "subject".to_owned(), subject)?;
    }
    let mut total = match config {
        Some(config) => fits(&|| "config".to_owned(), config)?,
        None => 0,
    };
    for (field, list) in [("layers", layers), ("manifests", manifests)] {
        for (i, d) in list.iter().enumerate() {
            // Each term is below 2^63, so the sum of two cannot overflow a u64 before the check.
            total += fits(&|| format!("{field}[{i}]"), d)?;
            if total > MAX_DESCRIPTOR_SIZE {
                return Err(ManifestError::TotalSizeTooLarge);
            }
        }
    }
    Ok(())
}

/// The prefix of serde_json's magic keys: with its `raw_value` feature (on in Berth's build, by
/// feature unification), an object whose key is `$serde_json::private::RawValue` is read by
/// `serde_json::Value` as the JSON text in its value, so such a manifest would mean something
/// else to Berth's own untyped readers (found by fuzzing).
const SERDE_JSON_RESERVED: &str = "$serde_json::private::";

/// One pass over the JSON that refuses what typed parsing would let through silently: a key
/// twice in an object (serde keeps the last, and ignores repeats of unknown fields entirely),
/// a key serde_json reserves, and nesting beyond [`MAX_JSON_DEPTH`] (serde skips unknown fields
/// without a depth limit).
fn check_json(bytes: &[u8]) -> Result<(), ManifestError> {
    let mut state = JsonCheck { path: Vec::new(), problem: None };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let outcome = CheckValue { state: &mut state }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match (state.problem, outcome) {
        (Some(problem), _) => Err(problem),
        (None, Err(e)) => Err(ManifestError::Json(e.to_string())),
        (None, Ok(())) => Ok(()),
    }
}

/// Where the check is (JSON Pointer segments) and the problem it found, if any; a problem also
/// stops the parse with a placeholder serde error, which `check_json` replaces.
struct JsonCheck {
    path: Vec<String>,
    problem: Option<ManifestError>,
}

impl JsonCheck {
    /// The current location as a JSON Pointer (RFC 6901), `""` for the document.
    fn pointer(&self) -> String {
        self.path.iter().map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1"))).collect()
    }

    fn fail<E: serde::de::Error>(&mut self, problem: ManifestError) -> E {
        let message = problem.to_string();
        self.problem = Some(problem);
        E::custom(message)
    }

    /// Enters an array or object; refuses to go deeper than the limit.
    fn descend<E: serde::de::Error>(&mut self) -> Result<(), E> {
        if self.path.len() >= MAX_JSON_DEPTH {
            return Err(self.fail(ManifestError::TooDeep { at: self.pointer() }));
        }
        Ok(())
    }
}

struct CheckValue<'a> {
    state: &'a mut JsonCheck,
}

impl<'de> DeserializeSeed<'de> for CheckValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CheckValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.state.descend()?;
        let mut index = 0usize;
        loop {
            self.state.path.push(index.to_string());
            let element = seq.next_element_seed(CheckValue { state: &mut *self.state })?;
            self.state.path.pop();
            if element.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.state.descend()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let at = self.state.pointer();
                return Err(self.state.fail(ManifestError::DuplicateKey { key, at }));
            }
            if key.starts_with(SERDE_JSON_RESERVED) {
                let at = self.state.pointer();
                return Err(self.state.fail(ManifestError::ReservedKey { key, at }));
            }
            self.state.path.push(key.clone());
            map.next_value_seed(CheckValue { state: &mut *self.state })?;
            self.state.path.pop();
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":4,"urls":["https://x"]}}],"extra":{{"kept":true}}}}"#,
            d('a'),
            d('b'),
            d('c')
        )
    }

    #[test]
    fn image_manifest_references() {
        let m = Manifest::parse(image(media::OCI_MANIFEST).as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        let req: Vec<_> = m.required_blobs().map(|x| x.digest.to_string()).collect();
        assert_eq!(req, vec![d('a'), d('b')]);
        assert_eq!(m.effective_artifact_type(), Some("application/vnd.oci.image.config.v1+json"));
    }

    /// A manifest, descriptor or platform written as a JSON array of its fields (which serde's
    /// derived structs would take) is no manifest: other clients cannot read it.
    #[test]
    fn arrays_in_place_of_objects_are_refused() {
        let config =
            format!(r#"{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}}"#, d('a'));
        let array_manifest = format!(r#"[2,"application/vnd.oci.image.manifest.v1+json",{config},[]]"#);
        let array_descriptor = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":["application/vnd.oci.image.config.v1+json","{}",2],"layers":[]}}"#,
            d('a')
        );
        let array_layer = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{config},"layers":[["application/vnd.oci.image.layer.v1.tar","{}",3]]}}"#,
            d('b')
        );
        let array_platform = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":3,"platform":["amd64","linux"]}}]}}"#,
            d('b')
        );
        for body in [array_manifest, array_descriptor, array_layer, array_platform] {
            match Manifest::parse_pushed(body.as_bytes(), None) {
                Err(ManifestError::Json(message)) => assert!(message.contains("a JSON object"), "{message}"),
                other => panic!("{body}: {:?}", other.map(|m| m.media_type)),
            }
        }
        assert!(Manifest::parse_pushed(image(media::OCI_MANIFEST).as_bytes(), None).is_ok());
    }

    #[test]
    fn a_control_character_in_a_type_name_is_refused_where_it_is() {
        let body = image(media::OCI_MANIFEST);
        let with_nul = body.replacen("application/vnd.oci.image.layer.v1.tar", "application/x\\u0000y", 1);
        match Manifest::parse_pushed(with_nul.as_bytes(), None) {
            Err(ManifestError::ControlCharacter { at }) => assert_eq!(at, "layers[0].mediaType"),
            other => panic!("{:?}", other.map(|m| m.media_type)),
        }
        let artifact = body.replacen(r#""extra""#, r#""artifactType":"a/b\u0007","extra""#, 1);
        assert!(matches!(
            Manifest::parse_pushed(artifact.as_bytes(), None),
            Err(ManifestError::ControlCharacter { .. })
        ));
        assert!(Manifest::parse(artifact.as_bytes(), None).is_ok(), "a stored one still reads");
        assert!(Manifest::parse_pushed(body.as_bytes(), None).is_ok());
    }

    #[test]
    fn a_pushed_descriptor_names_a_media_type() {
        let body = image(media::OCI_MANIFEST);
        let layer_type = "application/vnd.oci.image.layer.v1.tar";
        for (bad, at) in [
            (body.replacen(&format!(r#""mediaType":"{layer_type}","#), "", 1), "layers[0].mediaType"),
            (body.replacen(layer_type, "", 1), "layers[0].mediaType"),
            (body.replacen(layer_type, "garbage", 1), "layers[0].mediaType"),
            (body.replacen(r#""extra""#, r#""artifactType":"not a media type","extra""#, 1), "artifactType"),
        ] {
            match Manifest::parse_pushed(bad.as_bytes(), None) {
                Err(ManifestError::NotAMediaType { at: found, .. }) => assert_eq!(found, at, "{bad}"),
                other => panic!("{bad}: {:?}", other.map(|m| m.media_type)),
            }
            assert!(Manifest::parse(bad.as_bytes(), None).is_ok(), "a stored one still reads");
        }
        assert!(Manifest::parse_pushed(body.as_bytes(), None).is_ok());
    }

    #[test]
    fn only_foreign_layers_may_be_elsewhere() {
        let layer = |media_type: &str, urls: &[&str]| Descriptor {
            media_type: media_type.to_owned(),
            digest: d('f').parse().unwrap(),
            size: 1,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
            urls: urls.iter().map(|u| u.to_string()).collect(),
        };
        let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        assert!(!layer(foreign, &["https://example.com/l"]).requires_blob());
        assert!(!layer(foreign, &[]).requires_blob(), "known to its clients");
        assert!(
            layer("application/vnd.oci.image.layer.v1.tar+gzip", &["file:///etc/passwd"]).requires_blob(),
            "a distributable layer"
        );
        assert!(layer("application/vnd.oci.image.layer.v1.tar+gzip", &[]).requires_blob());
    }

    #[test]
    fn media_type_agreement() {
        let body = image(media::OCI_MANIFEST);
        assert!(
            Manifest::parse(body.as_bytes(), Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")).is_ok()
        );
        assert!(matches!(
            Manifest::parse(body.as_bytes(), Some(media::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_mt = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":1}}]}}"#,
            media::OCI_MANIFEST,
            d('e')
        );
        assert_eq!(Manifest::parse(no_mt.as_bytes(), None).unwrap().media_type, media::OCI_INDEX);
        assert_eq!(Manifest::parse(no_mt.as_bytes(), Some(media::DOCKER_LIST)).unwrap().media_type, media::DOCKER_LIST);
        // Media types compare case-insensitively; one taken from the header is stored in lower case.
        let mixed = "Application/Vnd.OCI.Image.Manifest.v1+JSON";
        assert_eq!(Manifest::parse(body.as_bytes(), Some(mixed)).unwrap().media_type, media::OCI_MANIFEST);
        assert_eq!(
            Manifest::parse(no_mt.as_bytes(), Some("Application/Vnd.OCI.Image.Index.v1+json")).unwrap().media_type,
            media::OCI_INDEX
        );
    }

    #[test]
    fn pushed_manifests_are_one_kind() {
        let config =
            format!(r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}}"#, d('a'));
        let manifests =
            format!(r#""manifests":[{{"mediaType":"{}","digest":"{}","size":1}}]"#, media::OCI_MANIFEST, d('b'));
        let both = format!(r#"{{"schemaVersion":2,{config},"layers":[],{manifests}}}"#);
        let as_image = Manifest::parse_pushed(both.as_bytes(), Some(media::OCI_MANIFEST));
        assert!(matches!(&as_image, Err(ManifestError::AmbiguousField { field: "manifests", .. })), "{as_image:?}");
        let as_index = Manifest::parse_pushed(both.as_bytes(), Some(media::OCI_INDEX));
        assert!(matches!(&as_index, Err(ManifestError::AmbiguousField { field: "config", .. })), "{as_index:?}");
        let index_with_layers =
            format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[],{manifests}}}"#, media::OCI_INDEX);
        assert!(matches!(
            Manifest::parse_pushed(index_with_layers.as_bytes(), None),
            Err(ManifestError::AmbiguousField { field: "layers", .. })
        ));
        // Stored manifests are read leniently, as they were accepted before the check.
        assert_eq!(Manifest::parse(both.as_bytes(), Some(media::OCI_INDEX)).unwrap().kind, ManifestKind::Index);
        assert!(Manifest::parse_pushed(image(media::OCI_MANIFEST).as_bytes(), None).is_ok());
    }

    /// The same bytes must not be a Docker image in one repository and an OCI one in another: a
    /// Docker image manifest names its type (Docker's parsers refuse it otherwise); an OCI one
    /// may leave it out.
    #[test]
    fn a_docker_image_manifest_must_name_its_type() {
        let untyped = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        assert!(matches!(
            Manifest::parse_pushed(untyped.as_bytes(), Some(media::DOCKER_MANIFEST)),
            Err(ManifestError::MissingField { field: "mediaType", .. })
        ));
        assert_eq!(Manifest::parse_pushed(untyped.as_bytes(), None).unwrap().media_type, media::OCI_MANIFEST);
        let as_oci = Manifest::parse_pushed(untyped.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(as_oci.media_type, media::OCI_MANIFEST);
        // Stored before the check: still read.
        assert_eq!(
            Manifest::parse(untyped.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap().kind,
            ManifestKind::Image
        );
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        assert_eq!(Manifest::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None), Err(ManifestError::Schema1));
        assert_eq!(Manifest::parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)), Err(ManifestError::Schema1));
        assert!(matches!(Manifest::parse(b"not json", None), Err(ManifestError::Json(_))));
        assert!(matches!(
            Manifest::parse(format!(r#"{{"schemaVersion":2,"mediaType":"{}"}}"#, media::OCI_INDEX).as_bytes(), None),
            Err(ManifestError::MissingField { field: "manifests", .. })
        ));
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:nothex","size":1},"layers":[]}"#;
        assert!(matches!(Manifest::parse(bad_digest.as_bytes(), None), Err(ManifestError::Json(_))));
    }

    fn with_layer_sizes(sizes: &[u64]) -> String {
        let layers: Vec<String> = sizes
            .iter()
            .map(|size| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{size}}}"#,
                    d('b')
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{}]}}"#,
            media::OCI_MANIFEST,
            d('a'),
            layers.join(",")
        )
    }

    #[test]
    fn sizes_must_fit_int64() {
        assert!(Manifest::parse(with_layer_sizes(&[MAX_DESCRIPTOR_SIZE - 2]).as_bytes(), None).is_ok());
        assert_eq!(
            Manifest::parse(with_layer_sizes(&[1, 1 << 63]).as_bytes(), None),
            Err(ManifestError::SizeTooLarge { at: "layers[1]".into(), size: 1 << 63 })
        );
        assert_eq!(
            Manifest::parse(with_layer_sizes(&[1 << 62, 1 << 62]).as_bytes(), None),
            Err(ManifestError::TotalSizeTooLarge)
        );
        // Many terms: the running total is checked before it could wrap.
        let many = vec![MAX_DESCRIPTOR_SIZE; 5];
        assert_eq!(Manifest::parse(with_layer_sizes(&many).as_bytes(), None), Err(ManifestError::TotalSizeTooLarge));
        let huge_subject = image(media::OCI_MANIFEST).replace(
            r#""extra""#,
            &format!(r#""subject":{{"mediaType":"x","digest":"{}","size":18446744073709551615}},"extra""#, d('f')),
        );
        assert!(matches!(
            Manifest::parse(huge_subject.as_bytes(), None),
            Err(ManifestError::SizeTooLarge { ref at, .. }) if at == "subject"
        ));
    }

    #[test]
    fn image_manifests_must_list_layers() {
        let config =
            format!(r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}}"#, d('a'));
        for mt in [media::OCI_MANIFEST, media::DOCKER_MANIFEST] {
            let without = format!(r#"{{"schemaVersion":2,"mediaType":"{mt}",{config}}}"#);
            assert!(matches!(
                Manifest::parse(without.as_bytes(), None),
                Err(ManifestError::MissingField { field: "layers", .. })
            ));
            let null = format!(r#"{{"schemaVersion":2,"mediaType":"{mt}",{config},"layers":null}}"#);
            assert!(matches!(Manifest::parse(null.as_bytes(), None), Err(ManifestError::MissingField { .. })));
        }
        // An artifact with no layers says so.
        let artifact = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/x.sig",{config},"layers":[]}}"#,
            media::OCI_MANIFEST
        );
        assert_eq!(Manifest::parse(artifact.as_bytes(), None).unwrap().layers, vec![]);
    }

    #[test]
    fn duplicate_keys_are_refused_anywhere() {
        let body = image(media::OCI_MANIFEST);
        let cases = [
            (body.replacen(r#""layers""#, r#""layers":[],"layers""#, 1), "layers", ""),
            (body.replacen(r#""extra":{"kept":true}"#, r#""extra":{"kept":true,"kept":false}"#, 1), "kept", "/extra"),
            (body.replacen(r#""size":3"#, r#""size":3,"size":4"#, 1), "size", "/layers/0"),
            (body.replacen(r#""extra""#, r#""annotations":{"a":"1","a":"2"},"extra""#, 1), "a", "/annotations"),
            (body.replacen(r#""extra""#, r#""x":[{"a/b":{"k":1,"k":2}}],"extra""#, 1), "k", "/x/0/a~1b"),
        ];
        for (text, key, at) in cases {
            assert_eq!(
                Manifest::parse(text.as_bytes(), None),
                Err(ManifestError::DuplicateKey { key: key.into(), at: at.into() }),
                "{text}"
            );
        }
    }

    /// serde_json's `Value` would read `{"$serde_json::private::RawValue": "[1]"}` as `[1]`.
    #[test]
    fn keys_serde_json_reserves_are_refused() {
        let body = image(media::OCI_MANIFEST);
        let key = "$serde_json::private::RawValue";
        let text = body.replacen(r#""extra""#, &format!(r#""annotations":{{"{key}":"[1]"}},"extra""#), 1);
        assert_eq!(
            Manifest::parse(text.as_bytes(), None),
            Err(ManifestError::ReservedKey { key: key.into(), at: "/annotations".into() })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |levels: usize| {
            // The document itself is the first level.
            let inner = format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
            image(media::OCI_MANIFEST).replacen(r#""extra""#, &format!(r#""deep":{inner},"extra""#), 1)
        };
        assert!(Manifest::parse(nested(MAX_JSON_DEPTH).as_bytes(), None).is_ok());
        assert!(matches!(
            Manifest::parse(nested(MAX_JSON_DEPTH + 1).as_bytes(), None),
            Err(ManifestError::TooDeep { .. })
        ));
        // 100k levels: refused without exhausting the stack.
        assert!(matches!(Manifest::parse(nested(100_000).as_bytes(), None), Err(ManifestError::TooDeep { .. })));
        let objects = format!("{}{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        assert!(matches!(Manifest::parse(objects.as_bytes(), None), Err(ManifestError::TooDeep { .. })));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let body = format!("{} {{}}", image(media::OCI_MANIFEST));
        assert!(matches!(Manifest::parse(body.as_bytes(), None), Err(ManifestError::Json(_))));
    }
}
