//! The repository-name, tag, digest and reference grammars.

use berth_spec::name::{MAX_NAME_LEN, MAX_TAG_LEN};
use berth_spec::{Algorithm, Digest, Reference, RepositoryName, Tag};

/// The input as text, through every grammar: what parses re-serialises to exactly the input
/// (no normalisation a second reader could disagree with), and a repository name is always a
/// safe relative path.
pub fn names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };

    let digest = text.parse::<Digest>();
    if let Ok(d) = &digest {
        assert_eq!(d.as_str(), text);
        let hex_len = match d.algorithm() {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        };
        assert_eq!(format!("{}:{}", d.algorithm().as_str(), d.hex()), text);
        assert!(d.hex().len() == hex_len && d.hex().bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }

    if let Ok(name) = text.parse::<RepositoryName>() {
        assert_eq!(name.as_str(), text);
        assert!(text.len() <= MAX_NAME_LEN);
        for component in text.split('/') {
            assert!(!component.is_empty() && component != "." && component != "..", "unsafe component in {text:?}");
            assert!(component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
        }
    }

    let tag = text.parse::<Tag>();
    if let Ok(t) = &tag {
        assert_eq!(t.as_str(), text);
        assert!(!text.is_empty() && text.len() <= MAX_TAG_LEN);
        assert!(!text.starts_with(['.', '-']) && !text.contains(['/', ':']));
    }

    match text.parse::<Reference>() {
        Ok(Reference::Tag(t)) => assert_eq!(Ok(&t), tag.as_ref()),
        Ok(Reference::Digest(d)) => assert_eq!(Ok(&d), digest.as_ref()),
        // A reference is a digest exactly when it has a colon, else a tag.
        Err(_) => assert!(if text.contains(':') { digest.is_err() } else { tag.is_err() }),
    }
    if let Ok(reference) = text.parse::<Reference>() {
        assert_eq!(reference.to_string(), text);
    }
}
