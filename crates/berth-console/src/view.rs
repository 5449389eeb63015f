//! How values look on the pages: sizes, times, digests, and the frame every page shares.

use berth_spec::Digest;

use crate::paths;
use crate::session::Millis;

/// The frame of every page: who is signed in, the form token, where the assets are.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `None` before sign-in.
    pub user: Option<String>,
    pub is_root: bool,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// Which main section the page belongs to (`repositories`, `admin`), for `aria-current`.
    pub section: &'static str,
    /// The registry's host as clients name it (`docker pull HOST/repo`).
    pub registry_host: String,
    pub css: String,
    pub js: String,
    pub version: &'static str,
}

impl Layout {
    pub fn new(user: Option<String>, is_root: bool, csrf: String, registry_host: &str) -> Layout {
        Layout {
            user,
            is_root,
            csrf,
            section: "repositories",
            registry_host: registry_host.to_owned(),
            css: paths::href_asset("console.css"),
            js: paths::href_asset("console.js"),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn in_section(mut self, section: &'static str) -> Layout {
        self.section = section;
        self
    }
}

/// Bytes in binary units with one decimal (`1.5 MiB`); exact below 1 KiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A UTC time to the minute (`2026-11-28 14:03 UTC`).
pub fn time(millis: Millis) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000) {
        Ok(t) => {
            format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        }
        Err(_) => "—".into(),
    }
}

/// [`time`], or `never`.
pub fn time_or_never(millis: Option<Millis>) -> String {
    millis.map_or_else(|| "never".into(), time)
}

/// A machine-readable time for `<time datetime>` (RFC 3339, UTC).
pub fn datetime(millis: Millis) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => String::new(),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell images apart on a page.
pub fn short_digest(digest: &Digest) -> String {
    let text = digest.to_string();
    match text.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => text,
    }
}

/// A duration in the largest whole unit that fits (`24 h`, `90 s`).
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The host (and port) of a URL: what `docker pull` puts before the repository.
pub fn host_of(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    without_scheme.split('/').next().unwrap_or(without_scheme).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(size(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn times_are_utc_to_the_minute() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_764_338_580_000), "2025-11-28 14:03 UTC");
        assert_eq!(datetime(1_764_338_580_000), "2025-11-28T14:03:00Z");
        assert_eq!(time_or_never(None), "never");
        assert_eq!(time(i64::MAX), "—", "out of range, not a panic");
    }

    #[test]
    fn digests_shorten_and_hosts_come_from_urls() {
        let digest = Digest::sha256_of(b"x");
        let short = short_digest(&digest);
        assert_eq!(short.len(), "sha256:".len() + 12);
        assert!(digest.to_string().starts_with(&short));
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("https://registry.example.com/"), "registry.example.com");
        assert_eq!(host_of("registry.example.com:443"), "registry.example.com:443");
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_secs(86_400)), "1 d");
        assert_eq!(duration(Duration::from_secs(3_600 * 36)), "36 h");
        assert_eq!(duration(Duration::from_secs(90)), "90 s");
        assert_eq!(duration(Duration::from_secs(600)), "10 min");
    }
}
