//! Byte ranges on the wire: the `Range` of a blob GET (RFC 9110) and the `Content-Range` of an
//! upload PATCH (the distribution spec's `<start>-<end>`).
//!
//! Both parsers accept only ASCII digits (no sign, no whitespace inside a range) and never
//! overflow: a `Range` number too large for `u64` saturates, which RFC 9110's clamping makes
//! exact (a last position past the end means "to the end", a first position past it is
//! unsatisfiable), and a `Content-Range` that cannot describe a real chunk is refused.

use std::fmt;
use std::ops::Range;

/// A single-range `Range` request: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    FromTo(u64, u64),
    From(u64),
    Last(u64),
}

impl ByteRange {
    /// Parses a `Range` header value; `None` unless it is one well-formed bytes range. RFC 9110
    /// lets a server ignore such a header (and serve the whole blob), which is what callers do
    /// with `None`: a full 200 is always a correct answer. Several ranges (`bytes=0-1,5-6`) are
    /// ignored the same way.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let unit_end = header.find('=')?;
        if !header[..unit_end].eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (first, last) = header[unit_end + 1..].split_once('-')?;
        match (first.is_empty(), last.is_empty()) {
            (true, false) => Some(ByteRange::Last(saturating_digits(last)?)),
            (false, true) => Some(ByteRange::From(saturating_digits(first)?)),
            (false, false) => Some(ByteRange::FromTo(saturating_digits(first)?, saturating_digits(last)?)),
            (true, true) => None,
        }
    }

    /// The half-open range to serve from a blob of `size` bytes, ends clamped as RFC 9110 says;
    /// `None` when it is unsatisfiable (a 416), which includes a range ending before it starts
    /// (RFC 9110 lets a server reject those).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::FromTo(first, last) if first <= last && first < size => Some(first..last.min(size - 1) + 1),
            ByteRange::From(first) if first < size => Some(first..size),
            ByteRange::Last(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::FromTo(first, last) => write!(f, "bytes={first}-{last}"),
            ByteRange::From(first) => write!(f, "bytes={first}-"),
            ByteRange::Last(n) => write!(f, "bytes=-{n}"),
        }
    }
}

/// Where a chunk claims to go: it must start where the upload ends and carry exactly `len`
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub len: u64,
}

/// Why a `Content-Range` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentRangeError {
    #[error("Content-Range {0:?} is not of the form <start>-<end> (inclusive byte offsets, digits only)")]
    Malformed(String),
    #[error("Content-Range {0:?} ends before it starts")]
    Backwards(String),
    #[error("Content-Range {0:?} describes more bytes than any chunk can hold")]
    TooLarge(String),
}

impl ChunkRange {
    /// Parses a PATCH's `Content-Range`, which the distribution spec defines as
    /// `^[0-9]+-[0-9]+$`, inclusive at both ends. Clients send exactly that (oras, the
    /// conformance suite, distribution's own client; docker, containerd and skopeo send none),
    /// so neither HTTP's `bytes ` prefix nor a `/<total>` suffix is taken.
    pub fn parse(value: &str) -> Result<ChunkRange, ContentRangeError> {
        let malformed = || ContentRangeError::Malformed(value.to_owned());
        let (start, end) = value.split_once('-').ok_or_else(malformed)?;
        let (start, end) = (exact_digits(start).ok_or_else(malformed)?, exact_digits(end).ok_or_else(malformed)?);
        if end < start {
            return Err(ContentRangeError::Backwards(value.to_owned()));
        }
        // `0-18446744073709551615` is 2^64 bytes: more than a u64 length can say.
        let len = (end - start).checked_add(1).ok_or_else(|| ContentRangeError::TooLarge(value.to_owned()))?;
        Ok(ChunkRange { start, len })
    }

    /// The inclusive last byte offset, as `Content-Range` writes it.
    pub fn end(&self) -> u64 {
        self.start + (self.len - 1)
    }
}

impl fmt::Display for ChunkRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end())
    }
}

/// A non-empty run of ASCII digits as `u64`; `None` for anything else or on overflow.
fn exact_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX`.
fn saturating_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc9110() {
        let resolve = |header: &str, size: u64| ByteRange::parse(header).and_then(|r| r.resolve(size));
        assert_eq!(resolve("bytes=0-9", 100), Some(0..10));
        assert_eq!(resolve("bytes=-500", 1000), Some(500..1000));
        assert_eq!(resolve("bytes=-500", 100), Some(0..100));
        assert_eq!(resolve("bytes=500-", 1000), Some(500..1000));
        assert_eq!(resolve("bytes=10-5000", 100), Some(10..100));
        assert_eq!(resolve("bytes=100-", 100), None);
        assert_eq!(resolve("bytes=500-0", 1000), None);
        assert_eq!(resolve("BYTES=0-0", 1), Some(0..1));
        assert_eq!(resolve("bytes=-0", 10), None);
        assert_eq!(resolve("bytes=0-0", 0), None);
    }

    #[test]
    fn range_numbers_saturate_instead_of_wrapping() {
        let huge = "bytes=0-99999999999999999999999999";
        assert_eq!(ByteRange::parse(huge), Some(ByteRange::FromTo(0, u64::MAX)));
        assert_eq!(ByteRange::parse(huge).unwrap().resolve(10), Some(0..10));
        assert_eq!(ByteRange::parse("bytes=18446744073709551615-").unwrap().resolve(u64::MAX), None);
        assert_eq!(
            ByteRange::parse("bytes=18446744073709551614-").unwrap().resolve(u64::MAX),
            Some(u64::MAX - 1..u64::MAX)
        );
        assert_eq!(ByteRange::parse("bytes=-99999999999999999999999").unwrap().resolve(7), Some(0..7));
        assert_eq!(ByteRange::parse("bytes=0-18446744073709551615").unwrap().resolve(u64::MAX), Some(0..u64::MAX));
    }

    #[test]
    fn malformed_ranges_are_ignored() {
        for bad in [
            "items=0-1",
            "bytes=-",
            "bytes=0-1,5-6",
            "bytes= 0-1",
            "bytes=0 - 1",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=0x1-2",
            "bytes",
            "=0-1",
            "",
        ] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_range_is_exactly_start_dash_end() {
        assert_eq!(ChunkRange::parse("0-4"), Ok(ChunkRange { start: 0, len: 5 }));
        assert_eq!(ChunkRange::parse("20000-24999"), Ok(ChunkRange { start: 20000, len: 5000 }));
        assert_eq!(ChunkRange::parse("7-7"), Ok(ChunkRange { start: 7, len: 1 }));
        for bad in
            ["0-4/3", "0 - 4", " 0-4", "bytes 0-4/5", "bytes=0-4", "0-", "-4", "+0-4", "0-+4", "a-b", "0-4-5", ""]
        {
            assert_eq!(ChunkRange::parse(bad), Err(ContentRangeError::Malformed(bad.into())), "{bad}");
        }
        assert_eq!(ChunkRange::parse("10-5"), Err(ContentRangeError::Backwards("10-5".into())));
    }

    #[test]
    fn content_range_never_overflows() {
        let max = "0-18446744073709551615";
        assert_eq!(ChunkRange::parse(max), Err(ContentRangeError::TooLarge(max.into())));
        assert!(matches!(ChunkRange::parse("0-18446744073709551616"), Err(ContentRangeError::Malformed(_))));
        let top = ChunkRange::parse("1-18446744073709551615").unwrap();
        assert_eq!(top.len, u64::MAX);
        assert_eq!(top.end(), u64::MAX);
        assert_eq!(top.to_string(), "1-18446744073709551615");
    }
}
