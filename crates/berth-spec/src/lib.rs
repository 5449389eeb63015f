//! Spec types of the OCI Distribution and Image specs (and the Docker v2 formats real clients
//! still push): digests, repository names, references, media types, manifest parsing and conversion, and byte ranges.
//!
//! Pure: no I/O, no async. Everything that crosses an API boundary is validated here once, so the
//! layers above only ever hold values that are known to be well-formed.

pub mod convert;
pub mod digest;
pub mod manifest;
pub mod media;
pub mod name;
pub mod range;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind, Platform};
pub use name::{NameError, Reference, RepositoryName, Tag};
pub use range::{ByteRange, ChunkRange, ContentRangeError};
