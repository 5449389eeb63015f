//! Benchmark payloads: incompressible blobs generated from a seed, and the images built on them.
//!
//! A large blob is never held in memory: the same seed regenerates the same bytes for hashing
//! (before the timed push), for the request body, and for checking what a pull returns.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use indicatif::ProgressBar;
use rand::rngs::{SysRng, Xoshiro256PlusPlus};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Generation and comparison granularity; both sides must use the same one to get the same bytes.
const CHUNK: usize = 1 << 20;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// What a containerd-style client accepts when it resolves a tag.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Source of fresh seeds, so no run ever pushes a blob a registry has seen before.
pub struct Seeds(Xoshiro256PlusPlus);

impl Seeds {
    pub fn from_os() -> anyhow::Result<Self> {
        Ok(Self(Xoshiro256PlusPlus::try_from_rng(&mut SysRng)?))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Small random byte strings for tiny layers.
    pub fn bytes(&mut self, len: usize) -> Bytes {
        let mut buf = vec![0; len];
        self.0.fill_bytes(&mut buf);
        buf.into()
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A blob defined by its seed and length.
#[derive(Clone, Copy, Debug)]
pub struct RandomBlob {
    pub seed: u64,
    pub len: u64,
}

impl RandomBlob {
    /// Hashes the regenerated stream; blocking, call from a blocking thread.
    pub fn digest(self) -> String {
        let mut chunks = Chunks::new(self);
        let mut buf = Vec::with_capacity(CHUNK);
        let mut hasher = Sha256::new();
        while chunks.fill_next(&mut buf) {
            hasher.update(&buf);
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// The blob's bytes in `CHUNK`-sized pieces.
pub struct Chunks {
    rng: Xoshiro256PlusPlus,
    remaining: u64,
}

impl Chunks {
    pub fn new(blob: RandomBlob) -> Self {
        Self { rng: Xoshiro256PlusPlus::seed_from_u64(blob.seed), remaining: blob.len }
    }

    /// Replaces `buf` with the next piece; false once the blob is exhausted.
    pub fn fill_next(&mut self, buf: &mut Vec<u8>) -> bool {
        let len = self.remaining.min(CHUNK as u64) as usize;
        if len == 0 {
            return false;
        }
        buf.resize(len, 0);
        self.rng.fill_bytes(buf);
        self.remaining -= len as u64;
        true
    }
}

/// Request body for the lean client: nothing, a buffer, or a generated blob streamed chunk by chunk.
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Random { chunks: Chunks, remaining: u64, progress: ProgressBar },
}

impl Body {
    pub fn random(blob: RandomBlob, progress: ProgressBar) -> Self {
        Body::Random { chunks: Chunks::new(blob), remaining: blob.len, progress }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            Body::Empty => None,
            Body::Full(data) => data.take(),
            Body::Random { chunks, remaining, progress } => {
                let mut buf = Vec::with_capacity(CHUNK);
                chunks.fill_next(&mut buf).then(|| {
                    *remaining -= buf.len() as u64;
                    progress.inc(buf.len() as u64);
                    Bytes::from(buf)
                })
            }
        };
        Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(data) => data.is_none(),
            Body::Random { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            Body::Empty => 0,
            Body::Full(data) => data.as_ref().map_or(0, |d| d.len() as u64),
            Body::Random { remaining, .. } => *remaining,
        })
    }
}

/// Checks pulled bytes against the regenerated blob: exact and cheaper than re-hashing.
pub struct Verifier {
    chunks: Chunks,
    expected: Vec<u8>,
    pos: usize,
    received: u64,
    len: u64,
}

impl Verifier {
    pub fn new(blob: RandomBlob) -> Self {
        Self { chunks: Chunks::new(blob), expected: Vec::new(), pos: 0, received: 0, len: blob.len }
    }

    pub fn update(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
        while !data.is_empty() {
            if self.pos == self.expected.len() {
                anyhow::ensure!(
                    self.chunks.fill_next(&mut self.expected),
                    "blob longer than the {} bytes pushed",
                    self.len
                );
                self.pos = 0;
            }
            let n = data.len().min(self.expected.len() - self.pos);
            if data[..n] != self.expected[self.pos..self.pos + n] {
                anyhow::bail!("blob content differs from what was pushed near byte {}", self.received);
            }
            self.pos += n;
            self.received += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.received == self.len, "blob truncated: {} of {} bytes", self.received, self.len);
        Ok(())
    }
}

/// A blob's identity as the manifest lists it.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub digest: String,
    pub size: u64,
}

/// Config and manifest bytes for an image; the note makes the config, and so the manifest, unique.
pub struct ImageDocs {
    pub config: Bytes,
    pub config_digest: String,
    pub manifest: Bytes,
    pub manifest_digest: String,
}

impl ImageDocs {
    /// Layers are uncompressed tars as far as the manifest says, so each diff_id is the layer digest.
    pub fn new(layers: &[Descriptor], note: &str) -> Self {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
            },
            "history": [{ "created_by": format!("berth-bench {note}") }],
        }))
        .expect("serializing a JSON value cannot fail");
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": { "mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len() },
            "layers": layers.iter().map(|l| json!({
                "mediaType": LAYER_TYPE, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        }))
        .expect("serializing a JSON value cannot fail");
        let manifest_digest = sha256_digest(&manifest);
        Self { config: config.into(), config_digest, manifest: manifest.into(), manifest_digest }
    }
}

/// The large image: generated layers whose digests were computed up front.
pub struct LargeImage {
    pub repo: String,
    pub tag: String,
    pub layers: Vec<(RandomBlob, String)>,
    pub docs: ImageDocs,
}

impl LargeImage {
    /// Splits `total` bytes over `layer_count` fresh layers and hashes them in parallel.
    pub async fn generate(
        seeds: &mut Seeds,
        repo: String,
        tag: String,
        total: u64,
        layer_count: u32,
    ) -> anyhow::Result<Self> {
        let blobs = split_blobs(seeds, total, layer_count);
        let hashing: Vec<_> = blobs.iter().map(|&b| tokio::task::spawn_blocking(move || b.digest())).collect();
        let mut layers = Vec::with_capacity(blobs.len());
        for (blob, task) in blobs.into_iter().zip(hashing) {
            layers.push((blob, task.await?));
        }
        let descriptors: Vec<_> = layers.iter().map(|(b, d)| Descriptor { digest: d.clone(), size: b.len }).collect();
        let docs = ImageDocs::new(&descriptors, &format!("{repo}:{tag}"));
        Ok(Self { repo, tag, layers, docs })
    }

    pub fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|(b, _)| b.len).sum()
    }
}

/// `total` bytes as `count` blobs with fresh seeds (the last takes the remainder).
pub fn split_blobs(seeds: &mut Seeds, total: u64, count: u32) -> Vec<RandomBlob> {
    let count = u64::from(count.max(1));
    let each = total / count;
    (0..count)
        .map(|i| RandomBlob { seed: seeds.next(), len: if i + 1 == count { total - each * (count - 1) } else { each } })
        .collect()
}

/// One tiny image for the small-push phase, fully built before the clock starts.
pub struct SmallImage {
    pub tag: String,
    pub layer: Bytes,
    pub layer_digest: String,
    pub docs: ImageDocs,
}

impl SmallImage {
    pub fn generate(seeds: &mut Seeds, repo: &str, tag: String, layer_len: usize) -> Self {
        let layer = seeds.bytes(layer_len);
        let layer_digest = sha256_digest(&layer);
        let descriptor = Descriptor { digest: layer_digest.clone(), size: layer.len() as u64 };
        let docs = ImageDocs::new(&[descriptor], &format!("{repo}:{tag}"));
        Self { tag, layer, layer_digest, docs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_the_regenerated_stream_in_any_framing() {
        let blob = RandomBlob { seed: 7, len: (CHUNK as u64) * 2 + 12_345 };
        let mut chunks = Chunks::new(blob);
        let mut whole = Vec::new();
        let mut buf = Vec::new();
        while chunks.fill_next(&mut buf) {
            whole.extend_from_slice(&buf);
        }
        assert_eq!(sha256_digest(&whole), blob.digest());
        let mut verifier = Verifier::new(blob);
        for piece in whole.chunks(300_001) {
            verifier.update(piece).unwrap();
        }
        verifier.finish().unwrap();
    }

    #[test]
    fn verifier_rejects_flipped_extra_and_missing_bytes() {
        let blob = RandomBlob { seed: 9, len: 5000 };
        let mut data = Vec::new();
        Chunks::new(blob).fill_next(&mut data);

        let mut flipped = data.clone();
        flipped[4321] ^= 1;
        assert!(Verifier::new(blob).update(&flipped).is_err());

        let mut longer = data.clone();
        longer.push(0);
        assert!(Verifier::new(blob).update(&longer).is_err());

        let mut short = Verifier::new(blob);
        short.update(&data[..4999]).unwrap();
        assert!(short.finish().is_err());
    }

    #[test]
    fn split_blobs_covers_the_total_with_distinct_seeds() {
        let mut seeds = Seeds::from_os().unwrap();
        let blobs = split_blobs(&mut seeds, 10 * (1 << 20) + 3, 4);
        assert_eq!(blobs.iter().map(|b| b.len).sum::<u64>(), 10 * (1 << 20) + 3);
        assert_eq!(blobs[3].len, blobs[0].len + 3);
        assert_ne!(blobs[0].seed, blobs[1].seed);
    }

    #[test]
    fn manifest_references_config_and_layers_by_digest() {
        let layer = Descriptor { digest: sha256_digest(b"layer"), size: 5 };
        let docs = ImageDocs::new(std::slice::from_ref(&layer), "note");
        let manifest: serde_json::Value = serde_json::from_slice(&docs.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], docs.config_digest.as_str());
        assert_eq!(manifest["config"]["size"], docs.config.len());
        assert_eq!(manifest["layers"][0]["digest"], layer.digest.as_str());
        assert_eq!(docs.manifest_digest, sha256_digest(&docs.manifest));
        let config: serde_json::Value = serde_json::from_slice(&docs.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], layer.digest.as_str());
    }
}
