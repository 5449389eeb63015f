//! The query string of a `/v2/` request, decoded once (`application/x-www-form-urlencoded`,
//! as Go's `url.ParseQuery` and axum's `Query` read it).
//!
//! Every value of a key is kept, so a parameter the spec lets repeat can be read whole, and a
//! single-valued parameter given twice (`?n=1&n=2`) is refused rather than guessed at: which
//! one wins differs between implementations (distribution takes the first, a map the last), so
//! a proxy in front of the registry could check one value while the registry used the other.

use crate::error::OciError;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub fn parse(query: Option<&str>) -> QueryParams {
        let pairs = query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        QueryParams { pairs }
    }

    /// The value of a single-valued parameter; a second occurrence is a 400.
    pub fn single<'a>(&'a self, key: &'a str) -> Result<Option<&'a str>, OciError> {
        let mut values = self.all(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(OciError::RepeatedParameter(key.to_owned()));
        }
        Ok(first)
    }

    /// Every value of `key`, in request order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.all(key).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_a_form() {
        let q = QueryParams::parse(Some("n=10&last=a%2Fb&artifactType=application%2Fvnd.x%2Bjson&empty=&flag"));
        assert_eq!(q.single("n").unwrap(), Some("10"));
        assert_eq!(q.single("last").unwrap(), Some("a/b"));
        assert_eq!(q.single("artifactType").unwrap(), Some("application/vnd.x+json"));
        assert_eq!(q.single("empty").unwrap(), Some(""));
        assert_eq!(q.single("flag").unwrap(), Some(""));
        assert_eq!(q.single("absent").unwrap(), None);
        assert!(q.contains("flag") && !q.contains("absent"));
        assert_eq!(QueryParams::parse(None), QueryParams::default());
    }

    #[test]
    fn repeated_parameters_are_all_kept() {
        let q = QueryParams::parse(Some("tag=a&n=1&tag=b&n=2"));
        assert_eq!(q.all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(q.single("n"), Err(OciError::RepeatedParameter(key)) if key == "n"));
        assert!(matches!(q.single("tag"), Err(OciError::RepeatedParameter(_))));
    }
}
