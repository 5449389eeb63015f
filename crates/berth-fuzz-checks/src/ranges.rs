//! `Range` (blob GET) and `Content-Range` (upload PATCH) parsing.

use berth_spec::{ByteRange, ChunkRange};

/// Blob sizes every parsed `Range` is resolved against, including the extremes.
const SIZES: [u64; 7] = [0, 1, 2, 1000, 1 << 32, u64::MAX - 1, u64::MAX];

/// The input as a header value. A parsed `Range` prints back to an equal range and resolves to
/// an in-bounds, non-empty slice exactly as RFC 9110 clamps it; a parsed `Content-Range` is
/// what the distribution spec's `^[0-9]+-[0-9]+$` describes, computed without overflow.
pub fn ranges(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Some(range) = ByteRange::parse(text) {
        assert_eq!(ByteRange::parse(&range.to_string()), Some(range));
        for size in SIZES {
            let expected = match range {
                ByteRange::FromTo(first, last) => {
                    (first <= last && first < size).then(|| first..last.min(size - 1) + 1)
                }
                ByteRange::From(first) => (first < size).then_some(first..size),
                ByteRange::Last(n) => (n > 0 && size > 0).then(|| size - n.min(size)..size),
            };
            let resolved = range.resolve(size);
            assert_eq!(resolved, expected, "{range} of {size} bytes");
            if let Some(r) = resolved {
                assert!(r.start < r.end && r.end <= size);
            }
        }
    }

    let reference = reference_content_range(text);
    match ChunkRange::parse(text) {
        Ok(chunk) => {
            assert_eq!(Some((chunk.start, chunk.len)), reference, "{text:?}");
            assert_eq!(ChunkRange::parse(&chunk.to_string()), Ok(chunk));
            assert!(chunk.len > 0 && chunk.end() >= chunk.start);
        }
        Err(_) => assert_eq!(reference, None, "{text:?} was refused"),
    }
}

/// The distribution spec's grammar with start ≤ end, in 128-bit arithmetic, and a length that
/// fits `u64`: `(start, len)`.
fn reference_content_range(text: &str) -> Option<(u64, u64)> {
    let (start, end) = text.split_once('-')?;
    let digits = |s: &str| -> Option<u128> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Leading zeros do not change the value and cannot overflow.
        let significant = s.trim_start_matches('0');
        if significant.len() > 20 {
            return None;
        }
        Some(significant.parse().unwrap_or(0))
    };
    let (start, end) = (digits(start)?, digits(end)?);
    let (start, end) = (u64::try_from(start).ok()?, u64::try_from(end).ok()?);
    let len = u128::from(end).checked_sub(u128::from(start))? + 1;
    Some((start, u64::try_from(len).ok()?))
}
