//! Policy values that may hold policy variables (`${aws:username}`, `${aws:ResourceTag/team,
//! 'none'}`, the escapes `${*}`, `${?}`, `${$}`), as IAM substitutes them in `Resource` and in
//! string and ARN condition values of `"Version": "2012-10-17"` documents.
//!
//! Resolution follows IAM: a key without a value (and without a default) leaves nothing to match,
//! so the value matches no request; a substituted value is literal text, even if it contains `*`.
//! Berth adds one rule: a key Berth cannot know ([`KeyValue::Unknown`]) resolves to "unknown".

use std::borrow::Cow;

use crate::keys::{ConditionKeys, KeyValue};
use crate::truth::Truth;
use crate::wildcard::{Tok, arn_glob, glob, tokens};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text as written: `*` and `?` are wildcards where the value is a pattern.
    Raw(Box<str>),
    /// An escaped `*`, `?` or `$`: always literal.
    Literal(char),
    /// `${key}` or `${key, 'default'}`; `key` in lower case (condition keys are case-insensitive).
    Var { key: Box<str>, default: Option<Box<str>> },
}

/// Splits `value` into parts. With `variables` false (a `2008-10-17` policy) `${…}` is plain text.
pub(crate) fn parse(value: &str, variables: bool) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut raw = String::new();
    let mut rest = value;
    while variables && let Some(start) = rest.find("${") {
        raw.push_str(&rest[..start]);
        let unterminated = || format!("unterminated policy variable in {value:?} (write ${{$}} for a literal $)");
        let inside = &rest[start + 2..];
        let key_end = inside.find([',', '}']).ok_or_else(unterminated)?;
        let key = inside[..key_end].trim();
        let mut after = &inside[key_end..];
        let mut default = None;
        if let Some(tail) = after.strip_prefix(',') {
            let quoted = tail.trim_start().strip_prefix('\'').ok_or_else(|| {
                format!("the default of policy variable ${{{key}, …}} in {value:?} must be in single quotes")
            })?;
            let (text, tail) = quoted_default(quoted).ok_or_else(unterminated)?;
            default = Some(text.into_boxed_str());
            after = tail.trim_start();
        }
        rest = after.strip_prefix('}').ok_or_else(unterminated)?;
        if !raw.is_empty() {
            parts.push(Part::Raw(std::mem::take(&mut raw).into_boxed_str()));
        }
        parts.push(match key {
            "" => return Err(format!("empty policy variable in {value:?}")),
            "*" => Part::Literal('*'),
            "?" => Part::Literal('?'),
            "$" => Part::Literal('$'),
            key => Part::Var { key: key.to_ascii_lowercase().into_boxed_str(), default },
        });
    }
    raw.push_str(rest);
    if !raw.is_empty() || parts.is_empty() {
        parts.push(Part::Raw(raw.into_boxed_str()));
    }
    Ok(parts)
}

/// A default's text up to its closing quote (`''` is a quote), and what follows the quote.
fn quoted_default(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if text[i + 1..].starts_with('\'') {
            value.push('\'');
            chars.next();
        } else {
            return Some((value, &text[i + 1..]));
        }
    }
    None
}

/// The keys the parts read.
fn var_keys(parts: &[Part]) -> impl Iterator<Item = &str> {
    parts.iter().filter_map(|p| match p {
        Part::Var { key, .. } => Some(&**key),
        _ => None,
    })
}

enum Resolved<T> {
    Value(T),
    /// A variable without a value or default: IAM finds no equal or like value.
    Nothing,
    Unknown,
}

/// The text of variable `key` in this request.
fn resolve_var<'k>(key: &str, default: Option<&'k str>, keys: &'k ConditionKeys) -> Resolved<Cow<'k, str>> {
    match keys.get(key) {
        KeyValue::Unknown => Resolved::Unknown,
        KeyValue::One(item) => Resolved::Value(item.text()),
        // Absent, or multi-valued (IAM does not substitute multi-valued keys).
        _ => default.map_or(Resolved::Nothing, |d| Resolved::Value(Cow::Borrowed(d))),
    }
}

/// A value compared for (in)equality: `*` and `?` mean themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text {
    Plain(Box<str>),
    Template(Box<[Part]>),
}

impl Text {
    pub(crate) fn compile(value: &str, variables: bool) -> Result<Text, String> {
        let parts = parse(value, variables)?;
        Ok(match parts.as_slice() {
            [Part::Raw(raw)] => Text::Plain(raw.clone()),
            _ if parts.iter().all(|p| !matches!(p, Part::Var { .. })) => Text::Plain(concat(&parts).into()),
            _ => Text::Template(parts.into_boxed_slice()),
        })
    }

    /// Whether the request value `text` equals this value (`compare` decides equality).
    pub(crate) fn matches(&self, text: &str, keys: &ConditionKeys, compare: fn(&str, &str) -> bool) -> Truth {
        let parts = match self {
            Text::Plain(value) => return compare(value, text).into(),
            Text::Template(parts) => parts,
        };
        let mut value = String::new();
        for part in parts.iter() {
            match part {
                Part::Raw(raw) => value.push_str(raw),
                Part::Literal(c) => value.push(*c),
                Part::Var { key, default } => match resolve_var(key, default.as_deref(), keys) {
                    Resolved::Value(v) => value.push_str(&v),
                    Resolved::Nothing => return Truth::False,
                    Resolved::Unknown => return Truth::Unknown,
                },
            }
        }
        compare(&value, text).into()
    }

    pub(crate) fn var_keys(&self) -> impl Iterator<Item = &str> {
        let parts: &[Part] = match self {
            Text::Plain(_) => &[],
            Text::Template(parts) => parts,
        };
        var_keys(parts)
    }
}

fn concat(parts: &[Part]) -> String {
    let mut text = String::new();
    for part in parts {
        match part {
            Part::Raw(raw) => text.push_str(raw),
            Part::Literal(c) => text.push(*c),
            Part::Var { .. } => {}
        }
    }
    text
}

/// A wildcard pattern (`*` and `?`), matched as text (`StringLike`) or as an ARN (`Resource`,
/// `ArnLike`); see [`crate::wildcard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*` alone: matches everything, the most common resource.
    Any,
    Static(Box<[Tok]>),
    Template(Box<[Part]>),
}

impl Pattern {
    pub(crate) fn compile(value: &str, variables: bool) -> Result<Pattern, String> {
        if value == "*" {
            return Ok(Pattern::Any);
        }
        let parts = parse(value, variables)?;
        if parts.iter().any(|p| matches!(p, Part::Var { .. })) {
            return Ok(Pattern::Template(parts.into_boxed_slice()));
        }
        let mut toks = Vec::new();
        for part in &parts {
            match part {
                Part::Raw(raw) => toks.extend(tokens(raw, true)),
                Part::Literal(c) => toks.push(Tok::Lit(*c)),
                Part::Var { .. } => {}
            }
        }
        Ok(Pattern::Static(toks.into_boxed_slice()))
    }

    /// Whether `text` matches; `arn` selects ARN matching. A variable value that contains a
    /// colon is "unknown" in an ARN pattern: it would move the part boundaries IAM matches by.
    pub(crate) fn matches(&self, text: &str, keys: &ConditionKeys, arn: bool) -> Truth {
        let matches = |toks: &[Tok]| if arn { arn_glob(toks, text) } else { glob(toks, text, false) };
        let parts = match self {
            Pattern::Any => return Truth::True,
            Pattern::Static(toks) => return matches(toks).into(),
            Pattern::Template(parts) => parts,
        };
        let mut toks = Vec::new();
        for part in parts.iter() {
            match part {
                Part::Raw(raw) => toks.extend(tokens(raw, true)),
                Part::Literal(c) => toks.push(Tok::Lit(*c)),
                Part::Var { key, default } => match resolve_var(key, default.as_deref(), keys) {
                    Resolved::Value(v) if arn && v.contains(':') => return Truth::Unknown,
                    Resolved::Value(v) => toks.extend(v.chars().map(Tok::Lit)),
                    Resolved::Nothing => return Truth::False,
                    Resolved::Unknown => return Truth::Unknown,
                },
            }
        }
        matches(&toks).into()
    }

    pub(crate) fn var_keys(&self) -> impl Iterator<Item = &str> {
        let parts: &[Part] = match self {
            Pattern::Template(parts) => parts,
            _ => &[],
        };
        var_keys(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(key: &str, default: Option<&str>) -> Part {
        Part::Var { key: key.into(), default: default.map(Into::into) }
    }

    #[test]
    fn parses_variables_defaults_and_escapes() {
        assert_eq!(parse("plain", true).unwrap(), [Part::Raw("plain".into())]);
        assert_eq!(parse("", true).unwrap(), [Part::Raw("".into())]);
        assert_eq!(
            parse("home/${aws:UserName}/*", true).unwrap(),
            [Part::Raw("home/".into()), var("aws:username", None), Part::Raw("/*".into())]
        );
        assert_eq!(
            parse("${ aws:ResourceTag/team , 'it''s' }x", true).unwrap(),
            [var("aws:resourcetag/team", Some("it's")), Part::Raw("x".into())]
        );
        assert_eq!(
            parse("a${*}b${?}${$}", true).unwrap(),
            [Part::Raw("a".into()), Part::Literal('*'), Part::Raw("b".into()), Part::Literal('?'), Part::Literal('$'),]
        );
        assert_eq!(parse("${aws:username}", false).unwrap(), [Part::Raw("${aws:username}".into())]);
        for bad in ["${aws:username", "${}", "${a, default}", "${a, 'x}", "${a, 'x' b}", "${"] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }
}
