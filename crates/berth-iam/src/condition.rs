//! The `Condition` element: IAM's condition operators over the request's condition keys.
//!
//! Semantics, as AWS documents them:
//! - Several operators in a block, and several keys under one operator, must all be true (AND);
//!   several values for one key are alternatives (OR). A negated operator (`StringNotEquals`,
//!   `NotIpAddress`, …) is true when the request value matches none of them.
//! - A key absent from the request makes a condition false, except that a negated operator is
//!   then true, `…IfExists` is true, `ForAllValues:` is true, and `Null` tests exactly that.
//! - `ForAnyValue:`/`ForAllValues:` apply the operator to each value of a multi-valued key (any /
//!   every one must satisfy it); without them a multi-valued key matches if any value does.
//! - A key the request has but Berth cannot know evaluates to "unknown" (see [`crate::truth`]).
//!
//! Values are checked when the policy is parsed, so a malformed date, number, boolean or CIDR block
//! (or an unknown operator) is refused then, as IAM refuses it with `MalformedPolicyDocument`.

use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::json::Json;
use crate::keys::{ConditionKeys, Item, KeyValue};
use crate::policy::PolicyError;
use crate::truth::Truth;
use crate::variables::{Pattern, Text};

/// A compiled `Condition` block: every test must hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    tests: Box<[Test]>,
}

/// One operator applied to one key.
#[derive(Debug, Clone, PartialEq)]
struct Test {
    /// The key, in lower case.
    key: Box<str>,
    set: Option<SetOperator>,
    negated: bool,
    if_exists: bool,
    check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOperator {
    ForAnyValue,
    ForAllValues,
}

/// What one request value is compared with, by operator family; the policy's values are parsed.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    StringEquals {
        ignore_case: bool,
        values: Box<[Text]>,
    },
    StringLike(Box<[Pattern]>),
    /// `ArnEquals` and `ArnLike` are the same operator in IAM.
    Arn(Box<[Pattern]>),
    Numeric(Compare, Box<[f64]>),
    /// Nanoseconds since the Unix epoch.
    Date(Compare, Box<[i128]>),
    Bool(Box<[bool]>),
    Ip(Box<[IpNet]>),
    /// `true`: the key must be absent; `false`: present.
    Null(Box<[bool]>),
}

/// request value `Compare` policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Compare {
    fn holds(self, ordering: Option<Ordering>) -> bool {
        let Some(ordering) = ordering else { return false };
        match self {
            Compare::Equals => ordering.is_eq(),
            Compare::LessThan => ordering.is_lt(),
            Compare::LessThanEquals => ordering.is_le(),
            Compare::GreaterThan => ordering.is_gt(),
            Compare::GreaterThanEquals => ordering.is_ge(),
        }
    }
}

/// The operator families, before their values are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    StringEquals { ignore_case: bool },
    StringLike,
    Arn,
    Numeric(Compare),
    Date(Compare),
    Bool,
    Ip,
    Null,
}

/// Every base operator IAM has that Berth evaluates: (name, family, negated).
const OPERATORS: &[(&str, Family, bool)] = &[
    ("StringEquals", Family::StringEquals { ignore_case: false }, false),
    ("StringNotEquals", Family::StringEquals { ignore_case: false }, true),
    ("StringEqualsIgnoreCase", Family::StringEquals { ignore_case: true }, false),
    ("StringNotEqualsIgnoreCase", Family::StringEquals { ignore_case: true }, true),
    ("StringLike", Family::StringLike, false),
    ("StringNotLike", Family::StringLike, true),
    ("ArnEquals", Family::Arn, false),
    ("ArnLike", Family::Arn, false),
    ("ArnNotEquals", Family::Arn, true),
    ("ArnNotLike", Family::Arn, true),
    ("NumericEquals", Family::Numeric(Compare::Equals), false),
    ("NumericNotEquals", Family::Numeric(Compare::Equals), true),
    ("NumericLessThan", Family::Numeric(Compare::LessThan), false),
    ("NumericLessThanEquals", Family::Numeric(Compare::LessThanEquals), false),
    ("NumericGreaterThan", Family::Numeric(Compare::GreaterThan), false),
    ("NumericGreaterThanEquals", Family::Numeric(Compare::GreaterThanEquals), false),
    ("DateEquals", Family::Date(Compare::Equals), false),
    ("DateNotEquals", Family::Date(Compare::Equals), true),
    ("DateLessThan", Family::Date(Compare::LessThan), false),
    ("DateLessThanEquals", Family::Date(Compare::LessThanEquals), false),
    ("DateGreaterThan", Family::Date(Compare::GreaterThan), false),
    ("DateGreaterThanEquals", Family::Date(Compare::GreaterThanEquals), false),
    ("Bool", Family::Bool, false),
    ("IpAddress", Family::Ip, false),
    ("NotIpAddress", Family::Ip, true),
    ("Null", Family::Null, false),
];

#[derive(Debug)]
struct Operator {
    set: Option<SetOperator>,
    family: Family,
    negated: bool,
    if_exists: bool,
}

/// Parses `[ForAnyValue:|ForAllValues:]<operator>[IfExists]`.
fn operator(name: &str) -> Result<Operator, String> {
    let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
        (Some(SetOperator::ForAnyValue), rest)
    } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
        (Some(SetOperator::ForAllValues), rest)
    } else {
        (None, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    if base == "BinaryEquals" {
        return Err(format!("operator {name:?} is not supported: no condition key Berth knows is binary"));
    }
    let Some(&(_, family, negated)) = OPERATORS.iter().find(|(n, _, _)| *n == base) else {
        return Err(format!("unknown operator {name:?}"));
    };
    if family == Family::Null && (set.is_some() || if_exists) {
        return Err(format!("operator {name:?} is not valid: Null takes no ForAnyValue:, ForAllValues: or IfExists"));
    }
    Ok(Operator { set, family, negated, if_exists })
}

impl Condition {
    /// Compiles a `Condition` element found at `at`; `variables` when policy variables apply.
    pub(crate) fn parse(json: &Json, at: &str, variables: bool) -> Result<Condition, PolicyError> {
        let Json::Object(operators) = json else {
            return Err(PolicyError::new(at, format!("must be an object of operators, not {}", json.kind())));
        };
        let mut tests = Vec::new();
        for (i, (name, keys)) in operators.iter().enumerate() {
            if operators[..i].iter().any(|(n, _)| n == name) {
                return Err(PolicyError::new(at, format!("operator {name:?} appears twice")));
            }
            let operator = operator(name).map_err(|problem| PolicyError::new(at, problem))?;
            let at = format!("{at}.{name}");
            let Json::Object(keys) = keys else {
                return Err(PolicyError::new(&at, format!("must be an object of condition keys, not {}", keys.kind())));
            };
            if keys.is_empty() {
                return Err(PolicyError::new(&at, "names no condition key"));
            }
            for (j, (key, values)) in keys.iter().enumerate() {
                let at = format!("{at}[{key:?}]");
                if keys[..j].iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                    return Err(PolicyError::new(&at, "the key appears twice under this operator"));
                }
                if !key.split_once(':').is_some_and(|(vendor, name)| !vendor.is_empty() && !name.is_empty()) {
                    return Err(PolicyError::new(
                        &at,
                        "a condition key is prefixed by its service, like \"aws:SourceIp\"",
                    ));
                }
                let values = scalars(values).map_err(|problem| PolicyError::new(&at, problem))?;
                let check =
                    check(operator.family, &values, variables).map_err(|problem| PolicyError::new(&at, problem))?;
                tests.push(Test {
                    key: key.to_ascii_lowercase().into_boxed_str(),
                    set: operator.set,
                    negated: operator.negated,
                    if_exists: operator.if_exists,
                    check,
                });
            }
        }
        Ok(Condition { tests: tests.into_boxed_slice() })
    }

    pub(crate) fn truth(&self, keys: &ConditionKeys) -> Truth {
        Truth::all(self.tests.iter().map(|test| test.truth(keys)))
    }

    /// Every key the condition reads: its tested keys and the variables in its values.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.tests.iter().flat_map(|test| {
            let variables: Box<dyn Iterator<Item = &str>> = match &test.check {
                Check::StringEquals { values, .. } => Box::new(values.iter().flat_map(Text::var_keys)),
                Check::StringLike(values) | Check::Arn(values) => Box::new(values.iter().flat_map(Pattern::var_keys)),
                _ => Box::new(std::iter::empty()),
            };
            std::iter::once(&*test.key).chain(variables)
        })
    }
}

/// A condition's values: one scalar or a non-empty array of them, as text.
fn scalars(json: &Json) -> Result<Vec<&str>, String> {
    fn one(v: &Json) -> Result<&str, String> {
        v.scalar_text().ok_or_else(|| format!("a value must be a string, number or boolean, not {}", v.kind()))
    }
    match json {
        Json::Array(items) if items.is_empty() => Err("the value list is empty".into()),
        Json::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn check(family: Family, values: &[&str], variables: bool) -> Result<Check, String> {
    fn each<T>(values: &[&str], parse: impl Fn(&str) -> Result<T, String>) -> Result<Box<[T]>, String> {
        values.iter().map(|v| parse(v)).collect()
    }
    let boolean = |v: &str| parse_bool(v).ok_or_else(|| format!("{v:?} is not true or false"));
    Ok(match family {
        Family::StringEquals { ignore_case } => {
            Check::StringEquals { ignore_case, values: each(values, |v| Text::compile(v, variables))? }
        }
        Family::StringLike => Check::StringLike(each(values, |v| Pattern::compile(v, variables))?),
        Family::Arn => Check::Arn(each(values, |v| Pattern::compile(v, variables))?),
        Family::Numeric(compare) => {
            Check::Numeric(compare, each(values, |v| parse_number(v).ok_or_else(|| format!("{v:?} is not a number")))?)
        }
        Family::Date(compare) => Check::Date(
            compare,
            each(values, |v| {
                parse_date(v).ok_or_else(|| {
                    format!("{v:?} is not a date: use ISO 8601 (\"2026-01-31T12:00:00Z\") or epoch seconds")
                })
            })?,
        ),
        Family::Bool => Check::Bool(each(values, boolean)?),
        Family::Ip => Check::Ip(each(values, |v| {
            parse_net(v).ok_or_else(|| format!("{v:?} is not an IP address or CIDR block"))
        })?),
        Family::Null => Check::Null(each(values, boolean)?),
    })
}

impl Test {
    fn truth(&self, keys: &ConditionKeys) -> Truth {
        let value = keys.get(&self.key);
        if let KeyValue::Unknown = value {
            return Truth::Unknown;
        }
        let absent = value.is_absent();
        if let Check::Null(expected) = &self.check {
            return expected.contains(&absent).into();
        }
        if absent {
            return (self.if_exists
                || match self.set {
                    Some(SetOperator::ForAllValues) => true,
                    Some(SetOperator::ForAnyValue) => false,
                    None => self.negated,
                })
            .into();
        }
        let matches = |item: &Item| self.check.matches(item, keys);
        let items = value.into_items();
        match self.set {
            None => {
                let any = Truth::any(items.map(|item| matches(&item)));
                if self.negated { any.not() } else { any }
            }
            Some(set) => {
                let per_value = items.map(|item| if self.negated { matches(&item).not() } else { matches(&item) });
                match set {
                    SetOperator::ForAnyValue => Truth::any(per_value),
                    SetOperator::ForAllValues => Truth::all(per_value),
                }
            }
        }
    }
}

impl Check {
    /// Whether one request value matches any of the policy's values. A request value of the
    /// wrong type (a name under `NumericLessThan`) matches none, as in IAM.
    fn matches(&self, item: &Item, keys: &ConditionKeys) -> Truth {
        match self {
            Check::StringEquals { ignore_case, values } => {
                let text = item.text();
                let compare: fn(&str, &str) -> bool = if *ignore_case { eq_ignore_case } else { |a, b| a == b };
                Truth::any(values.iter().map(|v| v.matches(&text, keys, compare)))
            }
            Check::StringLike(patterns) => {
                let text = item.text();
                Truth::any(patterns.iter().map(|p| p.matches(&text, keys, false)))
            }
            Check::Arn(patterns) => {
                let text = item.text();
                Truth::any(patterns.iter().map(|p| p.matches(&text, keys, true)))
            }
            Check::Numeric(compare, values) => {
                let number = match item {
                    Item::Str(s) => parse_number(s),
                    Item::Time { secs, .. } => Some(*secs as f64),
                    Item::Bool(_) | Item::Ip(_) => None,
                };
                number.is_some_and(|n| values.iter().any(|v| compare.holds(n.partial_cmp(v)))).into()
            }
            Check::Date(compare, values) => {
                let nanos = match item {
                    Item::Str(s) => parse_date(s),
                    Item::Time { secs, .. } => Some(i128::from(*secs) * 1_000_000_000),
                    Item::Bool(_) | Item::Ip(_) => None,
                };
                nanos.is_some_and(|n| values.iter().any(|v| compare.holds(Some(n.cmp(v))))).into()
            }
            Check::Bool(values) => {
                let value = match item {
                    Item::Bool(b) => Some(*b),
                    Item::Str(s) => parse_bool(s),
                    Item::Ip(_) | Item::Time { .. } => None,
                };
                value.is_some_and(|b| values.contains(&b)).into()
            }
            Check::Ip(nets) => {
                let ip = match item {
                    Item::Ip(ip) => Some(*ip),
                    Item::Str(s) => s.parse::<IpAddr>().ok(),
                    Item::Bool(_) | Item::Time { .. } => None,
                };
                // A client on an IPv4-mapped IPv6 address is an IPv4 client.
                ip.map(|ip| ip.to_canonical()).is_some_and(|ip| nets.iter().any(|net| net.contains(&ip))).into()
            }
            Check::Null(_) => Truth::False,
        }
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// An integer or decimal: `-?digits(.digits)?`.
fn parse_number(text: &str) -> Option<f64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (all_digits(whole) && all_digits(fraction)).then(|| text.parse().ok()).flatten()
}

/// A CIDR block, or one address (a /32 or /128 block).
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A date as IAM accepts it, in nanoseconds since the epoch: epoch seconds (all digits), or a
/// W3C profile of ISO 8601: `YYYY-MM-DD`, `YYYY-MM-DDThh:mm`, `…:ss`, `…:ss.fff`, each time
/// optionally followed by `Z` or `±hh:mm` (none means UTC).
pub(crate) fn parse_date(text: &str) -> Option<i128> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(i128::from(secs) * 1_000_000_000);
    }
    let number = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut ymd = date.split('-');
    let year = i32::try_from(number(ymd.next()?, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(number(ymd.next()?, 2)?).ok()?).ok()?;
    let day = u8::try_from(number(ymd.next()?, 2)?).ok()?;
    if ymd.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let Some(time) = time else {
        return Some(date.midnight().assume_utc().unix_timestamp_nanos());
    };
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(at) => (&time[..at], &time[at..]),
        None => (time, ""),
    };
    let offset = match offset {
        "" | "Z" => UtcOffset::UTC,
        signed => {
            let (hours, minutes) = signed[1..].split_once(':')?;
            let (hours, minutes) = (number(hours, 2)? as i8, number(minutes, 2)? as i8);
            let sign = if signed.starts_with('-') { -1 } else { 1 };
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    let mut hms = clock.split(':');
    let hour = u8::try_from(number(hms.next()?, 2)?).ok()?;
    let minute = u8::try_from(number(hms.next()?, 2)?).ok()?;
    let (second, nanos) = match hms.next() {
        None => (0, 0),
        Some(seconds) => {
            let (whole, fraction) = match seconds.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (seconds, None),
            };
            let second = u8::try_from(number(whole, 2)?).ok()?;
            let nanos = match fraction {
                None => 0,
                Some(fraction) => {
                    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    // Nanosecond precision; further digits are dropped.
                    let digits = &fraction[..fraction.len().min(9)];
                    digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
                }
            };
            (second, nanos)
        }
    };
    if hms.next().is_some() {
        return None;
    }
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).unix_timestamp_nanos())
}

/// `secs` since the epoch as `aws:CurrentTime` reads: `2026-01-31T12:00:00Z`.
pub(crate) fn iso8601(secs: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_accepted_form() {
        let noon = 1_769_860_800i128 * 1_000_000_000; // 2026-01-31T12:00:00Z
        for (text, expected) in [
            ("2026-01-31T12:00:00Z", Some(noon)),
            ("2026-01-31T12:00Z", Some(noon)),
            ("2026-01-31T12:00:00", Some(noon)),
            ("2026-01-31T13:00:00+01:00", Some(noon)),
            ("2026-01-31T10:30:00-01:30", Some(noon)),
            ("2026-01-31T12:00:00.5Z", Some(noon + 500_000_000)),
            ("2026-01-31T12:00:00.123456789123Z", Some(noon + 123_456_789)),
            ("1769860800", Some(noon)),
            ("2026-01-31", Some(noon - 12 * 3600 * 1_000_000_000)),
            ("2026-02-30", None),
            ("2026-1-31", None),
            ("2026-01-31T25:00:00Z", None),
            ("2026-01-31T12:00:00.Z", None),
            ("2026-01-31T12:00:00.1xZ", None),
            ("2026-01-31T12", None),
            ("2026-01-31T12:00:00+1", None),
            ("tomorrow", None),
            ("", None),
            ("2026-01-31T12:00:00:00Z", None),
        ] {
            assert_eq!(parse_date(text), expected, "{text}");
        }
        assert_eq!(iso8601(1_769_860_800), "2026-01-31T12:00:00Z");
    }

    #[test]
    fn numbers_booleans_and_networks() {
        assert_eq!(parse_number("10"), Some(10.0));
        assert_eq!(parse_number("-2.5"), Some(-2.5));
        for bad in ["", "1e5", "1.", ".5", "abc", "--1", "NaN", "inf"] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("yes"), None);
        assert!(parse_net("203.0.113.0/24").is_some());
        assert!(parse_net("2001:db8::/32").is_some());
        assert_eq!(parse_net("203.0.113.9"), Some("203.0.113.9/32".parse().unwrap()));
        assert!(parse_net("203.0.113.0/33").is_none());
        assert!(parse_net("localhost").is_none());
    }

    #[test]
    fn operator_names() {
        let op = operator("ForAllValues:StringNotEqualsIfExists").unwrap();
        assert_eq!(
            (op.set, op.family, op.negated, op.if_exists),
            (Some(SetOperator::ForAllValues), Family::StringEquals { ignore_case: false }, true, true)
        );
        assert_eq!(operator("StringEq").err().unwrap(), "unknown operator \"StringEq\"");
        assert!(operator("stringequals").is_err(), "operator names are case-sensitive");
        assert!(operator("NullIfExists").unwrap_err().contains("Null takes no"));
        assert!(operator("ForAnyValue:Null").is_err());
        assert!(operator("BinaryEquals").unwrap_err().contains("not supported"));
        for (name, _, _) in OPERATORS {
            assert!(operator(name).is_ok());
            assert!(operator(&format!("ForAnyValue:{name}IfExists")).is_ok() || *name == "Null");
        }
    }
}
