//! `Manifest::parse` under every Content-Type a client may send.

use std::fmt;

use berth_spec::manifest::MAX_DESCRIPTOR_SIZE;
use berth_spec::{Digest, Manifest, ManifestKind, media};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

const CONTENT_TYPES: [Option<&str>; 9] = [
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some(media::DOCKER_MANIFEST),
    Some(media::DOCKER_LIST),
    Some(media::DOCKER_SCHEMA1_SIGNED),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("application/json"),
    Some(""),
];

/// The first byte picks the Content-Type, the rest is the body. What parses is one of the four
/// manifest kinds with the members its kind requires, sizes that fit int64 (also in sum),
/// well-formed digests, and means the same to a last-wins and a first-wins JSON reader (no
/// duplicate key or other ambiguity survived).
pub fn manifest(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    let Ok(parsed) = Manifest::parse(body, content_type) else { return };

    match parsed.kind {
        ManifestKind::Image => {
            assert!([media::OCI_MANIFEST, media::DOCKER_MANIFEST].contains(&parsed.media_type.as_str()));
            assert!(parsed.config.is_some() && parsed.manifests.is_empty());
        }
        ManifestKind::Index => {
            assert!([media::OCI_INDEX, media::DOCKER_LIST].contains(&parsed.media_type.as_str()));
            assert!(parsed.config.is_none() && parsed.layers.is_empty());
        }
    }
    let listed = parsed.config.iter().chain(&parsed.layers).chain(&parsed.manifests);
    let mut total: u64 = 0;
    for descriptor in listed.clone().chain(&parsed.subject) {
        assert_eq!(descriptor.digest.as_str().parse::<Digest>().as_ref(), Ok(&descriptor.digest));
        assert!(descriptor.size <= MAX_DESCRIPTOR_SIZE);
    }
    for descriptor in listed {
        total = total.checked_add(descriptor.size).expect("a parsed manifest's sizes cannot overflow");
    }
    assert!(total <= MAX_DESCRIPTOR_SIZE);
    for blob in parsed.required_blobs() {
        assert!(parsed.config.as_ref() == Some(blob) || parsed.layers.contains(blob));
    }

    // Readers disagree on a repeated key (serde_json and Go keep the last, others the first):
    // re-serialised as either reads it, the manifest must mean the same.
    let last_wins: Value = serde_json::from_slice(body).expect("a manifest that parses is JSON");
    let first_wins = serde_json::from_slice::<FirstWins>(body).expect("a manifest that parses is JSON").0;
    for (reader, value) in [("last-wins", last_wins), ("first-wins", first_wins)] {
        let canonical = serde_json::to_vec(&value).expect("JSON values serialise");
        assert_eq!(
            Manifest::parse(&canonical, content_type).as_ref(),
            Ok(&parsed),
            "read by a {reader} parser and re-serialised, the manifest changed meaning"
        );
    }
}

/// A JSON value as a parser that keeps the first of repeated keys reads it.
struct FirstWins(Value);

impl<'de> Deserialize<'de> for FirstWins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FirstWinsVisitor).map(FirstWins)
    }
}

struct FirstWinsVisitor;

impl<'de> Visitor<'de> for FirstWinsVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(FirstWins(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let FirstWins(value) = map.next_value()?;
            object.entry(key).or_insert(value);
        }
        Ok(Value::Object(object))
    }
}
