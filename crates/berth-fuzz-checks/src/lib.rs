//! The properties Berth's fuzz targets check, one function per target, each taking the fuzzer's
//! raw bytes. `fuzz/` (cargo-fuzz, nightly) drives them with libFuzzer; `tests/replay.rs` runs
//! every committed corpus file through the same functions on stable, in `cargo test`.
//!
//! Every function must never panic for any input except to report a broken property: no
//! parser may panic, and what a parser accepts must hold the invariants its callers rely on.

mod ecr;
mod iam_policy;
mod lifecycle;
mod manifest;
mod names;
mod ranges;
mod sigv4;

pub use ecr::ecr_json;
pub use iam_policy::iam_policy;
pub use lifecycle::lifecycle;
pub use manifest::manifest;
pub use names::names;
pub use ranges::ranges;
pub use sigv4::sigv4;

/// A property over one fuzzer input; it panics when the property does not hold.
pub type Check = fn(&[u8]);

/// Every target by name (the directory names of `fuzz/corpus/`), for the replay test.
pub const TARGETS: [(&str, Check); 7] = [
    ("manifest", manifest),
    ("names", names),
    ("ranges", ranges),
    ("sigv4", sigv4),
    ("ecr_json", ecr_json),
    ("lifecycle", lifecycle),
    ("iam_policy", iam_policy),
];

/// Structured values drawn from unstructured fuzzer bytes; an exhausted input yields zeros, so
/// every input decodes to something.
pub(crate) struct Draw<'a> {
    bytes: &'a [u8],
}

impl<'a> Draw<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Draw { bytes }
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// Up to `max` characters of `alphabet`, at least `min`.
    pub(crate) fn text(&mut self, alphabet: &[u8], min: usize, max: usize) -> String {
        let len = min + self.below(max - min + 1);
        (0..len).map(|_| char::from(alphabet[self.below(alphabet.len())])).collect()
    }

    /// Whatever is left.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.bytes
    }
}
